"""Online Elo with multi-way updates, and the time-weighted average Elo of a checkpoint.

Elo (Elo 1978, *The Rating of Chessplayers*): the expected score of A against B is
``1 / (1 + base ** ((R_B - R_A) / scale))`` and a result moves A by ``K * (S_A - E_A)`` and B
by the opposite amount. A multi-way match (a four-way free-for-all) updates every pairwise
outcome from the ratings held *before* the match, all at once, so the order in which the pairs
are listed does not matter and the total rating is conserved.

The Illustrious technical report (Onoma AI) plots, for the Fixed-Characteristics board, the
time-weighted average of each checkpoint's Elo over its history: each value is weighted by how
long the checkpoint held it. The state for that average is three numbers that can be kept
incrementally (and stored next to the rating): the integral of the rating over time up to
``held_since``, ``held_since`` itself, and ``first_time`` (when the checkpoint first played).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from metrics.outcomes import PairOutcome

__all__ = [
    "EloParams",
    "elo_update",
    "expected_score",
    "hold_rating",
    "time_weighted_average",
]


@dataclass(frozen=True, slots=True)
class EloParams:
    """Elo parameters: K factor, logistic scale and base, and the rating a newcomer starts at."""

    k: float = 32.0
    scale: float = 400.0
    base: float = 10.0
    initial: float = 1000.0

    def __post_init__(self) -> None:
        if not self.k > 0:
            raise ValueError(f"elo k: expected a positive number, got {self.k!r}")
        if not self.scale > 0:
            raise ValueError(f"elo scale: expected a positive number, got {self.scale!r}")
        if not self.base > 1:
            raise ValueError(f"elo base: expected a number above 1, got {self.base!r}")


def expected_score(rating_a: float, rating_b: float, params: EloParams) -> float:
    """Expected score of A against B (Elo's logistic curve)."""
    return 1.0 / (1.0 + params.base ** ((rating_b - rating_a) / params.scale))


def elo_update(
    ratings: Mapping[int, float], outcomes: Iterable[PairOutcome], params: EloParams
) -> dict[int, float]:
    """New ratings of every checkpoint in ``outcomes``, each pair scored from the pre-match
    ``ratings`` (which must hold every checkpoint named in the outcomes)."""
    new: dict[int, float] = {}
    k, base, scale = params.k, params.base, params.scale
    for a, b, score_a in outcomes:
        ra, rb = ratings[a], ratings[b]
        delta = k * (score_a - 1.0 / (1.0 + base ** ((rb - ra) / scale)))
        new[a] = new.get(a, ra) + delta
        new[b] = new.get(b, rb) - delta
    return new


def hold_rating(
    weighted_sum: float, held_since: float | None, rating: float, until: float
) -> tuple[float, float]:
    """Add ``rating`` held from ``held_since`` to ``until`` to the time integral.

    Returns the new ``(weighted_sum, held_since)``. A vote timestamped before ``held_since``
    (clocks of concurrent writers) adds nothing and keeps ``held_since``: the integral never
    runs backwards, and the result depends only on the votes' order, as replay requires.
    """
    if held_since is None:
        return weighted_sum, until
    if until <= held_since:
        return weighted_sum, held_since
    return weighted_sum + rating * (until - held_since), until


def time_weighted_average(
    weighted_sum: float,
    held_since: float | None,
    first_time: float | None,
    rating: float,
    now: float,
) -> float:
    """Time-weighted average Elo from ``first_time`` to ``now``, the current ``rating`` held
    since ``held_since``; the current rating itself when no time has passed."""
    if held_since is None or first_time is None:
        return rating
    total, _ = hold_rating(weighted_sum, held_since, rating, now)
    span = max(now, held_since) - first_time
    return total / span if span > 0 else rating
