"""The manipulation benchmark's cost of robustness: paired runs and the ratio's interval."""

from __future__ import annotations

import pytest

from metrics.manipulation import _median_ratio_interval, convergence_cost
from metrics.simulate import SimulationConfig


def test_the_interval_brackets_the_ratio_and_narrows_with_seeds() -> None:
    pairs = [(1000 + 10 * i, 1100 + 10 * i) for i in range(20)]
    low, high = _median_ratio_interval(pairs)
    assert low < 1195 / 1095 < high  # the ratio of the medians
    assert low > 1.05 and high < 1.15
    assert _median_ratio_interval([(1000, 1100)] * 20) == pytest.approx((1.1, 1.1))
    few = _median_ratio_interval([(1000, 900), (1000, 1300), (1000, 1000)])
    many = _median_ratio_interval([(1000, 900), (1000, 1300), (1000, 1000)] * 20)
    assert few[1] - few[0] > many[1] - many[0]


def test_a_censored_median_gives_no_interval() -> None:
    pairs = [(1000, None)] * 9 + [(1000, 1000)] * 11
    assert _median_ratio_interval(pairs) is None
    assert _median_ratio_interval([]) is None


def test_convergence_cost_pairs_the_same_seeds() -> None:
    config = SimulationConfig(checkpoints=10, voters=30, strategy="active", estimator="bt",
                              kinds={"fixed": 1.0}, max_votes=3000, spread=3.0)
    cost = convergence_cost(config, range(4))
    held = cost["votes_to_tau"]
    assert len(held["per_seed"]) == 4
    plain = sorted(p for p, _ in held["per_seed"])
    robust = sorted(r for _, r in held["per_seed"])
    assert held["plain"]["median"] == (plain[1] + plain[2]) / 2
    assert held["robust_over_plain"] == pytest.approx(
        (robust[1] + robust[2]) / (plain[1] + plain[2]))
    low, high = held["ratio_interval"]
    assert low <= held["robust_over_plain"] <= high
