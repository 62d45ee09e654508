"""The ``score`` job: CCIP for every character with reference images, and CLIP score.

What is scored depends on the settings: CCIP needs ``ARENA_CCIP_MODEL_DIR`` and
``ARENA_CCIP_REFERENCES`` (one subfolder of reference images per character), CLIP score
needs ``ARENA_CLIP_MODEL`` and ``ARENA_CLIP_WEIGHTS``. A metric that is not configured is
reported as skipped in the job's result, not silently passed over. A score already stored
over the same images, references and model files is not computed again.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import select

from arena.errors import UserError
from arena.image_store import image_files
from arena.jobs.context import JobContext, JobFailed
from arena.models import MetricScore
from arena.registry import get_checkpoint
from metrics.file_hash import sha256_file


def _already(
    ctx: JobContext, checkpoint_id: int, metric: str, character: str | None, version: str,
    images: list[str], references: list[str] | None = None,
) -> int | None:
    """Id of a stored score over exactly these images (and references) with this model."""
    with ctx.db.session(readonly=True) as session:
        rows = session.scalars(
            select(MetricScore).where(
                MetricScore.checkpoint_id == checkpoint_id,
                MetricScore.metric == metric,
                MetricScore.metric_version == version,
                MetricScore.character.is_(None)
                if character is None
                else MetricScore.character == character,
            ).order_by(MetricScore.id.desc())
        ).all()
        for row in rows:
            same_refs = references is None or sorted(
                row.details.get("reference_sha256", [])
            ) == sorted(references)
            if sorted(row.images_used) == sorted(images) and same_refs:
                return row.id
    return None


def _metric_device(device: str | None) -> str:
    """The metric libraries take auto, cpu or cuda (not a CUDA index)."""
    if device is None:
        return "auto"
    return "cuda" if device.startswith("cuda") else "cpu"


def _ccip(ctx: JobContext, name: str, checkpoint_id: int) -> list[dict[str, Any]]:
    from arena.features import DatabaseFeatureCache
    from arena.scores import pool_images, store_ccip
    from metrics.ccip import NothingToScoreError, score_character
    from metrics.ccip_model import FEAT_FILE, METRICS_FILE, CCIPModelError, load_ccip_model

    settings = ctx.settings
    model_dir, refs_dir = settings.ccip_model_dir, settings.ccip_references
    with ctx.db.session(readonly=True) as session:
        groups = pool_images(session, settings.home, name, fixed_only=True)
    todo = []
    for character, images in sorted(groups.items(), key=lambda kv: kv[0] or ""):
        folder = Path(refs_dir) / str(character)
        references = image_files(folder) if character and folder.is_dir() else []
        if references:
            todo.append((character, images, references))
    if not todo:
        return [{"metric": "ccip", "skipped": "no character of this pool has reference images"}]
    version = (
        f"{sha256_file(Path(model_dir) / FEAT_FILE)[:16]}/"
        f"{sha256_file(Path(model_dir) / METRICS_FILE)[:16]}"
    )
    model = None
    cache = DatabaseFeatureCache(ctx.db)
    out = []
    for character, images, refs in todo:
        shas = [i.sha256 for i in images]
        ref_shas = [sha256_file(p) for p in refs]
        known = _already(ctx, checkpoint_id, "ccip", character, version, shas, ref_shas)
        if known is not None:
            out.append({"metric": "ccip", "character": character, "score_id": known,
                        "already": True})
            ctx.progress.advance(len(images))
            continue
        if model is None:
            try:
                model = load_ccip_model(Path(model_dir), device=_metric_device(ctx.device))
            except CCIPModelError as exc:
                raise JobFailed(str(exc)) from None
        try:
            result = score_character(
                model, refs, [i.path for i in images], image_sha256=shas, cache=cache,
            )
        except NothingToScoreError as exc:
            out.append({"metric": "ccip", "character": character, "error": str(exc)})
            continue
        with ctx.db.session() as session:
            row = store_ccip(
                session, result, checkpoint=name, character=character,
                references=str(Path(refs_dir) / character),
            )
            out.append({"metric": "ccip", "character": character, "value": result.score,
                        "score_id": row.id})
        ctx.progress.advance(len(images))
    return out


def _clip(ctx: JobContext, name: str, checkpoint_id: int) -> dict[str, Any]:
    from arena.scores import pool_images, store_clip
    from metrics.ccip import NothingToScoreError
    from metrics.clip_score import ClipModelError, clip_score, load_clip_model

    settings = ctx.settings
    with ctx.db.session(readonly=True) as session:
        images = pool_images(session, settings.home, name, fixed_only=False).get(None, [])
    if not images:
        return {"metric": "clip_score", "skipped": "no images in the pool"}
    weights = Path(str(settings.clip_weights))
    version = sha256_file(weights)[:16]
    shas = [i.sha256 for i in images]
    known = _already(ctx, checkpoint_id, "clip_score", None, version, shas)
    if known is not None:
        return {"metric": "clip_score", "score_id": known, "already": True}
    try:
        model = load_clip_model(
            str(settings.clip_model), weights, config=settings.clip_config,
            device=_metric_device(ctx.device),
        )
    except ClipModelError as exc:
        raise JobFailed(str(exc)) from None
    try:
        result = clip_score(model, [i.path for i in images], [i.prompt for i in images])
    except NothingToScoreError as exc:
        return {"metric": "clip_score", "error": str(exc)}
    with ctx.db.session() as session:
        row = store_clip(session, result, checkpoint=name, character=None)
        return {"metric": "clip_score", "value": result.score, "score_id": row.id}


def score_checkpoint(ctx: JobContext) -> dict[str, Any]:
    """Run one ``score`` job (see the module docstring)."""
    name = ctx.payload["checkpoint"]
    settings = ctx.settings
    try:
        with ctx.db.session(readonly=True) as session:
            checkpoint_id = get_checkpoint(session, name).id
    except UserError as exc:
        raise JobFailed(str(exc)) from None
    scores: list[dict[str, Any]] = []
    ctx.progress.set(0, None, "images")
    if settings.ccip_model_dir and settings.ccip_references:
        scores.extend(_ccip(ctx, name, checkpoint_id))
    else:
        scores.append({"metric": "ccip", "skipped": "ARENA_CCIP_MODEL_DIR and "
                       "ARENA_CCIP_REFERENCES are not both set"})
    if settings.clip_model and settings.clip_weights:
        scores.append(_clip(ctx, name, checkpoint_id))
    else:
        scores.append({"metric": "clip_score", "skipped": "ARENA_CLIP_MODEL and "
                       "ARENA_CLIP_WEIGHTS are not both set"})
    return {"scores": scores, "summary": "; ".join(_said(s) for s in scores)}


def _said(score: dict[str, Any]) -> str:
    """One score's outcome for the worker's line."""
    what = score["metric"] + (f" {score['character']}" if score.get("character") else "")
    if "value" in score:
        return f"{what} {score['value']:.4f}"
    if score.get("already"):
        return f"{what} already stored"
    return f"{what} not scored: {score.get('skipped') or score.get('error')}"
