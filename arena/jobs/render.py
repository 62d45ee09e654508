"""The ``generate`` job: render a checkpoint's pool and add it prompt by prompt, whole.

Images are rendered a few prompts at a time (all seeds of each), imported hidden, and then
revealed in one transaction per chunk, so matchmaking never sees a (checkpoint, prompt) with
only some of its seeds. Images already in the pool are not rendered again.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import select, update

from arena.jobs.context import JobContext, JobFailed
from arena.matches import prompt_hash
from arena.models import Image, Prompt
from arena.registry import get_checkpoint
from metrics.match_kinds import TYPED_PROMPT_KIND

if TYPE_CHECKING:
    from generation.prompt_sets import PromptEntry, PromptSet

IMAGES_PER_CALL = 8


def load_set(name: str) -> PromptSet:
    """A configured prompt set: 'default' (the shipped one) or a YAML path."""
    from generation.prompt_sets import default_prompt_set, load_prompt_set

    return default_prompt_set() if name == "default" else load_prompt_set(Path(name))


def _typed_prompt_set(ctx: JobContext) -> PromptSet:
    """A one-prompt set for a prompt a voter typed, rendered like the first configured set."""
    from generation.prompt_sets import PromptEntry

    names = ctx.settings.prompt_set_names
    base = load_set(names[0] if names else "default")
    prompt_id = int(ctx.payload["prompt_id"])
    with ctx.db.session() as session:
        prompt = session.get(Prompt, prompt_id)
        if prompt is None:
            raise JobFailed(f"prompt {prompt_id} no longer exists")
        has_images = session.scalar(select(Image.id).where(Image.prompt_id == prompt_id).limit(1))
        if has_images is None and prompt.source == "voter":
            # Typed prompts carry no negative prompt; the first render gives them the pool's.
            prompt.negative_prompt = base.settings.negative_prompt
        text, negative = prompt.text, prompt.negative_prompt
    entry = PromptEntry(kind=TYPED_PROMPT_KIND, prompt=text)
    settings = replace(base.settings, negative_prompt=negative)
    return replace(base, name="typed", entries=(entry,), settings=settings)


def _missing(ctx: JobContext, checkpoint_id: int, prompt_set: PromptSet) -> list[PromptEntry]:
    """Entries whose every seed is not yet visible in the pool for this checkpoint."""
    with ctx.db.session(readonly=True) as session:
        have = {
            (text_hash, kind, seed)
            for text_hash, kind, seed in session.execute(
                select(Prompt.text_hash, Prompt.kind, Image.seed)
                .join(Prompt, Prompt.id == Image.prompt_id)
                .where(Image.checkpoint_id == checkpoint_id, Image.hidden.is_(False))
            )
        }
    return [
        entry
        for entry in prompt_set.entries
        if any(
            (prompt_hash(entry.prompt), entry.kind, seed) not in have for seed in prompt_set.seeds
        )
    ]


def render_into_pool(ctx: JobContext) -> dict[str, Any]:
    """Run one ``generate`` job (see the module docstring)."""
    from arena.matchmaking import invalidate
    from arena.pool import import_records
    from generation.pipeline import CheckpointSpec, Runtime, load_pipeline
    from generation.pool import generate_pool

    name = ctx.payload["checkpoint"]
    with ctx.db.session(readonly=True) as session:
        row = get_checkpoint(session, name)
        spec = CheckpointSpec(
            Path(row.path), name=row.name, config_dir=ctx.settings.sdxl_config_dir,
            sha256=row.sha256,
        )
        checkpoint_id = row.id
    prompt_set = (
        _typed_prompt_set(ctx)
        if ctx.payload.get("free_prompt") is not None
        else load_set(ctx.payload["prompt_set"])
    )
    seeds = len(prompt_set.seeds)
    total = len(prompt_set.entries) * seeds
    todo = _missing(ctx, checkpoint_id, prompt_set)
    ctx.progress.set(total - len(todo) * seeds, total, "images")
    if not todo:
        return {"rendered": 0, "images": total, "summary": "already in the pool"}
    loaded = load_pipeline(spec, Runtime(device=ctx.device))
    per_call = max(1, IMAGES_PER_CALL // max(1, seeds))
    rendered = revealed = 0
    for start in range(0, len(todo), per_call):
        chunk = replace(prompt_set, entries=tuple(todo[start : start + per_call]))
        report = generate_pool(loaded, chunk, ctx.settings.home, progress=False)
        rendered += len(report.generated)
        imported = import_records(
            ctx.db, report.rows, ctx.settings, base=ctx.settings.home, progress=False,
            hidden=True,
        )
        if imported.skipped:
            first = imported.skipped[0]
            raise JobFailed(f"image {first.file} could not join the pool: {first.reason}")
        hashes = [str(r["sha256"]) for r in report.rows]
        with ctx.db.session() as session:
            revealed += session.execute(
                update(Image)
                .where(Image.checkpoint_id == checkpoint_id, Image.sha256.in_(hashes))
                .values(hidden=False)
            ).rowcount or 0
        invalidate(ctx.db.url)
        ctx.progress.advance(len(report.rows))
    return {
        "rendered": rendered,
        "images": total,
        "revealed": revealed,
        "prompt_set": prompt_set.name,
        "summary": f"{rendered} images rendered, {len(todo)} prompts added to the pool",
    }
