"""Metric scores in the database: the one path from pool images to a stored score.

A CCIP score (character fidelity, :mod:`metrics.ccip`) or a CLIP score (prompt alignment,
:mod:`metrics.clip_score`) is stored as one :class:`arena.models.MetricScore` row linked to
its checkpoint (and through it to the training config), with the metric model's name and
file hashes, its parameters, every image hash used and the per-image values.

Everything `arena score` and the ``score`` job share lives here, so the two cannot disagree:
which pool images a score uses (:func:`pool_images`), where a character's reference images
are (:func:`references_for`), the metric model version that decides whether a score is
already stored (:func:`ccip_version`, :func:`clip_version`, :func:`stored_score_id`), and
scoring a set of images and storing the result (:func:`score_ccip`, :func:`score_clip`).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from arena.db import Database
from arena.image_store import image_files, original_path
from arena.models import Image, MetricScore, Prompt, score_key
from arena.registry import get_checkpoint
from metrics.ccip import CCIPScore
from metrics.ccip_model import FEAT_FILE, METRICS_FILE, CCIPModel
from metrics.ccip_preprocess import ImageFailure
from metrics.clip_score import ClipModel, ClipScore
from metrics.file_hash import sha256_file
from metrics.match_kinds import CHARACTER_KINDS

__all__ = [
    "PoolImage",
    "References",
    "ScoreTarget",
    "ccip_files_version",
    "ccip_version",
    "clip_version",
    "pool_images",
    "references_for",
    "score_ccip",
    "score_clip",
    "stored_score_id",
]

Progress = Callable[[int], None]
VERSION_DIGITS = 16  # hex digits of each model file's sha256 in a stored metric_version


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
        query = query.where(Prompt.kind.in_(CHARACTER_KINDS), Prompt.character.is_not(None))
    if character is not None:
        query = query.where(Prompt.character == character)
    groups: dict[str | None, list[PoolImage]] = defaultdict(list)
    for sha, text, char, _kind in session.execute(query):
        key = char if (fixed_only or character is not None) else None
        groups[key].append(PoolImage(sha, original_path(home, sha), text, char))
    return dict(groups)


@dataclass(frozen=True)
class References:
    """A character's reference images and the folder they came from (stored with the score)."""

    files: list[Path]
    source: str


def references_for(folder: Path, character: str | None, named: str | None = None) -> References:
    """The one rule for where ``character``'s CCIP reference images are in ``folder``.

    ``folder/<character>/`` (and its subfolders) when that folder exists; otherwise the image
    files directly in ``folder``, but only for the character the caller names (``named``:
    `arena score ccip --character`) or for images with no character (an ``--images`` folder),
    never for other characters: a pool of several characters needs one subfolder each, and
    the score job, which names none, reads subfolders only. No files means nothing to score.
    """
    sub = folder / character if character else None
    if sub is not None and sub.is_dir():
        return References(image_files(sub), str(sub))
    if (character is None or character == named) and folder.is_dir():
        return References([p for p in image_files(folder) if p.parent == folder], str(folder))
    return References([], f"{folder}/{character}/" if character else str(folder))


def ccip_version(feat_sha256: str, metrics_sha256: str) -> str:
    """The ``metric_version`` of a CCIP score: both model files' hashes, shortened."""
    return f"{feat_sha256[:VERSION_DIGITS]}/{metrics_sha256[:VERSION_DIGITS]}"


def ccip_files_version(model_dir: Path) -> str:
    """:func:`ccip_version` of a CCIP model folder, without loading the model."""
    return ccip_version(sha256_file(model_dir / FEAT_FILE), sha256_file(model_dir / METRICS_FILE))


def clip_version(weights_sha256: str) -> str:
    """The ``metric_version`` of a CLIP score: the weights file's hash, shortened."""
    return weights_sha256[:VERSION_DIGITS]


def stored_score_id(
    session: Session,
    checkpoint: str,
    metric: str,
    character: str | None,
    version: str,
    images: Sequence[str],
    references: Sequence[str] | None = None,
) -> int | None:
    """Id of a stored ``metric`` score of ``checkpoint`` and ``character`` by the model of
    ``version`` over exactly these image hashes (and, for CCIP, these reference hashes), the
    newest first; ``None`` when there is none (the score is still to be computed)."""
    checkpoint_id = get_checkpoint(session, checkpoint).id
    rows = session.scalars(
        select(MetricScore)
        .where(
            MetricScore.checkpoint_id == checkpoint_id,
            MetricScore.metric == metric,
            MetricScore.metric_version == version,
            MetricScore.character.is_(None)
            if character is None
            else MetricScore.character == character,
        )
        .order_by(MetricScore.id.desc())
    ).all()
    wanted_refs = None if references is None else sorted(references)
    for row in rows:
        same_refs = wanted_refs is None or sorted(
            row.details.get("reference_sha256", [])
        ) == wanted_refs
        if sorted(row.images_used) == sorted(images) and same_refs:
            return row.id
    return None


@dataclass
class ScoreTarget:
    """The images one stored score is about: of one checkpoint (``None``: a folder of images
    outside the registry) and character, with their content hashes when known, and the names
    reports show for them (``str(path)`` -> name; the file name otherwise)."""

    checkpoint: str | None
    character: str | None
    images: list[Path]
    image_sha256: list[str] | None = None
    names: dict[str, str] = field(default_factory=dict)

    @classmethod
    def of_pool(cls, checkpoint: str, character: str | None,
                images: Sequence[PoolImage]) -> ScoreTarget:
        """Pool images of ``checkpoint``, shown by their content hash."""
        return cls(checkpoint, character, [i.path for i in images],
                   [i.sha256 for i in images], {str(i.path): i.sha256 for i in images})


def score_ccip(
    db: Database,
    model: CCIPModel,
    target: ScoreTarget,
    references: References,
    *,
    chunk_size: int = 32,
    workers: int = 4,
    progress: Progress | None = None,
) -> tuple[CCIPScore, int]:
    """CCIP-score ``target`` against ``references`` (embeddings cached in the database, see
    :mod:`arena.features`) and store the score; the result and the stored row's id.
    Raises :class:`metrics.ccip.NothingToScoreError` when no image or reference is readable."""
    from arena.features import DatabaseFeatureCache
    from metrics.ccip import score_character

    result = score_character(
        model, references.files, target.images, image_sha256=target.image_sha256,
        cache=DatabaseFeatureCache(db), chunk_size=chunk_size, workers=workers,
        progress=progress,
    )
    with db.session() as session:
        row = MetricScore(
            metric="ccip",
            metric_model=result.model_name,
            metric_version=ccip_version(result.feat_sha256, result.metrics_sha256),
            parameters={
                "threshold": result.threshold,
                "model_key": result.model_key,
                "feat_sha256": result.feat_sha256,
                "metrics_sha256": result.metrics_sha256,
                "references": references.source,
            },
            checkpoint_id=_checkpoint_id(session, target.checkpoint),
            character=target.character,
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
                "unreadable": _unreadable(result.unreadable, target.names),
            },
            images_used=list(result.image_sha256),
            created_at=result.computed_at,
        )
        return result, _stored(session, row)


def score_clip(
    db: Database,
    model: ClipModel,
    target: ScoreTarget,
    prompts: Sequence[str],
    *,
    batch_size: int = 32,
    workers: int = 4,
    progress: Progress | None = None,
) -> tuple[ClipScore, int]:
    """CLIP-score each image of ``target`` with its prompt (Hessel et al. 2021) and store the
    score; the result and the stored row's id. Raises
    :class:`metrics.ccip.NothingToScoreError` when no image is readable."""
    from metrics.clip_score import clip_score

    result = clip_score(model, target.images, prompts, batch_size=batch_size,
                        workers=workers, progress=progress)
    with db.session() as session:
        row = MetricScore(
            metric="clip_score",
            metric_model=result.model_name,
            metric_version=clip_version(result.weights_sha256),
            parameters={
                "w": result.w,
                "weights_sha256": result.weights_sha256,
                "config_sha256": result.config_sha256,
            },
            checkpoint_id=_checkpoint_id(session, target.checkpoint),
            character=target.character,
            value=result.score,
            details={
                "count": result.count,
                "per_image": [
                    [sha, value]
                    for sha, (_, value) in zip(result.image_sha256, result.per_image, strict=True)
                ],
                "unreadable": _unreadable(result.unreadable, target.names),
            },
            images_used=list(result.image_sha256),
            created_at=result.computed_at,
        )
        return result, _stored(session, row)


def _checkpoint_id(session: Session, checkpoint: str | None) -> int | None:
    return None if checkpoint is None else get_checkpoint(session, checkpoint).id


def _unreadable(failures: Sequence[ImageFailure], shown: dict[str, str]) -> list[list[str]]:
    return [[shown.get(f.name, f.name), f.reason] for f in failures]


def _stored(session: Session, row: MetricScore) -> int:
    """Store ``row``, or find the row already stored with its score key (the same metric,
    model version, checkpoint, character, images, references and parameters): a repeated or
    retried scoring stores nothing twice (the key is unique in the schema). Its id."""
    row.score_key = score_key(row.metric, row.metric_version, row.checkpoint_id, row.character,
                              row.images_used, row.parameters, row.details)
    existing = session.scalar(select(MetricScore.id).where(
        MetricScore.score_key == row.score_key))
    if existing is not None:
        return int(existing)
    session.add(row)
    session.flush()
    return int(row.id)
