"""What a prompt typed by a voter must satisfy before it is rendered and shown to everyone.

The arena serves the ``general`` rating only (the report's safe mode): a typed prompt gets the
``general`` tag, and is refused with a one-line reason when it carries another rating tag
(``sensitive``, ``questionable``, ``explicit``, ``nsfw``, ``rating:...``, ``r-18``, ...) or a
tag on the blocklist. The blocklist is a file the operator can replace
(``ARENA_PROMPT_BLOCKLIST``; the default ships as ``arena/prompt_blocklist.txt``).

Tags are compared after the spellings prompt syntax allows are undone: case, ``_`` for a
space, emphasis brackets and weights (``(nsfw:1.3)``, ``[nsfw]``, ``{nsfw}``), backslash
escapes. A blocklist entry matches a tag that is the entry or holds it as whole words.
"""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path

from arena.errors import UserError
from arena.settings import Settings
from generation.errors import GenerationError
from generation.prompts import SAFE_RATING, apply_safe_mode, split_tags

__all__ = ["DEFAULT_BLOCKLIST", "blocklist", "check_typed_prompt", "normalise_tag"]

DEFAULT_BLOCKLIST = Path(__file__).with_name("prompt_blocklist.txt")
# Rating words (Danbooru's four ratings and their common spellings), refused unless general.
_RATINGS = {"general", "sensitive", "questionable", "explicit", "nsfw"}
_GENERAL = {"general", "g", "safe", "sfw"}  # rating:safe is the older name of general
_RATING_TAG = re.compile(r"^(?:rating\s*[:_ ]\s*(?P<word>\w+)|(?P<bare>\w+))$")
_AGE_RATING = re.compile(r"^r\s*-?\s*1[58]\s*g?$")
_WEIGHT = re.compile(r":\s*-?\d+(?:\.\d*)?\s*$")


def normalise_tag(tag: str) -> str:
    """A tag as it is compared: lower case, '_' as a space, no emphasis brackets, weights or
    backslash escapes, single spaces."""
    text = tag.replace("\\", "").lower().replace("_", " ")
    text = re.sub(r"[()\[\]{}]", " ", text)
    text = _WEIGHT.sub("", text.strip())
    return " ".join(text.split())


def _rating(tag: str) -> str | None:
    """The rating a normalised tag states, if it is a rating tag."""
    if _AGE_RATING.match(tag):
        return tag
    found = _RATING_TAG.match(tag)
    if found is None:
        return None
    if found.group("word"):
        word = found.group("word")
        return SAFE_RATING if word in _GENERAL else word
    word = found.group("bare")
    return word if word in _RATINGS else None


@lru_cache(maxsize=8)
def _read_blocklist(path: str, stamp: tuple[int, int]) -> tuple[str, ...]:
    del stamp  # part of the cache key: a replaced file is read again
    entries = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        entry = normalise_tag(line.split("#", 1)[0])
        if entry:
            entries.append(entry)
    return tuple(entries)


def blocklist(settings: Settings) -> tuple[str, ...]:
    """The blocked tags in force (normalised), re-read when the file changes."""
    path = settings.prompt_blocklist or DEFAULT_BLOCKLIST
    try:
        st = path.stat()
        return _read_blocklist(str(path), (st.st_mtime_ns, st.st_size))
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"ARENA_PROMPT_BLOCKLIST {path}: cannot read it ({exc})") from None


def _blocked(tag: str, entries: tuple[str, ...]) -> str | None:
    padded = f" {tag} "
    for entry in entries:
        if f" {entry} " in padded:
            return entry
    return None


def check_typed_prompt(text: str, settings: Settings) -> str:
    """``text`` with the ``general`` rating tag (see :func:`apply_safe_mode`), or a
    :class:`UserError` naming the first tag that is not allowed."""
    entries = blocklist(settings)
    for tag in split_tags(text):
        plain = normalise_tag(tag)
        rating = _rating(plain)
        if rating is not None and rating != SAFE_RATING:
            raise UserError(f"this arena serves only the '{SAFE_RATING}' rating: the prompt "
                            f"carries the rating tag {tag.strip()[:60]!r}")
        hit = _blocked(plain, entries)
        if hit is not None:
            raise UserError(f"this arena does not render the tag {tag.strip()[:60]!r} "
                            f"(on the operator's blocklist as {hit!r})")
    try:
        return apply_safe_mode(text)
    except GenerationError as exc:  # e.g. two rating tags
        raise UserError(f"this arena serves only the '{SAFE_RATING}' rating: {exc}") from None
