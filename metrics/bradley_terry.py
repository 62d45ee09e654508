"""Bradley-Terry ratings with bootstrap confidence intervals, fitted on aggregated votes.

Bradley & Terry (1952): P(i beats j) = 1 / (1 + exp(theta_j - theta_i)). The fit maximises the
likelihood of the pairwise outcomes of :func:`metrics.outcomes.pairwise` (a draw is half a win
each way), reported on the Elo scale: ``1000 + 400 / ln(10) * (theta - mean(theta))``, as public
arenas do (Chiang et al. 2024, "Chatbot Arena", sec. 5). A vanishing ridge (``RIDGE`` times the
squared norm of theta, halved) keeps the maximum finite when a checkpoint never lost or never
won; on connected data its effect is far below display precision.

Speed comes from aggregation: identical votes (the same set of pairwise outcomes) form one
group, the likelihood only needs the n x n win matrix, and a bootstrap round that resamples
votes with replacement is a multinomial draw of group counts (Efron & Tibshirani 1993, ch. 6),
so a four-way vote always stays whole. The fit is Newton's method on the win matrix
(Hunter 2004, "MM algorithms for generalized Bradley-Terry models", discusses the same
likelihood), warm-started from the full-data fit in every round.

Interval: the percentile bootstrap. Rank: 1 + the number of checkpoints whose lower bound is
above this one's upper bound, so overlapping checkpoints share a rank.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from metrics.outcomes import PairOutcome, VoteRecord, pairwise

__all__ = [
    "RIDGE",
    "BTRating",
    "BradleyTerryResult",
    "VoteGroups",
    "bradley_terry",
    "fit_strengths",
    "group_votes",
    "to_elo_scale",
]

RIDGE = 1e-6
ELO_SCALE = 400.0 / math.log(10.0)
ELO_ANCHOR = 1000.0
_MAX_NEWTON = 200


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
        weights = counts[self.entry_group] * self.entry_score
        return np.bincount(self.entry_cell, weights=weights, minlength=n * n).reshape(n, n)


def group_votes(votes: Iterable[VoteRecord], both_bad_as_draw: bool = True) -> VoteGroups:
    """Aggregate votes into groups of identical votes (see :class:`VoteGroups`)."""
    group_of: dict[tuple[PairOutcome, ...], int] = {}
    counts: list[int] = []
    for vote in votes:
        outcomes = pairwise(vote, both_bad_as_draw)
        if not outcomes:
            continue
        key = tuple(sorted(_canonical(o) for o in outcomes))
        g = group_of.get(key)
        if g is None:
            group_of[key] = len(counts)
            counts.append(1)
        else:
            counts[g] += 1
    ids = sorted({c for key in group_of for o in key for c in (o.a, o.b)})
    index = {c: i for i, c in enumerate(ids)}
    n = len(ids)
    groups, cells, scores = [], [], []
    for key, g in group_of.items():
        for a, b, score in key:
            groups.append(g)
            cells.append(index[a] * n + index[b])
            scores.append(score)
            if score < 1.0:
                groups.append(g)
                cells.append(index[b] * n + index[a])
                scores.append(1.0 - score)
    return VoteGroups(
        checkpoint_ids=tuple(ids),
        group_counts=np.asarray(counts, dtype=np.int64),
        entry_group=np.asarray(groups, dtype=np.int64),
        entry_cell=np.asarray(cells, dtype=np.int64),
        entry_score=np.asarray(scores, dtype=np.float64),
    )


def _canonical(outcome: PairOutcome) -> PairOutcome:
    # A draw reads the same both ways; list it once so identical votes share a group.
    if outcome.score_a == 0.5 and outcome.a > outcome.b:
        return PairOutcome(outcome.b, outcome.a, 0.5)
    return outcome


def _log_likelihood(theta: np.ndarray, wins: np.ndarray, ridge: float) -> float:
    diff = theta[:, None] - theta[None, :]
    return float(-(wins * np.logaddexp(0.0, -diff)).sum() - 0.5 * ridge * theta @ theta)


def fit_strengths(
    wins: np.ndarray, ridge: float = RIDGE, start: np.ndarray | None = None
) -> np.ndarray:
    """Log-strengths theta maximising ``sum W_ij log sigmoid(theta_i - theta_j) -
    ridge / 2 * |theta|^2`` by Newton's method with step halving (the objective is concave)."""
    n = wins.shape[0]
    games = wins + wins.T
    won = wins.sum(axis=1)
    theta = np.zeros(n) if start is None else np.array(start, dtype=np.float64)
    value = _log_likelihood(theta, wins, ridge)
    for _ in range(_MAX_NEWTON):
        p = 1.0 / (1.0 + np.exp(theta[None, :] - theta[:, None]))  # P(i beats j)
        grad = won - (games * p).sum(axis=1) - ridge * theta
        curvature = games * p * p.T
        hessian = np.diag(curvature.sum(axis=1) + ridge) - curvature  # minus the Hessian
        step = np.linalg.solve(hessian, grad)
        scale = 1.0
        while True:
            candidate = theta + scale * step
            new_value = _log_likelihood(candidate, wins, ridge)
            if new_value >= value or scale < 1e-8:
                break
            scale *= 0.5
        theta, value = candidate, new_value
        if np.max(np.abs(scale * step)) < 1e-10:
            break
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
        rng = np.random.default_rng(seed)
        share = groups.group_counts / n_votes
        samples = np.empty((rounds, len(ids)))
        for r in range(rounds):
            counts = rng.multinomial(n_votes, share)
            samples[r] = to_elo_scale(fit_strengths(groups.win_matrix(counts), ridge, theta))
        tail = 100.0 * (1.0 - confidence) / 2.0
        lower, upper = np.percentile(samples, [tail, 100.0 - tail], axis=0)
    ranks = 1 + (lower[None, :] > upper[:, None]).sum(axis=1)
    rows = [
        BTRating(c, float(rating[i]), float(lower[i]), float(upper[i]), int(ranks[i]))
        for i, c in enumerate(ids)
    ]
    rows.sort(key=lambda row: (-row.rating, row.checkpoint_id))
    return BradleyTerryResult(tuple(rows), n_votes, rounds, seed, confidence, ridge)
