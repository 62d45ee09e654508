"""The one mapping from an arena vote to the outcomes every rating system learns from.

A vote, as the rating systems see it, is a :class:`VoteRecord`: the checkpoints shown (by
position), and either a ``winner`` or a full ``ranking`` of positions. The match kinds of the
Illustrious technical report (Onoma AI) map as follows:

- duel (Fixed-Characteristics or free-prompt, two checkpoints): ``winner`` is a position
  (A = 0, B = 1), ``"tie"`` or ``"both_bad"``;
- four-way Free-for-All, best of four: ``winner`` is the position of the best image. The winner
  beats each of the other three; nothing is learned about the order among the three;
- four-way Free-for-All, full ranking: ``ranking`` lists all positions best first; every
  ordered pair is an outcome.

"Both bad" is a draw by default (both images failed equally); with ``both_bad_as_draw=False`` it
teaches nothing and yields no outcome. Ties and "both bad" exist only for duels.

:func:`pairwise` feeds Elo and Bradley-Terry; :func:`trueskill_games` feeds TrueSkill.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, NamedTuple

from metrics.errors import InputError

__all__ = [
    "BOTH_BAD",
    "TIE",
    "InvalidVote",
    "PairOutcome",
    "RankedGame",
    "VoteRecord",
    "pairwise",
    "placements",
    "trueskill_games",
]

TIE: Literal["tie"] = "tie"
BOTH_BAD: Literal["both_bad"] = "both_bad"

Winner = int | Literal["tie", "both_bad"]
_DRAWS = frozenset((TIE, BOTH_BAD))


class InvalidVote(InputError):
    """A vote that cannot be mapped to outcomes (the message names the field and the problem)."""


class PairOutcome(NamedTuple):
    """One pairwise result: ``score_a`` is 1 if ``a`` won, 0.5 for a draw (never 0: the winner
    is always put first)."""

    a: int
    b: int
    score_a: float


class RankedGame(NamedTuple):
    """One TrueSkill game: checkpoints and their ranks (0 best, equal ranks draw)."""

    checkpoints: tuple[int, ...]
    ranks: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class VoteRecord:
    """A vote as rating systems see it.

    ``participants`` are checkpoint ids by shown position (2 for a duel, 4 for a free-for-all);
    exactly one of ``winner`` (a position, ``"tie"`` or ``"both_bad"``) and ``ranking``
    (positions, best first, all of them) is set; ``time`` is the vote's unix time in seconds.
    """

    participants: tuple[int, ...]
    winner: Winner | None = None
    ranking: tuple[int, ...] | None = None
    time: float = 0.0

    def __post_init__(self) -> None:
        if not isinstance(self.participants, tuple | list):
            raise InvalidVote(
                f"participants: expected a list of checkpoint ids, got {self.participants!r}"
            )
        object.__setattr__(self, "participants", tuple(self.participants))
        n = len(self.participants)
        if n < 2:
            raise InvalidVote(f"participants: expected at least 2 checkpoints, got {n}")
        for checkpoint in self.participants:
            if isinstance(checkpoint, bool) or not isinstance(checkpoint, int):
                raise InvalidVote(
                    f"participants: expected checkpoint ids (int), got {checkpoint!r}"
                )
        if len(set(self.participants)) != n:
            raise InvalidVote(
                f"participants: each checkpoint may be shown once, got {list(self.participants)}"
            )
        if not math.isfinite(self.time):
            raise InvalidVote(f"time: expected a finite unix time, got {self.time!r}")
        if (self.winner is None) == (self.ranking is None):
            raise InvalidVote("vote: expected exactly one of winner or ranking")
        if self.ranking is not None:
            if not isinstance(self.ranking, tuple | list):
                raise InvalidVote(f"ranking: expected a list of positions, got {self.ranking!r}")
            ranking = tuple(self.ranking)
            object.__setattr__(self, "ranking", ranking)
            if len(ranking) != n:
                raise InvalidVote(
                    f"ranking: expected all {n} positions best first, got {len(ranking)}"
                )
            for position in ranking:
                _check_position("ranking", position, n)
            if len(set(ranking)) != n:
                raise InvalidVote(f"ranking: positions repeat in {list(ranking)}")
        elif isinstance(self.winner, str):
            if self.winner not in _DRAWS:
                raise InvalidVote(
                    f"winner: expected a position 0..{n - 1}, 'tie' or 'both_bad', "
                    f"got {self.winner!r}"
                )
            if n != 2:
                raise InvalidVote(
                    f"winner: {self.winner!r} is only allowed in a duel, this match shows {n}"
                )
        else:
            _check_position("winner", self.winner, n)

    @property
    def is_draw(self) -> bool:
        """True for a tie or a "both bad" vote."""
        return self.winner in _DRAWS


def _check_position(field: str, position: object, n: int) -> None:
    if isinstance(position, bool) or not isinstance(position, int):
        raise InvalidVote(
            f"{field}: expected a position 0..{n - 1}, 'tie' or 'both_bad', got {position!r}"
            if field == "winner"
            else f"{field}: expected positions 0..{n - 1}, got {position!r}"
        )
    if not 0 <= position < n:
        raise InvalidVote(f"{field}: unknown position {position}, expected 0..{n - 1}")


def _counts(vote: VoteRecord, both_bad_as_draw: bool) -> bool:
    return vote.winner != BOTH_BAD or both_bad_as_draw


def pairwise(vote: VoteRecord, both_bad_as_draw: bool = True) -> list[PairOutcome]:
    """Pairwise outcomes of a vote (the winner first, ``score_a`` 1.0; draws 0.5 each way)."""
    if not _counts(vote, both_bad_as_draw):
        return []
    p = vote.participants
    if vote.ranking is not None:
        order = [p[i] for i in vote.ranking]
        return [
            PairOutcome(order[i], order[j], 1.0)
            for i in range(len(order))
            for j in range(i + 1, len(order))
        ]
    if vote.is_draw:
        return [PairOutcome(p[0], p[1], 0.5)]
    best = p[vote.winner]  # type: ignore[index]
    return [PairOutcome(best, other, 1.0) for other in p if other != best]


def placements(vote: VoteRecord, both_bad_as_draw: bool = True) -> dict[int, str]:
    """How each participant counts in win/draw/loss tallies: ``"win"`` for the winner (or the
    first of a ranking), ``"draw"`` for both sides of a tie, ``"loss"`` otherwise. Empty when the
    vote teaches nothing (both bad, not counted)."""
    if not _counts(vote, both_bad_as_draw):
        return {}
    if vote.is_draw:
        return {c: "draw" for c in vote.participants}
    best = vote.ranking[0] if vote.ranking is not None else vote.winner
    return {c: ("win" if i == best else "loss") for i, c in enumerate(vote.participants)}


def trueskill_games(vote: VoteRecord, both_bad_as_draw: bool = True) -> list[RankedGame]:
    """TrueSkill games for a vote, all to be rated from the pre-vote ratings.

    A duel or a full ranking is one game whose ranks follow the vote (positions keep their shown
    order). A best-of-four vote is the winner against each other participant, one duel each:
    ranking the three others equal would claim they drew, which the voter never said.
    :class:`metrics.trueskill_fast.TrueSkillModel` rates those duels from the same pre-vote
    ratings and multiplies the winner's three likelihood messages.
    """
    if not _counts(vote, both_bad_as_draw):
        return []
    p = vote.participants
    if vote.ranking is not None:
        ranks = [0] * len(p)
        for place, position in enumerate(vote.ranking):
            ranks[position] = place
        return [RankedGame(p, tuple(ranks))]
    if vote.is_draw:
        return [RankedGame(p, (0, 0))]
    best: int = vote.winner  # type: ignore[assignment]
    if len(p) == 2:
        return [RankedGame(p, (0, 1) if best == 0 else (1, 0))]
    return [RankedGame((p[best], other), (0, 1)) for other in p if other != p[best]]
