"""The fast TrueSkill engine against the ``trueskill`` package, update by update."""

from __future__ import annotations

import math
import random

import pytest
import trueskill
from hypothesis import given, settings
from hypothesis import strategies as st

from metrics.outcomes import VoteRecord, trueskill_games
from metrics.trueskill_fast import (
    TrueSkillModel,
    TrueSkillParams,
    _cdf,
    _pdf,
    conservative_score,
)

TOL = 1e-6


def test_defaults_are_the_packages() -> None:
    env, params = trueskill.TrueSkill(), TrueSkillParams()
    assert (params.mu, params.sigma, params.beta, params.tau, params.draw_probability) == (
        env.mu, env.sigma, env.beta, env.tau, env.draw_probability)


def test_primitives_are_bit_identical_to_the_packages() -> None:
    env = trueskill.TrueSkill()
    for x in [i / 7.0 for i in range(-300, 300)] + [-40.0, -8.5, 0.0, 8.5, 40.0]:
        assert _cdf(x) == env.cdf(x)
        assert _pdf(x) == env.pdf(x)


def _random_log(seed: int, players: int, votes: int) -> list[VoteRecord]:
    rng = random.Random(seed)
    skill = [rng.gauss(0, 1) for _ in range(players)]
    log = []
    for i in range(votes):
        kind = rng.random()
        if kind < 0.6:
            a, b = rng.sample(range(players), 2)
            if rng.random() < 0.15:
                log.append(VoteRecord((a, b), winner=rng.choice(["tie", "both_bad"]), time=i))
            else:
                log.append(VoteRecord((a, b), winner=int(skill[b] + rng.gauss(0, 1) >
                                                           skill[a] + rng.gauss(0, 1)), time=i))
            continue
        shown = rng.sample(range(players), 4)
        order = sorted(range(4), key=lambda p: -(skill[shown[p]] + rng.gauss(0, 1)))
        if kind < 0.8:
            log.append(VoteRecord(tuple(shown), ranking=tuple(order), time=i))
        else:
            log.append(VoteRecord(tuple(shown), winner=order[0], time=i))
    return log


@pytest.mark.parametrize(
    "params",
    [TrueSkillParams(), TrueSkillParams(mu=0.0, sigma=2.0, beta=1.0, tau=0.05,
                                        draw_probability=0.3)],
)
def test_every_update_of_a_long_log_matches_the_package(params: TrueSkillParams) -> None:
    """1,500 votes (duels with draws, four-way rankings, best of four), each engine on its
    own state: after every update every participant agrees within 1e-6 on mu and sigma."""
    fast, package = TrueSkillModel(params), TrueSkillModel(params, engine="package")
    ours: dict[int, tuple[float, float]] = {}
    theirs: dict[int, tuple[float, float]] = {}
    worst = 0.0
    for vote in _random_log(seed=7, players=12, votes=1500):
        games = trueskill_games(vote)
        start = (params.mu, params.sigma)
        ours.update(fast.rate_games({c: ours.get(c, start) for c in vote.participants}, games))
        theirs.update(package.rate_games({c: theirs.get(c, start) for c in vote.participants},
                                         games))
        for c in vote.participants:
            worst = max(worst, abs(ours[c][0] - theirs[c][0]), abs(ours[c][1] - theirs[c][1]))
        assert worst < TOL, vote
    assert len(ours) == 12


rating = st.tuples(st.floats(0.0, 50.0), st.floats(0.5, 8.5))


@settings(max_examples=200, deadline=None)
@given(st.lists(rating, min_size=2, max_size=5), st.data())
def test_single_games_match_the_package(ratings: list[tuple[float, float]],
                                        data: st.DataObject) -> None:
    """Any 2-5 players and ranks, ties included: the package's numbers. Games of three or
    more replay the package's schedule, so they agree to the last bit."""
    ranks = data.draw(st.lists(st.integers(0, len(ratings) - 1), min_size=len(ratings),
                               max_size=len(ratings)))
    try:
        expected = TrueSkillModel(engine="package").rate(ratings, ranks)
    except FloatingPointError:
        with pytest.raises(FloatingPointError, match="trueskill: the update underflows"):
            TrueSkillModel().rate(ratings, ranks)
        return
    got = TrueSkillModel().rate(ratings, ranks)
    if len(ratings) > 2:
        assert got == expected
    for (mu, sigma), (mu_ref, sigma_ref) in zip(got, expected, strict=True):
        assert abs(mu - mu_ref) < TOL and abs(sigma - sigma_ref) < TOL


def test_best_of_four_combines_three_duels_from_the_pre_vote_ratings() -> None:
    """Losers get exactly their duel; the winner's three messages multiply; no draw is
    claimed among the losers (their order would change nothing)."""
    model = TrueSkillModel()
    pre = {1: (25.0, 8.0), 2: (27.0, 3.0), 3: (20.0, 5.0), 4: (30.0, 2.0)}
    got = model.rate_games(pre, trueskill_games(VoteRecord((1, 2, 3, 4), winner=0)))
    tau2 = model.params.tau ** 2
    pi0 = 1 / (pre[1][1] ** 2 + tau2)
    pi, tau = pi0, pi0 * pre[1][0]
    for loser in (2, 3, 4):
        (w_mu, w_sigma), duel_loser = trueskill.rate_1vs1(
            trueskill.Rating(*pre[1]), trueskill.Rating(*pre[loser]))
        assert abs(got[loser][0] - duel_loser.mu) < TOL
        assert abs(got[loser][1] - duel_loser.sigma) < TOL
        pi += 1 / w_sigma**2 - pi0
        tau += w_mu / w_sigma**2 - pi0 * pre[1][0]
    assert got[1][0] == pytest.approx(tau / pi, abs=TOL)
    assert got[1][1] == pytest.approx(math.sqrt(1 / pi), abs=TOL)
    assert got[1][0] > max(model.rate([pre[1], pre[c]], [0, 1])[0][0] for c in (2, 3, 4))
    assert got[1][1] < min(model.rate([pre[1], pre[c]], [0, 1])[0][1] for c in (2, 3, 4))


def test_draws_and_ranks() -> None:
    model = TrueSkillModel()
    a, b = model.rate([(25.0, 25 / 3), (25.0, 25 / 3)], [0, 0])
    assert a[0] == pytest.approx(25.0) and b[0] == pytest.approx(25.0) and a[1] < 25 / 3
    winner, loser = model.rate([(25.0, 25 / 3), (25.0, 25 / 3)], [1, 0])
    assert loser[0] > 25.0 > winner[0]
    ranked = model.rate([(25.0, 8.0)] * 4, [3, 0, 2, 1])
    mus = [r[0] for r in ranked]
    assert mus[1] > mus[3] > mus[2] > mus[0]


def test_conservative_score_and_params() -> None:
    assert conservative_score(25.0, 25 / 3) == pytest.approx(0.0)
    with pytest.raises(ValueError, match="trueskill draw_probability: expected a number in"):
        TrueSkillParams(draw_probability=1.0)
    with pytest.raises(ValueError, match="trueskill beta: expected a positive number"):
        TrueSkillParams(beta=0.0)
    with pytest.raises(ValueError, match="trueskill engine: expected 'fast' or 'package'"):
        TrueSkillModel(engine="gpu")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="one rank per rating"):
        TrueSkillModel().rate([(25.0, 8.0)], [0])


def test_an_impossible_upset_is_a_clear_error() -> None:
    """Where the package raises FloatingPointError, so does the fast engine, in one line."""
    ratings, ranks = [(0.0, 0.5), (400.0, 0.5), (200.0, 0.5)], [0, 1, 2]
    with pytest.raises(FloatingPointError):
        TrueSkillModel(engine="package").rate(ratings, ranks)
    with pytest.raises(FloatingPointError, match="update underflows for ratings"):
        TrueSkillModel().rate(ratings, ranks)
    with pytest.raises(FloatingPointError, match="update underflows for ratings"):
        TrueSkillModel().rate(ratings[:2], [0, 1])
