"""Prompt sets: the prompts, seeds and settings every checkpoint in a pool is rendered with.

A prompt set is a YAML file::

    name: my-set
    safe: true                    # add / require the "general" rating tag (default true)
    negative_prompt: "worst quality, bad quality"
    seeds: [0, 1]
    width: 832                    # defaults: the report's 832x1216, 28 steps, CFG 6, Euler a
    height: 1216
    steps: 28
    cfg: 6
    sampler: Euler a
    second_pass: {strength: 0.5, scale: 1.5}     # optional high-resolution pass
    fixed:                        # Fixed-Characteristics prompts, each with its character
      - {character: hatsune miku, prompt: "1girl, hatsune miku, angel, masterpiece"}
    free:                         # free prompts (text, or structured tags)
      - "1boy, doctor, looking at viewer, masterpiece"
      - tags: {person_count: [1girl], general: [smile], quality: [masterpiece]}
    ffa:                          # prompts for 1 vs 1 vs 1 vs 1 matches
      - "1girl, solo, upper body, best quality"

A prompt is given as text or as ``tags`` (the fields of ``generation.prompts.PromptFields``,
joined in the report's order). Every mistake is reported in one line naming the file and the
field, e.g. ``prompt set sets/a.yaml: 'fixed[2].character': expected a non-empty string``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from importlib import resources
from pathlib import Path
from typing import Any

from generation.errors import GenerationError
from generation.pipeline import DEFAULT_CFG, DEFAULT_SIZE, DEFAULT_STEPS, RenderSettings, SecondPass
from generation.prompts import PromptFields, apply_safe_mode, build_prompt, split_tags
from generation.samplers import DEFAULT_SAMPLER
from metrics.match_kinds import MATCH_KINDS, MatchKind

__all__ = [
    "KINDS",
    "PromptEntry",
    "PromptSet",
    "default_prompt_set",
    "load_prompt_set",
    "parse_prompt_set",
]

Kind = MatchKind
KINDS = MATCH_KINDS
MAX_SEED = 2**32 - 1
_TOP_KEYS = {
    "name",
    "safe",
    "negative_prompt",
    "seeds",
    "width",
    "height",
    "steps",
    "cfg",
    "sampler",
    "second_pass",
    *KINDS,
}


@dataclass(frozen=True)
class PromptEntry:
    """One prompt of a set: its match kind, final text and (for ``fixed``) its character."""

    kind: Kind
    prompt: str
    character: str | None = None


@dataclass(frozen=True)
class PromptSet:
    """A validated prompt set: entries, seeds and the render settings they share."""

    name: str
    entries: tuple[PromptEntry, ...]
    seeds: tuple[int, ...]
    settings: RenderSettings
    safe: bool = True


class _Where:
    """Builds one-line errors that name the prompt set and the field."""

    def __init__(self, source: str) -> None:
        self.source = source

    def error(self, field: str, expected: str, got: object) -> GenerationError:
        return GenerationError(
            f"prompt set {self.source}: {field!r}: expected {expected}, got {got!r}"
        )


def _string(where: _Where, field: str, value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise where.error(field, "a non-empty string", value)
    return value.strip()


def _number(where: _Where, field: str, value: object, kind: type) -> Any:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise where.error(field, "an integer" if kind is int else "a number", value)
    if kind is int and not float(value).is_integer():
        raise where.error(field, "an integer", value)
    return kind(value)


def _tags(where: _Where, field: str, value: object) -> PromptFields:
    if not isinstance(value, Mapping):
        raise where.error(field, "a mapping of prompt fields", value)
    names = {f.name for f in fields(PromptFields)}
    unknown = sorted(set(value) - names)
    if unknown:
        raise where.error(f"{field}.{unknown[0]}", f"one of {', '.join(sorted(names))}", None)
    kwargs: dict[str, Any] = {}
    for key, item in value.items():
        if key == "rating":
            kwargs[key] = None if item is None else _string(where, f"{field}.rating", item)
        elif isinstance(item, str):
            kwargs[key] = (item,)
        elif isinstance(item, list) and all(isinstance(t, str) for t in item):
            kwargs[key] = tuple(item)
        else:
            raise where.error(f"{field}.{key}", "a tag or a list of tags", item)
    try:
        return PromptFields(**kwargs)
    except TypeError as exc:  # pragma: no cover - guarded by the key check above
        raise where.error(field, "prompt fields", value) from exc


def _entry(where: _Where, kind: Kind, index: int, raw: object, safe: bool) -> PromptEntry:
    field = f"{kind}[{index}]"
    character: str | None = None
    if isinstance(raw, str):
        text, tags = raw, None
    elif isinstance(raw, Mapping):
        allowed = {"prompt", "tags", "character"} if kind == "fixed" else {"prompt", "tags"}
        unknown = sorted(set(raw) - allowed)
        if unknown:
            raise where.error(f"{field}.{unknown[0]}", f"one of {', '.join(sorted(allowed))}", None)
        if ("prompt" in raw) == ("tags" in raw):
            raise where.error(field, "exactly one of 'prompt' and 'tags'", dict(raw))
        text, tags = raw.get("prompt"), raw.get("tags")
        if "character" in raw:
            character = _string(where, f"{field}.character", raw["character"])
    else:
        raise where.error(field, "a prompt string or a mapping", raw)
    if kind == "fixed" and character is None:
        raise where.error(f"{field}.character", "the character this prompt tests", None)
    try:
        if tags is not None:
            prompt = build_prompt(_tags(where, f"{field}.tags", tags), safe=safe)
        else:
            prompt = ", ".join(split_tags(_string(where, f"{field}.prompt", text)))
            if safe:
                prompt = apply_safe_mode(prompt, characters=[character] if character else [])
    except GenerationError as exc:
        raise GenerationError(f"prompt set {where.source}: {field!r}: {exc}") from exc
    if character is not None and character.lower() not in (t.lower() for t in split_tags(prompt)):
        raise where.error(
            f"{field}.prompt", f"a prompt that names its character {character!r}", prompt
        )
    return PromptEntry(kind=kind, prompt=prompt, character=character)


def _seeds(where: _Where, raw: object) -> tuple[int, ...]:
    if not isinstance(raw, list) or not raw:
        raise where.error("seeds", "a non-empty list of integers", raw)
    seeds = tuple(_number(where, f"seeds[{i}]", s, int) for i, s in enumerate(raw))
    for i, seed in enumerate(seeds):
        if not 0 <= seed <= MAX_SEED:
            raise where.error(f"seeds[{i}]", f"an integer in [0, {MAX_SEED}]", seed)
    if len(set(seeds)) != len(seeds):
        raise where.error("seeds", "distinct seeds", list(seeds))
    return seeds


def _settings(where: _Where, data: Mapping[str, Any]) -> RenderSettings:
    second: SecondPass | None = None
    raw_second = data.get("second_pass")
    try:
        if raw_second is not None:
            if not isinstance(raw_second, Mapping) or "strength" not in raw_second:
                raise where.error(
                    "second_pass", "a mapping with 'strength' (and 'scale')", raw_second
                )
            unknown = sorted(set(raw_second) - {"strength", "scale", "steps"})
            if unknown:
                raise where.error(f"second_pass.{unknown[0]}", "strength, scale or steps", None)
            second = SecondPass(
                strength=_number(where, "second_pass.strength", raw_second["strength"], float),
                scale=_number(where, "second_pass.scale", raw_second.get("scale", 1.5), float),
                steps=(
                    _number(where, "second_pass.steps", raw_second["steps"], int)
                    if raw_second.get("steps") is not None
                    else None
                ),
            )
        negative = data.get("negative_prompt", "")
        if not isinstance(negative, str):
            raise where.error("negative_prompt", "a string", negative)
        sampler = data.get("sampler", DEFAULT_SAMPLER)
        if not isinstance(sampler, str):
            raise where.error("sampler", "a sampler name", sampler)
        return RenderSettings(
            negative_prompt=", ".join(split_tags(negative)),
            steps=_number(where, "steps", data.get("steps", DEFAULT_STEPS), int),
            cfg=_number(where, "cfg", data.get("cfg", DEFAULT_CFG), float),
            sampler=sampler,
            width=_number(where, "width", data.get("width", DEFAULT_SIZE[0]), int),
            height=_number(where, "height", data.get("height", DEFAULT_SIZE[1]), int),
            second_pass=second,
        )
    except GenerationError as exc:
        if str(exc).startswith("prompt set "):
            raise
        raise GenerationError(f"prompt set {where.source}: {exc}") from exc


def parse_prompt_set(data: object, source: str = "<data>") -> PromptSet:
    """Validate already-loaded YAML ``data``; ``source`` names it in error messages."""
    where = _Where(source)
    if not isinstance(data, Mapping):
        raise GenerationError(f"prompt set {source}: expected a mapping at the top level")
    unknown = sorted(set(data) - _TOP_KEYS)
    if unknown:
        raise where.error(unknown[0], f"one of {', '.join(sorted(_TOP_KEYS))}", None)
    safe = data.get("safe", True)
    if not isinstance(safe, bool):
        raise where.error("safe", "true or false", safe)
    name = _string(where, "name", data.get("name", Path(source).stem))
    entries: list[PromptEntry] = []
    seen: dict[str, str] = {}
    for kind in KINDS:
        raw_list = data.get(kind) or []
        if not isinstance(raw_list, list):
            raise where.error(kind, "a list of prompts", raw_list)
        for i, raw in enumerate(raw_list):
            entry = _entry(where, kind, i, raw, safe)
            if entry.prompt in seen:
                raise where.error(
                    f"{kind}[{i}]", f"a prompt not already in {seen[entry.prompt]}", entry.prompt
                )
            seen[entry.prompt] = f"{kind}[{i}]"
            entries.append(entry)
    if not entries:
        raise where.error("fixed/free/ffa", "at least one prompt", None)
    return PromptSet(
        name=name,
        entries=tuple(entries),
        seeds=_seeds(where, data.get("seeds", [0])),
        settings=_settings(where, data),
        safe=safe,
    )


def load_prompt_set(path: Path) -> PromptSet:
    """Read and validate the prompt set YAML file at ``path``."""
    import yaml

    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise GenerationError(f"prompt set {path} could not be read ({exc.strerror})") from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        first = " ".join(str(exc).split())
        raise GenerationError(f"prompt set {path} is not valid YAML ({first})") from exc
    return parse_prompt_set(data, str(path))


def default_prompt_set() -> PromptSet:
    """The set shipped with the package, built from the prompts quoted in the report."""
    ref = resources.files("generation") / "prompt_sets" / "default.yaml"
    with resources.as_file(ref) as path:
        return load_prompt_set(Path(path))
