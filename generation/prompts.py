"""Tag prompts in the order the Illustrious technical report trains on, built and parsed.

Park et al., "Illustrious: an Open Advanced Illustration Model" (Onoma AI Research, 2024,
arXiv:2409.19946) captions its training images with Danbooru tags in a fixed order: person
count, character names, rating, general tags, artist, a quality tag for the image's score
range, and a year modifier. Prompts in the same order are what the model answers best, and
the report recommends the ``general`` rating tag for simple safety control. This module is
the one place that builds such a prompt (``build_prompt``), reads one back (``parse_prompt``)
and applies the safe mode (``apply_safe_mode``).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, fields

from generation.errors import GenerationError

__all__ = [
    "QUALITY_TAGS",
    "RATING_TAGS",
    "SAFE_RATING",
    "YEAR_TAGS",
    "PromptFields",
    "apply_safe_mode",
    "build_prompt",
    "is_person_count_tag",
    "parse_prompt",
    "split_tags",
]

# The report's vocabularies, lowest to highest.
QUALITY_TAGS: tuple[str, ...] = (
    "worst quality",
    "bad quality",
    "average quality",
    "good quality",
    "best quality",
    "masterpiece",
)
YEAR_TAGS: tuple[str, ...] = ("oldest", "old", "modern", "recent", "newest")
RATING_TAGS: tuple[str, ...] = ("general", "sensitive", "questionable", "explicit")
SAFE_RATING = "general"

# Danbooru's person-count tags: 1girl, 2boys, 6+others, multiple girls, no humans.
_PERSON_COUNT = re.compile(r"^(?:[1-5]|6\+|multiple )(?:girl|boy|other)s?$|^no humans$")


def is_person_count_tag(tag: str) -> bool:
    """Whether ``tag`` is a Danbooru person-count tag such as ``1girl`` or ``2boys``."""
    return _PERSON_COUNT.match(tag.lower()) is not None


def split_tags(prompt: str) -> list[str]:
    """Split a comma-separated tag prompt into stripped, non-empty tags (a newline is a comma)."""
    return [t for t in (" ".join(p.split()) for p in re.split(r"[,\n]", prompt)) if t]


@dataclass(frozen=True)
class PromptFields:
    """The structured parts of a tag prompt, one attribute per slot of the report's order."""

    person_count: tuple[str, ...] = ()
    characters: tuple[str, ...] = ()
    rating: str | None = None
    general: tuple[str, ...] = ()
    artists: tuple[str, ...] = ()
    quality: tuple[str, ...] = ()
    year: tuple[str, ...] = ()


def _reserved_kind(tag: str) -> str | None:
    low = tag.lower()
    if low in RATING_TAGS:
        return "a rating tag"
    if low in QUALITY_TAGS:
        return "a quality tag"
    if low in YEAR_TAGS:
        return "a year tag"
    if is_person_count_tag(low):
        return "a person-count tag"
    return None


def _check_fields(f: PromptFields) -> None:
    seen: dict[str, str] = {}
    for fld in fields(PromptFields):
        value = getattr(f, fld.name)
        tags = () if value is None else ((value,) if isinstance(value, str) else value)
        for tag in tags:
            if not isinstance(tag, str) or not tag or tag != " ".join(tag.split()):
                raise GenerationError(
                    f"prompt field {fld.name!r}: expected non-empty tags without leading, "
                    f"trailing or repeated whitespace, got {tag!r}"
                )
            if "," in tag:
                raise GenerationError(
                    f"prompt field {fld.name!r}: tag {tag!r} contains a comma; give one tag "
                    "per item"
                )
            low = tag.lower()
            if low in seen:
                raise GenerationError(
                    f"prompt field {fld.name!r}: tag {tag!r} is already in field {seen[low]!r}"
                )
            seen[low] = fld.name
    _check_vocab(
        "person_count",
        f.person_count,
        lambda t: t == t.lower() and is_person_count_tag(t),
        "1girl, 2boys, no humans",
    )
    _check_vocab("quality", f.quality, QUALITY_TAGS.__contains__, ", ".join(QUALITY_TAGS))
    _check_vocab("year", f.year, YEAR_TAGS.__contains__, ", ".join(YEAR_TAGS))
    if f.rating is not None and f.rating not in RATING_TAGS:
        raise GenerationError(
            f"prompt field 'rating': expected one of {', '.join(RATING_TAGS)}, got {f.rating!r}"
        )
    for name in ("characters", "general", "artists"):
        for tag in getattr(f, name):
            kind = _reserved_kind(tag)
            if kind is not None:
                raise GenerationError(
                    f"prompt field {name!r}: {tag!r} is {kind}; put it in its own field"
                )


def _check_vocab(
    name: str, tags: tuple[str, ...], ok: Callable[[str], bool], expected: str
) -> None:
    for tag in tags:
        if not ok(tag):
            raise GenerationError(f"prompt field {name!r}: expected one of {expected}, got {tag!r}")


def build_prompt(f: PromptFields, *, safe: bool = False) -> str:
    """Join the fields into a prompt in the report's tag order (Park et al. 2024, sec. 3).

    Order: person count, character names, rating, general tags, artist, quality tag, year.
    With ``safe=True`` the rating must be ``general``; a missing rating becomes ``general``.
    """
    _check_fields(f)
    rating = f.rating
    if safe:
        rating = _safe_rating(rating, "prompt field 'rating'")
    parts = [
        *f.person_count,
        *f.characters,
        *((rating,) if rating else ()),
        *f.general,
        *f.artists,
        *f.quality,
        *f.year,
    ]
    return ", ".join(parts)


def _safe_rating(rating: str | None, where: str) -> str:
    if rating is not None and rating != SAFE_RATING:
        raise GenerationError(
            f"{where}: safe mode needs the {SAFE_RATING!r} rating tag, got {rating!r}"
        )
    return SAFE_RATING


def parse_prompt(
    prompt: str, *, characters: Iterable[str] = (), artists: Iterable[str] = ()
) -> PromptFields:
    """Read a comma-separated tag prompt back into its fields.

    Vocabulary tags (person count, rating, quality, year) are found by name wherever they
    are. Character and artist names look like any other tag, so they are found by the names
    passed in ``characters`` and ``artists`` and, in a prompt in the report's order, by
    position: the tags between the person count and the rating tag are characters.
    Everything else is a general tag. ``parse_prompt(build_prompt(f), artists=f.artists)``
    gives ``f`` back.
    """
    tags = split_tags(prompt)
    known_chars = {c.lower() for c in characters}
    known_artists = {a.lower() for a in artists}
    lows = [t.lower() for t in tags]

    ratings = [t for t in lows if t in RATING_TAGS]
    if len(ratings) > 1:
        raise GenerationError(
            f"prompt {prompt!r}: expected at most one rating tag, got {', '.join(ratings)}"
        )
    positional_chars: set[int] = set()
    if ratings:
        r_at = lows.index(ratings[0])
        lead = 0
        while lead < len(tags) and is_person_count_tag(lows[lead]):
            lead += 1
        if all(_reserved_kind(t) is None for t in lows[lead:r_at]):
            positional_chars = set(range(lead, r_at))

    person, chars, general, arts, quality, year = [], [], [], [], [], []
    for i, (tag, low) in enumerate(zip(tags, lows, strict=True)):
        if low in RATING_TAGS:
            continue
        if is_person_count_tag(low):
            person.append(low)
        elif low in QUALITY_TAGS:
            quality.append(low)
        elif low in YEAR_TAGS:
            year.append(low)
        elif i in positional_chars or low in known_chars:
            chars.append(tag)
        elif low in known_artists:
            arts.append(tag)
        else:
            general.append(tag)
    return PromptFields(
        person_count=tuple(person),
        characters=tuple(chars),
        rating=ratings[0] if ratings else None,
        general=tuple(general),
        artists=tuple(arts),
        quality=tuple(quality),
        year=tuple(year),
    )


def apply_safe_mode(prompt: str, *, characters: Iterable[str] = ()) -> str:
    """Return ``prompt`` with the ``general`` rating tag the report recommends for safety.

    A prompt that already says ``general`` is returned unchanged; one without a rating gets
    ``general`` in its place in the report's order (after the person count and the
    characters, as given in ``characters``); any other rating is an error.
    """
    tags = split_tags(prompt)
    lows = [t.lower() for t in tags]
    ratings = [t for t in lows if t in RATING_TAGS]
    if ratings:
        if ratings != [SAFE_RATING]:
            raise GenerationError(
                f"prompt {prompt!r}: safe mode needs the {SAFE_RATING!r} rating tag only, "
                f"got {', '.join(ratings)}"
            )
        return prompt
    known_chars = {c.lower() for c in characters}
    at = 0
    while at < len(tags) and (is_person_count_tag(lows[at]) or lows[at] in known_chars):
        at += 1
    return ", ".join([*tags[:at], SAFE_RATING, *tags[at:]])
