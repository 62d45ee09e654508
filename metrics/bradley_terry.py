"""Bradley-Terry ratings with bootstrap confidence intervals, fitted on aggregated votes.

Bradley & Terry (1952): P(i beats j) = 1 / (1 + exp(theta_j - theta_i)). The fit maximises the
likelihood of the pairwise outcomes of :func:`metrics.outcomes.pairwise` (a draw is half a win
each way), reported on the Elo scale: ``1000 + 400 / ln(10) * (theta - mean(theta))``, as public
arenas do (Chiang et al. 2024, "Chatbot Arena", sec. 5). A vanishing ridge (``RIDGE`` times the
squared norm of theta, halved) keeps the maximum finite when a checkpoint never lost or never
won; on connected data its effect is far below display precision.

Speed comes from aggregation: identical votes (the same checkpoints in the same positions,
the same verdict) form one group, the likelihood only needs the n x n win matrix, and a
bootstrap round that resamples votes with replacement is a multinomial draw of group counts
(Efron & Tibshirani 1993, ch. 6), so a four-way vote always stays whole. The fit is Newton's
method on the win matrix (Hunter 2004, "MM algorithms for generalized Bradley-Terry models",
discusses the same likelihood), warm-started from the full-data fit in every round.

Interval: the percentile bootstrap. Rank: 1 + the number of checkpoints whose lower bound is
above this one's upper bound, so overlapping checkpoints share a rank.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import cached_property
from operator import attrgetter
from typing import Any

import numpy as np

from metrics.outcomes import Ballot, VoteRecord, pairwise_table

__all__ = [
    "RIDGE",
    "BTRating",
    "Ballot",
    "BradleyTerryResult",
    "VoteGroups",
    "bradley_terry",
    "fit_strengths",
    "group_ballots",
    "group_votes",
    "to_elo_scale",
]

RIDGE = 1e-6
ELO_SCALE = 400.0 / math.log(10.0)
ELO_ANCHOR = 1000.0
_MAX_NEWTON = 200
_STEP_TOL = 1e-9  # log-strength units: 4e-7 Elo points
_MIN_SCALE = 1e-6
_DRAW_CHUNK = 8  # bootstrap rounds whose group counts are drawn in one call


@dataclass(frozen=True)
class VoteGroups:
    """Votes aggregated for Bradley-Terry: ``group_counts[g]`` identical votes whose outcomes
    add ``entry_score`` to cell ``entry_cell`` (``winner * n + loser`` over ``checkpoint_ids``
    indices) of the win matrix, for each entry with ``entry_group == g``."""

    checkpoint_ids: tuple[int, ...]
    group_counts: np.ndarray
    entry_group: np.ndarray
    entry_cell: np.ndarray
    entry_score: np.ndarray

    @property
    def n_votes(self) -> int:
        """Number of votes that produced outcomes."""
        return int(self.group_counts.sum())

    def win_matrix(self, counts: np.ndarray | None = None) -> np.ndarray:
        """Win matrix ``W[i, j]`` (wins of i over j, draws counted half) for the given votes per
        group (default: the observed ones)."""
        n = len(self.checkpoint_ids)
        counts = self.group_counts if counts is None else counts
        # Every cell is a sum of whole and half wins, exact in floating point whatever the
        # order of summation, so the sparse product equals an entry-by-entry sum.
        return (self._cell_by_group @ np.asarray(counts, dtype=np.float64)).reshape(n, n)

    @cached_property
    def _cell_by_group(self) -> Any:
        """Sparse ``(n * n, groups)`` matrix: the wins one vote of each group adds to each
        cell."""
        from scipy.sparse import csr_matrix

        n, groups = len(self.checkpoint_ids), len(self.group_counts)
        return csr_matrix(
            (self.entry_score, (self.entry_cell, self.entry_group)), shape=(n * n, groups)
        )


def group_votes(votes: Iterable[VoteRecord], both_bad_as_draw: bool = True) -> VoteGroups:
    """Aggregate votes into groups of identical votes (see :class:`VoteGroups`)."""
    # Count identical ballots in a C-level loop, then map each distinct ballot once.
    return group_ballots(
        Counter(map(attrgetter("participants", "winner", "ranking"), votes)), both_bad_as_draw
    )


def group_ballots(ballots: Mapping[Ballot, int], both_bad_as_draw: bool = True) -> VoteGroups:
    """Groups from ballots already counted: ``(participants, winner, ranking) -> votes``.
    Groups keep the ballots' order (a ballot without outcomes has none), so a seeded bootstrap
    draws the same resamples however the outcomes are computed."""
    table = pairwise_table(ballots.keys(), both_bad_as_draw)
    counted = np.zeros(len(ballots), dtype=bool)
    counted[table.ballot] = True
    group_of = np.cumsum(counted) - 1  # ballot index -> group index
    counts = np.fromiter(ballots.values(), dtype=np.int64, count=len(ballots))[counted]
    ids = np.unique(np.concatenate([table.a, table.b]))
    n = len(ids)
    a, b = np.searchsorted(ids, table.a), np.searchsorted(ids, table.b)
    g, s = group_of[table.ballot], table.score_a
    draw = s < 1.0  # a draw also credits b with half a win over a
    return VoteGroups(
        checkpoint_ids=tuple(int(c) for c in ids),
        group_counts=counts,
        entry_group=np.concatenate([g, g[draw]]),
        entry_cell=np.concatenate([a * n + b, b[draw] * n + a[draw]]),
        entry_score=np.concatenate([s, 1.0 - s[draw]]),
    )


def _log_likelihood(theta: np.ndarray, wins: np.ndarray, ridge: float) -> float:
    diff = theta[:, None] - theta[None, :]
    return float(-(wins * np.logaddexp(0.0, -diff)).sum() - 0.5 * ridge * theta @ theta)


def fit_strengths(
    wins: np.ndarray, ridge: float = RIDGE, start: np.ndarray | None = None
) -> np.ndarray:
    """Log-strengths theta maximising ``sum W_ij log sigmoid(theta_i - theta_j) -
    ridge / 2 * |theta|^2`` by Newton's method (the objective is concave), halving a step
    that would lower it; done when a step moves no strength by more than 1e-9.

    The maximum has mean(theta) = 0 (the gradient's components sum to -ridge * sum(theta)),
    and the all-ones direction is the Hessian's eigenvector with the tiny eigenvalue ridge,
    so steps are kept centred: along it a solve would only amplify rounding noise."""
    n = wins.shape[0]
    games = wins + wins.T
    won = wins.sum(axis=1)
    theta = np.zeros(n) if start is None else np.array(start, dtype=np.float64)
    theta -= theta.mean()
    value = _log_likelihood(theta, wins, ridge)
    for _ in range(_MAX_NEWTON):
        p = 1.0 / (1.0 + np.exp(theta[None, :] - theta[:, None]))  # P(i beats j)
        grad = won - (games * p).sum(axis=1) - ridge * theta
        curvature = games * p * p.T
        hessian = np.diag(curvature.sum(axis=1) + ridge) - curvature  # minus the Hessian
        step = np.linalg.solve(hessian, grad)
        step -= step.mean()
        if np.max(np.abs(step)) < _STEP_TOL:
            return theta + step
        scale, candidate = 1.0, theta + step
        new_value = _log_likelihood(candidate, wins, ridge)
        slack = 1e-12 * abs(value)  # rounding of a sum over all games
        while new_value < value - slack and scale > _MIN_SCALE:
            scale *= 0.5
            candidate = theta + scale * step
            new_value = _log_likelihood(candidate, wins, ridge)
        theta, value = candidate, new_value
    return theta


def to_elo_scale(theta: np.ndarray) -> np.ndarray:
    """Log-strengths on the Elo scale (400 points per factor 10 in odds), mean 1000."""
    return ELO_ANCHOR + ELO_SCALE * (theta - theta.mean())


@dataclass(frozen=True)
class BTRating:
    """One checkpoint's Bradley-Terry rating on the Elo scale with its bootstrap interval."""

    checkpoint_id: int
    rating: float
    lower: float
    upper: float
    rank: int


@dataclass(frozen=True)
class BradleyTerryResult:
    """Ratings sorted best first, with the bootstrap's provenance."""

    ratings: tuple[BTRating, ...]
    n_votes: int
    rounds: int
    seed: int
    confidence: float
    ridge: float


def _resampled_wins(groups: VoteGroups, rounds: int, seed: int) -> Iterator[np.ndarray]:
    """The win matrices of ``rounds`` bootstrap resamples (a multinomial draw of group counts
    each, from one generator seeded with ``seed``). The draws of the next rounds run in a
    second thread while the caller fits these (numpy draws without holding the interpreter
    lock); one generator used in turn gives the same draws as a plain loop."""
    rng = np.random.default_rng(seed)
    n_votes, share = groups.n_votes, groups.group_counts / groups.n_votes
    sizes = [min(_DRAW_CHUNK, rounds - start) for start in range(0, rounds, _DRAW_CHUNK)]
    with ThreadPoolExecutor(1, thread_name_prefix="bootstrap-draws") as pool:
        pending = pool.submit(rng.multinomial, n_votes, share, sizes[0])
        for i in range(len(sizes)):
            counts = pending.result()
            if i + 1 < len(sizes):
                pending = pool.submit(rng.multinomial, n_votes, share, sizes[i + 1])
            yield from map(groups.win_matrix, counts)


def bradley_terry(
    votes: Iterable[VoteRecord] | VoteGroups,
    rounds: int = 100,
    seed: int = 0,
    confidence: float = 0.95,
    both_bad_as_draw: bool = True,
    ridge: float = RIDGE,
) -> BradleyTerryResult:
    """Fit Bradley-Terry on the votes and bootstrap ``rounds`` resamples of them (votes drawn
    with replacement, a four-way vote whole) for percentile intervals at ``confidence``."""
    if rounds < 0:
        raise ValueError(f"rounds: expected a number of bootstrap rounds >= 0, got {rounds}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence: expected a level between 0 and 1, got {confidence}")
    groups = votes if isinstance(votes, VoteGroups) else group_votes(votes, both_bad_as_draw)
    n_votes = groups.n_votes
    ids = groups.checkpoint_ids
    if not ids:
        return BradleyTerryResult((), 0, rounds, seed, confidence, ridge)
    theta = fit_strengths(groups.win_matrix(), ridge)
    rating = to_elo_scale(theta)
    lower, upper = rating.copy(), rating.copy()
    if rounds:
        samples = np.empty((rounds, len(ids)))
        for r, wins in enumerate(_resampled_wins(groups, rounds, seed)):
            samples[r] = to_elo_scale(fit_strengths(wins, ridge, theta))
        tail = 100.0 * (1.0 - confidence) / 2.0
        lower, upper = np.percentile(samples, [tail, 100.0 - tail], axis=0)
    ranks = 1 + (lower[None, :] > upper[:, None]).sum(axis=1)
    rows = [
        BTRating(c, float(rating[i]), float(lower[i]), float(upper[i]), int(ranks[i]))
        for i, c in enumerate(ids)
    ]
    rows.sort(key=lambda row: (-row.rating, row.checkpoint_id))
    return BradleyTerryResult(tuple(rows), n_votes, rounds, seed, confidence, ridge)
