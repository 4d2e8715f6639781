"""scripts/compare_results.py: run-time fields are ignored, every number, tensor and table is compared."""

from __future__ import annotations

import importlib.util
import json
import shutil

import torch
from conftest import REPO
from safetensors.torch import save_file

spec = importlib.util.spec_from_file_location("compare_results", REPO / "scripts" / "compare_results.py")
compare_results = importlib.util.module_from_spec(spec)
spec.loader.exec_module(compare_results)


def _tree(root, *, accuracy=0.75, wall=1.0, mask=(1, 0, 1), table="a,b\n1,2\n"):
    (root / "eval").mkdir(parents=True)
    (root / "eval" / "pruned.json").write_text(json.dumps({"metrics": {"accuracy": accuracy}, "wall_time_s": wall}))
    save_file({"heads": torch.tensor(mask, dtype=torch.uint8)}, str(root / "good.safetensors"),
              metadata={"task": "RTE", "wall_time_s": str(wall)})
    (root / "table.csv").write_text(table)
    (root / "logs").mkdir()
    (root / "logs" / "job.log").write_text(f"took {wall} s")
    return root


def test_equal_runs_differ_only_in_run_time(tmp_path):
    a = _tree(tmp_path / "a")
    b = _tree(tmp_path / "b", wall=9.0)
    assert compare_results.compare(a, b) == []


def test_a_changed_number_tensor_table_or_file_is_reported(tmp_path):
    a = _tree(tmp_path / "a")
    assert compare_results.compare(a, _tree(tmp_path / "b", accuracy=0.5)) == ["differs: eval/pruned.json"]
    assert compare_results.compare(a, _tree(tmp_path / "c", mask=(1, 1, 1))) == ["differs: good.safetensors"]
    assert compare_results.compare(a, _tree(tmp_path / "d", table="a,b\n1,3\n")) == ["differs: table.csv"]
    e = _tree(tmp_path / "e")
    shutil.copy(e / "table.csv", e / "extra.csv")
    assert compare_results.compare(a, e) == ["only in B: extra.csv"]


def test_a_record_from_before_predictions_is_compared_on_everything_else(tmp_path, capsys):
    a, b, c = (_tree(tmp_path / name) for name in "abc")
    for root, predicted in ((b, "0101"), (c, "0101")):
        record = json.loads((root / "eval" / "pruned.json").read_text())
        record["predictions"] = {"dev": {"predicted": predicted}}
        (root / "eval" / "pruned.json").write_text(json.dumps(record))
    assert compare_results.compare(a, b) == []  # a predates predictions: compared without them, and said
    assert "1 metrics record(s) compared without per-example predictions" in capsys.readouterr().out
    record = json.loads((c / "eval" / "pruned.json").read_text())
    record["predictions"]["dev"]["predicted"] = "0111"
    (c / "eval" / "pruned.json").write_text(json.dumps(record))
    assert compare_results.compare(b, c) == ["differs: eval/pruned.json"]  # both have them: compared
