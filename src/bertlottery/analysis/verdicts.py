"""Graded verdicts with their uncertainty (docs/protocol.md §Claims: verdicts).

A claim is judged per task: the task's effect (a difference of means over seeds, a share, a count) with
its interval, against the claim's cut. The interval comes from two sources where they exist:

- over seeds: a t interval of the mean over the seeds (paired by seed where two runs are compared); on
  the paper's published numbers, a Welch interval from the published means and standard deviations;
- over dev examples: a percentile bootstrap over the dev set (the same resampled examples for every run
  of a task), from the per-example predictions the metrics records keep.

A task is "yes" when every interval lies on the claim's side of the cut, "no" when every interval lies
on the other side, and "unclear" otherwise; a task that lacks an input or is degenerate is "cannot be
checked" with the reason. The tasks' judgements give the claim's verdict (`grade`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import stats as sps

HOLDS, PARTLY, NOT_SHOWN, FAILS, UNCHECKABLE = (
    "holds", "partly holds", "not shown", "does not hold", "cannot be checked")
VERDICTS = (HOLDS, PARTLY, NOT_SHOWN, FAILS, UNCHECKABLE)
YES, NO, UNCLEAR, SKIP = "yes", "no", "unclear", "cannot be checked"
LEVEL = 0.95  # the intervals' coverage


@dataclass
class Verdict:
    verdict: str
    reason: str
    evidence: dict = field(default_factory=dict)
    uncertainty: str = ""


def cannot(reason: str) -> Verdict:
    return Verdict(UNCHECKABLE, reason)


@dataclass(frozen=True)
class Effect:
    """A task's effect: the point value, its interval over seeds (None with one seed or no spread given)
    and over dev examples (None without kept predictions)."""

    value: float
    n_seeds: int
    seed_ci: tuple[float, float] | None = None
    dev_ci: tuple[float, float] | None = None

    def intervals(self) -> list[tuple[float, float]]:
        return [ci for ci in (self.seed_ci, self.dev_ci) if ci is not None]

    def judge(self, cut: float, above: bool = True) -> str:
        """YES when every interval is on the claim's side of `cut` (above it, or below with above=False),
        NO when every interval is on the other side, else UNCLEAR; without intervals, the point decides."""
        bounds = self.intervals() or [(self.value, self.value)]
        lows, highs = min(lo for lo, _ in bounds), max(hi for _, hi in bounds)
        if above:
            return YES if lows > cut else NO if highs <= cut else UNCLEAR
        return YES if highs < cut else NO if lows >= cut else UNCLEAR

    def text(self, scale: float = 1.0, digits: int = 3) -> str:
        """'v [lo, hi] over n seeds; dev [lo, hi]' in the given scale (100: points)."""
        def fmt(x):
            return f"{scale * x:.{digits}f}"
        out = fmt(self.value)
        if self.seed_ci is not None:
            out += f" [{fmt(self.seed_ci[0])}, {fmt(self.seed_ci[1])}] over {self.n_seeds} seeds"
        else:
            out += f" ({self.n_seeds} seed{'s' if self.n_seeds != 1 else ''}, no seed interval)"
        if self.dev_ci is not None:
            out += f"; dev bootstrap [{fmt(self.dev_ci[0])}, {fmt(self.dev_ci[1])}]"
        return out


def t_interval(values, level: float = LEVEL) -> tuple[float, tuple[float, float] | None]:
    """Mean of per-seed values and its t interval (None with fewer than 2 seeds)."""
    values = np.asarray(values, dtype=float)
    mean = float(values.mean())
    if values.size < 2:
        return mean, None
    half = float(sps.t.ppf(0.5 + level / 2, values.size - 1) * values.std(ddof=1) / np.sqrt(values.size))
    return mean, (mean - half, mean + half)


def welch_interval(terms: list[tuple[float, float, float]], n: int, level: float = LEVEL) -> tuple[float, tuple | None]:
    """Σ coef·mean and its interval from published (coef, mean, std) of independent groups of n seeds
    each (Welch-Satterthwaite degrees of freedom); None when a std is missing or n < 2."""
    value = float(sum(c * m for c, m, _ in terms))
    if n < 2:
        return value, None
    variances = [(c * s) ** 2 / n for c, _, s in terms]
    if any(not np.isfinite(v) for v in variances):
        return value, None
    total = sum(variances)
    if total == 0:
        return value, (value, value)
    df = total**2 / sum(v**2 / (n - 1) for v in variances if v > 0)
    half = float(sps.t.ppf(0.5 + level / 2, df) * np.sqrt(total))
    return value, (value - half, value + half)


def percentile_interval(replicates, level: float = LEVEL) -> tuple[float, float] | None:
    replicates = np.asarray(replicates, dtype=float)
    replicates = replicates[np.isfinite(replicates)]
    if replicates.size < 2:
        return None
    lo, hi = np.quantile(replicates, [0.5 - level / 2, 0.5 + level / 2])
    return float(lo), float(hi)


MIN_CHECKABLE = 2  # a claim about tasks in general is not shown by (or refuted on) a single task


def grade(judged: dict[str, tuple[str, str]], need: float, what: str, items: str = "tasks",
          min_checkable: int = MIN_CHECKABLE) -> Verdict:
    """The claim's verdict from per-task (judgement, effect text), when `need` (a share) of the checkable
    tasks must satisfy it: holds (enough yes), not shown (enough only with the unclear ones), partly holds
    (some yes), does not hold (none), cannot be checked (no checkable task). With fewer than `min_checkable`
    checkable tasks a verdict stands only where one task decides it (a counterexample to 'all tasks'): the
    rest is not shown (min_checkable=1: a claim the paper itself makes of one task)."""
    by = {j: [t for t, (jj, _) in judged.items() if jj == j] for j in (YES, NO, UNCLEAR, SKIP)}
    checkable = len(judged) - len(by[SKIP])
    details = "; ".join(f"{t} {text} ({j})" for t, (j, text) in judged.items())
    evidence = {"per_task": {t: j for t, (j, _) in judged.items()}}
    if checkable == 0:
        reason = f"no {items[:-1]} can be checked" + (f": {details}" if details else "")
        return Verdict(UNCHECKABLE, reason, evidence)
    yes, unclear = len(by[YES]) / checkable, (len(by[YES]) + len(by[UNCLEAR])) / checkable
    if yes >= need:
        verdict = HOLDS
    elif unclear >= need:
        verdict = NOT_SHOWN
    elif by[YES]:
        verdict = PARTLY
    else:
        verdict = FAILS
    few = ""
    if checkable < min_checkable and verdict != NOT_SHOWN and not (verdict == FAILS and need == 1):
        verdict = NOT_SHOWN
        few = (f" Only {checkable} of the {len(judged)} {items} can be checked: too few for a claim about "
               f"{items} in general (needs {min_checkable}).")
    counts = ", ".join(f"{j}: {', '.join(by[j])}" for j in (YES, NO, UNCLEAR, SKIP) if by[j])
    needs = "more than half" if 0.5 < need < 0.51 else "all" if need == 1 else f"{need:.0%}"
    reason = f"{len(by[YES])}/{checkable} {items} {what} (needs {needs}) — {counts}.{few} {details}"
    return Verdict(verdict, reason, evidence)
