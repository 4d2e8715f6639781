"""scripts/paper_claims.py: the claims on the authors' published masks, here on masks in the original
repository's layout built in the test (the repository itself is not a test input)."""

from __future__ import annotations

import importlib.util
import json
import re

import numpy as np
from conftest import REPO

spec = importlib.util.spec_from_file_location("paper_claims", REPO / "scripts" / "paper_claims.py")
paper_claims = importlib.util.module_from_spec(spec)
spec.loader.exec_module(paper_claims)

SEEDS = (1337, 42, 86, 71, 166)


def test_claims_on_original_layout_masks(tmp_path):
    rng = np.random.default_rng(0)
    shared = rng.random((12, 12)) < 0.5
    for task in ("MRPC", "QNLI", "QQP", "MNLI"):
        for seed in SEEDS:
            d = tmp_path / "clone" / "masks" / "heads_mlps" / task / f"seed_{seed}"
            d.mkdir(parents=True)
            heads = shared | (rng.random((12, 12)) < 0.2)  # every seed keeps the shared heads: pairs agree
            np.save(d / "head_mask.npy", heads.astype(np.float32))
            np.save(d / "mlp_mask.npy", (rng.random(12) < 0.7).astype(np.float32))
    out = tmp_path / "paper"
    assert paper_claims.main([str(tmp_path / "clone"), str(out), "--commit", "abc1234"]) == 0
    claims = {c["id"]: c for c in json.loads((out / "claims.json").read_text())["claims"]}
    assert claims["pairs-similar"]["verdict"] == "holds" and claims["pairs-similar"]["paper_verdict"] == "cannot be checked"
    assert claims["s-good-90"]["verdict"] == "holds"  # the published numbers
    readme = (out / "README.md").read_text()
    assert "abc1234" in readme
    assert "python scripts/paper_claims.py bert-experiments docs/results/paper" in readme
    assert sorted(p.name for p in out.iterdir()) == ["README.md", "claims.json", "claims.md", "overlaps.csv",
                                                    "stability.csv", "stability_pairs.csv", "survivors.csv"]
    assert str(tmp_path) not in (out / "claims.md").read_text() + (out / "stability.csv").read_text()


def test_the_top_readme_counts_the_committed_verdicts_on_the_papers_numbers():
    """The README's sentence on docs/results/paper is written by hand: it must give claims.md's counts."""
    summary = (REPO / "docs" / "results" / "paper" / "claims.md").read_text().split("Summary: ")[1].split("\n")[0]
    counted = {verdict: int(n) for n, verdict in re.findall(r"(\d+) \S (holds|partly holds|not shown|does not hold|"
                                                            r"cannot be checked)", summary)}
    sentence = " ".join((REPO / "README.md").read_text().split("authors' published per-seed s-masks")[1].split())
    said = {"holds": r"(\d+) claims hold", "partly holds": r"(\d+) partly holds", "not shown": r"(\d+) are not shown",
            "does not hold": r"(\d+) does not hold", "cannot be checked": r"(\d+) cannot be checked"}
    assert {v: int(re.search(pattern, sentence).group(1)) for v, pattern in said.items()} == counted, summary
