"""The training-config and checkpoint registry in SQL."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session, selectinload

from arena.errors import Conflict, NotFound, UserError
from arena.models import (
    Checkpoint,
    Image,
    MetricScore,
    Prompt,
    RatingSnapshot,
    TrainingConfigRecord,
)
from arena.settings import Settings
from metrics.file_hash import sha256_path, short_hash
from training.config import TrainingConfig

NAME_CHARS: int = Checkpoint.__table__.c.name.type.length
# Characters a shown name may not hold: markup (HTML tags, Markdown links and code, table
# pipes, plotly's label tags) and anything that breaks or reorders a line.
_MARKUP = set("<>[]`|\\")
_LINE_BREAKING = {"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"}


def check_shown_name(what: str, name: str) -> str:
    """``name`` if it is safe to show in the reveal, the dashboard and the report (one line,
    no markup); else a one-line :class:`UserError` naming the first offending character."""
    import unicodedata

    for char in name:
        if char in _MARKUP or unicodedata.category(char) in _LINE_BREAKING:
            raise UserError(f"{what} {name!r}: {char!r} is not allowed in a name (names are "
                            "shown to voters: no markup, line breaks or control characters)")
    return name

@dataclass(frozen=True)
class Registered:
    """Result of a registration: the row and whether it was new."""

    name: str
    id: int
    created: bool


def add_config(session: Session, config: TrainingConfig) -> Registered:
    """Store a config; the same content registered again returns the existing row."""
    digest = config.content_hash()
    existing = session.scalar(
        select(TrainingConfigRecord).where(TrainingConfigRecord.content_hash == digest)
    )
    if existing is not None:
        return Registered(existing.name, existing.id, created=False)
    clash = session.scalar(
        select(TrainingConfigRecord).where(TrainingConfigRecord.name == config.name)
    )
    if clash is not None:
        raise Conflict(
            f"config name {config.name!r} is already registered with different content "
            f"(hash {clash.content_hash[:12]}); choose another name"
        )
    row = TrainingConfigRecord(
        name=config.name,
        content_hash=digest,
        base_model=config.base_model,
        data=config.model_dump(mode="json"),
    )
    session.add(row)
    session.flush()
    return Registered(row.name, row.id, created=True)


def get_config(session: Session, name: str) -> TrainingConfigRecord:
    """A registered config by name."""
    row = session.scalar(select(TrainingConfigRecord).where(TrainingConfigRecord.name == name))
    if row is None:
        known = session.scalars(select(TrainingConfigRecord.name).order_by("name")).all()
        hint = f"; registered: {', '.join(known)}" if known else "; none registered yet"
        raise NotFound(f"unknown config {name!r}{hint}")
    return row


def _check_safetensors_header(path: Path) -> None:
    """A safetensors file starts with a little-endian u64 length and that many bytes of JSON
    object header, within the file."""
    with path.open("rb") as handle:
        head = handle.read(8)
        length = int.from_bytes(head, "little") if len(head) == 8 else -1
        if not 0 < length <= path.stat().st_size - 8:
            raise UserError(f"checkpoint {path} is not a safetensors file (bad header length)")
        try:
            header = json.loads(handle.read(length))
        except (UnicodeDecodeError, ValueError):
            header = None
    if not isinstance(header, dict):
        raise UserError(f"checkpoint {path} is not a safetensors file (header is not JSON)")
    from training.safetensors_header import HeaderError, tensor_data_end

    try:
        tensor_data_end(header)
    except HeaderError as exc:
        raise UserError(f"checkpoint {path} has an unreadable safetensors header: {exc}") from None


def checkpoint_path(path: Path | str) -> Path:
    """The absolute path of a checkpoint as given by a user; a path that cannot name a file
    (a NUL character, an unresolvable home) is a one-line error."""
    text = str(path)
    if "\x00" in text:
        raise UserError("checkpoint path contains a NUL character")
    try:
        return Path(text).expanduser().resolve()
    except (OSError, RuntimeError, ValueError) as exc:
        raise UserError(f"checkpoint path {text!r} cannot be resolved: {exc}") from None


def checkpoint_format(path: Path) -> str:
    """'safetensors' for a single file, 'diffusers' for a folder with model_index.json."""
    if path.is_file():
        if path.suffix.lower() != ".safetensors":
            raise UserError(
                f"checkpoint {path}: expected a .safetensors file or a diffusers folder"
            )
        _check_safetensors_header(path)
        return "safetensors"
    if path.is_dir():
        if not (path / "model_index.json").is_file():
            raise UserError(f"checkpoint folder {path} has no model_index.json (not diffusers)")
        return "diffusers"
    raise UserError(f"checkpoint {path} does not exist")


def _checked_request(
    session: Session, path: Path, config_name: str, name: str | None, step: int | None
) -> tuple[Path, str, TrainingConfigRecord, str]:
    """Validate a registration without reading the file: (path, format, config, name)."""
    path = checkpoint_path(path)
    fmt = checkpoint_format(path)
    config = get_config(session, config_name)
    if step is not None and step < 0:
        raise UserError(f"step must be >= 0, got {step}")
    name = name or (path.stem if fmt == "safetensors" else path.name)
    if not name.strip() or len(name) > NAME_CHARS:
        raise UserError(f"checkpoint name {name!r}: expected 1 to {NAME_CHARS} characters")
    return path, fmt, config, check_shown_name("checkpoint name", name)


def record_checkpoint(
    session: Session,
    path: Path,
    config_name: str,
    digest: str,
    name: str | None = None,
    step: int | None = None,
    metadata: dict[str, Any] | None = None,
) -> Registered:
    """Record a checkpoint whose content hash is known; the same file again is a no-op."""
    path, fmt, config, name = _checked_request(session, path, config_name, name, step)
    existing = session.scalar(select(Checkpoint).where(Checkpoint.name == name))
    if existing is not None:
        if existing.sha256 == digest and existing.config_id == config.id:
            return Registered(existing.name, existing.id, created=False)
        raise Conflict(f"checkpoint name {name!r} is already registered for another file")
    size = (
        path.stat().st_size
        if fmt == "safetensors"
        else sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    )
    row = Checkpoint(
        name=name,
        path=str(path),
        format=fmt,
        sha256=digest,
        short_hash=short_hash(digest),
        size_bytes=size,
        step=step,
        config=config,
        training_metadata=metadata or None,
    )
    session.add(row)
    session.flush()
    return Registered(row.name, row.id, created=True)


def add_checkpoint(
    session: Session,
    path: Path,
    config_name: str,
    name: str | None = None,
    step: int | None = None,
) -> Registered:
    """Record a checkpoint with its streamed sha256 (hashed here), linked to a registered config."""
    path, _, _, name = _checked_request(session, path, config_name, name, step)
    digest = sha256_path(path, progress=True)
    return record_checkpoint(session, path, config_name, digest, name, step)


def get_checkpoint(session: Session, name: str) -> Checkpoint:
    """A registered checkpoint by name."""
    row = session.scalar(select(Checkpoint).where(Checkpoint.name == name))
    if row is None:
        raise NotFound(f"unknown checkpoint {name!r}; see `arena registry list`")
    return row


def checkpoint_labels(session: Session, ids: list[int]) -> dict[int, tuple[str, str]]:
    """Checkpoint id -> (checkpoint name, training config name), in one query."""
    rows = session.execute(
        select(Checkpoint.id, Checkpoint.name, TrainingConfigRecord.name)
        .join(TrainingConfigRecord, TrainingConfigRecord.id == Checkpoint.config_id)
        .where(Checkpoint.id.in_(ids))
    )
    return {cid: (name, config) for cid, name, config in rows}


def describe_config(row: TrainingConfigRecord) -> dict[str, Any]:
    """A config row as JSON-ready data, with its checkpoints."""
    return {
        "name": row.name,
        "content_hash": row.content_hash,
        "base_model": row.base_model,
        "config": row.data,
        "checkpoints": [c.name for c in sorted(row.checkpoints, key=lambda c: c.id)],
    }


def describe_checkpoint(row: Checkpoint) -> dict[str, Any]:
    """A checkpoint row as JSON-ready data, with its config's name and hash."""
    return {
        "name": row.name,
        "path": row.path,
        "format": row.format,
        "sha256": row.sha256,
        "short_hash": row.short_hash,
        "size_bytes": row.size_bytes,
        "step": row.step,
        "config": row.config.name,
        "config_hash": row.config.content_hash,
        "training_metadata": row.training_metadata,
    }


def list_registry(session: Session) -> dict[str, list[dict[str, Any]]]:
    """Every config and checkpoint, with their links."""
    configs = session.scalars(
        select(TrainingConfigRecord)
        .options(selectinload(TrainingConfigRecord.checkpoints))
        .order_by(TrainingConfigRecord.id)
    ).all()
    checkpoints = session.scalars(
        select(Checkpoint).options(selectinload(Checkpoint.config)).order_by(Checkpoint.id)
    ).all()
    return {
        "configs": [describe_config(c) for c in configs],
        "checkpoints": [describe_checkpoint(c) for c in checkpoints],
    }


def checkpoint_status(session: Session, settings: Settings, name: str) -> dict[str, Any]:
    """Everything known about checkpoint ``name``: its registry entry and config (once its
    hash job recorded it), its jobs, its visible pool images, its latest scores and ratings.
    NotFound when neither a checkpoint nor a job has that name."""
    from arena.jobs.queue import describe_job, list_jobs

    jobs = [describe_job(job) for job in reversed(list_jobs(session, checkpoint=name))]
    row = session.scalar(select(Checkpoint).where(Checkpoint.name == name))
    if row is None:
        if not jobs:
            raise NotFound(f"unknown checkpoint {name!r}; see `arena registry list`")
        return {"name": name, "registered": False, "jobs": jobs}
    images = session.execute(
        select(Prompt.kind, func.count(Image.id), func.count(func.distinct(Image.prompt_id)))
        .join(Prompt, Prompt.id == Image.prompt_id)
        .where(Image.checkpoint_id == row.id, Image.hidden.is_(False))
        .group_by(Prompt.kind)
    ).all()
    latest: dict[tuple[str, str | None], MetricScore] = {}
    for score in session.scalars(
        select(MetricScore).where(MetricScore.checkpoint_id == row.id).order_by(MetricScore.id)
    ):
        latest[(score.metric, score.character)] = score
    ratings = session.scalars(
        select(RatingSnapshot)
        .where(RatingSnapshot.checkpoint_id == row.id)
        .order_by(RatingSnapshot.board, RatingSnapshot.system)
    ).all()
    return {
        **describe_checkpoint(row),
        "registered": True,
        "config_data": row.config.data,
        "jobs": jobs,
        "pool": {
            "images": sum(int(n) for _, n, _ in images),
            "by_kind": {kind: {"images": int(n), "prompts": int(p)} for kind, n, p in images},
        },
        "scores": [
            {
                "id": s.id,
                "metric": s.metric,
                "character": s.character,
                "value": s.value,
                "metric_model": s.metric_model,
                "metric_version": s.metric_version,
                "images": len(s.images_used),
                "created_at": s.created_at.isoformat(),
            }
            for s in latest.values()
        ],
        "ratings": [
            {"board": r.board, "system": r.system, "rating": r.rating, "games": r.games,
             "wins": r.wins, "draws": r.draws, "losses": r.losses}
            for r in ratings
        ],
    }
