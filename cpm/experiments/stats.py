"""Statistics of the experiment tables: mean ± sample standard deviation over seeds, and the paired difference that
a question is about (the same seed, one factor changed) with its 95 % t-interval, and the sentence it supports.

For n seeds and paired differences d_i = a_i - b_i, the interval is mean(d) ± t_{0.975, n-1} * sd(d) / sqrt(n)
(Student's t; ddof = 1). With one seed there is no interval. A conclusion is only as strong as its interval: one
that contains 0 says no difference was detected at the budget, whatever the means.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class PairedDifference:
    mean: float  # mean of a - b over the pairs
    low: float  # 95 % t-interval; nan with fewer than two pairs
    high: float
    n: int  # pairs (seeds) with both values finite

    @property
    def excludes_zero(self) -> bool:
        return self.n >= 2 and (self.low > 0 or self.high < 0)


def paired_difference(a: Sequence[float], b: Sequence[float], confidence: float = 0.95) -> PairedDifference:
    """Mean of ``a[i] - b[i]`` over the pairs where both are finite, with its two-sided t-interval."""
    from scipy.stats import t as student_t

    if len(a) != len(b):
        raise ValueError(f"paired values need equal lengths, got {len(a)} and {len(b)}")
    d = np.array([x - y for x, y in zip(a, b, strict=True)
                  if x is not None and y is not None and math.isfinite(x) and math.isfinite(y)], dtype=np.float64)
    if len(d) == 0:
        return PairedDifference(math.nan, math.nan, math.nan, 0)
    if len(d) == 1:
        return PairedDifference(float(d[0]), math.nan, math.nan, 1)
    half = float(student_t.ppf(0.5 + confidence / 2, len(d) - 1) * d.std(ddof=1) / math.sqrt(len(d)))
    return PairedDifference(float(d.mean()), float(d.mean() - half), float(d.mean() + half), len(d))


def format_difference(difference: PairedDifference, scale: float = 100.0) -> str:
    """"+2.31 [0.85, 3.77]" (scaled, two decimals), "+2.31" for one pair, "–" for none."""
    if difference.n == 0:
        return "–"
    text = f"{scale * difference.mean:+.2f}"
    if difference.n >= 2:
        text += f" [{scale * difference.low:+.2f}, {scale * difference.high:+.2f}]"
    return text


def conclusion(a: str, b: str, difference: PairedDifference, *, what: str, scale: float = 100.0,
               unit: str = "points") -> str:
    """One sentence that the interval supports, e.g. "IS minus no IS (T = 4), PCK@0.2: +2.31 points, 95 % CI
    [+0.85, +3.77], n = 3: a higher than b." Nothing stronger than the interval is said."""
    head = f"{a} minus {b}, {what}: "
    if difference.n == 0:
        return head + "no paired runs."
    if difference.n == 1:
        return head + f"{scale * difference.mean:+.2f} {unit} from one seed; no interval, no conclusion."
    numbers = (f"{scale * difference.mean:+.2f} {unit}, 95 % CI [{scale * difference.low:+.2f}, "
               f"{scale * difference.high:+.2f}], n = {difference.n}")
    if not difference.excludes_zero:
        return head + numbers + ": no difference detected at this budget."
    direction = "higher" if difference.mean > 0 else "lower"
    return head + numbers + f": {a} is {direction}."


def pck_standard_error(pck: float, samples: int, joints: int) -> float:
    """Binomial standard error of a PCK (a fraction) over ``samples`` x ``joints`` independent joint tests: a lower
    bound, since the joints of one frame are correlated."""
    return math.sqrt(max(pck * (1 - pck), 0.0) / max(samples * joints, 1))
