"""The ``score`` job: CCIP for every character with reference images, and CLIP score.

What is scored depends on the settings: CCIP needs ``ARENA_CCIP_MODEL_DIR`` and
``ARENA_CCIP_REFERENCES`` (one subfolder of reference images per character, the rule of
:func:`arena.scores.references_for`), CLIP score needs ``ARENA_CLIP_MODEL`` and
``ARENA_CLIP_WEIGHTS``. A metric that is not configured is reported as skipped in the job's
result, not silently passed over. A score already stored over the same images, references and
model files is not computed again (:func:`arena.scores.stored_score_id`). The scoring and
storing itself is :mod:`arena.scores`', the same code `arena score` runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from arena.jobs.context import JobContext
from arena.registry import get_checkpoint
from arena.scores import (
    ScoreTarget,
    ccip_files_version,
    clip_version,
    pool_images,
    references_for,
    score_ccip,
    score_clip,
    stored_score_id,
)
from metrics.file_hash import sha256_file


def _metric_device(device: str | None) -> str:
    """The metric libraries take auto, cpu or cuda (not a CUDA index)."""
    if device is None:
        return "auto"
    return "cuda" if device.startswith("cuda") else "cpu"


def _ccip(ctx: JobContext, name: str) -> list[dict[str, Any]]:
    from metrics.ccip import NothingToScoreError
    from metrics.ccip_model import load_ccip_model

    settings = ctx.settings
    model_dir, refs_dir = Path(str(settings.ccip_model_dir)), Path(str(settings.ccip_references))
    with ctx.db.session(readonly=True) as session:
        groups = pool_images(session, settings.home, name, fixed_only=True)
    todo = []
    for character, images in sorted(groups.items(), key=lambda kv: kv[0] or ""):
        references = references_for(refs_dir, character)
        if references.files:
            todo.append((ScoreTarget.of_pool(name, character, images), references))
    if not todo:
        return [{"metric": "ccip", "skipped": "no character of this pool has reference images"}]
    version = ccip_files_version(model_dir)
    model = None
    out = []
    for target, references in todo:
        ref_shas = [sha256_file(p) for p in references.files]
        with ctx.db.session(readonly=True) as session:
            known = stored_score_id(session, name, "ccip", target.character, version,
                                    target.image_sha256 or [], ref_shas)
        if known is not None:
            out.append({"metric": "ccip", "character": target.character, "score_id": known,
                        "already": True})
            ctx.progress.advance(len(target.images))
            continue
        if model is None:
            model = load_ccip_model(model_dir, device=_metric_device(ctx.device))
        try:
            result, score_id = score_ccip(ctx.db, model, target, references)
        except NothingToScoreError as exc:
            out.append({"metric": "ccip", "character": target.character, "error": str(exc)})
            continue
        out.append({"metric": "ccip", "character": target.character, "value": result.score,
                    "score_id": score_id})
        ctx.progress.advance(len(target.images))
    return out


def _clip(ctx: JobContext, name: str) -> dict[str, Any]:
    from metrics.ccip import NothingToScoreError
    from metrics.clip_score import load_clip_model

    settings = ctx.settings
    with ctx.db.session(readonly=True) as session:
        images = pool_images(session, settings.home, name, fixed_only=False).get(None, [])
    if not images:
        return {"metric": "clip_score", "skipped": "no images in the pool"}
    target = ScoreTarget.of_pool(name, None, images)
    weights = Path(str(settings.clip_weights))
    with ctx.db.session(readonly=True) as session:
        known = stored_score_id(session, name, "clip_score", None,
                                clip_version(sha256_file(weights)), target.image_sha256 or [])
    if known is not None:
        return {"metric": "clip_score", "score_id": known, "already": True}
    model = load_clip_model(
        str(settings.clip_model), weights, config=settings.clip_config,
        device=_metric_device(ctx.device),
    )
    try:
        result, score_id = score_clip(ctx.db, model, target, [i.prompt for i in images])
    except NothingToScoreError as exc:
        return {"metric": "clip_score", "error": str(exc)}
    return {"metric": "clip_score", "value": result.score, "score_id": score_id}


def score_checkpoint(ctx: JobContext) -> dict[str, Any]:
    """Run one ``score`` job (see the module docstring). An unknown checkpoint or a model
    that cannot be loaded is an input error: the worker fails the job at once."""
    name = ctx.payload["checkpoint"]
    settings = ctx.settings
    with ctx.db.session(readonly=True) as session:
        get_checkpoint(session, name)
    scores: list[dict[str, Any]] = []
    ctx.progress.set(0, None, "images")
    if settings.ccip_model_dir and settings.ccip_references:
        scores.extend(_ccip(ctx, name))
    else:
        scores.append({"metric": "ccip", "skipped": "ARENA_CCIP_MODEL_DIR and "
                       "ARENA_CCIP_REFERENCES are not both set"})
    if settings.clip_model and settings.clip_weights:
        scores.append(_clip(ctx, name))
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
