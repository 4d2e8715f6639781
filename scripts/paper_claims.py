"""The paper's claims checked on its own artifacts: the authors' published per-seed s-masks and their
published numbers, with the same criteria as every study (docs/protocol.md §Claims).

    git clone https://github.com/sai-prasanna/bert-experiments
    python scripts/paper_claims.py bert-experiments docs/results/paper

Reads <clone>/masks/heads_mlps/<TASK>/seed_<S>/{head_mask,mlp_mask}.npy (the good s-masks of the joint
search, 9 tasks x 5 seeds) through `bertlottery stats masks --original-masks`, and the published means and
standard deviations packaged as resources/paper_results.yaml. Writes into the output folder only what is
derived from them: the mask statistics as CSV (stability, stability_pairs, survivors, overlaps) and
claims.md / claims.json. The repository carries no license, so none of its files is copied.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import pandas as pd

from bertlottery.analysis.aggregate import load_paper, read_table
from bertlottery.analysis.claims_report import (
    MARK,
    claims_markdown,
    closing_note,
    evaluate_claims,
    paper_numbers,
    verdict_counts,
)
from bertlottery.analysis.stats import main_stats

ALPHA = 0.05
PAR_TOLERANCE = 0.03
MASK_TABLES = ("stability", "stability_pairs", "survivors", "overlaps")
NOTES = [
    "Masks: the authors' good s-masks of the joint search (masks/heads_mlps of github.com/sai-prasanna/"
    "bert-experiments, 9 tasks x 5 seeds); every kappa, super-survivor count and overlap computed from them "
    "matches the paper's.",
    "Numbers: the paper's published means and Bessel standard deviations over 5 seeds (Figure 2, Appendix C and "
    "E, Table 2, §6.3 sizes; bertlottery/resources/paper_results.yaml). Per-seed scores and per-example "
    "predictions are not published: intervals are Welch intervals from the means and standard deviations, "
    "groups taken as independent (pairing by seed would narrow them), and there is no dev-set bootstrap.",
    "The m-masks and the per-iteration importance scores are not published: the m-block and importance claims "
    "cannot be checked here.",
    "The published Figure 2a plots the good-retrained bars as 'random (retrained)'; the s-random-on-par claim is "
    "checked against the true random-retrained numbers of the repository's table.",
    "CoLA's m-bad 0.24 in Table 2 is taken as the repository's 0.02475 (a typo in the table).",
]


def mask_statistics(masks_dir: Path, out: Path) -> dict:
    """`stats masks` on the original masks, into `out`; the tables it wrote, by name."""
    main_stats(["masks", "--original-masks", str(masks_dir), "--alpha", str(ALPHA), "--out-dir", str(out)])
    return {name: read_table(out / f"{name}.parquet") for name in MASK_TABLES}


README = """# The paper's claims on its own artifacts

Which of the claims of Prasanna, Rogers & Rumshisky (EMNLP 2020) hold on the authors' own published
artifacts, judged with the same criteria as our studies (docs/protocol.md §Claims): graded verdicts, each
task's effect with its uncertainty, every criterion quoted against the paper's sentence.

**Where the inputs come from.** The good s-masks of the joint head/MLP search, 9 tasks x 5 seeds
(`masks/heads_mlps/<TASK>/seed_<S>/{{head_mask,mlp_mask}}.npy`), are those of the public repository
[sai-prasanna/bert-experiments](https://github.com/sai-prasanna/bert-experiments) (read at commit
{commit}). The repository has no license: this folder holds only what is derived from the masks (the
statistics below and the verdicts), none of its files. The scores, sizes and Table 2 rows are the paper's
published means and standard deviations over 5 seeds, packaged as `bertlottery/resources/paper_results.yaml`.

**Rebuild** from a clone of the public repository (about 20 s):

    git clone https://github.com/sai-prasanna/bert-experiments
    python scripts/paper_claims.py bert-experiments docs/results/paper

| file | what |
|---|---|
| `claims.md`, `claims.json` | every claim: the paper's sentence, the verdict with each task's effect and interval, the criterion; beside it the verdict on the published numbers alone |
| `stability.csv` | per task and unit: Fleiss' kappa, Cochran's Q over the 5 seeds |
| `stability_pairs.csv` | per seed pair: Cochran's Q (McNemar: equal counts), Cohen's kappa, kept heads shared vs expected by chance, hypergeometric p |
| `survivors.csv` | per task: heads and MLPs kept per seed, super-survivors, never-survivors |
| `overlaps.csv` | per task pair: shared heads / MLPs (same seed), hypergeometric expectation, Fisher-combined p |

## Verdicts

{table}

Summary: {summary}.

What the masks add to the published numbers: {pairs}
"""


def readme(claims: list[dict], pairs: pd.DataFrame, commit: str) -> str:
    """The folder's README: sources, the rebuild command, the verdict table and the seed-pair finding."""
    rows = ["| § | claim | on the masks and numbers | on the published numbers alone |", "|---|---|---|---|"]
    rows += [f"| {c['section']} | {c['claim']} | {MARK[c['verdict']]} {c['verdict']} | "
             f"{MARK[c['paper_verdict']]} {c['paper_verdict']} |" for c in claims]
    heads = pairs[pairs["unit"] == "heads"].dropna(subset=["p"])
    gap = (heads["kept_a"] - heads["kept_b"]).abs()
    similar = heads["p"] >= ALPHA
    finding = (f"the seed pairs Cochran's Q calls similar (p >= {ALPHA}: {int(similar.sum())} of {len(heads)}) have "
               f"mean Cohen's kappa {heads.loc[similar, 'kappa'].mean():.3f}, the others "
               f"{heads.loc[~similar, 'kappa'].mean():.3f}: what separates them is the gap in head counts "
               f"({gap[similar].mean():.1f} vs {gap[~similar].mean():.1f} heads), not which heads they keep. By "
               "agreement beyond chance (hypergeometric, Holm) the pairs that share more heads than chance are "
               "listed in claims.md.")
    return README.format(commit=commit, table="\n".join(rows), summary=verdict_counts(claims), pairs=finding)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("clone", type=Path, help="a clone of github.com/sai-prasanna/bert-experiments")
    parser.add_argument("out", type=Path, help="the folder to write (e.g. docs/results/paper)")
    parser.add_argument("--commit", help="the clone's commit, for the README (default: git rev-parse HEAD)")
    args = parser.parse_args(argv)
    masks_dir = args.clone / "masks" / "heads_mlps"
    if not masks_dir.is_dir():
        parser.error(f"{masks_dir}: not found (expected a clone of the original repository)")
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="paper-claims-") as scratch:
        tables = mask_statistics(masks_dir, Path(scratch))
    paper = load_paper()
    published = paper_numbers(paper)
    own = paper_numbers(paper)
    own.label = "the paper's masks and numbers"
    own.stability, own.stability_pairs = tables["stability"], tables["stability_pairs"]
    separate = published.survivors[published.survivors["set"] != "joint"]  # Appendix B: published counts only
    own.survivors = pd.concat([tables["survivors"].assign(set="joint"), separate], ignore_index=True)
    own.overlaps = tables["overlaps"]
    claims = evaluate_claims(own, published, ALPHA, PAR_TOLERANCE)
    for name, table in tables.items():
        table.drop(columns=["mask_source"], errors="ignore").to_csv(args.out / f"{name}.csv", index=False)
    closing = closing_note(claims)
    (args.out / "claims.json").write_text(json.dumps({"notes": NOTES, "claims": claims, "closing": closing},
                                                     indent=2) + "\n")
    (args.out / "claims.md").write_text(claims_markdown(
        claims, NOTES, title="The paper's claims checked on its own published masks and numbers", closing=closing))
    commit = args.commit or _head_commit(args.clone)
    (args.out / "README.md").write_text(readme(claims, tables["stability_pairs"], commit))
    for name in (*MASK_TABLES, "claims", "README"):
        print(args.out / f"{name}.{'csv' if name in MASK_TABLES else 'md'}")
    return 0


def _head_commit(clone: Path) -> str:
    result = subprocess.run(["git", "-C", str(clone), "rev-parse", "HEAD"], capture_output=True, text=True)
    return result.stdout.strip()[:7] if result.returncode == 0 else "(unknown: not a git clone)"


if __name__ == "__main__":
    sys.exit(main())
