"""Weighted Bradley-Terry with a shown-position term per match kind (factorBT-style).

Bugakova et al. (2019, "Aggregation of pairwise comparisons with reduction of biases",
factorBT) add to each item's strength a term for a factor of the comparison that is not the
item. Here that factor is the shown position within a match kind:

    P(i shown at slot a beats j shown at slot b) = sigmoid(theta_i + gamma_a - theta_j - gamma_b)

where a slot is ``(kind, position)``. Only differences between positions of one kind are
identified, so position 0 of every kind is the reference (gamma = 0). Every comparison carries
a weight (a share of a vote, or a voter's reliability), so the fit maximises
``sum c * log sigmoid(d) - ridge / 2 * (|theta|^2 + |gamma|^2)`` by Newton's method (concave;
a step that would lower it is halved), steps on theta kept centred as in
:func:`metrics.bradley_terry.fit_strengths`. The likelihood is the plain Bradley-Terry one
when every gamma is zero, so without a position bias the two fits agree.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from metrics.match_kinds import MATCH_KINDS, MATCH_SIZES
from metrics.outcomes import VoteRecord, pairwise

__all__ = [
    "SLOTS", "Comparisons", "comparisons_of", "design", "fit_factor_bt", "fit_rows", "slot_of",
]

RIDGE = 1e-6
_MAX_NEWTON = 100
_STEP_TOL = 1e-8
# Free position parameters: positions 1.. of every kind, in MATCH_KINDS order.
SLOTS: tuple[tuple[str, int], ...] = tuple(
    (kind, position) for kind in MATCH_KINDS for position in range(1, MATCH_SIZES[kind])
)
_SLOT_INDEX = {slot: i for i, slot in enumerate(SLOTS)}


def slot_of(kind: str, position: int) -> int:
    """The index of ``(kind, position)`` in :data:`SLOTS`, or -1 for a reference position 0."""
    return -1 if position == 0 else _SLOT_INDEX[(kind, position)]


@dataclass(frozen=True)
class Comparisons:
    """Pairwise outcomes as arrays: ``winner[m]`` (checkpoint index) beat ``loser[m]``, shown at
    slots ``winner_slot[m]`` / ``loser_slot[m]`` (-1: position 0), worth ``weight[m]`` (a draw is
    two outcomes of weight 0.5), from vote ``vote[m]`` of the input."""

    winner: np.ndarray
    loser: np.ndarray
    winner_slot: np.ndarray
    loser_slot: np.ndarray
    weight: np.ndarray
    vote: np.ndarray

    def __len__(self) -> int:
        return len(self.winner)


def comparisons_of(votes: list[tuple[str, VoteRecord]], index: dict[int, int],
                   both_bad_as_draw: bool = True) -> Comparisons:
    """The comparisons of ``(kind, vote)`` pairs, checkpoints mapped through ``index``."""
    winner, loser, ws, ls, weight, vote = [], [], [], [], [], []
    for v, (kind, record) in enumerate(votes):
        where = {c: p for p, c in enumerate(record.participants)}
        for a, b, score in pairwise(record, both_bad_as_draw):
            pairs = [(a, b, score)] if score == 1.0 else [(a, b, 0.5), (b, a, 0.5)]
            for w, lo, s in pairs:
                winner.append(index[w])
                loser.append(index[lo])
                ws.append(slot_of(kind, where[w]))
                ls.append(slot_of(kind, where[lo]))
                weight.append(s)
                vote.append(v)
    return Comparisons(np.asarray(winner, dtype=np.int64), np.asarray(loser, dtype=np.int64),
                       np.asarray(ws, dtype=np.int64), np.asarray(ls, dtype=np.int64),
                       np.asarray(weight, dtype=np.float64), np.asarray(vote, dtype=np.int64))


def design(c: Comparisons, n: int) -> tuple[np.ndarray, np.ndarray]:
    """The distinct rows of the comparisons' design (+1 at the winner and its slot, -1 at the
    loser and its slot) and, per comparison, the index of its row: the fit only needs the
    distinct rows, their weights added."""
    s = len(SLOTS) + 1
    key = ((c.winner * n + c.loser) * s + c.winner_slot + 1) * s + c.loser_slot + 1
    keys, inverse = np.unique(key, return_inverse=True)
    ls, rest = keys % s - 1, keys // s
    ws, rest = rest % s - 1, rest // s
    lo, w = rest % n, rest // n
    x = np.zeros((len(keys), n + len(SLOTS)))
    rows = np.arange(len(keys))
    x[rows, w] += 1.0
    x[rows, lo] -= 1.0
    for slots, sign in ((ws, 1.0), (ls, -1.0)):
        used = slots >= 0
        x[rows[used], n + slots[used]] += sign
    return x, inverse.ravel()


def _objective(x: np.ndarray, weight: np.ndarray, params: np.ndarray, ridge: float) -> float:
    return float(-(weight * np.logaddexp(0.0, -(x @ params))).sum()
                 - 0.5 * ridge * params @ params)


def fit_rows(x: np.ndarray, w: np.ndarray, n: int, ridge: float = RIDGE,
             start: np.ndarray | None = None) -> np.ndarray:
    """The parameters (theta for ``n`` checkpoints, then gamma per :data:`SLOTS`) maximising
    the weighted likelihood of distinct design rows ``x`` with total weights ``w``."""
    size = x.shape[1]
    params = np.zeros(size) if start is None else np.array(start, dtype=np.float64)
    params[:n] -= params[:n].mean()
    value = _objective(x, w, params, ridge)
    for _ in range(_MAX_NEWTON):
        p = 1.0 / (1.0 + np.exp(-(x @ params)))
        grad = x.T @ (w * (1.0 - p)) - ridge * params
        scaled = x * np.sqrt(w * p * (1.0 - p))[:, None]
        hessian = scaled.T @ scaled + ridge * np.eye(size)
        step = np.linalg.solve(hessian, grad)
        step[:n] -= step[:n].mean()
        if np.max(np.abs(step)) < _STEP_TOL:
            return params + step
        scale, candidate = 1.0, params + step
        new_value = _objective(x, w, candidate, ridge)
        slack = 1e-12 * abs(value)
        while new_value < value - slack and scale > 1e-6:
            scale *= 0.5
            candidate = params + scale * step
            new_value = _objective(x, w, candidate, ridge)
        params, value = candidate, new_value
    return params


def fit_factor_bt(c: Comparisons, n: int, weight: np.ndarray | None = None,
                  ridge: float = RIDGE) -> tuple[np.ndarray, np.ndarray]:
    """Strengths theta (``n``, mean 0) and position terms gamma (one per :data:`SLOTS`)
    maximising the weighted likelihood (``weight`` defaults to the comparisons' own)."""
    x, inverse = design(c, n)
    w = np.bincount(inverse, weights=c.weight if weight is None else weight,
                    minlength=len(x))
    params = fit_rows(x, w, n, ridge)
    return params[:n], params[n:]
