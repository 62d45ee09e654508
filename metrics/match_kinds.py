"""The three match kinds of the Illustrious report, defined once for every package.

- ``fixed`` [Fixed-Characteristics]: one character prompt, two checkpoints, same seed.
- ``free`` [Free-prompt duel]: a free prompt, two checkpoints, no draw.
- ``ffa`` [Free-for-All, 1 vs 1 vs 1 vs 1]: one prompt, four checkpoints.
"""

from __future__ import annotations

from typing import Literal, get_args

__all__ = ["MATCH_KINDS", "MATCH_SIZES", "MatchKind", "check_kind"]

MatchKind = Literal["fixed", "free", "ffa"]
MATCH_KINDS: tuple[MatchKind, ...] = get_args(MatchKind)
# How many checkpoints one match of each kind shows.
MATCH_SIZES: dict[str, int] = {"fixed": 2, "free": 2, "ffa": 4}


def check_kind(kind: str, what: str = "match kind") -> MatchKind:
    """``kind`` if it is a match kind; else a ValueError naming the input and the choices."""
    if kind not in MATCH_KINDS:
        raise ValueError(f"{what}: expected one of {', '.join(MATCH_KINDS)}, got {kind!r}")
    return kind  # type: ignore[return-value]
