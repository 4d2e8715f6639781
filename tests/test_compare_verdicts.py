"""scripts/compare_verdicts.py: the claims whose verdict, or whose answer for one task, differs between two studies."""

from __future__ import annotations

import importlib.util
import json

import pytest
from conftest import REPO

spec = importlib.util.spec_from_file_location("compare_verdicts", REPO / "scripts" / "compare_verdicts.py")
compare_verdicts = importlib.util.module_from_spec(spec)
spec.loader.exec_module(compare_verdicts)


def _claims(path, verdicts: dict[str, tuple[str, dict]]):
    claims = [{"id": cid, "verdict": verdict, "reason": f"{cid} is {verdict}", "evidence": {"per_task": per_task}}
              for cid, (verdict, per_task) in verdicts.items()]
    path.write_text(json.dumps({"notes": [], "claims": claims}))
    return path


def test_only_changed_verdicts_and_task_answers_are_listed(tmp_path, capsys):
    old = _claims(tmp_path / "old.json", {"a": ("holds", {"STS-B": "yes", "CoLA": "yes"}),
                                          "b": ("partly holds", {"STS-B": "unclear", "CoLA": "yes"}),
                                          "c": ("not shown", {"STS-B": "unclear"}),
                                          "gone": ("holds", {})})
    new = _claims(tmp_path / "new.json", {"a": ("holds", {"STS-B": "yes", "CoLA": "yes"}),
                                          "b": ("partly holds", {"STS-B": "yes", "CoLA": "unclear"}),
                                          "c": ("holds", {"STS-B": "yes"}),
                                          "added": ("not shown", {})})
    assert compare_verdicts.main([str(old), str(new), "--task", "STS-B", "--names", "2,000", "full"]) == 0
    out = capsys.readouterr().out
    ids = [line.split("|")[1].strip() for line in out.splitlines() if line.startswith("| ") and "claim" not in line]
    assert ids == ["b", "c", "gone", "added"]  # a is unchanged; b changed only its STS-B answer
    assert "| b | partly holds | partly holds | unclear | yes |" in out
    assert "| verdict (2,000) | verdict (full) |" in out and "c is not shown" in out and "c is holds" in out
    assert "| gone | holds | absent |" in out
    # without --task, b's changed answers do not count
    rows = compare_verdicts.differences(compare_verdicts.load(old), compare_verdicts.load(new), None)
    assert [r["id"] for r in rows] == ["c", "gone", "added"]


def test_no_difference_says_so_and_a_wrong_file_is_named(tmp_path, capsys):
    same = _claims(tmp_path / "a.json", {"a": ("holds", {"RTE": "yes"})})
    compare_verdicts.main([str(same), str(same), "--task", "RTE"])
    assert capsys.readouterr().out == "No claim changes its verdict or its answer for RTE.\n"
    (tmp_path / "bad.json").write_text("[]")
    with pytest.raises(SystemExit, match="bad.json: not a claims.json"):
        compare_verdicts.main([str(tmp_path / "bad.json"), str(same)])
