"""The `glue_dir: null` path, offline: reading.read_hub's own `datasets.load_dataset("nyu-mll/glue", config)`
call on a local folder laid out as the hub repository (one parquet file per config and split, a README
whose `configs:` name them). `load_dataset` resolves an id to a local folder of that name before it asks
the hub, so the test runs in a folder holding `nyu-mll/glue/` with HF_DATASETS_OFFLINE=1 and HF_HOME in
the test's tmp dir (nothing read from or written to the user's cache). The rows are the fixture TSVs'
(tests/data/glue), with the hub's ClassLabel names and orders, so both paths must give the same examples.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import FIXTURE_GLUE, REPO

from bertlottery.glue import reading
from bertlottery.glue.tasks import GLUE_TASKS, get_task

# nyu-mll/glue's ClassLabel names (its dataset card); MNLI's order differs from the TSV processors'.
HUB_NAMES = {
    "CoLA": ["unacceptable", "acceptable"], "SST-2": ["negative", "positive"],
    "MRPC": ["not_equivalent", "equivalent"], "QQP": ["not_duplicate", "duplicate"],
    "MNLI": ["entailment", "neutral", "contradiction"], "QNLI": ["entailment", "not_entailment"],
    "RTE": ["entailment", "not_entailment"], "WNLI": ["not_entailment", "entailment"],
}


def write_hub_glue(root: Path) -> Path:
    """`root/nyu-mll/glue` as on the hub: <config>/<split>-00000-of-00001.parquet and a README with configs."""
    from datasets import ClassLabel, Dataset, Features, Value

    repo = root / "nyu-mll" / "glue"
    configs = []
    for task in GLUE_TASKS:
        spec = get_task(task)
        columns = [spec.hub.text_a] + ([spec.hub.text_b] if spec.hub.text_b else [])
        label = Value("float32") if spec.is_regression else ClassLabel(names=HUB_NAMES[task])
        features = Features({**{c: Value("string") for c in columns}, "label": label, "idx": Value("int32")})
        files = []
        for split, hub_split in spec.hub.splits.items():
            examples = reading.read_examples(task, split, FIXTURE_GLUE)
            if spec.is_regression:
                labels = [ex.label for ex in examples]
            else:  # our class index -> its name (TSV value) -> the hub's class id, by name
                aliases = {ours: hub for hub, ours in reading.HUB_LABEL_ALIASES.get(spec.hub.config, {}).items()}
                labels = [HUB_NAMES[task].index(aliases.get(spec.labels[ex.label], spec.labels[ex.label]))
                          for ex in examples]
            table = {spec.hub.text_a: [ex.text_a for ex in examples], "label": labels,
                     "idx": list(range(len(examples)))}
            if spec.hub.text_b:
                table[spec.hub.text_b] = [ex.text_b for ex in examples]
            path = repo / spec.hub.config / f"{hub_split}-00000-of-00001.parquet"
            path.parent.mkdir(parents=True, exist_ok=True)
            Dataset.from_dict(table, features=features).to_parquet(str(path))
            files.append(f"  - split: {hub_split}\n    path: {spec.hub.config}/{hub_split}-*")
        configs.append(f"- config_name: {spec.hub.config}\n  data_files:\n" + "\n".join(files))
    (repo / "README.md").write_text("---\nconfigs:\n" + "\n".join(configs) + "\n---\n")
    return root


def offline_env(tmp_path: Path) -> dict[str, str]:
    return os.environ | {"HF_HOME": str(tmp_path / "hf-home"), "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
                         "PYTHONPATH": os.pathsep.join([str(REPO / "src"), os.environ.get("PYTHONPATH", "")])}


# Read in a child process: `datasets` fixes its cache folder (HF_HOME) when first imported.
READ_ALL = """
import json, sys
from bertlottery.glue import reading
from bertlottery.glue.tasks import GLUE_TASKS, get_task
out = {}
for task in GLUE_TASKS:
    for split in get_task(task).splits:
        src = reading.read_split(task, split, None)
        out[f"{task}/{split}"] = {"source": src.source, "rows": src.rows_in_source,
                                  "examples": [[e.text_a, e.text_b, e.label] for e in src.examples]}
print(json.dumps(out))
"""


def test_every_task_and_split_reads_from_the_hub_layout_as_from_the_tsvs(tmp_path):
    root = write_hub_glue(tmp_path / "cwd")
    run = subprocess.run([sys.executable, "-c", READ_ALL], cwd=root, env=offline_env(tmp_path),
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-4000:]
    seen = json.loads(run.stdout.strip().splitlines()[-1])
    for task in GLUE_TASKS:
        spec = get_task(task)
        for split in spec.splits:
            tsv = reading.read_examples(task, split, FIXTURE_GLUE)
            hub = seen[f"{task}/{split}"]
            assert hub["source"] == f"hub:nyu-mll/glue/{spec.hub.config}:{spec.hub.splits[split]}"
            assert hub["rows"] == len(tsv)
            if spec.is_regression:
                assert [e[:2] for e in hub["examples"]] == [[ex.text_a, ex.text_b] for ex in tsv]
                assert [e[2] for e in hub["examples"]] == pytest.approx([ex.label for ex in tsv], abs=1e-6)
            else:
                assert hub["examples"] == [[ex.text_a, ex.text_b, ex.label] for ex in tsv], (task, split)
    assert any(e[2] != 0 for e in seen["MNLI/dev"]["examples"])  # the hub's class ids were remapped


def test_prepare_data_cli_without_glue_dir_reads_the_hub_layout(tmp_path, tiny_model_dir):
    """The command the workflow runs when `glue_dir: null` (no --glue-dir)."""
    root = write_hub_glue(tmp_path / "cwd")
    out = tmp_path / "prepared"
    run = subprocess.run([sys.executable, "-m", "bertlottery", "prepare-data", "--task", "MNLI", "--model",
                          str(tiny_model_dir), "--max-seq-length", "32", "--out-dir", str(out)],
                         cwd=root, env=offline_env(tmp_path), capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-4000:]
    card = json.loads((out / "data_card.json").read_text())
    assert card["source"].startswith("hub:nyu-mll/glue/mnli")
    assert card["splits"]["dev_mm"]["rows_kept"] == len(reading.read_examples("MNLI", "dev_mm", FIXTURE_GLUE))
    labels = [json.loads(line)["label"] for line in (out / "splits" / "dev.jsonl").read_text().splitlines()]
    tsv = reading.read_examples("MNLI", "dev", FIXTURE_GLUE)
    assert labels == [get_task("MNLI").labels[ex.label] for ex in tsv]


def test_no_local_copy_offline_is_a_clear_error(tmp_path):
    run = subprocess.run([sys.executable, "-c", "from bertlottery.glue import reading; reading.read_split('RTE', 'dev')"],
                         cwd=tmp_path, env=offline_env(tmp_path), capture_output=True, text=True)
    assert run.returncode != 0
    assert "could not load nyu-mll/glue config 'rte'" in run.stderr and "glue_dir" in run.stderr
