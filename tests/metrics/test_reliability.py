"""Crowd-BT reliability and behaviour signals: recovered on simulated voters of known kind."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest
from scipy.stats import binom, hypergeom, spearmanr

from metrics.factor_bt import comparisons_of
from metrics.outcomes import VoteRecord
from metrics.reliability import (
    ReliabilityParams,
    VoterMatch,
    _skip_tails,
    _tails,
    fit_crowd_bt,
    voter_signals,
)


def _duel(rng: random.Random, theta: dict[int, float], pair: tuple[int, int],
          eta: float) -> VoteRecord:
    """Crowd-BT's voter: the Bradley-Terry verdict, reported truthfully with probability eta."""
    a, b = pair
    a_wins = rng.random() < 1.0 / (1.0 + math.exp(theta[b] - theta[a]))
    if rng.random() > eta:
        a_wins = not a_wins
    return VoteRecord(pair, winner=0 if a_wins else 1)


def test_crowd_bt_recovers_known_voter_reliabilities() -> None:
    rng = random.Random(7)
    theta = {c: rng.gauss(0.0, 1.5) for c in range(1, 16)}
    etas = [0.5 + 0.5 * rng.random() for _ in range(60)]
    votes, voter = [], []
    for k, eta in enumerate(etas):
        for _ in range(80):
            pair = tuple(rng.sample(sorted(theta), 2))
            votes.append(("fixed", _duel(rng, theta, pair, eta)))  # type: ignore[arg-type]
            voter.append(k)
    index = {c: i for i, c in enumerate(sorted(theta))}
    c = comparisons_of(votes, index)
    fit = fit_crowd_bt(c, np.asarray(voter)[c.vote], len(index), len(etas))
    rho = spearmanr(fit.eta, etas).statistic
    assert rho > 0.7, rho
    # Strengths stay on the plain Bradley-Terry scale: the order is the truth's.
    assert spearmanr(fit.params[:15], [theta[c] for c in sorted(theta)]).statistic > 0.9


def test_exact_tails_match_scipy() -> None:
    k = np.array([0, 3, 7, 10])
    q = np.array([0.1, 0.2, 0.5, 0.9])
    assert _tails(k, 10, q) == pytest.approx(binom.sf(k - 1, 10, q))
    k, m = np.array([0, 2, 5, 5]), np.array([5, 10, 5, 30])
    assert _skip_tails(k, 50, m, 5) == pytest.approx(hypergeom.sf(k - 1, 50, m, 5))


def _honest_board(rng: random.Random, voters: int = 120, matches: int = 40,
                  skip: float = 0.1) -> list[VoterMatch]:
    shown = []
    for v in range(voters):
        for _ in range(matches):
            pair = tuple(rng.sample(range(1, 13), 2))
            vote = None if rng.random() < skip else VoteRecord(pair, winner=rng.randrange(2))
            shown.append(VoterMatch(v, "fixed", pair, vote, 5.0 * math.exp(rng.gauss(0, 0.5))))
    return shown


def test_a_voter_who_votes_only_when_one_checkpoint_is_shown_is_flagged() -> None:
    rng = random.Random(6)
    shown = _honest_board(rng)
    for _ in range(60):  # the rigger: votes for checkpoint 5 when shown, skips the rest
        pair = tuple(rng.sample(range(1, 13), 2))
        vote = VoteRecord(pair, winner=pair.index(5)) if 5 in pair else None
        shown.append(VoterMatch("rigger", "fixed", pair, vote, 1.0 if vote else None))
    signals = voter_signals(shown).voters
    rigger = signals["rigger"]
    assert rigger.flagged and rigger.focus == 5
    assert any("checkpoint 5" in reason for reason in rigger.reasons)
    assert any("answers in" in reason for reason in rigger.reasons)
    assert not [v for v, s in signals.items() if v != "rigger" and s.flagged]


def test_an_attack_spread_over_many_ids_is_found_by_the_pooled_test() -> None:
    rng = random.Random(4)
    shown = _honest_board(rng)
    for attacker in range(15):  # three votes each: too few to flag one id on its own
        votes = 0
        while votes < 3:
            pair = tuple(rng.sample(range(1, 13), 2))
            vote = VoteRecord(pair, winner=pair.index(9)) if 9 in pair else None
            votes += vote is not None
            shown.append(VoterMatch(f"a{attacker}", "fixed", pair, vote))
    board = voter_signals(shown)
    assert list(board.selective) == [9]
    flagged = {v for v, s in board.voters.items() if s.flagged}
    assert len({v for v in flagged if str(v).startswith("a")}) >= 10
    assert not [v for v in flagged if not str(v).startswith("a")]


def test_honest_voters_who_skip_at_random_are_not_flagged() -> None:
    board = voter_signals(_honest_board(random.Random(5), skip=0.3),
                          ReliabilityParams(alpha=0.01))
    assert not board.selective
    assert not [v for v, s in board.voters.items() if s.flagged]
