"""Rank correlation and position-bias statistics against scipy's own implementations."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy import stats

from metrics.rank_stats import position_bias, spearman, wilson_interval


@given(st.lists(st.tuples(st.integers(0, 6), st.integers(0, 6)), min_size=4, max_size=30))
def test_spearman_matches_scipy(pairs: list[tuple[int, int]]) -> None:
    x, y = [p[0] for p in pairs], [p[1] for p in pairs]
    result = spearman(x, y)
    if len(set(x)) == 1 or len(set(y)) == 1:
        assert result.rho is None
        return
    assert result.rho == pytest.approx(stats.spearmanr(x, y).statistic, abs=1e-12)
    assert result.lower <= result.rho <= result.upper and result.n == len(pairs)


def test_spearman_interval_is_fishers() -> None:
    r = spearman([1, 2, 3, 4, 5, 6, 7, 8], [2, 1, 4, 3, 6, 5, 8, 7])
    half = 1.959963984540054 * math.sqrt(1.06 / 5)
    assert r.lower == pytest.approx(math.tanh(math.atanh(r.rho) - half))
    assert r.upper == pytest.approx(math.tanh(math.atanh(r.rho) + half))
    assert spearman([1, 2, 3], [1, 2, 3]).lower is None  # fewer than 4 pairs: no interval


def test_wilson_interval() -> None:
    lo, hi = wilson_interval(7, 10)
    assert (round(lo, 4), round(hi, 4)) == (0.3968, 0.8922)  # Wilson (1927), z = 1.96
    assert wilson_interval(0, 0) == (0.0, 1.0)


def test_position_bias_tests() -> None:
    duel = position_bias([70, 30])
    assert duel.p_value == pytest.approx(stats.binomtest(70, 100, 0.5).pvalue)
    assert duel.significant() and duel.shares == (0.7, 0.3)
    four = position_bias([30, 25, 24, 21])
    assert four.p_value == pytest.approx(stats.chisquare([30, 25, 24, 21]).pvalue)
    assert not four.significant()
    assert position_bias([0, 0]).p_value is None
