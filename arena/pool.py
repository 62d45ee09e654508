"""The image pool: importing images with their manifest rows, and counting what the pool holds.

Each image is imported on its own: its files are stored first (content-addressed, so a file
without a row is harmless and reused), then its Prompt and Image rows commit together.
Re-importing the same bytes changes nothing: an image is known by the sha256 of its file.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from tqdm import tqdm

from arena.db import Database
from arena.errors import UserError
from arena.image_store import (
    MAX_FILE_BYTES,
    MAX_PIXELS,
    StoredImage,
    image_files,
    original_path,
    store_image,
)
from arena.matches import prompt_hash
from arena.models import MATCH_KINDS, Checkpoint, Image, Prompt
from arena.pool_manifest import read_manifest
from arena.settings import Settings
from generation.manifest import MANIFEST_FIELDS
from metrics.file_hash import sha256_bytes, short_hash
from metrics.match_kinds import KINDS

__all__ = [
    "ImportReport",
    "Skipped",
    "import_dir",
    "import_records",
    "pool_stats",
]

# Text fields are checked against their column sizes (PostgreSQL enforces them, SQLite not).
SAMPLER_CHARS: int = Image.__table__.c.sampler.type.length
CHARACTER_CHARS: int = Prompt.__table__.c.character.type.length


@dataclass(frozen=True)
class Skipped:
    """A file (or manifest line) that was not imported, and why."""

    file: str
    reason: str


@dataclass
class ImportReport:
    """What an import did, by file name as the manifest wrote it."""

    imported: list[str] = field(default_factory=list)
    already_present: list[str] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when at least one listed image is in the pool now (new or already there)."""
        return bool(self.imported or self.already_present)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form for ``--json``."""
        return {
            "imported": self.imported,
            "already_present": self.already_present,
            "skipped": [{"file": s.file, "reason": s.reason} for s in self.skipped],
        }


class RowError(Exception):
    """Why one manifest row is skipped (the import goes on with the next)."""


@dataclass(frozen=True)
class PoolRecord:
    """A validated manifest row, completed from the image's ``parameters`` text."""

    checkpoint: str | None
    model_hash: str | None
    prompt: str
    negative_prompt: str
    kind: str
    character: str | None
    seed: int | None
    sampler: str | None
    steps: int | None
    cfg: float | None


def _as_int(value: Any, name: str, minimum: int, maximum: int = 2**31 - 1) -> int:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, str):
        with contextlib.suppress(ValueError):
            value = int(value.strip())
    if not isinstance(value, int) or isinstance(value, bool) or not minimum <= value <= maximum:
        raise RowError(
            f"field {name!r} is {value!r}; expected an integer from {minimum} to {maximum}"
        )
    return value


def _as_float(value: Any, name: str) -> float:
    if isinstance(value, bool):
        raise RowError(f"field {name!r} is {value!r}; expected a number")
    try:
        number = float(value.strip() if isinstance(value, str) else value)
    except (TypeError, ValueError):
        raise RowError(f"field {name!r} is {value!r}; expected a number") from None
    if not math.isfinite(number) or number < 0:
        raise RowError(f"field {name!r} is {value!r}; expected a non-negative number")
    return number


def _as_text(value: Any, name: str, limit: int | None = None) -> str:
    """Text with outer whitespace removed, at most ``limit`` characters (the column's size)."""
    if not isinstance(value, str | int | float) or isinstance(value, bool):
        raise RowError(f"field {name!r} is {value!r}; expected text")
    text = str(value).strip()
    if "\0" in text:
        raise RowError(f"field {name!r} contains a NUL character")
    if limit and len(text) > limit:
        raise RowError(f"field {name!r} is {len(text)} characters long; the limit is {limit}")
    return text


def _optional(merged: Mapping[str, Any], name: str, convert: Any, *limits: int) -> Any:
    """``convert(value, name, *limits)`` when the field is given, else None."""
    return convert(merged[name], name, *limits) if name in merged else None


def _from_parameters(text: str) -> tuple[dict[str, Any], str]:
    """The manifest fields an A1111 ``parameters`` text holds, and what a missing field's
    message should add about that text."""
    from generation.errors import GenerationError
    from generation.parameters import parse_parameters

    if not text.strip():
        return {}, "the PNG has no parameters text"
    try:
        parsed = parse_parameters(text)
    except GenerationError as exc:
        return {}, f"the PNG's {exc}"
    values = {
        "prompt": parsed.prompt,
        "negative_prompt": parsed.negative_prompt,
        "seed": parsed.seed,
        "sampler": parsed.sampler,
        "steps": parsed.steps,
        "cfg": parsed.cfg,
        "checkpoint": parsed.model_name,
        "model_hash": parsed.model_hash,
    }
    return {k: v for k, v in values.items() if v not in (None, "")}, "not in its parameters text"


def _complete(fields: Mapping[str, Any], stored: StoredImage) -> PoolRecord:
    """Manifest values win; what the manifest lacks comes from the PNG's parameters text."""
    for name in ("width", "height"):
        if name in fields:
            declared = _as_int(fields[name], name, 1)
            actual = getattr(stored, name)
            if declared != actual:
                raise RowError(f"the manifest says {name} {declared} but the image has {actual}")
    if "kind" not in fields:
        raise RowError("missing required field 'kind' (fixed, free or ffa)")
    parsed, note = _from_parameters(stored.parameters_text)
    merged = {**parsed, **fields}
    for name in ("prompt", "checkpoint"):
        if name not in merged and not (name == "checkpoint" and "model_hash" in merged):
            raise RowError(f"missing required field {name!r}: not in the manifest, {note}")
    kind = _as_text(merged["kind"], "kind")
    if kind not in MATCH_KINDS:
        raise RowError(f"field 'kind' is {kind!r}; expected one of {', '.join(MATCH_KINDS)}")
    character = _optional(merged, "character", _as_text, CHARACTER_CHARS)
    if KINDS[kind].per_character and not character:
        raise RowError(f"field 'character' is required for kind {kind!r}")
    if character:  # shown in board names on the dashboard and the report
        from arena.registry import check_shown_name

        try:
            check_shown_name("character", character)
        except UserError as exc:
            raise RowError(str(exc)) from None
    prompt = " ".join(_as_text(merged["prompt"], "prompt").split())
    if not prompt:
        raise RowError("field 'prompt' is empty")
    return PoolRecord(
        checkpoint=_optional(merged, "checkpoint", _as_text),
        # A name the manifest gives is final; otherwise the parameters' model hash comes first.
        model_hash=None if "checkpoint" in fields else merged.get("model_hash"),
        prompt=prompt,
        negative_prompt=" ".join(
            _as_text(merged.get("negative_prompt", ""), "negative_prompt").split()
        ),
        kind=kind,
        character=character or None,
        seed=_optional(merged, "seed", _as_int, 0, 2**63 - 1),
        sampler=_optional(merged, "sampler", _as_text, SAMPLER_CHARS),
        steps=_optional(merged, "steps", _as_int, 1),
        cfg=_optional(merged, "cfg", _as_float),
    )


def _checkpoint(session: Session, record: PoolRecord) -> Checkpoint:
    """The manifest's checkpoint by name; from parameters, by model hash first, then by name."""
    if record.model_hash:
        by_hash = session.scalars(
            select(Checkpoint).where(Checkpoint.short_hash == short_hash(record.model_hash))
        ).all()
        if len(by_hash) == 1:
            return by_hash[0]
    if record.checkpoint:
        row = session.scalar(select(Checkpoint).where(Checkpoint.name == record.checkpoint))
        if row is not None:
            return row
        raise RowError(f"unknown checkpoint {record.checkpoint!r}; see `arena registry list`")
    raise RowError(
        f"no checkpoint in the manifest, and none registered with the parameters' model hash "
        f"{record.model_hash!r}"
    )


def _prompt(session: Session, record: PoolRecord) -> Prompt:
    """The prompt row for this text and kind, created on first use; a clash is a RowError."""
    digest = prompt_hash(record.prompt)
    row = session.scalar(
        select(Prompt).where(Prompt.text_hash == digest, Prompt.kind == record.kind)
    )
    if row is None:
        row = Prompt(
            text=record.prompt,
            text_hash=digest,
            negative_prompt=record.negative_prompt,
            kind=record.kind,
            character=record.character,
            source="import",
        )
        session.add(row)
        session.flush()
        return row
    # Images of one prompt are compared with each other, so they must share these.
    if KINDS[record.kind].per_character and row.character != record.character:
        raise RowError(
            f"this {record.kind} prompt is already in the pool for character {row.character!r}, "
            f"not {record.character!r}"
        )
    if row.negative_prompt != record.negative_prompt:
        raise RowError(
            f"this {record.kind} prompt is already in the pool with a different negative prompt "
            f"({row.negative_prompt[:60]!r})"
        )
    return row


def _placeholder_served(sha256: str) -> str:
    return hashlib.sha256(f"imported:{sha256}".encode()).hexdigest()


def placeholder_image(sha256: str, checkpoint_id: int, prompt_id: int,
                      seed: int | None) -> Image:
    """The row an imported vote records for an image this pool does not hold: hidden, never
    served, with no file; a later pool import of the image's bytes fills it in."""
    return Image(sha256=sha256, served_sha256=_placeholder_served(sha256),
                 checkpoint_id=checkpoint_id, prompt_id=prompt_id, seed=seed, width=0,
                 height=0, hidden=True, parameters="imported vote; image not in this pool")


def is_placeholder(image: Image) -> bool:
    """Whether ``image`` is an imported vote's placeholder (no file behind it)."""
    return image.served_sha256 == _placeholder_served(image.sha256)


def _fill_placeholder(session: Session, row: Image, record: PoolRecord, stored: StoredImage,
                      hidden: bool) -> bool:
    checkpoint = _checkpoint(session, record)
    if checkpoint.id != row.checkpoint_id:
        raise RowError(f"imported votes name checkpoint id {row.checkpoint_id} for this image, "
                       f"not {checkpoint.name!r}")
    prompt = _prompt(session, record)
    row.served_sha256 = stored.served_sha256
    row.prompt_id = prompt.id
    row.seed = record.seed if record.seed is not None else row.seed
    row.sampler, row.steps, row.cfg = record.sampler, record.steps, record.cfg
    row.width, row.height = stored.width, stored.height
    row.parameters = stored.parameters_text
    row.hidden = hidden
    return True


def _insert(db: Database, record: PoolRecord, stored: StoredImage, hidden: bool = False) -> bool:
    """Commit the image's rows (filling in an imported vote's placeholder); False when another
    import committed the same bytes first."""
    with db.session() as session:
        known = session.scalar(select(Image).where(Image.sha256 == stored.sha256))
        if known is not None and not is_placeholder(known):
            return False
        twin = session.scalar(select(Image).where(Image.served_sha256 == stored.served_sha256))
        if twin is not None:
            raise RowError(
                f"the same pixels are already in the pool (image {twin.sha256[:12]}); "
                "only the metadata differs"
            )
        if known is not None:
            return _fill_placeholder(session, known, record, stored, hidden)
        checkpoint = _checkpoint(session, record)
        prompt = _prompt(session, record)
        session.add(
            Image(
                sha256=stored.sha256,
                served_sha256=stored.served_sha256,
                checkpoint_id=checkpoint.id,
                prompt_id=prompt.id,
                seed=record.seed,
                sampler=record.sampler,
                steps=record.steps,
                cfg=record.cfg,
                width=stored.width,
                height=stored.height,
                parameters=stored.parameters_text,
                hidden=hidden,
            )
        )
    return True


def _existing(db: Database, sha256: str, fields: Mapping[str, Any]) -> bool:
    """True when these bytes are in the pool already (under the checkpoint the row names)."""
    with db.session() as session:
        row = session.execute(
            select(Image.id, Checkpoint.name, Image.served_sha256)
            .join(Checkpoint, Image.checkpoint_id == Checkpoint.id)
            .where(Image.sha256 == sha256)
        ).first()
    if row is None or row[2] == _placeholder_served(sha256):
        return False  # absent, or an imported vote's placeholder that this import fills in
    named = fields.get("checkpoint")
    if named is not None and str(named).strip() != row[1]:
        raise RowError(f"this image is already in the pool under checkpoint {row[1]!r}")
    return True


def _import_one(
    db: Database,
    fields: Mapping[str, Any],
    home: Settings | Path,
    base: Path | None,
    max_pixels: int,
    hidden: bool = False,
) -> bool:
    """Import one row; True if new, False if already present; RowError/UserError to skip."""
    unknown = sorted(set(fields) - set(MANIFEST_FIELDS))
    if unknown:
        expected = ", ".join(MANIFEST_FIELDS)
        raise RowError(f"unknown field {unknown[0]!r}; expected fields: {expected}")
    path = Path(str(fields["file"])).expanduser()
    if base is not None:
        path = base / path
    if not path.is_file():
        raise RowError(f"no such file {path}")
    if path.stat().st_size > MAX_FILE_BYTES:
        raise RowError(f"{path.stat().st_size} bytes is over the limit of {MAX_FILE_BYTES} bytes")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise RowError(f"cannot read {path}: {exc.strerror or exc}") from exc
    digest = sha256_bytes(data)
    if "sha256" in fields and str(fields["sha256"]).strip().lower() != digest:
        raise RowError(f"the file's sha256 is {digest}, not {fields['sha256']!r} as listed")
    if _existing(db, digest, fields):
        return False
    had_original = original_path(home, digest).exists()
    stored = store_image(home, data, max_pixels=max_pixels)
    try:
        record = _complete(fields, stored)
        try:
            return _insert(db, record, stored, hidden)
        except IntegrityError:
            # A concurrent import committed the same prompt or image between our read and our
            # insert; the unique constraint stopped ours, and a second try finds its row.
            return _insert(db, record, stored, hidden)
    except (RowError, UserError):
        _forget_files(db, stored, had_original)
        raise


def _forget_files(db: Database, stored: StoredImage, had_original: bool) -> None:
    """After a refused row: remove the files it wrote that no image row refers to."""
    with db.session(readonly=True) as session:
        used = session.execute(
            select(Image.sha256, Image.served_sha256).where(
                (Image.sha256 == stored.sha256) | (Image.served_sha256 == stored.served_sha256)
            )
        ).all()
    if not had_original and not any(row[0] == stored.sha256 for row in used):
        stored.path.unlink(missing_ok=True)
    if not any(row[1] == stored.served_sha256 for row in used):
        stored.served_path.unlink(missing_ok=True)


def _import_rows(
    db: Database,
    rows: Sequence[tuple[str, Mapping[str, Any]]],
    home: Settings | Path,
    base: Path | None,
    max_pixels: int,
    progress: bool,
    report: ImportReport,
    hidden: bool = False,
) -> ImportReport:
    bar = tqdm(rows, desc="importing", unit="image", disable=None if progress else True)
    for where, written in bar:
        # Blank values (empty CSV cells, JSON nulls) mean "not given".
        fields = {
            key: value
            for key, value in written.items()
            if value is not None and not (isinstance(value, str) and not value.strip())
        }
        if "file" not in fields:
            report.skipped.append(Skipped(where, "missing required field 'file'"))
            continue
        name = str(fields["file"])
        try:
            new = _import_one(db, fields, home, base, max_pixels, hidden)
        except (RowError, UserError) as exc:
            report.skipped.append(Skipped(name, str(exc)))
            continue
        (report.imported if new else report.already_present).append(name)
    if report.imported:
        from arena.matchmaking import invalidate

        invalidate(db.url)
    return report


def import_records(
    db: Database,
    records: Iterable[Mapping[str, Any]],
    home: Settings | Path,
    *,
    base: Path | None = None,
    max_pixels: int = MAX_PIXELS,
    progress: bool = True,
    hidden: bool = False,
) -> ImportReport:
    """Import already-parsed manifest rows (``file`` absolute, or relative to ``base``).

    Rows use the manifest's fields (:data:`generation.manifest.MANIFEST_FIELDS`; ``sha256``,
    when given, must match the file's bytes); a blank value counts as absent. A row
    whose image is broken, truncated, not a PNG or over ``max_pixels``, or whose fields are
    missing or wrong, is reported in ``skipped`` and the rest go on. ``hidden`` rows are not
    served until revealed (the worker reveals a prompt's images once all are in).
    """
    rows = [(f"record {number}", row) for number, row in enumerate(records, start=1)]
    return _import_rows(db, rows, home, base, max_pixels, progress, ImportReport(), hidden)


def import_dir(
    db: Database,
    folder: Path,
    home: Settings | Path,
    *,
    max_pixels: int = MAX_PIXELS,
    progress: bool = True,
) -> ImportReport:
    """Import a folder of images described by its ``manifest.jsonl`` or ``manifest.csv``.

    Files are named relative to the folder. Image files the manifest does not list are
    reported as skipped, so nothing is left behind silently.
    """
    manifest = read_manifest(folder)
    report = ImportReport(skipped=[Skipped(where, why) for where, why in manifest.unreadable])
    rows = [(row.where, row.fields) for row in manifest.rows]
    _import_rows(db, rows, home, folder, max_pixels, progress, report)
    listed = {(folder / str(fields["file"])).resolve() for _, fields in rows if fields.get("file")}
    for path in image_files(folder):
        if path.resolve() not in listed:
            report.skipped.append(
                Skipped(path.relative_to(folder).as_posix(), f"not listed in {manifest.path.name}")
            )
    return report


def pool_stats(session: Session) -> dict[str, Any]:
    """Visible images per checkpoint and match kind, and prompts with visible images per kind."""
    images = session.execute(
        select(Checkpoint.name, Prompt.kind, func.count(Image.id))
        .join(Image, Image.checkpoint_id == Checkpoint.id)
        .join(Prompt, Image.prompt_id == Prompt.id)
        .where(Image.hidden.is_(False))
        .group_by(Checkpoint.name, Prompt.kind)
        .order_by(Checkpoint.name, Prompt.kind)
    ).all()
    per_checkpoint: dict[str, dict[str, int]] = {}
    for name, kind, count in images:
        per_checkpoint.setdefault(name, dict.fromkeys(MATCH_KINDS, 0))[kind] = int(count)
    prompts = dict(
        session.execute(
            select(Prompt.kind, func.count(func.distinct(Image.prompt_id)))
            .join(Image, Image.prompt_id == Prompt.id)
            .where(Image.hidden.is_(False))
            .group_by(Prompt.kind)
        ).all()
    )
    return {
        "images": per_checkpoint,
        "prompts": {kind: int(prompts.get(kind, 0)) for kind in MATCH_KINDS},
        "total_images": sum(sum(kinds.values()) for kinds in per_checkpoint.values()),
    }

