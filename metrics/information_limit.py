"""How few votes any matchmaking rule could need: the Cramér-Rao limit of a simulated arena.

Pure (numbers in, numbers out). The convergence benchmark compares rules by the votes they
need to reach Kendall tau >= 0.9; this module answers how low that number can go at all for
the simulator's arena, so a target can be checked against what the votes can carry.

Information per vote. A vote on a set of ``size`` checkpoints ranked by Plackett-Luce, where
a voter answers at random with probability ``lapse``, has the likelihood
``lapse / size! + (1 - lapse) * PL(order)``. Its Fisher information about the log-strengths
is largest when the strengths are equal; there, summed over the set (the trace of the
information matrix), it is ``(1 - lapse)^2 * sum_{m=2..size} (1 - 1/m)`` for a full ranking
(each stage "best of the m left" is a multinomial choice whose information has trace
``1 - 1/m``) and ``(1 - lapse)^2 * (1 - 1/size)`` when only the best is named. A four-way
full ranking carries at most 1.92 (1 - lapse)^2, a duel 0.5 (1 - lapse)^2.

Limit. After V votes the checkpoints' information ``I_i`` sums to at most V times that. By
the Cramér-Rao bound an unbiased estimator has ``var(theta_i) >= 1 / I_i``; with Gaussian
errors, checkpoints i and j are ordered wrongly with probability
``Phi(-|theta_i - theta_j| / sqrt(1/I_i + 1/I_j))``, which gives the expected tau. An oracle
that knows the true strengths then spreads the information over the checkpoints so as to
maximise the expected tau (:func:`best_allocation`); the fewest votes that reach the target
this way (:func:`votes_for_tau`) is the limit. It is an asymptotic estimate, not a theorem:
it treats each checkpoint's information as spread over many partners (so the variance of a
difference is ``1/I_i + 1/I_j``), ignores what a prior could add, and "first reached" on a
noisy path can come somewhat earlier than the expected tau gets there.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterable
from statistics import median
from typing import Any

import numpy as np
from scipy.optimize import minimize
from scipy.stats import norm

__all__ = [
    "best_allocation",
    "expected_tau",
    "information_limit",
    "information_per_vote",
    "votes_for_tau",
]


def information_per_vote(size: int, lapse: float, full_ranking: float = 1.0) -> float:
    """The most Fisher information (trace, over the set) one vote on ``size`` checkpoints can
    carry: at equal strengths, a share ``full_ranking`` of voters giving the whole order."""
    if size < 2:
        raise ValueError(f"size: expected at least 2 checkpoints, got {size}")
    if not 0.0 <= lapse < 1.0 or not 0.0 <= full_ranking <= 1.0:
        raise ValueError("lapse: expected [0, 1); full_ranking: expected [0, 1]")
    whole = sum(1.0 - 1.0 / m for m in range(2, size + 1))
    best_only = 1.0 - 1.0 / size
    return (1.0 - lapse) ** 2 * (full_ranking * whole + (1.0 - full_ranking) * best_only)


def _gaps(theta: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    i, j = np.triu_indices(len(theta), k=1)
    return i, j, np.abs(theta[i] - theta[j])


def expected_tau(theta: Iterable[float], information: Iterable[float]) -> float:
    """Expected Kendall tau (tau-a) of Gaussian estimates with variance ``1 / information``."""
    t = np.asarray(list(theta), dtype=float)
    info = np.asarray(list(information), dtype=float)
    i, j, gap = _gaps(t)
    wrong = norm.cdf(-gap / np.sqrt(1.0 / info[i] + 1.0 / info[j]))
    return float(1.0 - 2.0 * wrong.mean())


def best_allocation(theta: Iterable[float], total: float) -> np.ndarray:
    """The split of ``total`` information over the checkpoints that maximises the expected tau
    (an oracle that knows ``theta``); parametrised as ``total * softmax(z)``."""
    t = np.asarray(list(theta), dtype=float)
    n = len(t)
    i, j, gap = _gaps(t)

    def wrong_and_gradient(z: np.ndarray) -> tuple[float, np.ndarray]:
        share = np.exp(z - z.max())
        share /= share.sum()
        info = total * share
        s = np.sqrt(1.0 / info[i] + 1.0 / info[j])
        value = norm.cdf(-gap / s)
        # d wrong / d info_k for each pair member: phi(gap/s) * gap / s^2 * ds/dinfo_k
        slope = norm.pdf(gap / s) * gap / s**2 / (2.0 * s)
        d_info = np.zeros(n)
        np.add.at(d_info, i, -slope / info[i] ** 2)
        np.add.at(d_info, j, -slope / info[j] ** 2)
        d_share = total * d_info
        d_z = share * (d_share - float(share @ d_share))
        return float(value.sum()), d_z

    found = minimize(wrong_and_gradient, np.zeros(n), jac=True, method="L-BFGS-B")
    share = np.exp(found.x - found.x.max())
    return total * share / share.sum()


def votes_for_tau(theta: Iterable[float], per_vote: float, target: float = 0.9) -> float:
    """The fewest votes (each carrying at most ``per_vote`` information) whose best allocation
    reaches an expected tau of ``target``; bisection to 0.5% in log space."""
    t = np.asarray(list(theta), dtype=float)
    if not 0.0 < target < 1.0:
        raise ValueError(f"target: expected a tau in (0, 1), got {target}")

    def reaches(votes: float) -> bool:
        total = votes * per_vote
        return expected_tau(t, best_allocation(t, total)) >= target

    low, high = 1.0, 2.0
    while not reaches(high):
        low, high = high, high * 2.0
    while high / low > 1.005:
        mid = math.sqrt(low * high)
        low, high = (low, mid) if reaches(mid) else (mid, high)
    return high


def information_limit(checkpoints: int, spread: float, lapse: float, seeds: Iterable[int],
                      size: int = 4, full_ranking: float = 1.0,
                      target: float = 0.9) -> dict[str, Any]:
    """The limit over ``seeds``, strengths drawn as :func:`metrics.simulate.run` draws them
    (``random.Random(seed)``, N(0, spread^2)): median and range of the votes needed."""
    per_vote = information_per_vote(size, lapse, full_ranking)
    votes = []
    for seed in seeds:
        rng = random.Random(seed)
        theta = [rng.gauss(0.0, spread) for _ in range(checkpoints)]
        votes.append(votes_for_tau(theta, per_vote, target))
    return {
        "size": size,
        "information_per_vote": per_vote,
        "median": float(median(votes)),
        "min": float(min(votes)),
        "max": float(max(votes)),
        "runs": len(votes),
    }
