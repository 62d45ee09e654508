"""The job kinds a worker runs: ``hash``, ``generate`` and ``score``.

Each takes a :class:`arena.jobs.context.JobContext` and returns a JSON-ready result (its
``summary`` is printed on the worker's progress line). All three are idempotent: a repeated
``hash`` records nothing new, a repeated ``generate`` finds every image in the pool, and a
repeated ``score`` finds a stored score over the same images, references and model files.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from arena.jobs.context import JobContext, JobFailed
from metrics.file_hash import sha256_path

__all__ = ["KINDS"]


def run_hash(ctx: JobContext) -> dict[str, Any]:
    """Hash the checkpoint file (or folder) and record it in the registry with its config."""
    from arena.registry import record_checkpoint

    payload = ctx.payload
    path = Path(payload["path"])
    if not path.exists():
        raise JobFailed(f"checkpoint {path} does not exist")
    files = [p for p in path.rglob("*") if p.is_file()] if path.is_dir() else [path]
    ctx.progress.set(0, sum(p.stat().st_size for p in files), "bytes")
    digest = sha256_path(path, ctx.progress.advance)
    with ctx.db.session() as session:
        registered = record_checkpoint(
            session,
            path,
            payload["config"],
            digest,
            payload.get("name"),
            payload.get("step"),
            payload.get("metadata") or None,
        )
    return {
        "checkpoint": registered.name,
        "sha256": digest,
        "created": registered.created,
        "summary": f"sha256 {digest[:12]}" + ("" if registered.created else ", already recorded"),
    }


def run_generate(ctx: JobContext) -> dict[str, Any]:
    """Render a prompt set (or one typed prompt) for a checkpoint and add it to the pool."""
    from arena.jobs.render import render_into_pool

    return render_into_pool(ctx)


def run_score(ctx: JobContext) -> dict[str, Any]:
    """CCIP per character with references, and CLIP score, of the checkpoint's pool images."""
    from arena.jobs.scoring import score_checkpoint

    return score_checkpoint(ctx)


KINDS: dict[str, Callable[[JobContext], dict[str, Any]]] = {
    "hash": run_hash,
    "generate": run_generate,
    "score": run_score,
}
