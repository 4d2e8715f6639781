"""Two claims checks side by side: which verdicts, and which tasks' answers, differ between two studies.

    python scripts/compare_verdicts.py OLD/claims.json NEW/claims.json [--task STS-B] [--names "2,000" "full"]

Written for the study's sensitivity analyses (docs/results/minilm/README.md): the same task run two ways (STS-B
on 2,000 training examples and on its full training set; 3 seeds and 5) gives two claims.json files, and the
question is which of the paper's claims change their answer. Prints a Markdown table with one row per claim
whose overall verdict or (with --task) whose answer for that task differs, and each side's reason; claims in
only one file are listed too. Exit status 0.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def load(path: Path) -> dict[str, dict]:
    try:
        claims = json.loads(path.read_text())["claims"]
        return {claim["id"]: claim for claim in claims}
    except (OSError, ValueError, KeyError, TypeError) as error:
        sys.exit(f"{path}: not a claims.json from `bertlottery claims` ({error}); expected an object with 'claims'")


def task_answer(claim: dict, task: str | None) -> str:
    if task is None:
        return ""
    return str(((claim.get("evidence") or {}).get("per_task") or {}).get(task, "–"))


def differences(old: dict[str, dict], new: dict[str, dict], task: str | None) -> list[dict]:
    rows = []
    for cid in list(old) + [c for c in new if c not in old]:
        a, b = old.get(cid), new.get(cid)
        if a is None or b is None:
            rows.append({"id": cid, "old": "absent" if a is None else a["verdict"],
                         "new": "absent" if b is None else b["verdict"], "old_task": "", "new_task": "",
                         "old_reason": "" if a is None else a["reason"], "new_reason": "" if b is None else b["reason"]})
            continue
        if a["verdict"] != b["verdict"] or task_answer(a, task) != task_answer(b, task):
            rows.append({"id": cid, "old": a["verdict"], "new": b["verdict"], "old_task": task_answer(a, task),
                         "new_task": task_answer(b, task), "old_reason": a["reason"], "new_reason": b["reason"]})
    return rows


def markdown(rows: list[dict], names: tuple[str, str], task: str | None) -> str:
    if not rows:
        return f"No claim changes its verdict{f' or its answer for {task}' if task else ''}.\n"
    head = ["claim", f"verdict ({names[0]})", f"verdict ({names[1]})"]
    if task:
        head += [f"{task} ({names[0]})", f"{task} ({names[1]})"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [r["id"], r["old"], r["new"]] + ([r["old_task"], r["new_task"]] if task else [])
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    lines += [f"- **{r['id']}** — {names[0]}: {r['old_reason'] or '–'} — {names[1]}: {r['new_reason'] or '–'}"
              for r in rows]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("old", type=Path, help="the first study's analysis/claims.json")
    p.add_argument("new", type=Path, help="the second study's analysis/claims.json")
    p.add_argument("--task", help="also compare each claim's answer for this task (evidence.per_task)")
    p.add_argument("--names", nargs=2, default=("old", "new"), help="the two studies' names in the table")
    args = p.parse_args(argv)
    rows = differences(load(args.old), load(args.new), args.task)
    sys.stdout.write(markdown(rows, tuple(args.names), args.task))
    return 0


if __name__ == "__main__":
    sys.exit(main())
