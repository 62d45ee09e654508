"""The ``generate`` job: render a checkpoint's pool and add it prompt by prompt, whole.

Images are rendered a few prompts at a time (all seeds of each), imported hidden, and then
revealed in one transaction per chunk, so matchmaking never sees a (checkpoint, prompt) with
only some of its seeds. Images already in the pool are not rendered again.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from arena.db import Database
from arena.image_store import served_path
from arena.jobs.context import JobContext, JobFailed
from arena.matches import prompt_hash
from arena.models import Checkpoint, Image, Job, Prompt
from arena.registry import get_checkpoint
from arena.settings import Settings
from metrics.match_kinds import TYPED_PROMPT_KIND

if TYPE_CHECKING:
    from generation.prompt_sets import PromptEntry, PromptSet

IMAGES_PER_CALL = 8


_VERIFIED: dict[tuple[str, tuple[int, ...]], str] = {}


def _file_identity(path: Path) -> tuple[int, ...]:
    """What changes when a file or folder is replaced or rewritten (the change time cannot be
    set back by a user): device, inode, size, modification and change times of each file."""
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    out: list[int] = []
    for file in files:
        st = file.stat()
        out += [st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns]
    return tuple(out)


def _check_unchanged(path: Path, recorded: str | None, name: str) -> None:
    """Fail the job when the checkpoint's file no longer has the hash it was registered with
    (images would be stamped with a hash that is not theirs). Hashed once per process and
    file state, so the worker's next job on an untouched file does not hash it again."""
    from metrics.file_hash import sha256_path

    try:
        key = (str(path), _file_identity(path))
        if key not in _VERIFIED:
            _VERIFIED[key] = sha256_path(path)
    except OSError as exc:
        raise JobFailed(f"checkpoint {name!r}: cannot read {path}: {exc.strerror or exc}") from None
    if recorded is not None and _VERIFIED[key] != recorded:
        raise JobFailed(
            f"checkpoint {name!r}: {path} changed after it was registered (sha256 "
            f"{_VERIFIED[key][:12]}, registered {recorded[:12]}); register the new file "
            "under a new name"
        )


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


def _reveal(ctx: JobContext, where: tuple[Any, ...]) -> int:
    """Reveal the hidden images matching ``where`` whose served file is in the store (never a
    row whose file is missing: a voter would get an error for it)."""
    with ctx.db.session() as session:
        return _reveal_in(session, ctx.settings, where)


def _reveal_in(session: Session, settings: Settings, where: tuple[Any, ...]) -> int:
    rows = session.execute(
        select(Image.id, Image.served_sha256).where(Image.hidden.is_(True), *where)
    ).all()
    ready = [image_id for image_id, served in rows
             if served_path(settings.home, served).is_file()]
    if not ready:
        return 0
    return session.execute(
        update(Image).where(Image.id.in_(ready)).values(hidden=False)
    ).rowcount or 0


def reveal_typed_prompt(db: Database, settings: Settings, prompt_id: int) -> int:
    """Reveal a typed prompt's images once every checkpoint queued for it has all its seeds.

    Until then none is shown, so neither the first match on the prompt nor the order in
    which images arrive tells which checkpoint rendered first (claim order). Each finishing
    job calls this with the prompt row locked, after its own images are committed, so the
    last one to finish sees every image and reveals them together. Checkpoints whose job
    failed or was cancelled are not waited for. Returns how many images were revealed.
    """
    from arena.matchmaking import invalidate

    names = settings.prompt_set_names
    seeds = len(load_set(names[0] if names else "default").seeds)
    with db.session() as session:
        session.execute(select(Prompt.id).where(Prompt.id == prompt_id).with_for_update())
        queued_for = session.scalars(
            select(Checkpoint.id)
            .join(Job, Job.checkpoint_name == Checkpoint.name)
            .where(Job.kind == "generate",
                   Job.payload["prompt_id"].as_integer() == prompt_id,
                   Job.status.not_in(("failed", "cancelled")))
        ).all()
        have = dict(session.execute(
            select(Image.checkpoint_id, func.count(Image.id))
            .where(Image.prompt_id == prompt_id, Image.served_sha256.is_not(None))
            .group_by(Image.checkpoint_id)
        ).all())
        if any(have.get(checkpoint, 0) < seeds for checkpoint in queued_for):
            return 0
        revealed = _reveal_in(session, settings, (Image.prompt_id == prompt_id,))
    invalidate(db.url)
    return revealed


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
    typed_prompt = (
        int(ctx.payload["prompt_id"]) if ctx.payload.get("free_prompt") is not None else None
    )
    prompt_set = (
        _typed_prompt_set(ctx) if typed_prompt is not None else load_set(ctx.payload["prompt_set"])
    )
    seeds = len(prompt_set.seeds)
    total = len(prompt_set.entries) * seeds
    todo = _missing(ctx, checkpoint_id, prompt_set)
    ctx.progress.set(total - len(todo) * seeds, total, "images")
    if not todo:
        if typed_prompt is not None:
            reveal_typed_prompt(ctx.db, ctx.settings, typed_prompt)
        return {"rendered": 0, "images": total, "summary": "already in the pool"}
    _check_unchanged(spec.path, spec.sha256, name)
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
        if typed_prompt is None:
            hashes = [str(r["sha256"]) for r in report.rows]
            revealed += _reveal(ctx, (Image.checkpoint_id == checkpoint_id,
                                      Image.sha256.in_(hashes)))
            invalidate(ctx.db.url)
        ctx.progress.advance(len(report.rows))
    if typed_prompt is not None:
        revealed = reveal_typed_prompt(ctx.db, ctx.settings, typed_prompt)
    return {
        "rendered": rendered,
        "images": total,
        "revealed": revealed,
        "prompt_set": prompt_set.name,
        "summary": f"{rendered} images rendered, {len(todo)} prompts added to the pool",
    }
