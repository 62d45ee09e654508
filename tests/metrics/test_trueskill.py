"""The fast TrueSkill engine against the ``trueskill`` package, update by update."""

from __future__ import annotations

import math
import random
from collections.abc import Callable

import pytest
import trueskill
from hypothesis import given, settings
from hypothesis import strategies as st

from metrics import _trueskill_kernel
from metrics.outcomes import VoteRecord, trueskill_games
from metrics.trueskill_fast import TrueSkillModel, TrueSkillParams, conservative_score

TOL = 1e-6


def test_defaults_are_the_packages() -> None:
    env, params = trueskill.TrueSkill(), TrueSkillParams()
    assert (params.mu, params.sigma, params.beta, params.tau, params.draw_probability) == (
        env.mu, env.sigma, env.beta, env.tau, env.draw_probability)


def test_primitives_are_bit_identical_to_the_packages() -> None:
    env = trueskill.TrueSkill()
    rng = random.Random(0)  # x*x differs from pow(x, 2) for about one x in a thousand
    for x in ([i / 7.0 for i in range(-300, 300)] + [-40.0, -8.5, 0.0, 8.5, 40.0]
              + [rng.uniform(-12.0, 12.0) for _ in range(20_000)]):
        assert _trueskill_kernel.cdf(x) == env.cdf(x)
        assert _trueskill_kernel.pdf(x) == env.pdf(x)


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


extreme = st.tuples(st.floats(-1e4, 1e4), st.floats(1e-3, 1e3))


def _outcome(rate: Callable[[], list[tuple[float, float]]]) -> object:
    """The ratings ``rate`` returns, or the class of the error it raises."""
    try:
        return rate()
    except (ArithmeticError, ValueError) as error:  # FloatingPointError is an ArithmeticError
        return type(error)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(rating, extreme), min_size=3, max_size=5), st.data())
def test_games_of_three_to_five_are_the_packages_bit_for_bit(
    ratings: list[tuple[float, float]], data: st.DataObject
) -> None:
    """The kernel replays the package's message schedule for 3-5 players, draws and extreme
    ratings included: the same doubles, or an error of the same class."""
    ranks = data.draw(st.lists(st.integers(0, len(ratings) - 1), min_size=len(ratings),
                               max_size=len(ratings)))
    package = TrueSkillModel(engine="package")
    assert _outcome(lambda: TrueSkillModel().rate(ratings, ranks)) == _outcome(
        lambda: package.rate(ratings, ranks))


@pytest.mark.parametrize("players", [9, 12])
def test_large_games_are_the_packages_bit_for_bit(players: int) -> None:
    """Games bigger than the kernel's stack buffers (8 players) take its heap path."""
    rng = random.Random(players)
    ratings = [(rng.uniform(10, 40), rng.uniform(1, 8)) for _ in range(players)]
    ranks = [rng.randrange(players // 2) for _ in range(players)]  # with draws
    expected = TrueSkillModel(engine="package").rate(ratings, ranks)
    assert TrueSkillModel().rate(ratings, ranks) == expected


def _closed_form_duel(a: tuple[float, float], b: tuple[float, float],
                      ranks: tuple[int, int]) -> list[tuple[float, float]]:
    """The duel formula of :mod:`metrics.trueskill_fast`'s docstring, written out in Python
    with the package's v and w functions."""
    env = trueskill.TrueSkill()
    first = 1 if ranks[1] < ranks[0] else 0
    (mu_a, sigma_a), (mu_b, sigma_b) = (a, b)[first], (a, b)[1 - first]
    tau2 = env.tau * env.tau
    var_a, var_b = sigma_a * sigma_a + tau2, sigma_b * sigma_b + tau2
    c2 = 2.0 * env.beta**2 + var_a + var_b
    c = math.sqrt(c2)
    t, margin = (mu_a - mu_b) / c, trueskill.calc_draw_margin(env.draw_probability, 2, env) / c
    if ranks[0] == ranks[1]:
        v, w = env.v_draw(t, margin), env.w_draw(t, margin)
    else:
        v, w = env.v_win(t, margin), env.w_win(t, margin)
    new_a = (mu_a + var_a / c * v, math.sqrt(var_a * (1.0 - var_a / c2 * w)))
    new_b = (mu_b - var_b / c * v, math.sqrt(var_b * (1.0 - var_b / c2 * w)))
    return [new_a, new_b] if first == 0 else [new_b, new_a]


@settings(max_examples=300, deadline=None)
@given(st.one_of(rating, extreme), st.one_of(rating, extreme),
       st.sampled_from([(0, 1), (1, 0), (0, 0), (2, 2)]))
def test_duels_are_the_closed_form_bit_for_bit(a: tuple[float, float], b: tuple[float, float],
                                               ranks: tuple[int, int]) -> None:
    """The kernel's duel computes the closed form in the same operations and order as the
    Python formula: the same doubles, FloatingPointError where the package's v or w gives
    up."""
    assert _outcome(lambda: TrueSkillModel().rate([a, b], ranks)) == _outcome(
        lambda: _closed_form_duel(a, b, ranks))


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
    for ranks in ([0, 0], [0, 0, 1], [1, 0, 0]):  # a draw can be too unlikely as well
        with pytest.raises(FloatingPointError):
            TrueSkillModel(engine="package").rate(ratings[: len(ranks)], ranks)
        with pytest.raises(FloatingPointError, match=r"ratings \(0.000, 0.500\), \(400.000"):
            TrueSkillModel().rate(ratings[: len(ranks)], ranks)


def test_arithmetic_errors_are_those_of_python_arithmetic() -> None:
    """Ratings no game produces raise what the same formulas raise in Python arithmetic."""
    with pytest.raises(ZeroDivisionError, match="cannot be raised to a negative power"):
        TrueSkillModel().rate([(25.0, 0.0), (25.0, 1.0), (25.0, 1.0)], [0, 1, 2])
    with pytest.raises(OverflowError):  # sigma ** -2 overflows, in the package too
        TrueSkillModel().rate([(25.0, 1e-200), (25.0, 1.0), (25.0, 1.0)], [0, 1, 2])
