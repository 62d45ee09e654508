"""The job queue in the ``jobs`` table: enqueue with dedup keys, claim under a lease, finish.

Claiming takes the oldest ready job (queued, of a kind the worker runs, whose ``after`` job is
done) and holds it under a lease that the worker renews while it works. On PostgreSQL the
claim locks the row with ``FOR UPDATE SKIP LOCKED``, so any number of workers on any number of
hosts take distinct jobs; on SQLite every writing transaction is exclusive (one worker is the
supported setup). A job whose lease expired (its worker crashed or was killed) is queued again
until ``max_attempts`` tries are spent, then marked failed with the reason; jobs that wait on
a failed or cancelled job fail or are cancelled with it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, aliased

from arena.db import Database
from arena.errors import Conflict, NotFound
from arena.models import Job, utcnow

__all__ = [
    "Claimed",
    "cancel",
    "claim",
    "describe_job",
    "enqueue",
    "fail",
    "finish",
    "get_job",
    "heartbeat",
    "list_jobs",
    "retry",
]

ERROR_CHARS = 4000


@dataclass(frozen=True)
class Claimed:
    """A job a worker now holds: what to run and on which try."""

    id: int
    kind: str
    payload: dict[str, Any]
    attempt: int
    max_attempts: int
    checkpoint_name: str | None


def enqueue(
    session: Session,
    kind: str,
    payload: dict[str, Any],
    *,
    dedup_key: str | None = None,
    checkpoint_name: str | None = None,
    after: Job | None = None,
    max_attempts: int = 3,
) -> tuple[Job, bool]:
    """Queue a job; with a ``dedup_key`` already queued (in any state) return that job instead.

    Returns the job and whether it is new. Safe under concurrent callers: the unique key
    decides, and the loser reads the winner's row.
    """
    if dedup_key is not None:
        existing = session.scalar(select(Job).where(Job.dedup_key == dedup_key))
        if existing is not None:
            return existing, False
    job = Job(
        kind=kind,
        payload=payload,
        dedup_key=dedup_key,
        checkpoint_name=checkpoint_name,
        after_id=after.id if after is not None else None,
        max_attempts=max_attempts,
        status="queued",
        attempts=0,
        progress_done=0,
    )
    try:
        with session.begin_nested():
            session.add(job)
            session.flush()
    except IntegrityError:
        existing = session.scalar(select(Job).where(Job.dedup_key == dedup_key))
        if existing is None:
            raise
        return existing, False
    return job, True


def _locked(db: Database, query):  # type: ignore[no-untyped-def]
    """``query`` with a row lock that skips rows other workers hold (PostgreSQL)."""
    if db.dialect == "postgresql":
        return query.with_for_update(skip_locked=True, of=Job)
    return query


def _cascade(session: Session, job: Job, status: str, why: str) -> None:
    """Jobs waiting on ``job`` can never run: mark them ``status`` too, transitively."""
    waiting = session.scalars(
        select(Job).where(Job.after_id == job.id, Job.status == "queued")
    ).all()
    for child in waiting:
        child.status = status
        child.error = why
        child.finished_at = utcnow()
        _cascade(session, child, status, why)


def _give_up(session: Session, job: Job, error: str) -> None:
    job.status = "failed"
    job.error = error[:ERROR_CHARS]
    job.finished_at = utcnow()
    job.lease_expires_at = None
    _cascade(session, job, "failed", f"needs job {job.id} ({job.kind}), which failed")


def _reap(db: Database, session: Session) -> None:
    """Requeue (or fail, when out of tries) running jobs whose lease has expired."""
    now = utcnow()
    expired = session.scalars(
        _locked(
            db,
            select(Job).where(Job.status == "running", Job.lease_expires_at < now).order_by(Job.id),
        )
    ).all()
    for job in expired:
        why = (
            f"worker {job.worker} stopped answering during attempt {job.attempts} of "
            f"{job.max_attempts} (lease expired)"
        )
        if job.attempts >= job.max_attempts:
            _give_up(session, job, why)
        else:
            job.status = "queued"
            job.error = why
            job.worker = None
            job.lease_expires_at = None


def claim(
    db: Database, worker: str, kinds: Sequence[str], lease_seconds: float
) -> Claimed | None:
    """Take the oldest ready job of one of ``kinds`` for ``worker``, or None when there is none."""
    with db.session() as session:
        _reap(db, session)
        before = aliased(Job)
        done = select(before.id).where(before.status == "done")
        job = session.scalar(
            _locked(
                db,
                select(Job)
                .where(
                    Job.status == "queued",
                    Job.kind.in_(list(kinds)),
                    or_(Job.after_id.is_(None), Job.after_id.in_(done)),
                )
                .order_by(Job.id)
                .limit(1),
            )
        )
        if job is None:
            return None
        now = utcnow()
        job.status = "running"
        job.worker = worker
        job.attempts += 1
        job.started_at = now
        job.heartbeat_at = now
        job.lease_expires_at = now + timedelta(seconds=lease_seconds)
        job.progress_done = 0
        job.progress_total = None
        return Claimed(
            job.id, job.kind, dict(job.payload), job.attempts, job.max_attempts,
            job.checkpoint_name,
        )


def _held(session: Session, job_id: int, worker: str) -> Job | None:
    """The job if ``worker`` still holds it (not cancelled, not taken over after a lapse)."""
    job = session.get(Job, job_id, with_for_update=True)
    if job is None or job.status != "running" or job.worker != worker:
        return None
    return job


def heartbeat(
    db: Database,
    job_id: int,
    worker: str,
    lease_seconds: float,
    progress: tuple[int, int | None, str | None] | None = None,
) -> bool:
    """Renew the lease and record progress; False when the worker no longer holds the job."""
    with db.session() as session:
        job = _held(session, job_id, worker)
        if job is None:
            return False
        now = utcnow()
        job.heartbeat_at = now
        job.lease_expires_at = now + timedelta(seconds=lease_seconds)
        if progress is not None:
            job.progress_done, job.progress_total, job.progress_unit = progress
        return True


def finish(
    db: Database,
    job_id: int,
    worker: str,
    result: dict[str, Any],
    progress: tuple[int, int | None, str | None] | None = None,
) -> bool:
    """Mark a held job done with its result and last progress; False when the worker had
    lost it."""
    with db.session() as session:
        job = _held(session, job_id, worker)
        if job is None:
            return False
        job.status = "done"
        job.result = result
        job.error = None
        job.finished_at = utcnow()
        job.lease_expires_at = None
        if progress is not None:
            job.progress_done, job.progress_total, job.progress_unit = progress
        return True


def fail(db: Database, job_id: int, worker: str, error: str, retryable: bool = True) -> str | None:
    """Record a crash: queue the job again while tries remain, else mark it failed.

    Returns the new status, or None when the worker had lost the job.
    """
    with db.session() as session:
        job = _held(session, job_id, worker)
        if job is None:
            return None
        if retryable and job.attempts < job.max_attempts:
            job.status = "queued"
            job.error = f"attempt {job.attempts} of {job.max_attempts}: {error}"[:ERROR_CHARS]
            job.worker = None
            job.lease_expires_at = None
        else:
            _give_up(session, job, error)
        return job.status


def get_job(session: Session, job_id: int) -> Job:
    """A job by id, or NotFound."""
    if not 1 <= job_id < 2**31:  # ids are positive INTEGER (32-bit) columns
        raise NotFound(f"unknown job {job_id}; see `arena jobs list`")
    job = session.get(Job, job_id)
    if job is None:
        raise NotFound(f"unknown job {job_id}; see `arena jobs list`")
    return job


def _requeue_dependents(session: Session, job: Job) -> None:
    marker = f"needs job {job.id} "
    for child in session.scalars(select(Job).where(Job.after_id == job.id)).all():
        if child.status in ("failed", "cancelled") and (child.error or "").startswith(marker):
            _reset(child)
            _requeue_dependents(session, child)


def _reset(job: Job) -> None:
    job.status = "queued"
    job.attempts = 0
    job.error = None
    job.worker = None
    job.finished_at = None
    job.lease_expires_at = None


def retry(session: Session, job_id: int) -> Job:
    """Queue a failed or cancelled job again with fresh tries (and the jobs that waited on it)."""
    job = get_job(session, job_id)
    if job.status not in ("failed", "cancelled"):
        raise Conflict(f"job {job_id} is {job.status}; only failed or cancelled jobs are retried")
    _reset(job)
    _requeue_dependents(session, job)
    return job


def cancel(session: Session, job_id: int) -> Job:
    """Cancel a queued or running job (and the jobs waiting on it); a running job's worker
    notices at its next heartbeat and stops the job at its next progress report."""
    job = get_job(session, job_id)
    if job.status not in ("queued", "running"):
        raise Conflict(f"job {job_id} is {job.status}; only queued or running jobs are cancelled")
    job.status = "cancelled"
    job.finished_at = utcnow()
    job.lease_expires_at = None
    _cascade(session, job, "cancelled", f"needs job {job.id} ({job.kind}), which was cancelled")
    return job


def list_jobs(
    session: Session,
    status: str | None = None,
    checkpoint: str | None = None,
    limit: int = 100,
) -> list[Job]:
    """Newest jobs first, optionally of one status or checkpoint."""
    query = select(Job).order_by(Job.id.desc()).limit(limit)
    if status is not None:
        query = query.where(Job.status == status)
    if checkpoint is not None:
        query = query.where(Job.checkpoint_name == checkpoint)
    return list(session.scalars(query).all())


def describe_job(job: Job) -> dict[str, Any]:
    """A job as JSON-ready data."""
    return {
        "id": job.id,
        "kind": job.kind,
        "status": job.status,
        "checkpoint": job.checkpoint_name,
        "payload": job.payload,
        "after": job.after_id,
        "attempts": job.attempts,
        "max_attempts": job.max_attempts,
        "progress": {
            "done": job.progress_done,
            "total": job.progress_total,
            "unit": job.progress_unit,
        },
        "worker": job.worker,
        "error": job.error,
        "result": job.result,
        "created_at": job.created_at.isoformat() if job.created_at else None,
        "started_at": job.started_at.isoformat() if job.started_at else None,
        "finished_at": job.finished_at.isoformat() if job.finished_at else None,
    }
