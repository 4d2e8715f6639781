"""Shared fixtures. Everything a fresh clone's `pytest` needs is in the repository: made-up GLUE files in
every task's layout (tests/data/glue, written by tests/data/make_glue_fixtures.py), a tiny BERT and a
WordPiece vocabulary covering those files, both built in code, and the whole-DAG run on them
(tests/data/tiny.yaml). Tests that check real numbers use the real GLUE data and MiniLM model of the
shared folder (BERTLOTTERY_SHARED, default ../shared) and skip, with the reason, when it is absent
(under CI=true they fail instead: CI has it).
"""

from __future__ import annotations

import os
import string
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any, Callable

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("BERTLOTTERY_SHARED", REPO.parent / "shared")).resolve()
GLUE_DIR = SHARED / "data" / "glue"
MINILM_DIR = SHARED / "models" / "all-MiniLM-L6-v2-fp16"
TEST_DATA = REPO / "tests" / "data"
FIXTURE_GLUE = TEST_DATA / "glue"  # made-up rows in every task's real file layout
TINY_CONFIG = TEST_DATA / "tiny.yaml"


def _require(path: Path) -> Path:
    if not path.exists():
        if os.environ.get("CI"):
            pytest.fail(f"{path} is missing: CI expects ../shared beside the clone")
        pytest.skip(f"{path} not found (real data; set BERTLOTTERY_SHARED to the shared data folder)")
    return path


@pytest.fixture(scope="session")
def glue_dir() -> Path:
    """The real GLUE TSV files (shared folder)."""
    return _require(GLUE_DIR)


@pytest.fixture(scope="session")
def minilm_dir() -> Path:
    """The real pre-trained MiniLM (shared folder)."""
    return _require(MINILM_DIR)


@pytest.fixture(scope="session")
def fixture_glue_dir() -> Path:
    """The made-up GLUE files of tests/data/glue (96 train, 48 dev rows per task)."""
    return FIXTURE_GLUE


@pytest.fixture(scope="session")
def repo_dir() -> Path:
    return REPO


def tiny_bert_config(**overrides):
    """A tiny BERT (2 layers, 4 heads, hidden 32) with the real uncased vocabulary size."""
    from transformers import BertConfig

    values = dict(vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                  intermediate_size=64, max_position_embeddings=128)
    values.update(overrides)
    return BertConfig(**values)


# Two architectures the mask-fitting tests hold masks against (built in code, no download).
def _bert_config(**values):
    from transformers import BertConfig

    return BertConfig(**values)


BERT_BASE = _bert_config(num_labels=2)  # bert-base-uncased shapes
TINY = _bert_config(vocab_size=50, hidden_size=24, num_hidden_layers=3, num_attention_heads=4,
                    intermediate_size=40, max_position_embeddings=32, num_labels=3)


def tiny_model():
    """A seeded random classifier of the TINY architecture."""
    import torch
    from transformers import AutoModelForSequenceClassification

    torch.manual_seed(0)
    return AutoModelForSequenceClassification.from_config(TINY)


# Words the tokenization tests spell out, on top of every word of the fixture files.
EXTRA_WORDS = "hello world second part the cat sat word short hypothesis tiny pair a b c".split()
SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def tiny_vocab() -> list[str]:
    """A WordPiece vocabulary: BERT's special tokens, every (lower-cased) word of tests/data/glue and of
    EXTRA_WORDS whole, and every character alone and as a `##` continuation, so no text maps to [UNK]."""
    from tokenizers import normalizers, pre_tokenizers

    normalize = normalizers.BertNormalizer(lowercase=True)
    split = pre_tokenizers.BertPreTokenizer()
    words = set(EXTRA_WORDS)
    for path in sorted(FIXTURE_GLUE.rglob("*.tsv")):
        text = normalize.normalize_str(path.read_text(encoding="utf-8-sig").replace("\t", " "))
        words.update(word for word, _ in split.pre_tokenize_str(text))
    chars = sorted({ch for word in words for ch in word} | set(string.ascii_lowercase + string.digits + string.punctuation))
    return SPECIAL_TOKENS + chars + [f"##{ch}" for ch in chars] + sorted(words - set(chars))


def save_tiny_tokenizer(path: Path):
    """Write the tiny WordPiece tokenizer (uncased, BERT's special tokens) into `path`; returns it."""
    from transformers import BertTokenizer

    path.mkdir(parents=True, exist_ok=True)
    tokenizer = BertTokenizer(vocab={token: i for i, token in enumerate(tiny_vocab())}, do_lower_case=True)
    tokenizer.save_pretrained(path)
    return tokenizer


def save_tiny_model(path: Path) -> Path:
    """A randomly initialised tiny BERT (seed 0) saved like a hub checkpoint, with the tiny tokenizer."""
    import torch
    from transformers import BertModel

    save_tiny_tokenizer(path)
    torch.manual_seed(0)
    # BERT's real vocabulary size (rows past the tiny vocabulary stay unused): the model has the size and
    # speed the training tests were written for (a kill must land mid-run)
    BertModel(tiny_bert_config()).save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """The tiny BERT and its tokenizer in a local directory (no download, no shared folder)."""
    return save_tiny_model(tmp_path_factory.mktemp("tiny-bert"))


@pytest.fixture(scope="session")
def rte_small(tmp_path_factory, tiny_model_dir) -> Path:
    """The fixture RTE (96 train / 48 dev rows), prepared with the tiny tokenizer."""
    from bertlottery.glue.prepare import prepare_data

    out = tmp_path_factory.mktemp("rte-small")
    prepare_data("RTE", str(tiny_model_dir), out, glue_dir=FIXTURE_GLUE, max_train_examples=96,
                 max_dev_examples=48, subsample_seed=0, max_seq_length=64)
    return out


def _snakemake(workdir: Path, configfile: Path, model: Path, glue: Path, extra: tuple[str, ...],
               cores: int) -> list[str]:
    return [
        sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"), "--directory", str(workdir),
        "--cores", str(cores), *extra, "--configfile", str(configfile),
        # last: `--config` takes every following word as key=value (targets must come before it)
        "--config", f"model={model}", f"glue_dir={glue}",
    ]


def smoke_command(workdir: Path, *extra: str, cores: int = 2) -> list[str]:
    """`snakemake` on config/smoke.yaml with the README's offline overrides (real MiniLM and GLUE)."""
    return _snakemake(workdir, REPO / "config" / "smoke.yaml", MINILM_DIR, GLUE_DIR, extra, cores)


def tiny_command(workdir: Path, model_dir: Path, *extra: str, cores: int = 2) -> list[str]:
    """`snakemake` on tests/data/tiny.yaml: the tiny model in `model_dir`, the fixture GLUE files."""
    return _snakemake(workdir, TINY_CONFIG, model_dir, FIXTURE_GLUE, extra, cores)


def run_tiny_with_overlay(workdir: Path, model_dir: Path, overlay: Path):
    """`tiny_command` with the config file `overlay` after tests/data/tiny.yaml; fails the test with the
    last job logs if Snakemake fails. Returns the finished process (its output names the jobs run)."""
    import subprocess

    command = tiny_command(workdir, model_dir)
    at = command.index("--configfile") + 2
    command[at:at] = [str(overlay)]
    run = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
    if run.returncode != 0:
        logs = sorted((workdir / "results" / "logs").rglob("*.log"), key=lambda p: p.stat().st_mtime)[-3:]
        pytest.fail(run.stderr[-4000:] + "".join(f"\n--- {p}\n{p.read_text()[-2000:]}" for p in logs))
    return run


def overlay_on_tiny_run(tiny_run: Path, model_dir: Path, workdir: Path, overlay: dict) -> set[str]:
    """The tiny run's results copied into `workdir` (mtimes kept, so nothing upstream reruns), then the
    tiny workflow with the config `overlay` on top; returns the names of the rules that ran."""
    import shutil

    import yaml

    shutil.copytree(tiny_run / "results", workdir / "results")
    path = workdir / "overlay.yaml"
    path.write_text(yaml.safe_dump(overlay))
    run = run_tiny_with_overlay(workdir, model_dir, path)
    return {line.split()[1].rstrip(":") for line in (run.stdout + run.stderr).splitlines()
            if line.strip().startswith(("rule ", "localrule "))}


def _run_workflow(command: list[str], workdir: Path, what: str) -> Path:
    import subprocess

    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
    if result.returncode != 0:
        logs = sorted((workdir / "results" / "logs").rglob("*.log"), key=lambda p: p.stat().st_mtime)
        tail = "\n".join(f"--- {p}\n{p.read_text()[-2000:]}" for p in logs[-3:])
        pytest.fail(f"{what} failed:\n{result.stderr[-6000:]}\n{tail}")
    return workdir


# The real-model smoke run checks numbers, which need only the full models: data, fine-tuning and
# evaluation of every (task, seed). The whole DAG runs on the tiny model (`tiny_run`).
SMOKE_TASKS, SMOKE_SEEDS = ("SST-2", "MRPC"), (1337, 42)
SMOKE_TARGETS = [f"results/finetune/{task}/seed{seed}/metrics.json" for task in SMOKE_TASKS for seed in SMOKE_SEEDS]


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory, glue_dir, minilm_dir) -> Path:
    """config/smoke.yaml on the real MiniLM and GLUE, the full models only, once per session; returns
    the working directory."""
    workdir = tmp_path_factory.mktemp("smoke")
    return _run_workflow(smoke_command(workdir, *SMOKE_TARGETS), workdir, "smoke workflow (full models)")


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory, tiny_model_dir) -> Path:
    """The whole DAG of tests/data/tiny.yaml (every rule), once per session; returns the working directory."""
    workdir = tmp_path_factory.mktemp("tiny-run")
    return _run_workflow(tiny_command(workdir, tiny_model_dir), workdir, "tiny workflow")


# --- time per phase: quick, slow and SLURM tests (CI prints it) ------------------------------------

_PHASE_SECONDS: dict[str, float] = defaultdict(float)
_PHASE_TESTS: dict[str, int] = defaultdict(int)
_SESSION_START = time.monotonic()


def _phase(item_keywords) -> str:
    return "slurm" if "slurm" in item_keywords else "slow" if "slow" in item_keywords else "quick"


def pytest_collection_modifyitems(items) -> None:
    """Quick tests first, then slow, then SLURM (file order kept within each): early failures come early,
    and each session fixture's run is timed in the first phase that uses it."""
    order = {"quick": 0, "slow": 1, "slurm": 2}
    items.sort(key=lambda item: order[_phase(item.keywords)])


def pytest_runtest_logreport(report) -> None:
    """Add each test's setup, call and teardown time (session fixtures count where first used) to its phase."""
    phase = _phase(report.keywords)
    _PHASE_SECONDS[phase] += report.duration
    if report.when == "call" or (report.when == "setup" and report.skipped):
        _PHASE_TESTS[phase] += 1


def pytest_terminal_summary(terminalreporter) -> None:
    """Each phase's test time, summed over the xdist workers (they run files of several phases at once, so a
    phase has no wall time of its own), and the session's wall time."""
    if not _PHASE_TESTS:
        return
    terminalreporter.section("time per phase")
    for phase in ("quick", "slow", "slurm"):
        if _PHASE_TESTS[phase]:
            terminalreporter.write_line(f"{phase} tests: {_PHASE_TESTS[phase]}, {_PHASE_SECONDS[phase]:.0f} s of test time")
    terminalreporter.write_line(f"whole session: {time.monotonic() - _SESSION_START:.0f} s wall")


# --- kill and resume (the two mask searches) -------------------------------------------------------


class Killed(Exception):
    """Stands for a kill: raised from the search's on_iteration callback."""


def run_killed_then_resumed(search: Callable[..., Any], state_dir: Path, state_file: str, kill_after: int):
    """Run `search(state_dir=..., on_iteration=...)` killed right after iteration `kill_after` was saved,
    check it left its state file, then run it again on the same state.

    Returns the resumed run's result and the iterations it reported (those it did not take from the state)."""
    def kill(i: int) -> None:
        if i == kill_after:
            raise Killed

    with pytest.raises(Killed):
        search(state_dir=state_dir, on_iteration=kill)
    assert (state_dir / state_file).is_file()
    reported: list[int] = []
    return search(state_dir=state_dir, on_iteration=reported.append), reported


@pytest.fixture
def killed_then_resumed():
    """`run_killed_then_resumed` for the kill-and-resume tests of both searches."""
    return run_killed_then_resumed


@pytest.fixture
def one_thread():
    """torch on one thread (modules that use it: `pytestmark = pytest.mark.usefixtures("one_thread")`): tiny
    matrices gain nothing from more threads, which only add contention on a shared 2-core machine."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def self_labelled_split(model, n=40, seed=0):
    """Random token rows (vocabulary ids 1-59) labelled with `model`'s own predictions: its dev score S0 is
    1, so pruning can only lower it (the m- and i-search tests)."""
    import numpy as np
    import torch

    from bertlottery.glue.splits import TokenizedSplit

    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(3, 14, (n,), generator=g)
    offsets = torch.cat([torch.zeros(1, dtype=torch.long), lengths.cumsum(0)])
    ids = torch.randint(1, 60, (int(offsets[-1]),), generator=g).int()
    types = torch.zeros(int(offsets[-1]), dtype=torch.uint8)
    split = TokenizedSplit(ids, types, offsets, torch.zeros(n, dtype=torch.long))
    with torch.no_grad():
        batch = split.collate(np.arange(n))
        batch.pop("labels")
        labels = model(**batch).logits.argmax(-1)
    return TokenizedSplit(ids, types, offsets, labels)
