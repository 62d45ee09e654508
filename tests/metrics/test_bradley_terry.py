"""Bradley-Terry: the aggregated Newton fit against an independent fit, and the bootstrap."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.optimize import minimize

from metrics.bradley_terry import (
    ELO_SCALE,
    bradley_terry,
    fit_strengths,
    group_votes,
    to_elo_scale,
)
from metrics.outcomes import VoteRecord, pairwise


def _log(seed: int, votes: int, players: int = 6) -> list[VoteRecord]:
    rng = random.Random(seed)
    skill = [rng.gauss(0, 1) for _ in range(players)]
    out = []
    for i in range(votes):
        if rng.random() < 0.7:
            a, b = rng.sample(range(players), 2)
            if rng.random() < 0.1:
                out.append(VoteRecord((a, b), winner=rng.choice(["tie", "both_bad"]), time=i))
            else:
                p_b = 1 / (1 + math.exp(skill[a] - skill[b]))
                out.append(VoteRecord((a, b), winner=int(rng.random() < p_b), time=i))
        else:
            shown = rng.sample(range(players), 4)
            order = sorted(range(4), key=lambda p: -(skill[shown[p]] + rng.gauss(0, 1)))
            if rng.random() < 0.5:
                out.append(VoteRecord(tuple(shown), winner=order[0], time=i))
            else:
                out.append(VoteRecord(tuple(shown), ranking=tuple(order), time=i))
    return out


def _independent_fit(votes: list[VoteRecord], ridge: float) -> dict[int, float]:
    """The raw likelihood, one term per pairwise outcome (a draw is y = 0.5), by BFGS."""
    rows = [o for v in votes for o in pairwise(v)]
    ids = sorted({c for o in rows for c in (o.a, o.b)})
    index = {c: i for i, c in enumerate(ids)}
    a = np.array([index[o.a] for o in rows])
    b = np.array([index[o.b] for o in rows])
    y = np.array([o.score_a for o in rows])

    def loss(theta: np.ndarray) -> tuple[float, np.ndarray]:
        z = theta[a] - theta[b]
        value = np.sum(np.logaddexp(0.0, z) - y * z) + 0.5 * ridge * theta @ theta
        r = 1 / (1 + np.exp(-z)) - y
        grad = np.bincount(a, r, len(ids)) - np.bincount(b, r, len(ids)) + ridge * theta
        return float(value), grad

    theta = minimize(loss, np.zeros(len(ids)), jac=True, method="BFGS",
                     options={"gtol": 1e-10}).x
    elo = 1000 + ELO_SCALE * (theta - theta.mean())
    return dict(zip(ids, elo, strict=True))


def test_fit_matches_an_independent_maximum_likelihood_fit() -> None:
    votes = _log(seed=3, votes=600)
    result = bradley_terry(votes, rounds=0)
    ours = {r.checkpoint_id: r.rating for r in result.ratings}
    for ridge, tol in ((1e-6, 1e-4), (0.0, 1e-2)):
        reference = _independent_fit(votes, ridge)
        assert max(abs(ours[c] - reference[c]) for c in reference) < tol
    assert sum(ours.values()) == pytest.approx(1000.0 * len(ours))
    assert [r.rating for r in result.ratings] == sorted(ours.values(), reverse=True)


def test_a_draw_is_half_a_win_each_way() -> None:
    """Two draws = one win each way: same win matrix, same ratings."""
    draws = [VoteRecord((1, 2), winner="tie"), VoteRecord((2, 1), winner="both_bad"),
             VoteRecord((1, 3), winner=0), VoteRecord((3, 2), winner=0)]
    wins = [VoteRecord((1, 2), winner=0), VoteRecord((1, 2), winner=1),
            VoteRecord((1, 3), winner=0), VoteRecord((3, 2), winner=0)]
    assert np.array_equal(group_votes(draws).win_matrix(), group_votes(wins).win_matrix())
    a, b = bradley_terry(draws, rounds=0), bradley_terry(wins, rounds=0)
    # pytest.approx compares flat sequences only: ids exactly, ratings approximately.
    assert [r.checkpoint_id for r in a.ratings] == [r.checkpoint_id for r in b.ratings]
    assert [r.rating for r in a.ratings] == pytest.approx([r.rating for r in b.ratings])
    excluded = bradley_terry(draws, rounds=0, both_bad_as_draw=False)
    assert excluded.n_votes == 3


def test_groups_keep_four_way_votes_whole() -> None:
    """Identical votes share a group; a four-way vote's three outcomes move together."""
    votes = [VoteRecord((1, 2, 3, 4), winner=0, time=1.0), VoteRecord((1, 2, 3, 4), winner=0,
                                                                      time=2.0),
             VoteRecord((1, 2), winner="tie"), VoteRecord((2, 1), winner="tie"),
             VoteRecord((1, 2), winner=0)]
    groups = group_votes(votes)
    assert groups.n_votes == 5 and sorted(groups.group_counts.tolist()) == [1, 1, 1, 2]
    best_of = int(np.argmax(groups.group_counts))
    assert np.sum(groups.entry_group == best_of) == 3
    counts = np.zeros(len(groups.group_counts), dtype=np.int64)
    counts[best_of] = 1
    assert groups.win_matrix(counts).sum() == 3.0
    assert groups.win_matrix().sum() == 2 * 3 + 1 + 1 + 1


def test_bootstrap_is_seeded_and_ranks_account_for_overlap() -> None:
    votes = _log(seed=5, votes=400)
    a = bradley_terry(votes, rounds=60, seed=11)
    assert a == bradley_terry(votes, rounds=60, seed=11)
    assert a != bradley_terry(votes, rounds=60, seed=12)
    assert (a.rounds, a.seed, a.confidence, a.n_votes) == (60, 11, 0.95, 400)
    for r in a.ratings:
        assert r.lower <= r.rating <= r.upper
        assert r.rank == 1 + sum(o.lower > r.upper for o in a.ratings)
    assert a.ratings[0].rank == 1


def test_intervals_shrink_with_more_votes() -> None:
    few = bradley_terry(_log(seed=1, votes=150), rounds=80)
    many = bradley_terry(_log(seed=1, votes=3000), rounds=80)
    width = lambda res: np.median([r.upper - r.lower for r in res.ratings])  # noqa: E731
    assert width(many) < width(few) / 2


def test_unbeaten_checkpoint_stays_finite_and_on_top() -> None:
    votes = [VoteRecord((1, 2), winner=0), VoteRecord((1, 3), winner=0),
             VoteRecord((2, 3), winner=0), VoteRecord((3, 2), winner=0)]
    result = bradley_terry(votes, rounds=20)
    assert result.ratings[0].checkpoint_id == 1
    assert all(math.isfinite(r.rating) and math.isfinite(r.upper) for r in result.ratings)


def test_empty_log_and_bad_arguments() -> None:
    assert bradley_terry([], rounds=5).ratings == ()
    with pytest.raises(ValueError, match="rounds: expected a number of bootstrap rounds"):
        bradley_terry([], rounds=-1)
    with pytest.raises(ValueError, match="confidence: expected a level between 0 and 1"):
        bradley_terry([], confidence=1.5)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 4), st.integers(0, 4), st.integers(0, 2)),
                min_size=1, max_size=40), st.randoms(use_true_random=False))
def test_order_free_and_anchored(raw: list[tuple[int, int, int]], rng: random.Random) -> None:
    """Shuffling the log changes nothing; the mean rating is 1000; the fit is a stationary
    point of the penalised likelihood."""
    votes = [VoteRecord((a, b), winner=[0, 1, "tie"][w]) for a, b, w in raw if a != b]
    if not votes:
        return
    shuffled = votes[:]
    rng.shuffle(shuffled)
    one, two = bradley_terry(votes, rounds=0), bradley_terry(shuffled, rounds=0)
    assert [r.checkpoint_id for r in one.ratings] == [r.checkpoint_id for r in two.ratings]
    assert [r.rating for r in one.ratings] == pytest.approx([r.rating for r in two.ratings])
    assert np.mean([r.rating for r in one.ratings]) == pytest.approx(1000.0)
    wins = group_votes(votes).win_matrix()
    theta = fit_strengths(wins)
    p = 1 / (1 + np.exp(theta[None, :] - theta[:, None]))
    grad = wins.sum(axis=1) - ((wins + wins.T) * p).sum(axis=1) - 1e-6 * theta
    assert np.abs(grad).max() < 1e-6
    assert to_elo_scale(theta).mean() == pytest.approx(1000.0)


def test_bootstrap_equals_a_plain_sequential_loop() -> None:
    """Draws made ahead in a second thread and win matrices by a sparse product give, bit for
    bit, the intervals of the plain loop: one multinomial draw per round from one generator,
    the win matrix summed entry by entry, the fit warm-started from the full-data fit."""
    votes = _log(seed=9, votes=700)
    rounds, seed = 21, 4  # not a multiple of the draw chunk
    result = bradley_terry(votes, rounds=rounds, seed=seed)
    groups = group_votes(votes)
    n = len(groups.checkpoint_ids)

    def wins(counts: np.ndarray) -> np.ndarray:
        weights = counts[groups.entry_group] * groups.entry_score
        return np.bincount(groups.entry_cell, weights=weights, minlength=n * n).reshape(n, n)

    theta = fit_strengths(wins(groups.group_counts))
    rng = np.random.default_rng(seed)
    share = groups.group_counts / groups.n_votes
    samples = np.array([
        to_elo_scale(fit_strengths(wins(rng.multinomial(groups.n_votes, share)), start=theta))
        for _ in range(rounds)
    ])
    lower, upper = np.percentile(samples, [2.5, 97.5], axis=0)
    by_id = {r.checkpoint_id: r for r in result.ratings}
    for i, c in enumerate(groups.checkpoint_ids):
        assert (by_id[c].lower, by_id[c].upper) == (lower[i], upper[i])
