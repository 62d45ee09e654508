"""The matchmaking rules: valid sets, no repeats, fewest-issued first, information gain."""

from __future__ import annotations

import random
from collections import Counter
from itertools import combinations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from metrics.pairing import (
    STRATEGIES,
    Standing,
    check_strategy,
    pair_gain,
    pick_checkpoints,
)


@given(
    strategy=st.sampled_from(STRATEGIES),
    n=st.integers(3, 40),
    size=st.sampled_from((2, 4)),
    seed=st.integers(0, 10_000),
    data=st.data(),
)
def test_a_valid_set_that_is_not_the_previous_one(
    strategy: str, n: int, size: int, seed: int, data: st.DataObject
) -> None:
    if n <= size:
        n = size + 1
    available = list(range(100, 100 + n))
    rng = random.Random(seed)
    standings = {
        c: Standing(rng.randrange(50), rng.uniform(10, 40), rng.uniform(0.5, 8.3))
        for c in available if rng.random() < 0.8
    }
    last = frozenset(data.draw(st.permutations(available))[:size])
    group = pick_checkpoints(strategy, available, size, standings, rng, last=last)  # type: ignore[arg-type]
    assert len(group) == size and len(set(group)) == size
    assert set(group) <= set(available)
    assert frozenset(group) != last


def test_recently_shown_sets_are_avoided_while_others_exist() -> None:
    available = [1, 2, 3]
    avoid = [frozenset((1, 2)), frozenset((1, 3))]
    for strategy in STRATEGIES:
        for seed in range(20):
            group = pick_checkpoints(strategy, available, 2, {}, random.Random(seed), avoid=avoid)
            assert frozenset(group) == frozenset((2, 3)), strategy
    # Everything avoided: still a set, and not the previous one.
    everything = [frozenset(p) for p in ((1, 2), (1, 3), (2, 3))]
    group = pick_checkpoints("active", available, 2, {}, random.Random(0), avoid=everything,
                             last=frozenset((2, 3)))
    assert frozenset(group) != frozenset((2, 3))


def test_balanced_takes_the_least_issued() -> None:
    standings = {1: Standing(9), 2: Standing(0), 3: Standing(5), 4: Standing(1), 5: Standing(7)}
    group = pick_checkpoints("balanced", [1, 2, 3, 4, 5], 2, standings, random.Random(1))
    assert set(group) == {2, 4}


def test_gain_is_largest_for_close_uncertain_pairs() -> None:
    beta = 25 / 6
    close = pair_gain(Standing(0, 25, 2), Standing(0, 25.5, 2), beta)
    far = pair_gain(Standing(0, 25, 2), Standing(0, 45, 2), beta)
    certain = pair_gain(Standing(0, 25, 0.5), Standing(0, 25.5, 0.5), beta)
    assert close > far > 0 and close > certain > 0
    assert pair_gain(Standing(0, 25, 2), Standing(0, 25.5, 2), beta) == pytest.approx(
        pair_gain(Standing(0, 25.5, 2), Standing(0, 25, 2), beta)
    )


def test_active_draws_new_checkpoints_most() -> None:
    settled = {c: Standing(40, 20 + c, 1.0) for c in range(20)}  # 20 and 21 have no standing
    rng = random.Random(3)
    counts: Counter[int] = Counter()
    for _ in range(400):
        counts.update(pick_checkpoints("active", list(range(22)), 2, settled, rng))
    newcomer_share = (counts[20] + counts[21]) / sum(counts.values())
    assert newcomer_share > 0.3  # 2 of 22 checkpoints: 9% under random pairs
    assert set(counts) == set(range(22))  # and every checkpoint is still drawn


def test_unknown_strategy_and_bad_sizes_are_refused() -> None:
    with pytest.raises(ValueError, match="expected one of uniform, balanced, active"):
        check_strategy("elo")
    with pytest.raises(ValueError, match="need 4 checkpoints"):
        pick_checkpoints("uniform", [1, 2, 3], 4, {}, random.Random(0))


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_the_one_unseen_set_of_a_small_pool_is_found(strategy: str) -> None:
    pairs = [frozenset(p) for p in combinations(range(4), 2)]
    for seed in range(50):
        rng = random.Random(seed)
        missing = pairs[seed % len(pairs)]
        avoid = [p for p in pairs if p != missing]
        got = pick_checkpoints(strategy, list(range(4)), 2, {}, rng, avoid=avoid,  # type: ignore[arg-type]
                               last=avoid[-1])
        assert frozenset(got) == missing
