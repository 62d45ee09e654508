"""Which jobs a new checkpoint or a voter's typed prompt gets.

A checkpoint registration is checked at once (the path exists and has a checkpoint's format,
the config is registered, the name is free) and queues, in order: ``hash`` (which records the
checkpoint; large files are hashed by a worker, never inside an HTTP request), one
``generate`` per configured prompt set, then ``score``. Each waits on the one before, so a
checkpoint is scored once its images exist. Dedup keys make a repeated registration return
the jobs already queued.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from arena.errors import Conflict, UserError
from arena.jobs.queue import enqueue
from arena.models import Checkpoint, Image, Job
from arena.registry import (
    add_config,
    check_shown_name,
    checkpoint_format,
    checkpoint_path,
    get_config,
)
from arena.settings import Settings
from training.config import parse_config

__all__ = [
    "CheckpointRequest",
    "QueuedCheckpoint",
    "queue_checkpoint",
    "queue_checkpoint_work",
    "queue_free_prompt",
]

WAITING = ("queued", "running")


@dataclass(frozen=True)
class CheckpointRequest:
    """A checkpoint to register: where it is, which config produced it, and what the trainer
    knows about it (``metadata``, e.g. a kohya file's ``ss_*`` header keys)."""

    path: str
    config: str | None = None
    config_data: dict[str, Any] | None = None
    name: str | None = None
    step: int | None = None
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass
class QueuedCheckpoint:
    """What a registration did: the checkpoint's name, its config and its jobs."""

    name: str
    config: str
    created: bool
    jobs: list[Job]


def _config_name(session: Session, request: CheckpointRequest) -> str:
    if (request.config is None) == (request.config_data is None):
        raise UserError("give exactly one of 'config' (a registered name) or 'config_data'")
    if request.config_data is not None:
        config = parse_config(request.config_data, source="config_data")
        return add_config(session, config).name
    return get_config(session, str(request.config)).name


def queue_checkpoint(
    session: Session, settings: Settings, request: CheckpointRequest
) -> QueuedCheckpoint:
    """Check a registration and queue its hash, generate and score jobs (see module doc)."""
    path = checkpoint_path(request.path)
    fmt = checkpoint_format(path)
    if request.step is not None and request.step < 0:
        raise UserError(f"step must be >= 0, got {request.step}")
    config = _config_name(session, request)
    name = check_shown_name(
        "checkpoint name", request.name or (path.stem if fmt == "safetensors" else path.name))
    known = session.scalar(select(Checkpoint).where(Checkpoint.name == name))
    if known is not None and Path(known.path) != path:
        raise Conflict(f"checkpoint name {name!r} is already registered for {known.path}")
    pending = session.scalar(select(Job).where(Job.dedup_key == f"register:{name}"))
    if pending is not None and pending.payload.get("path") != str(path):
        raise Conflict(
            f"checkpoint name {name!r} is already being registered for {pending.payload['path']}"
        )
    payload = {
        "path": str(path),
        "config": config,
        "name": name,
        "step": request.step,
        "metadata": request.metadata,
    }
    attempts = settings.job_max_attempts
    hash_job, created = enqueue(
        session, "hash", payload, dedup_key=f"register:{name}", checkpoint_name=name,
        max_attempts=attempts,
    )
    jobs = [hash_job, *queue_checkpoint_work(session, settings, name, after=hash_job)]
    return QueuedCheckpoint(name, config, created and known is None, jobs)


def queue_checkpoint_work(
    session: Session, settings: Settings, name: str, after: Job | None = None
) -> list[Job]:
    """Queue rendering on every configured prompt set, then scoring, for checkpoint ``name``."""
    jobs: list[Job] = []
    previous = after
    for prompt_set in settings.prompt_set_names:
        job, _ = enqueue(
            session,
            "generate",
            {"checkpoint": name, "prompt_set": prompt_set},
            dedup_key=f"generate:{name}:{prompt_set}",
            checkpoint_name=name,
            after=previous,
            max_attempts=settings.job_max_attempts,
        )
        jobs.append(job)
        previous = job
    job, _ = enqueue(
        session,
        "score",
        {"checkpoint": name},
        dedup_key=f"score:{name}",
        checkpoint_name=name,
        after=previous,
        max_attempts=settings.job_max_attempts,
    )
    jobs.append(job)
    return jobs


@dataclass(frozen=True)
class QueuedPrompt:
    """What became of a typed prompt: the jobs queued for it, or why none was."""

    jobs: tuple[int, ...]
    refused: str | None = None


def _waiting_free_jobs(session: Session, voter_id: int | None = None,
                       address: str | None = None) -> int:
    """Typed-prompt generate jobs waiting: all of them, or those one voter or one address
    (its limit key) asked for."""
    waiting = [
        Job.kind == "generate",
        Job.status.in_(WAITING),
        Job.payload["free_prompt"].as_string().is_not(None),
    ]
    if voter_id is not None:
        waiting.append(Job.payload["voter_id"].as_integer() == voter_id)
    if address is not None:
        waiting.append(Job.payload["address"].as_string() == address)
    return int(session.scalar(select(func.count(Job.id)).where(*waiting)) or 0)


def _waiting_prompts(session: Session, voter_id: int) -> int:
    """How many typed prompts one voter has waiting for rendering."""
    prompts = func.count(func.distinct(Job.payload["prompt_id"].as_integer()))
    return int(session.scalar(select(prompts).where(
        Job.kind == "generate", Job.status.in_(WAITING),
        Job.payload["free_prompt"].as_string().is_not(None),
        Job.payload["voter_id"].as_integer() == voter_id,
    )) or 0)


def queue_free_prompt(
    session: Session, settings: Settings, prompt_id: int, text: str, voter_id: int,
    address: str | None = None,
) -> QueuedPrompt:
    """Queue one ``generate`` job per active checkpoint (one with images in the pool) for a
    prompt a voter typed, deduplicated per (checkpoint, prompt), within the configured bounds:
    prompts waiting per voter, jobs waiting in all, and each submitter's share of the queue
    (no voter and no address, given as its limit key, holds more than
    ``free_prompt_share`` of ``free_prompt_jobs_total``; one prompt is always allowed to a
    submitter with nothing waiting).
    """
    active = session.scalars(
        select(Checkpoint.name)
        .where(Checkpoint.id.in_(select(Image.checkpoint_id).where(Image.hidden.is_(False))))
        .order_by(Checkpoint.id)
    ).all()
    if len(active) < 2:
        return QueuedPrompt((), "fewer than two checkpoints are in the pool")
    keys = {name: f"generate-free:{name}:{prompt_id}" for name in active}
    known = set(session.scalars(select(Job.dedup_key).where(Job.dedup_key.in_(keys.values()))))
    missing = [name for name in active if keys[name] not in known]
    if not missing:
        return QueuedPrompt(tuple(
            session.scalars(select(Job.id).where(Job.dedup_key.in_(keys.values()))).all()
        ))
    if _waiting_prompts(session, voter_id) >= settings.free_prompt_jobs_per_voter:
        return QueuedPrompt((), "you already have typed prompts waiting to be rendered")
    if _waiting_free_jobs(session) + len(missing) > settings.free_prompt_jobs_total:
        return QueuedPrompt((), "the rendering queue for typed prompts is full")
    share = int(settings.free_prompt_share * settings.free_prompt_jobs_total)
    for who, held in (("voter", _waiting_free_jobs(session, voter_id=voter_id)),
                      ("address", _waiting_free_jobs(session, address=address)
                       if address is not None else 0)):
        if held and held + len(missing) > share:
            return QueuedPrompt((), f"your {who} already has {held} typed-prompt jobs waiting "
                                    f"(at most {share} per {who}, a fair share of the queue)")
    # Queued (and so claimed) in a random order: claimed by checkpoint id, the first images
    # of a typed prompt would always come from the lowest-id checkpoints.
    random.SystemRandom().shuffle(missing)
    ids = []
    for name in missing:
        job, _ = enqueue(
            session,
            "generate",
            {"checkpoint": name, "free_prompt": text, "prompt_id": prompt_id, "voter_id": voter_id,
             "address": address},
            dedup_key=keys[name],
            checkpoint_name=name,
            max_attempts=settings.job_max_attempts,
        )
        ids.append(job.id)
    return QueuedPrompt(tuple(ids))
