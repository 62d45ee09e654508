"""The position term of factorBT: a simulated shown-position bias is recovered."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest

from metrics.bradley_terry import fit_strengths
from metrics.factor_bt import SLOTS, comparisons_of, fit_factor_bt
from metrics.outcomes import VoteRecord


def _votes(rng: random.Random, theta: dict[int, float], bias: dict[tuple[str, int], float],
           count: int) -> list[tuple[str, VoteRecord]]:
    votes = []
    ids = sorted(theta)
    for i in range(count):
        if i % 2:
            group = tuple(rng.sample(ids, 2))
            a, b = group
            d = theta[a] - theta[b] - bias.get(("fixed", 1), 0.0)
            a_wins = rng.random() < 1.0 / (1.0 + math.exp(-d))
            votes.append(("fixed", VoteRecord(group, winner=0 if a_wins else 1)))
        else:  # best of four: multinomial logit on strength + position term
            group = tuple(rng.sample(ids, 4))
            utility = [theta[c] + bias.get(("ffa", p), 0.0) for p, c in enumerate(group)]
            best = rng.choices(range(4), weights=[math.exp(u) for u in utility])[0]
            votes.append(("ffa", VoteRecord(group, winner=best)))
    return votes


def test_position_terms_recover_a_simulated_bias() -> None:
    rng = random.Random(11)
    theta = {c: rng.gauss(0.0, 1.0) for c in range(1, 11)}
    bias = {("fixed", 1): -0.4, ("ffa", 1): 0.0, ("ffa", 2): 0.3, ("ffa", 3): -0.3}
    votes = _votes(rng, theta, bias, 12_000)
    index = {c: i for i, c in enumerate(sorted(theta))}
    strengths, gamma = fit_factor_bt(comparisons_of(votes, index), len(index))
    fitted = dict(zip(SLOTS, gamma, strict=True))
    for slot, value in bias.items():
        assert fitted[slot] == pytest.approx(value, abs=0.08), slot
    assert fitted[("free", 1)] == pytest.approx(0.0, abs=1e-3)  # no free duels: stays 0
    truth = np.array([theta[c] for c in sorted(theta)])
    assert np.corrcoef(strengths, truth)[0, 1] > 0.97


def test_without_a_bias_it_is_plain_bradley_terry() -> None:
    rng = random.Random(12)
    theta = {c: rng.gauss(0.0, 1.0) for c in range(1, 9)}
    votes = [v for v in _votes(rng, theta, {}, 4000) if v[0] == "fixed"]
    index = {c: i for i, c in enumerate(sorted(theta))}
    c = comparisons_of(votes, index)
    strengths, gamma = fit_factor_bt(c, len(index))
    wins = np.zeros((8, 8))
    np.add.at(wins, (c.winner, c.loser), c.weight)
    plain = fit_strengths(wins)
    # No bias: the term is noise (its standard error here is about 0.065 log-odds) and the
    # strengths barely move.
    assert abs(gamma[SLOTS.index(("fixed", 1))]) < 0.2
    assert np.max(np.abs(strengths - plain)) < 0.05
