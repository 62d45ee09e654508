"""Leaderboard boards, parsed and formatted in one place for every package.

A vote counts on the board of its match kind (``fixed``, ``free``, ``ffa``), on
``fixed/<character>`` when it is a Fixed-Characteristics vote about a character, and on
``overall`` (:func:`boards_for`).
"""

from __future__ import annotations

from dataclasses import dataclass

from metrics.errors import InputError
from metrics.match_kinds import KINDS, MATCH_KINDS

__all__ = ["CHARACTER_KIND", "OVERALL", "Board", "board_help", "board_name", "boards_for",
           "kind_boards", "parse_board"]

OVERALL = "overall"
# The match kind whose prompts name a character (its boards split per character).
CHARACTER_KIND: str = next(name for name, s in KINDS.items() if s.per_character)


@dataclass(frozen=True)
class Board:
    """A parsed board: ``kind`` None for overall; ``character`` only on a character board."""

    kind: str | None
    character: str | None = None

    @property
    def name(self) -> str:
        """The board's name, as stored and as users type it."""
        return board_name(self.kind, self.character)


def board_name(kind: str | None, character: str | None = None) -> str:
    """``overall``, ``<kind>`` or ``fixed/<character>``."""
    if kind is None:
        return OVERALL
    return f"{kind}/{character}" if character else kind


def kind_boards() -> tuple[str, ...]:
    """The overall board and one board per match kind, in that order."""
    return (OVERALL, *MATCH_KINDS)


def board_help() -> str:
    """The boards as a CLI help sentence."""
    return f"{', '.join(kind_boards())} or {CHARACTER_KIND}/<character>."


def parse_board(name: str, what: str = "board") -> Board:
    """The board called ``name``; else an InputError naming the input and the choices."""
    if name == OVERALL:
        return Board(None)
    if name in MATCH_KINDS:
        return Board(name)
    prefix = f"{CHARACTER_KIND}/"
    if name.startswith(prefix) and name.removeprefix(prefix):
        return Board(CHARACTER_KIND, name.removeprefix(prefix))
    raise InputError(f"{what}: expected {', '.join(kind_boards())} or "
                     f"{CHARACTER_KIND}/<character>, got {name!r}")


def boards_for(kind: str, character: str | None = None) -> tuple[str, ...]:
    """Boards a vote counts on: its kind, ``fixed/<character>`` for a fixed vote with a
    character, and ``overall``."""
    if kind not in MATCH_KINDS:
        raise InputError(f"match kind: expected one of {', '.join(MATCH_KINDS)}, got {kind!r}")
    if kind == CHARACTER_KIND and character:
        return (kind, board_name(kind, character), OVERALL)
    return (kind, OVERALL)
