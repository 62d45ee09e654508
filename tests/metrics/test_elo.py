"""Elo: the logistic update, simultaneous multi-way updates, the time-weighted average."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from metrics.elo import (
    EloParams,
    elo_update,
    expected_score,
    hold_rating,
    time_weighted_average,
)
from metrics.outcomes import PairOutcome, VoteRecord, pairwise

P = EloParams()


def test_defaults() -> None:
    assert (P.k, P.scale, P.base, P.initial) == (32.0, 400.0, 10.0, 1000.0)


def test_expected_score_and_a_known_update() -> None:
    assert expected_score(1000.0, 1000.0, P) == 0.5
    assert expected_score(1400.0, 1000.0, P) == pytest.approx(10 / 11)
    assert elo_update({1: 1000.0, 2: 1000.0}, [PairOutcome(1, 2, 1.0)], P) == {1: 1016.0,
                                                                               2: 984.0}
    draw = elo_update({1: 1200.0, 2: 1000.0}, [PairOutcome(1, 2, 0.5)], P)
    assert draw[1] == pytest.approx(1200.0 + 32 * (0.5 - 1 / (1 + 10 ** (-0.5))))
    assert elo_update({1: 1000.0, 2: 1000.0}, [PairOutcome(1, 2, 1.0)], EloParams(k=16.0))[1] \
        == 1008.0


def test_multi_way_uses_pre_match_ratings() -> None:
    """Best of four: each loser's change depends only on the pre-match ratings."""
    ratings = {1: 1000.0, 2: 1100.0, 3: 900.0, 4: 1050.0}
    vote = VoteRecord((1, 2, 3, 4), winner=0)
    new = elo_update(ratings, pairwise(vote), P)
    for loser in (2, 3, 4):
        alone = elo_update(ratings, [PairOutcome(1, loser, 1.0)], P)
        assert new[loser] == alone[loser]
    gained = sum(elo_update(ratings, [PairOutcome(1, b, 1.0)], P)[1] - 1000.0 for b in (2, 3, 4))
    assert new[1] - 1000.0 == pytest.approx(gained)


@pytest.mark.parametrize("field", ["k", "scale"])
def test_params_are_checked(field: str) -> None:
    with pytest.raises(ValueError, match=f"elo {field}: expected a positive number"):
        EloParams(**{field: 0.0})
    with pytest.raises(ValueError, match="elo base: expected a number above 1"):
        EloParams(base=1.0)


ratings_st = st.dictionaries(st.integers(0, 5), st.floats(500, 1500), min_size=4, max_size=6)


@given(ratings_st, st.permutations(range(4)), st.booleans())
def test_zero_sum_and_order_free(ratings: dict[int, float], ranking: list[int],
                                 best_only: bool) -> None:
    ids = tuple(sorted(ratings))[:4]
    vote = (VoteRecord(ids, winner=ranking[0]) if best_only
            else VoteRecord(ids, ranking=tuple(ranking)))
    outcomes = pairwise(vote)
    new = elo_update(ratings, outcomes, P)
    assert sum(new.values()) == pytest.approx(sum(ratings[c] for c in new))
    shuffled = elo_update(ratings, list(reversed(outcomes)), P)
    assert all(shuffled[c] == pytest.approx(new[c]) for c in new)
    assert new[ids[ranking[0]]] > ratings[ids[ranking[0]]]


def test_time_weighted_average_by_hand() -> None:
    """1000 held 10 s, then 1100 held 30 s: (10 * 1000 + 30 * 1100) / 40."""
    ws, since = hold_rating(0.0, None, 1000.0, 100.0)  # first vote at t = 100
    assert (ws, since) == (0.0, 100.0)
    ws, since = hold_rating(ws, since, 1000.0, 110.0)
    assert time_weighted_average(ws, since, 100.0, 1100.0, 140.0) == pytest.approx(
        (10 * 1000 + 30 * 1100) / 40)
    assert time_weighted_average(ws, since, 100.0, 1100.0, 110.0) == pytest.approx(1000.0)
    assert time_weighted_average(0.0, None, None, 1234.0, 5.0) == 1234.0
    assert time_weighted_average(0.0, 100.0, 100.0, 1016.0, 100.0) == 1016.0


def test_clock_going_backwards_adds_nothing() -> None:
    ws, since = hold_rating(500.0, 200.0, 1000.0, 150.0)
    assert (ws, since) == (500.0, 200.0)


@given(st.lists(st.tuples(st.floats(0, 1e4), st.floats(800, 1200)), min_size=1, max_size=30),
       st.floats(0, 1e4))
def test_incremental_state_equals_the_integral(steps: list[tuple[float, float]],
                                               tail: float) -> None:
    """Kept incrementally, the average equals the step-function integral over the span."""
    times, value, t = [], [], 1.7e9
    for gap, rating in steps:
        t += gap
        times.append(t)
        value.append(rating)
    ws, since, current = 0.0, None, 1000.0
    for when, rating in zip(times, value, strict=True):
        ws, since = hold_rating(ws, since, current, when)
        current = rating
    now = times[-1] + tail
    area = sum(value[i] * (times[i + 1] - times[i]) for i in range(len(times) - 1))
    area += value[-1] * (now - times[-1])  # the tail as the clock can represent it
    span = now - times[0]
    expected = area / span if span > 0 else value[-1]
    assert time_weighted_average(ws, since, times[0], current, now) == pytest.approx(
        expected, rel=1e-9)
