"""Admin JSON API for trainers and operators: register a checkpoint (202 + its queued jobs),
read a checkpoint's state (config, jobs, pool, scores, ratings) and a job, and list the voters
the robust board flags on a board (reliability, signals, why).

Every route needs the admin bearer token (``ARENA_ADMIN_TOKEN``); without it nothing is read
or stored.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, ConfigDict, Field

from arena.jobs.plan import CheckpointRequest as Request
from arena.jobs.plan import queue_checkpoint
from arena.jobs.queue import describe_job, get_job
from arena.leaderboard.voters import suspicious
from arena.registry import checkpoint_status
from arena.web.http import DB, ERROR_RESPONSES, SETTINGS, require_admin

router = APIRouter(
    prefix="/api/v1", dependencies=[Depends(require_admin)], responses=ERROR_RESPONSES
)


class CheckpointRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    path: str = Field(max_length=4000, description="Checkpoint file or diffusers folder.")
    config: str | None = Field(default=None, description="Name of a registered config.")
    config_data: dict[str, Any] | None = Field(
        default=None, description="A full training config to register (and link) first."
    )
    name: str | None = Field(default=None, max_length=200)
    step: int | None = Field(default=None, ge=0)
    metadata: dict[str, Any] = Field(
        default_factory=dict, description="What the trainer knows (e.g. ss_* header keys)."
    )


@router.post("/checkpoints", status_code=202)
def create_checkpoint(body: CheckpointRequest, db: DB, settings: SETTINGS) -> dict[str, Any]:
    """Register a checkpoint and queue its work: hash, generate per prompt set, score."""
    with db.session() as session:
        queued = queue_checkpoint(session, settings, Request(**body.model_dump()))
        return {
            "checkpoint": queued.name,
            "config": queued.config,
            "created": queued.created,
            "jobs": [describe_job(job) for job in queued.jobs],
        }


@router.get("/checkpoints/{name}")
def read_checkpoint(name: str, db: DB, settings: SETTINGS) -> dict[str, Any]:
    """A checkpoint's config, jobs, pool size, scores and ratings."""
    with db.session(readonly=True) as session:
        return checkpoint_status(session, settings, name)


@router.get("/jobs/{job_id}")
def read_job(job_id: int, db: DB) -> dict[str, Any]:
    """One job: status, attempts, progress, error, result."""
    with db.session(readonly=True) as session:
        return describe_job(get_job(session, job_id))


@router.get("/voters/suspicious")
def suspicious_voters(db: DB, settings: SETTINGS,
                      board: str = Query("overall", max_length=250),
                      every: bool = Query(False, alias="all")) -> dict[str, Any]:
    """Voters of a board flagged as possible vote riggers (``all=true``: every voter), with
    reliability, behaviour signals and the reasons, and the exclusions in force."""
    with db.session(readonly=True) as session:
        return suspicious(session, board, settings, every=every)
