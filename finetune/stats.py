"""Paired statistics for the gate: two models answered the same prompts, each answer refused or not.

A paired difference is decided by the prompts that flipped (refused by one model, not the other); the rest
carry no information about the change. `paired_drop` bounds the drop in refusal rate (current minus candidate)
with Tango's score interval for paired proportions (Tango 1998, Stat. Med. 17:891): it stays honest with no
flips at all (300 unchanged prompts still leave about 1 point of doubt) where a bootstrap or a Wald interval
would collapse to zero width. `mcnemar_p` is the one-sided exact McNemar test that the drop is above zero.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from statistics import NormalDist


def z_one_sided(confidence: float) -> float:
    return NormalDist().inv_cdf(confidence)


def wilson(k: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Two-sided Wilson score interval for a rate k/n."""
    if n == 0:
        return (0.0, 1.0)
    z = NormalDist().inv_cdf(0.5 + confidence / 2)
    p = k / n
    mid = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (max(0.0, mid - half), min(1.0, mid + half))


@dataclass(frozen=True)
class PairedDrop:
    """Refusal rates of two models on the same n prompts and the bounds on `drop` = current - candidate."""

    n: int
    fixed: int  # refused by the current model, not by the candidate
    broken: int  # refused by the candidate, not by the current model
    current_rate: float
    candidate_rate: float
    lower: float  # one-sided bounds at `confidence`; together a (2 * confidence - 1) two-sided interval
    upper: float
    confidence: float
    mcnemar_p: float  # one-sided exact: P(fixed >= observed | no change)

    @property
    def drop(self) -> float:
        return self.current_rate - self.candidate_rate


def _tango_z(fixed: int, broken: int, n: int, delta: float) -> float:
    """Score statistic for H0: drop = delta, with the restricted MLE of the `broken` cell's probability."""
    w = -(fixed + broken) + delta * (2 * n - fixed + broken)
    q = (math.sqrt(max(w * w + 8 * n * broken * delta * (1 - delta), 0.0)) - w) / (4 * n)
    var = n * (2 * q + delta * (1 - delta))
    diff = fixed - broken - n * delta
    if var <= 0:
        return math.copysign(math.inf, diff) if diff else 0.0
    return diff / math.sqrt(var)


def _solve(fixed: int, broken: int, n: int, target: float) -> float:
    """The delta in [-1, 1] where the (decreasing) score statistic equals `target`, by bisection."""
    lo, hi = -1.0 + 1e-12, 1.0 - 1e-12
    for _ in range(80):
        mid = (lo + hi) / 2
        if _tango_z(fixed, broken, n, mid) > target:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


def mcnemar_p(fixed: int, broken: int) -> float:
    m = fixed + broken
    if m == 0:
        return 1.0
    return sum(math.comb(m, k) for k in range(fixed, m + 1)) / 2**m


def paired_drop(current: Sequence[bool], candidate: Sequence[bool], confidence: float = 0.95) -> PairedDrop:
    if len(current) != len(candidate):
        raise ValueError(f"paired outcomes differ in length: {len(current)} vs {len(candidate)}")
    n = len(current)
    fixed = sum(a and not b for a, b in zip(current, candidate, strict=True))
    broken = sum(b and not a for a, b in zip(current, candidate, strict=True))
    if n == 0:
        return PairedDrop(0, 0, 0, 0.0, 0.0, -1.0, 1.0, confidence, 1.0)
    z = z_one_sided(confidence)
    return PairedDrop(
        n,
        fixed,
        broken,
        sum(current) / n,
        sum(candidate) / n,
        _solve(fixed, broken, n, z),
        _solve(fixed, broken, n, -z),
        confidence,
        mcnemar_p(fixed, broken),
    )
