"""The decision section of a study: the rule a config states in its ``[grid]`` table (``margin``, points of
final-stage PCK), applied to its cells. For an intermediate-supervision study (`decision_section`):

- **Primary**, per T > 1: intermediate supervision (IS) minus last stage only, paired by seed, 95 % t-interval.
  *Confirms* the paper if the lower bound is above 0; *refutes* it if the interval lies within ±margin or below 0;
  otherwise *undecided*, with the number of seeds that would give a half-width of ``margin`` at the observed
  standard deviation of the differences.
- **Secondary**: last stage minus stage 1 within each model (paired over the same runs), and each T against T = 1
  (IS and last-only arms), the family of T-vs-T1 tests with Holm-adjusted p-values.
- **Hygiene**: every IS / last-only pair of one seed, and every T-vs-T1 pair, is checked for revisions that differ in
  the model, data or target code (`git diff` of ``cpm/models``, ``cpm/data`` and ``cpm/targets``); a pair that
  differs, or whose revisions git cannot compare, is named.

For a heads study (`heads_decision_section`, experiments/heads-long.toml): per map stride, heatmap-sigma1 minus each
coordinate head (flatten + FC, pooled grid + hidden layer, RLE, global pooling, integral) and each heatmap of a width
in pixels minus heatmap-sigma1, at PCK@0.1 and @0.2: "heatmap better" / "regressor better" (or "pixels better" /
"cells better") when the interval excludes 0, "no larger than margin" when it lies within ±margin, else undecided
with the seeds it would need; the same revision check.
"""

from __future__ import annotations

import math
import subprocess
from collections.abc import Callable, Sequence
from functools import cache

import numpy as np

from cpm.experiments.stats import PairedDifference, format_difference, paired_difference

THRESHOLD = "0.1"
CODE = ("cpm/models", "cpm/data", "cpm/targets")


def seeds_for_half_width(differences: Sequence[float], margin: float, confidence: float = 0.95,
                         most: int = 10_000) -> int:
    """The smallest n >= 2 with t_{(1+confidence)/2, n-1} * sd / sqrt(n) <= ``margin``, sd the sample standard
    deviation of ``differences`` (same units as ``margin``); ``most`` if none up to it does."""
    from scipy.stats import t as student_t

    sd = float(np.std(np.asarray(differences, dtype=np.float64), ddof=1))
    for n in range(2, most + 1):
        if student_t.ppf(0.5 + confidence / 2, n - 1) * sd / math.sqrt(n) <= margin:
            return n
    return most


def pair_verdict(difference: PairedDifference, differences: Sequence[float], margin: float, *, above: str,
                 below: str, within: str) -> str:
    """A paired interval (points) against the rule: ``above`` if its lower bound is above 0, ``below`` if its upper
    bound is below 0, ``within`` if it lies within ±margin, else undecided with the seeds a ±margin half-width needs."""
    if difference.n < 2:
        return "no interval yet"
    if difference.low > 0:
        return above
    if difference.high < 0:
        return below
    if -margin <= difference.low and difference.high <= margin:
        return within
    return (f"undecided; n ≈ {seeds_for_half_width(differences, margin)} seeds would give a half-width of "
            f"{margin:g} points")


def verdict(difference: PairedDifference, differences: Sequence[float], margin: float) -> str:
    """The rule's verdict on an IS − last-only interval (all in points)."""
    return pair_verdict(difference, differences, margin, above="confirms the paper (lower bound above 0)",
                        below="refutes the paper (interval below 0)",
                        within=f"refutes the paper (interval within ±{margin:g})")


def paired_p(differences: Sequence[float]) -> float:
    """Two-sided p-value of a paired t-test (mean difference 0); nan under two pairs, 0 or 1 when sd is 0."""
    from scipy.stats import t as student_t

    d = np.asarray(differences, dtype=np.float64)
    if len(d) < 2:
        return float("nan")
    sd = float(d.std(ddof=1))
    if sd == 0:
        return 0.0 if d.mean() != 0 else 1.0
    t = float(d.mean() / (sd / math.sqrt(len(d))))
    return float(2 * student_t.sf(abs(t), len(d) - 1))


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values (nan stays nan and does not count in the family)."""
    finite = sorted((p, i) for i, p in enumerate(p_values) if math.isfinite(p))
    adjusted = [float("nan")] * len(p_values)
    running, m = 0.0, len(finite)
    for rank, (p, i) in enumerate(finite):
        running = max(running, min(1.0, (m - rank) * p))
        adjusted[i] = running
    return adjusted


@cache
def code_differs(a: str, b: str, paths: tuple[str, ...] = CODE) -> bool | None:
    """Whether revisions ``a`` and ``b`` differ in ``paths`` (None: git cannot tell, e.g. an unknown revision)."""
    if a == b:
        return False
    try:
        result = subprocess.run(["git", "diff", "--quiet", a, b, "--", *paths], capture_output=True, timeout=60)
    except (OSError, subprocess.SubprocessError):
        return None
    return {0: False, 1: True}.get(result.returncode)


def _paired_points(a: list, b: list, difference: Callable) -> tuple[list[float], list[tuple]]:
    """Runs of ``a`` and ``b`` paired by seed -> (100 x ``difference(run_a, run_b)`` per seed where finite, the pairs
    those came from)."""
    left, right = {r.seed: r for r in a}, {r.seed: r for r in b}
    kept = [(100 * difference(left[s], right[s]), left[s], right[s]) for s in sorted(set(left) & set(right))]
    kept = [(v, x, y) for v, x, y in kept if math.isfinite(v)]
    return [v for v, _, _ in kept], [(x, y) for _, x, y in kept]


def decision_section(cells: dict, margin: float, *, config: str, final_pck: Callable,
                     stage_counts: Sequence[int]) -> list[str]:
    """Markdown lines of the decision (see the module's docstring) for an ablate-supervision setting's ``cells``
    ({cell: [RunRecord]}); ``final_pck(run, threshold, stage=None)`` reads a run's final PCK (a fraction)."""

    def runs(stages: int, supervised: bool) -> list:
        return cells.get(f"T{stages}-{'is' if supervised or stages == 1 else 'nois'}", [])

    def pairs(a: list, b: list, a_stage=None, b_stage=None) -> tuple[list[float], list[tuple]]:
        return _paired_points(a, b, lambda x, y: final_pck(x, THRESHOLD, a_stage) - final_pck(y, THRESHOLD, b_stage))

    multi = [t for t in stage_counts if t > 1]
    lines = ["", f"## Decision (the rule in `{config}`: margin ±{margin:g} points of final-stage PCK@{THRESHOLD})", "",
             "Primary: intermediate supervision (IS) minus last stage only, paired by seed.", "",
             "| stages | IS − last only @0.1 (points) | n | verdict |", "|---:|---:|---:|---|"]
    checked: list[tuple] = []
    for t in multi:
        d, matched = pairs(runs(t, True), runs(t, False))
        checked += matched
        difference = paired_difference(d, [0.0] * len(d))
        lines.append(f"| {t} | {format_difference(difference, scale=1.0)} | {difference.n} | "
                     f"{verdict(difference, d, margin)} |")
    lines += ["", "Secondary: last stage minus stage 1 within each model (the same runs), PCK@0.1:", "",
              "| model | last − stage 1 (points) | n |", "|---|---:|---:|"]
    for t in multi:
        for supervised, label in ((True, "IS"), (False, "last only")):
            d, _ = pairs(runs(t, supervised), runs(t, supervised), None, 1)
            if d:
                lines.append(f"| T = {t}, {label} | "
                             f"{format_difference(paired_difference(d, [0.0] * len(d)), scale=1.0)} | {len(d)} |")
    family = []
    for t in multi:
        for supervised, label in ((True, "IS"), (False, "last only")):
            d, matched = pairs(runs(t, supervised), runs(1, True))
            checked += matched
            if d:
                family.append((f"T = {t} ({label}) − T = 1", d))
    if family:
        adjusted = holm([paired_p(d) for _, d in family])
        lines += ["", f"Secondary: each T against T = 1 at PCK@0.1, the {len(family)} tests Holm-corrected:", "",
                  "| comparison | difference (points) | n | p | Holm-adjusted p |", "|---|---:|---:|---:|---:|"]
        for (label, d), p_holm in zip(family, adjusted, strict=True):
            lines.append(f"| {label} | {format_difference(paired_difference(d, [0.0] * len(d)), scale=1.0)} | "
                         f"{len(d)} | {paired_p(d):.3g} | {p_holm:.3g} |")
    return lines + _hygiene(checked)


# The headline pairs of a heads study (experiments/heads-long.toml, step 3): per map stride, the reference heatmap
# head minus each coordinate head, and each heatmap of a width in pixels minus the reference (target width against
# quantisation).
HEADS_REFERENCE = "heatmap-sigma1"
HEADS_AGAINST = ("regression-flat-l1", "regression-grid4h-l1", "rle-grid4h", "regression-l1", "integral-l1")
HEADS_WIDTHS = ("heatmap-px4", "heatmap-px8")


def heads_decision_section(cells: dict, margin: float, *, config: str, final_pck: Callable) -> list[str]:
    """Markdown lines of a heads study's decision for ``cells`` ({"<head>-s<stride>": [RunRecord]}): every headline
    pair per stride at final PCK@0.1 and @0.2, paired by seed, with the rule's verdict, and the revision check.
    ``final_pck(run, threshold)`` reads a run's final PCK (a fraction)."""
    strides = sorted({cell.rsplit("-s", 1)[1] for cell in cells if cell.startswith(HEADS_REFERENCE + "-s")}, key=int)
    lines = ["", f"## Decision (the rule in `{config}`: margin ±{margin:g} points of final PCK)", "",
             "Each pair paired by seed, 95 % t-interval (points): the first head minus the second.", "",
             "| stride | pair | @0.1 | verdict @0.1 | @0.2 | verdict @0.2 | n |", "|---:|---|---:|---|---:|---|---:|"]
    checked: list[tuple] = []
    for stride in strides:
        reference = f"{HEADS_REFERENCE}-s{stride}"
        pairs = [(reference, f"{other}-s{stride}", "heatmap better", "regressor better") for other in HEADS_AGAINST]
        pairs += [(f"{width}-s{stride}", reference, "pixels better", "cells better") for width in HEADS_WIDTHS]
        for first, second, above, below in pairs:
            if not cells.get(first) or not cells.get(second):
                continue
            row, n = [stride, f"{first.rsplit('-s', 1)[0]} − {second.rsplit('-s', 1)[0]}"], 0
            for threshold in ("0.1", "0.2"):
                d, matched = _paired_points(cells[first], cells[second], lambda x, y, t=threshold:
                                            final_pck(x, t) - final_pck(y, t))
                checked += matched
                difference = paired_difference(d, [0.0] * len(d))
                n = max(n, len(d))
                row += [format_difference(difference, scale=1.0),
                        pair_verdict(difference, d, margin, above=above, below=below,
                                     within=f"no larger than {margin:g} points")]
            lines.append("| " + " | ".join([*row, str(n)]) + " |")
    return lines + _hygiene(checked)


def _hygiene(checked: list[tuple]) -> list[str]:
    flagged = []
    for a, b in {(a.name, b.name): (a, b) for a, b in checked}.values():  # each pair once, however many tests use it
        ra, rb = a.data.get("revision", "unknown"), b.data.get("revision", "unknown")
        differs = code_differs(ra, rb)
        if differs is None or differs:
            why = "revisions git cannot compare" if differs is None else "differ in " + ", ".join(CODE)
            flagged.append(f"{a.name} (`{ra}`) and {b.name} (`{rb}`): {why}")
    lines = ["", "Hygiene: " + ("every pair above ran on one revision of " + ", ".join(f"`{p}`" for p in CODE) + "."
                               if not flagged else "pairs not on one revision of the model and data code:")]
    return lines + [f"- {line}" for line in flagged]
