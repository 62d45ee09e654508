"""Small statistics the leaderboard reports: rank correlation and shares, each with an interval.

- Spearman's rank correlation (ties get average ranks) with a 95% interval from Fisher's z
  transform and the standard error ``sqrt(1.06 / (n - 3))`` of Fieller, Hartley & Pearson
  (1957, "Tests for rank correlation coefficients I", Biometrika 44); it needs n >= 4.
- A share of wins (position bias) with the Wilson score interval (Wilson 1927, JASA 22) and
  an exact test against the share expected without bias: binomial for a duel, Pearson's
  chi-square goodness of fit across the positions of a four-way match.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = [
    "PositionBias",
    "RankCorrelation",
    "position_bias",
    "spearman",
    "wilson_interval",
]

Z95 = 1.959963984540054


@dataclass(frozen=True)
class RankCorrelation:
    """Spearman's rho over ``n`` pairs; ``lower``/``upper`` are ``None`` below 4 pairs and rho
    is ``None`` when either side is constant (no order to compare)."""

    rho: float | None
    lower: float | None
    upper: float | None
    n: int


def _ranks(values: np.ndarray) -> np.ndarray:
    order = np.argsort(values, kind="mergesort")
    ranks = np.empty(len(values))
    ranks[order] = np.arange(1, len(values) + 1)
    for value in np.unique(values):  # average ranks over ties
        tied = values == value
        ranks[tied] = ranks[tied].mean()
    return ranks


def spearman(x: Sequence[float], y: Sequence[float]) -> RankCorrelation:
    """Spearman's rho of paired values (the Pearson correlation of their ranks)."""
    if len(x) != len(y):
        raise ValueError(f"spearman: expected paired values, got {len(x)} and {len(y)}")
    n = len(x)
    if n < 2:
        return RankCorrelation(None, None, None, n)
    rx, ry = _ranks(np.asarray(x, dtype=float)), _ranks(np.asarray(y, dtype=float))
    dx, dy = rx - rx.mean(), ry - ry.mean()
    denominator = math.sqrt(float(dx @ dx) * float(dy @ dy))
    if denominator == 0.0:
        return RankCorrelation(None, None, None, n)
    rho = max(-1.0, min(1.0, float(dx @ dy) / denominator))
    if n < 4:
        return RankCorrelation(rho, None, None, n)
    half = Z95 * math.sqrt(1.06 / (n - 3))
    # At |rho| = 1 the transform is infinite and the interval collapses onto +-1 (a known
    # limit of the Fisher interval with few, perfectly ordered pairs); keep rho inside it.
    z = math.atanh(max(-0.999999, min(0.999999, rho)))
    lower, upper = math.tanh(z - half), math.tanh(z + half)
    return RankCorrelation(rho, min(lower, rho), max(upper, rho), n)


def wilson_interval(successes: float, trials: float) -> tuple[float, float]:
    """95% Wilson score interval of a proportion; (0, 1) without trials."""
    if trials <= 0:
        return 0.0, 1.0
    p = successes / trials
    z2 = Z95 * Z95
    centre = (p + z2 / (2 * trials)) / (1 + z2 / trials)
    half = Z95 * math.sqrt(p * (1 - p) / trials + z2 / (4 * trials * trials)) / (1 + z2 / trials)
    return max(0.0, centre - half), min(1.0, centre + half)


@dataclass(frozen=True)
class PositionBias:
    """Wins by shown position in matches of one size: share, 95% interval, and the p-value of
    "every position wins equally often" (``None`` without decisive votes)."""

    wins: tuple[int, ...]
    shares: tuple[float, ...]
    intervals: tuple[tuple[float, float], ...]
    p_value: float | None

    @property
    def decisive(self) -> int:
        """Votes that named a winner."""
        return sum(self.wins)

    def significant(self, level: float = 0.05) -> bool:
        """Whether the positions' shares differ at ``level``."""
        return self.p_value is not None and self.p_value < level


def position_bias(wins: Sequence[int]) -> PositionBias:
    """Position bias from the number of wins at each shown position."""
    counts = tuple(int(w) for w in wins)
    total = sum(counts)
    if len(counts) < 2:
        raise ValueError(f"position bias: expected wins of 2 or more positions, got {counts}")
    if total == 0:
        return PositionBias(counts, tuple(0.0 for _ in counts),
                            tuple((0.0, 1.0) for _ in counts), None)
    from scipy import stats

    if len(counts) == 2:
        p_value = float(stats.binomtest(counts[0], total, 0.5).pvalue)
    else:
        p_value = float(stats.chisquare(counts).pvalue)
    return PositionBias(
        counts,
        tuple(c / total for c in counts),
        tuple(wilson_interval(c, total) for c in counts),
        p_value,
    )
