"""report_summary.py: the report's opening page from claims.json, the metrics table and Figure 2."""

from __future__ import annotations

import json

import pandas as pd

from bertlottery.analysis.report_summary import main_report_summary


def test_summary_has_what_ran_the_marked_claims_and_the_figure(tmp_path):
    claims = {"notes": ["a note"], "claims": [
        {"id": "a", "section": "4.2", "claim": "random on par", "criterion": "c", "verdict": "holds",
         "reason": "2/2 tasks", "paper_verdict": "not shown"},
        {"id": "b", "section": "5.1", "claim": "kappa", "criterion": "c", "verdict": "partly holds",
         "reason": "1/2", "paper_verdict": None}]}
    (tmp_path / "claims.json").write_text(json.dumps(claims))
    pd.DataFrame({"task": ["SST-2", "CoLA"], "seed": [42, 86], "wall_time_s": [1800.0, 1800.0],
                  "device": ["cpu", "cpu"]}).to_parquet(tmp_path / "metrics.parquet")
    (tmp_path / "fig.png").write_bytes(b"\x89PNG fake")
    out = tmp_path / "summary.html"
    main_report_summary(["--claims", str(tmp_path / "claims.json"), "--metrics", str(tmp_path / "metrics.parquet"),
                         "--model", "some/model", "--figure", str(tmp_path / "fig.png"), "--output", str(out)])
    page = out.read_text()
    assert "Model <code>some/model</code>; 2 task(s): CoLA, SST-2; seeds 42, 86" in page and "1.0 hours" in page
    assert "1 ✔ holds, 1 ◐ partly holds" in page and "background:#d4edda" in page
    assert "src='data:image/png;base64," in page and "<li>a note</li>" in page
    main_report_summary(["--claims", str(tmp_path / "claims.json"), "--metrics", str(tmp_path / "metrics.parquet"),
                         "--model", "m", "--output", str(out)])
    assert "<img" not in out.read_text()  # no figure given: none shown
