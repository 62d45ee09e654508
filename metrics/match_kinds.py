"""The three match kinds of the Illustrious report, defined once for every package.

- ``fixed`` [Fixed-Characteristics]: one character prompt, two checkpoints, same seed; a
  draw and "both bad" are allowed.
- ``free`` [Free-prompt duel]: a free prompt (a voter may type one), two checkpoints, no draw;
  "both bad" is allowed.
- ``ffa`` [Free-for-All, 1 vs 1 vs 1 vs 1]: one prompt, four checkpoints; the voter picks the
  best image or ranks all four, with no draw and no "both bad".

:data:`KINDS` says, per kind, how many images a match shows, which answers a vote may give
(positions, ``tie``, ``both_bad``, a full ranking) and how the voting UI labels them; the vote
path, the UI, the demo voters and the simulator read it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

from metrics.errors import InputError
from metrics.outcomes import BOTH_BAD, TIE

__all__ = ["KINDS", "MATCH_KINDS", "MATCH_SIZES", "TYPED_PROMPT_KIND", "MatchKind",
           "MatchKindSpec", "check_kind", "check_winner", "ranking_kinds", "spec"]

MatchKind = Literal["fixed", "free", "ffa"]
MATCH_KINDS: tuple[MatchKind, ...] = get_args(MatchKind)


@dataclass(frozen=True)
class MatchKindSpec:
    """What one kind of match shows and what a vote on it may say.

    ``ties``: a draw (``tie``) is an answer; ``both_bad``: "both bad" is an answer;
    ``rankings``: a full ranking of every image is an answer; ``typed_prompts``: a voter may
    bring their own prompt; ``per_character``: prompts name a character (and its board).
    """

    name: MatchKind
    label: str
    noun: str
    size: int
    ties: bool
    both_bad: bool
    rankings: bool
    typed_prompts: bool = False
    per_character: bool = False

    @property
    def answers(self) -> tuple[str, ...]:
        """The non-position answers a vote may give (``tie``, ``both_bad``)."""
        return ((TIE,) if self.ties else ()) + ((BOTH_BAD,) if self.both_bad else ())

    def position_label(self, position: int) -> str:
        """How a position is named on screen: A/B in a duel, 1-4 in a larger match."""
        return "AB"[position] if self.size == 2 else str(position + 1)

    @property
    def buttons(self) -> tuple[tuple[str, str, int | str], ...]:
        """The voting UI's buttons: (label, API suffix, winner value), positions first."""
        picks = tuple(
            (f"{self.position_label(p)} is better" if self.size == 2
             else f"Best: {self.position_label(p)}", self.position_label(p).lower(), p)
            for p in range(self.size)
        )
        extra = {TIE: ("Draw", TIE, TIE), BOTH_BAD: ("Both bad", BOTH_BAD, BOTH_BAD)}
        return picks + tuple(extra[a] for a in self.answers)


KINDS: dict[str, MatchKindSpec] = {
    s.name: s
    for s in (
        MatchKindSpec("fixed", "Fixed character", "fixed-character duel", 2, ties=True,
                      both_bad=True, rankings=False, per_character=True),
        MatchKindSpec("free", "Free prompt", "free-prompt duel", 2, ties=False, both_bad=True,
                      rankings=False, typed_prompts=True),
        MatchKindSpec("ffa", "Four-way", "four-way match", 4, ties=False, both_bad=False,
                      rankings=True),
    )
}
# The kind whose matches may show a prompt a voter typed (stored as a prompt of this kind).
TYPED_PROMPT_KIND: str = next(name for name, s in KINDS.items() if s.typed_prompts)
# How many checkpoints one match of each kind shows.
MATCH_SIZES: dict[str, int] = {name: s.size for name, s in KINDS.items()}


def check_kind(kind: str, what: str = "match kind") -> MatchKind:
    """``kind`` if it is a match kind; else an InputError naming the input and the choices."""
    if kind not in MATCH_KINDS:
        raise InputError(f"{what}: expected one of {', '.join(MATCH_KINDS)}, got {kind!r}")
    return kind  # type: ignore[return-value]


def spec(kind: str) -> MatchKindSpec:
    """The registry entry of ``kind`` (an InputError lists the kinds)."""
    return KINDS[check_kind(kind)]


def ranking_kinds() -> str:
    """The kinds whose votes may be a full ranking, as words (``four-way match``)."""
    return " or ".join(s.noun for s in KINDS.values() if s.rankings)


def check_winner(kind: str, winner: object) -> tuple[str, int | None]:
    """``(outcome, winner position)`` of a vote's ``winner`` on a match of ``kind``: a
    position gives ``("win", position)``, an allowed answer ``(answer, None)``; an InputError
    says what this kind allows. Whether the position exists is the caller's check."""
    entry = spec(kind)
    if winner in (TIE, BOTH_BAD):
        if winner in entry.answers:
            return str(winner), None
        if winner == TIE and entry.size == 2:
            allowed = [entry.position_label(p) for p in range(entry.size)]
            allowed += [repr(a) for a in entry.answers]
            raise InputError(f"a {entry.noun} has no draw; pick {', '.join(allowed[:-1])} or "
                           f"{allowed[-1]}")
        raise InputError(f"winner {winner!r} is not allowed in a {entry.noun}")
    if isinstance(winner, str) and winner.strip().isdigit():
        winner = int(winner)
    if isinstance(winner, bool) or not isinstance(winner, int):
        raise InputError(f"winner must be a position, {TIE!r} or {BOTH_BAD!r}, got {winner!r}")
    return "win", winner

