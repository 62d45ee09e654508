"""Metric scores in the database: which pool images a score uses, and storing it with provenance.

A CCIP score (character fidelity, :mod:`metrics.ccip`) or a CLIP score (prompt alignment,
:mod:`metrics.clip_score`) is stored as one :class:`arena.models.MetricScore` row linked to
its checkpoint (and through it to the training config), with the metric model's name and
file hashes, its parameters, every image hash used and the per-image values.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from arena.image_store import original_path
from arena.models import Image, MetricScore, Prompt, score_key
from arena.registry import get_checkpoint
from metrics.ccip import CCIPScore
from metrics.clip_score import ClipScore

__all__ = [
    "PoolImage",
    "pool_images",
    "store_ccip",
    "store_clip",
]


@dataclass(frozen=True)
class PoolImage:
    """One pool image to score: its content hash, file, prompt text and character."""

    sha256: str
    path: Path
    prompt: str
    character: str | None


def pool_images(
    session: Session,
    home: Path,
    checkpoint: str,
    *,
    character: str | None = None,
    fixed_only: bool = True,
) -> dict[str | None, list[PoolImage]]:
    """Visible pool images of ``checkpoint``, grouped by character, oldest first.

    ``fixed_only`` (CCIP) keeps images of fixed-characteristic prompts that name a character;
    otherwise (CLIP) every visible image counts, under the key ``None`` unless ``character``
    narrows it to that character's fixed prompts.  Raises :class:`arena.errors.NotFound` for an
    unknown checkpoint.
    """
    row = get_checkpoint(session, checkpoint)
    query = (
        select(Image.sha256, Prompt.text, Prompt.character, Prompt.kind)
        .join(Prompt, Image.prompt_id == Prompt.id)
        .where(Image.checkpoint_id == row.id, Image.hidden.is_(False))
        .order_by(Image.id)
    )
    if fixed_only or character is not None:
        query = query.where(Prompt.kind == "fixed", Prompt.character.is_not(None))
    if character is not None:
        query = query.where(Prompt.character == character)
    groups: dict[str | None, list[PoolImage]] = defaultdict(list)
    for sha, text, char, _kind in session.execute(query):
        key = char if (fixed_only or character is not None) else None
        groups[key].append(PoolImage(sha, original_path(home, sha), text, char))
    return dict(groups)


def _stored(session: Session, row: MetricScore) -> MetricScore:
    """``row`` stored, or the row already stored with its score key (the same metric, model
    version, checkpoint, character, images, references and parameters): a repeated or
    retried scoring stores nothing twice (the key is unique in the schema)."""
    row.score_key = score_key(row.metric, row.metric_version, row.checkpoint_id, row.character,
                              row.images_used, row.parameters, row.details)
    existing = session.scalar(select(MetricScore).where(MetricScore.score_key == row.score_key))
    if existing is not None:
        return existing
    session.add(row)
    session.flush()
    return row


def _checkpoint_id(session: Session, checkpoint: str | None) -> int | None:
    return None if checkpoint is None else get_checkpoint(session, checkpoint).id


def store_ccip(
    session: Session,
    result: CCIPScore,
    *,
    checkpoint: str | None,
    character: str | None,
    references: str,
    names: dict[str, str] | None = None,
) -> MetricScore:
    """Store a CCIP score; ``references`` says where the reference images came from and
    ``names`` maps the score's image names to what reports should show (e.g. file names)."""
    shown = names or {}
    row = MetricScore(
        metric="ccip",
        metric_model=result.model_name,
        metric_version=f"{result.feat_sha256[:16]}/{result.metrics_sha256[:16]}",
        parameters={
            "threshold": result.threshold,
            "model_key": result.model_key,
            "feat_sha256": result.feat_sha256,
            "metrics_sha256": result.metrics_sha256,
            "references": references,
        },
        checkpoint_id=_checkpoint_id(session, checkpoint),
        character=character,
        value=result.score,
        details={
            "mean_difference": result.mean_difference,
            "count": result.count,
            "reference_count": result.reference_count,
            "reference_sha256": list(result.reference_sha256),
            "per_image": [
                [sha, fraction, difference]
                for sha, (_, fraction, difference) in zip(
                    result.image_sha256, result.per_image, strict=True
                )
            ],
            "unreadable": [[shown.get(f.name, f.name), f.reason] for f in result.unreadable],
        },
        images_used=list(result.image_sha256),
        created_at=result.computed_at,
    )
    return _stored(session, row)


def store_clip(
    session: Session,
    result: ClipScore,
    *,
    checkpoint: str | None,
    character: str | None,
    names: dict[str, str] | None = None,
) -> MetricScore:
    """Store a CLIP score (Hessel et al. 2021, w = ``result.w``) with its model's hashes."""
    shown = names or {}
    row = MetricScore(
        metric="clip_score",
        metric_model=result.model_name,
        metric_version=result.weights_sha256[:16],
        parameters={
            "w": result.w,
            "weights_sha256": result.weights_sha256,
            "config_sha256": result.config_sha256,
        },
        checkpoint_id=_checkpoint_id(session, checkpoint),
        character=character,
        value=result.score,
        details={
            "count": result.count,
            "per_image": [
                [sha, value]
                for sha, (_, value) in zip(result.image_sha256, result.per_image, strict=True)
            ],
            "unreadable": [[shown.get(f.name, f.name), f.reason] for f in result.unreadable],
        },
        images_used=list(result.image_sha256),
        created_at=result.computed_at,
    )
    return _stored(session, row)
