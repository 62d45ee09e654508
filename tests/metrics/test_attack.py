"""The attacker model: what it votes, when it skips, and how reveals teach it."""

from __future__ import annotations

import random

import pytest

from metrics.attack import AttackConfig, Attacker
from metrics.errors import InputError

ORDER = list(range(1, 21))  # checkpoint ids, best first: place p is checkpoint p


def _attacker(**options: object) -> Attacker:
    return Attacker.against(AttackConfig(**options), ORDER)  # type: ignore[arg-type]


def test_target_and_rivals_follow_the_true_places() -> None:
    attacker = _attacker(target_place=12, rivals=3)
    assert attacker.target == 12
    assert attacker.rivals == {9, 10, 11}
    with pytest.raises(InputError, match="target_place"):
        _attacker(target_place=21)


def test_target_only_votes_for_the_target_and_skips_the_rest() -> None:
    rng = random.Random(0)
    attacker = _attacker(recognition=1.0)
    vote, recognised = attacker.answer("ffa", (3, 12, 5, 7), (0, 0, 0, 0), rng, 1.0)
    assert vote is not None and vote.winner == 1 and recognised
    vote, recognised = attacker.answer("fixed", (9, 10), (0, 0), rng, 1.0)
    assert vote is None and not recognised  # rivals mean nothing to target-only


def test_otherwise_random_votes_instead_of_skipping() -> None:
    rng = random.Random(1)
    attacker = _attacker(recognition=1.0, otherwise="random")
    winners = {attacker.answer("fixed", (1, 2), (0, 0), rng, 1.0)[0].winner  # type: ignore[union-attr]
               for _ in range(50)}
    assert winners == {0, 1}


def test_omnipresent_votes_a_rival_down() -> None:
    rng = random.Random(2)
    attacker = _attacker(recognition=1.0, strategy="omnipresent")
    for _ in range(20):
        vote, _ = attacker.answer("ffa", (10, 2, 15, 11), (0, 0, 0, 0), rng, 1.0)
        assert vote is not None and vote.winner in (1, 2)  # never rival 10 or 11


def test_a_revealed_image_is_recognised_for_sure() -> None:
    rng = random.Random(3)
    attacker = _attacker(recognition=0.0)
    assert attacker.answer("fixed", (12, 4), (7, 0), rng, 1.0)[0] is None
    attacker.reveal((12, 4), (7, 0))
    vote, _ = attacker.answer("fixed", (4, 12), (1, 7), rng, 2.0)
    assert vote is not None and vote.participants[vote.winner] == 12  # type: ignore[index]
    assert attacker.answer("fixed", (4, 12), (1, 8), rng, 3.0)[0] is None  # another image


def test_bad_parameters_name_the_field() -> None:
    with pytest.raises(InputError, match="attack share"):
        AttackConfig(share=1.5)
    with pytest.raises(InputError, match="attack strategy"):
        AttackConfig(strategy="everywhere")  # type: ignore[arg-type]
