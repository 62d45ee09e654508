"""The robust board: plain Bradley-Terry when voters are honest, voter bootstrap, attacks held."""

from __future__ import annotations

import math
import random
from dataclasses import replace

import numpy as np

from metrics.attack import AttackConfig
from metrics.bradley_terry import bradley_terry
from metrics.manipulation import attack_outcome
from metrics.outcomes import VoteRecord
from metrics.reliability import VoterMatch
from metrics.robust import RobustParams, robust_bradley_terry
from metrics.simulate import SimulationConfig, VoterModel


def _honest(rng: random.Random, theta: dict[int, float], voters: int, votes: int,
            taste: float = 0.0) -> list[VoterMatch]:
    """Bradley-Terry voters (duels and best-of-four); ``taste``: sd of each voter's own
    offsets to the strengths, which makes one voter's votes depend on each other."""
    ids = sorted(theta)
    own = {v: {c: rng.gauss(0.0, taste) for c in ids} for v in range(voters)}
    shown = []
    for i in range(votes):
        v = rng.randrange(voters)
        size = 2 if i % 2 else 4
        group = tuple(rng.sample(ids, size))
        weights = [math.exp(theta[c] + own[v][c]) for c in group]
        best = rng.choices(range(size), weights=weights)[0]
        kind = "fixed" if size == 2 else "ffa"
        shown.append(VoterMatch(v, kind, group, VoteRecord(group, winner=best), 5.0))
    return shown


def test_with_honest_reliable_voters_it_is_plain_bradley_terry_within_the_intervals() -> None:
    rng = random.Random(21)
    theta = {c: rng.gauss(0.0, 1.0) for c in range(1, 13)}
    shown = _honest(rng, theta, voters=150, votes=5000)
    robust = robust_bradley_terry(shown, RobustParams(rounds=60))
    plain = bradley_terry([m.vote for m in shown if m.vote is not None], rounds=60)
    by_id = {row.checkpoint_id: row for row in plain.ratings}
    assert robust.flagged_voters == 0
    for row in robust.ratings:
        other = by_id[row.checkpoint_id]
        assert row.lower <= other.rating <= row.upper, (row, other)
        assert other.lower <= row.rating <= other.upper, (row, other)
    assert [r.checkpoint_id for r in robust.ratings][:3] == [r.checkpoint_id
                                                            for r in plain.ratings][:3]
    for term in robust.position:  # no position bias was simulated
        assert term.lower <= 0.0 <= term.upper, term


def test_intervals_resample_voters_not_votes() -> None:
    """Voters with their own tastes: votes of one voter move together, so the bootstrap by
    voter gives wider intervals than one that treats votes as independent."""
    rng = random.Random(22)
    theta = {c: rng.gauss(0.0, 1.0) for c in range(1, 11)}
    shown = _honest(rng, theta, voters=12, votes=4000, taste=1.0)
    robust = robust_bradley_terry(shown, RobustParams(rounds=80))
    plain = bradley_terry([m.vote for m in shown if m.vote is not None], rounds=80)
    by_voter = np.mean([r.upper - r.lower for r in robust.ratings])
    by_vote = np.mean([r.upper - r.lower for r in plain.ratings])
    assert by_voter > 1.5 * by_vote


def test_same_seed_same_board() -> None:
    rng = random.Random(23)
    theta = {c: rng.gauss(0.0, 1.0) for c in range(1, 8)}
    shown = _honest(rng, theta, voters=30, votes=600)
    first = robust_bradley_terry(shown, RobustParams(rounds=20, seed=4))
    again = robust_bradley_terry(shown, RobustParams(rounds=20, seed=4))
    assert first.ratings == again.ratings


def test_an_attack_that_moves_plain_bradley_terry_does_not_move_the_robust_board() -> None:
    config = SimulationConfig(
        checkpoints=20, voters=200, strategy="active", kinds={"fixed": 1.0, "ffa": 1.0},
        voter=VoterModel(lapse=0.05), random_voters=0.15, skip_rate=0.05, max_votes=3000,
        attack=AttackConfig(share=0.05, strategy="target_only", target_place=12),
    )
    outcome = attack_outcome(config, seed=2)
    assert outcome.target_place - outcome.plain_place >= 3
    assert outcome.target_place - outcome.robust_place <= 1
    assert outcome.attacker_ids_flagged >= 0.8 * outcome.attacker_ids
    assert outcome.honest_flagged <= 0.02 * outcome.honest_voters
    # Without the attack the same arena's target stays near its place on both boards.
    quiet = attack_outcome(replace(config, attack=replace(config.attack, share=0.0)), seed=2)
    assert abs(quiet.target_place - quiet.plain_place) <= 2
    assert quiet.attacker_votes == 0
