"""The information limit: the per-vote Fisher information against a numerical derivative of
the voter model's likelihood, the expected tau against sampled estimates, and the oracle
allocation and bisection against their definitions."""

from __future__ import annotations

import itertools
import math
import random

import numpy as np
import pytest

from metrics.information_limit import (
    best_allocation,
    expected_tau,
    information_limit,
    information_per_vote,
    votes_for_tau,
)
from metrics.simulate import kendall_tau


def _order_probability(theta: np.ndarray, order: tuple[int, ...], lapse: float,
                       full: bool) -> float:
    """Plackett-Luce with lapses, written out: the whole order, or only its best."""
    n = len(theta)
    if not full:
        weights = np.exp(theta)
        return lapse / n + (1.0 - lapse) * weights[order[0]] / weights.sum()
    p, left = 1.0, list(order)
    while len(left) > 1:
        weights = np.exp(theta[left])
        p *= weights[0] / weights.sum()
        left = left[1:]
    return lapse / math.factorial(n) + (1.0 - lapse) * p


def _fisher_trace(theta: np.ndarray, lapse: float, full: bool, h: float = 1e-5) -> float:
    n = len(theta)
    outcomes = list(itertools.permutations(range(n))) if full else [(i,) for i in range(n)]
    trace = 0.0
    for order in outcomes:
        p = _order_probability(theta, order, lapse, full)
        for k in range(n):
            up, down = theta.copy(), theta.copy()
            up[k] += h
            down[k] -= h
            score = (math.log(_order_probability(up, order, lapse, full))
                     - math.log(_order_probability(down, order, lapse, full))) / (2 * h)
            trace += p * score**2
    return trace


@pytest.mark.parametrize("size", [2, 3, 4])
@pytest.mark.parametrize("lapse", [0.0, 0.15])
@pytest.mark.parametrize("full", [True, False])
def test_information_per_vote_is_the_likelihoods_fisher_information_at_equal_strengths(
    size: int, lapse: float, full: bool
) -> None:
    expected = _fisher_trace(np.zeros(size), lapse, full)
    assert information_per_vote(size, lapse, 1.0 if full else 0.0) == pytest.approx(
        expected, rel=1e-6)


def test_equal_strengths_carry_the_most_information() -> None:
    rng = np.random.default_rng(3)
    most = information_per_vote(4, 0.15)
    for _ in range(10):
        assert _fisher_trace(rng.normal(0.0, 0.5, 4), 0.15, True) < most


def test_expected_tau_matches_sampled_gaussian_estimates() -> None:
    rng = np.random.default_rng(0)
    theta = rng.normal(0.0, 1.0, 30)
    information = rng.uniform(5.0, 60.0, 30)
    sampled = [
        kendall_tau(list(theta), list(theta + rng.normal(0.0, 1.0 / np.sqrt(information))))
        for _ in range(3000)
    ]
    assert expected_tau(theta, information) == pytest.approx(float(np.mean(sampled)), abs=0.004)


def test_best_allocation_spends_the_total_and_beats_an_even_split() -> None:
    rng = random.Random(1)
    theta = np.array([rng.gauss(0.0, 1.0) for _ in range(25)])
    best = best_allocation(theta, 500.0)
    assert best.sum() == pytest.approx(500.0)
    assert (best > 0).all()
    even = expected_tau(theta, np.full(25, 20.0))
    assert expected_tau(theta, best) >= even
    # a clearly worse split (all on half the checkpoints) loses to both
    lopsided = np.where(np.arange(25) % 2 == 0, 500.0 / 13, 1e-3)
    assert expected_tau(theta, lopsided) < even


def test_votes_for_tau_is_the_crossing_point() -> None:
    rng = random.Random(2)
    theta = np.array([rng.gauss(0.0, 1.0) for _ in range(20)])
    per_vote = information_per_vote(4, 0.15)
    votes = votes_for_tau(theta, per_vote, 0.9)
    assert expected_tau(theta, best_allocation(theta, votes * per_vote)) >= 0.9
    assert expected_tau(theta, best_allocation(theta, 0.98 * votes * per_vote)) < 0.9


def test_four_way_rankings_need_fewer_votes_than_duels_and_noise_costs_votes() -> None:
    four = information_limit(20, 1.0, 0.15, range(3))
    duel = information_limit(20, 1.0, 0.15, range(3), size=2)
    quiet = information_limit(20, 1.0, 0.0, range(3))
    assert four["median"] < duel["median"]
    assert quiet["median"] < four["median"]
    assert four["runs"] == 3 and four["min"] <= four["median"] <= four["max"]


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="size"):
        information_per_vote(1, 0.1)
    with pytest.raises(ValueError, match="lapse"):
        information_per_vote(4, 1.0)
    with pytest.raises(ValueError, match="target"):
        votes_for_tau([0.0, 1.0], 1.0, 1.5)
