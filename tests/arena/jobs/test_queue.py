"""The job queue on both databases: dedup, dependencies, leases, retries, cancel, the CLI."""

from __future__ import annotations

import json
import time
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select, update
from typer.testing import CliRunner

from arena.cli.main import app
from arena.db import Database
from arena.errors import Conflict
from arena.jobs import queue
from arena.jobs.context import JobContext, JobFailed
from arena.jobs.kinds import KINDS
from arena.jobs.worker import run_worker
from arena.models import Job, utcnow
from arena.settings import Settings

runner = CliRunner()


def _queue(db: Database, kind: str = "hash", key: str | None = None, after: int | None = None,
           attempts: int = 3) -> int:
    with db.session() as session:
        parent = session.get(Job, after) if after is not None else None
        job, _ = queue.enqueue(session, kind, {"n": key}, dedup_key=key, after=parent,
                               max_attempts=attempts)
        return job.id


def _status(db: Database, job_id: int) -> tuple[str, int, str | None]:
    with db.session(readonly=True) as session:
        job = session.get(Job, job_id)
        assert job is not None
        return job.status, job.attempts, job.error


def test_dedup_key_returns_the_first_job(db: Database) -> None:
    first = _queue(db, key="generate:a:default")
    assert _queue(db, key="generate:a:default") == first
    assert _queue(db, key="generate:b:default") != first
    with db.session(readonly=True) as session:
        assert len(queue.list_jobs(session)) == 2


def test_claim_takes_oldest_ready_job_and_respects_dependencies(db: Database) -> None:
    first = _queue(db, "hash")
    second = _queue(db, "generate", after=first)
    other = _queue(db, "score")
    got = queue.claim(db, "w1", ["hash", "generate"], 30)
    assert got is not None and got.id == first and got.attempt == 1
    # generate waits on the running hash job; score is not a kind this worker takes
    assert queue.claim(db, "w2", ["generate"], 30) is None
    assert queue.finish(db, first, "w1", {"ok": True})
    got = queue.claim(db, "w2", ["generate"], 30)
    assert got is not None and got.id == second
    assert queue.claim(db, "w3", ["score"], 30).id == other  # type: ignore[union-attr]
    assert _status(db, first)[0] == "done"


def test_crash_is_retried_then_fails_with_its_error_and_fails_dependents(db: Database) -> None:
    job = _queue(db, attempts=2)
    child = _queue(db, "generate", after=job)
    for expected in ("queued", "failed"):
        claimed = queue.claim(db, "w", ["hash"], 30)
        assert claimed is not None and claimed.id == job
        assert queue.fail(db, job, "w", "OSError: disk on fire") == expected
    status, attempts, error = _status(db, job)
    assert (status, attempts) == ("failed", 2) and "disk on fire" in (error or "")
    assert _status(db, child)[0] == "failed"
    assert f"needs job {job}" in (_status(db, child)[2] or "")
    with db.session() as session:
        queue.retry(session, job)
    assert _status(db, job) == ("queued", 0, None)
    assert _status(db, child)[0] == "queued"


def test_expired_lease_is_taken_again_and_counted(db: Database) -> None:
    job = _queue(db, attempts=2)
    assert queue.claim(db, "dead-worker", ["hash"], 30) is not None
    assert queue.claim(db, "w2", ["hash"], 30) is None  # the lease still holds
    with db.session() as session:
        session.execute(update(Job).values(lease_expires_at=utcnow() - timedelta(seconds=1)))
    again = queue.claim(db, "w2", ["hash"], 30)
    assert again is not None and again.id == job and again.attempt == 2
    # the dead worker comes back: it no longer holds the job, so its result is not recorded
    assert not queue.finish(db, job, "dead-worker", {"late": True})
    assert not queue.heartbeat(db, job, "dead-worker", 30)
    with db.session() as session:
        session.execute(update(Job).values(lease_expires_at=utcnow() - timedelta(seconds=1)))
    assert queue.claim(db, "w3", ["hash"], 30) is None
    status, attempts, error = _status(db, job)
    assert (status, attempts) == ("failed", 2)
    assert "lease expired" in (error or "") and "w2" in (error or "")


def test_cancel_and_retry_refusals(db: Database) -> None:
    job = _queue(db)
    child = _queue(db, "generate", after=job)
    with db.session() as session, pytest.raises(Conflict, match="only failed or cancelled"):
        queue.retry(session, job)
    with db.session() as session:
        queue.cancel(session, job)
    assert _status(db, child)[0] == "cancelled"
    with db.session() as session, pytest.raises(Conflict, match="only queued or running"):
        queue.cancel(session, job)
    assert queue.claim(db, "w", ["hash", "generate"], 30) is None


def test_worker_records_crash_and_job_failed(db: Database, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """A job kind that raises is retried up to max_attempts; JobFailed fails it at once."""
    calls: list[int] = []

    def crashing(ctx: JobContext) -> dict:
        calls.append(ctx.job_id)
        raise RuntimeError("boom\nsecond line")

    def refusing(ctx: JobContext) -> dict:
        raise JobFailed("checkpoint /x does not exist")

    monkeypatch.setitem(KINDS, "hash", crashing)
    monkeypatch.setitem(KINDS, "score", refusing)
    crash = _queue(db, "hash", attempts=2)
    refuse = _queue(db, "score", attempts=3)
    settings = Settings(home=tmp_path, database_url=db.url)
    lines: list[str] = []
    stats = run_worker(db, settings, once=True, echo=lines.append)
    assert calls == [crash, crash]
    assert stats.failed == [crash, refuse] and stats.retried == [crash]
    assert _status(db, crash) == ("failed", 2, "RuntimeError: boom")
    assert _status(db, refuse) == ("failed", 1, "checkpoint /x does not exist")
    assert any("queued again" in line for line in lines)


def test_heartbeat_writes_progress_into_the_row(db: Database, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[tuple] = []

    def slow(ctx: JobContext) -> dict:
        ctx.progress.set(0, 3, "images")
        for _ in range(3):
            ctx.progress.advance()
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:  # wait until a heartbeat wrote this step
                with ctx.db.session(readonly=True) as session:
                    job = session.get(Job, ctx.job_id)
                    assert job is not None
                    if job.progress_done == ctx.progress.done:
                        seen.append((job.progress_done, job.progress_total, job.progress_unit))
                        break
                time.sleep(0.05)
        return {"summary": "slow"}

    monkeypatch.setitem(KINDS, "hash", slow)
    job = _queue(db)
    run_worker(db, Settings(home=tmp_path, database_url=db.url, job_lease_seconds=0.8),
               once=True, echo=lambda _: None)
    assert seen == [(1, 3, "images"), (2, 3, "images"), (3, 3, "images")]
    assert _status(db, job)[0] == "done"


def test_cancelled_running_job_stops_at_its_next_progress_report(
    db: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    steps: list[int] = []

    def endless(ctx: JobContext) -> dict:
        if not steps:
            with ctx.db.session() as session:  # an operator cancels it once it runs
                queue.cancel(session, ctx.job_id)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            ctx.progress.advance()
            steps.append(ctx.progress.done)
            time.sleep(0.02)
        return {"summary": "never reached"}

    monkeypatch.setitem(KINDS, "hash", endless)
    job = _queue(db)
    lines: list[str] = []
    stats = run_worker(db, Settings(home=tmp_path, database_url=db.url, job_lease_seconds=0.8),
                       once=True, echo=lines.append)
    assert stats.lost == [job] and stats.done == [] and steps  # it ran, then stopped
    assert _status(db, job)[0] == "cancelled"
    assert "stopped" in lines[-1]


def test_jobs_cli(arena_env: Database) -> None:
    job = _queue(arena_env, attempts=1)
    listed = runner.invoke(app, ["jobs", "list", "--json"])
    assert listed.exit_code == 0, listed.output
    assert [j["id"] for j in json.loads(listed.output)] == [job]
    with arena_env.session() as session:
        session.execute(update(Job).values(status="failed", error="x"))
    assert runner.invoke(app, ["jobs", "retry", str(job)]).exit_code == 0
    assert _status(arena_env, job)[0] == "queued"
    cancelled = runner.invoke(app, ["jobs", "cancel", str(job)])
    assert cancelled.exit_code == 0 and "cancelled" in cancelled.output
    shown = runner.invoke(app, ["jobs", "show", str(job)])
    assert json.loads(shown.output)["status"] == "cancelled"
    missing = runner.invoke(app, ["jobs", "show", "999"])
    assert missing.exit_code == 2 and "unknown job 999" in missing.output
    again = runner.invoke(app, ["jobs", "cancel", str(job)])
    assert again.exit_code == 2 and "only queued or running" in again.output
    bad = runner.invoke(app, ["worker", "--once", "--kinds", "chess"])
    assert bad.exit_code == 2 and "unknown job kind 'chess'" in bad.output
    with arena_env.session(readonly=True) as session:
        assert session.scalar(select(Job.status).where(Job.id == job)) == "cancelled"


def test_jobs_queue_cli_for_a_registered_checkpoint(arena_env: Database, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    from arena.registry import add_checkpoint, add_config
    from arena.settings import get_settings
    from training.config import parse_config

    monkeypatch.setenv("ARENA_PROMPT_SETS", "default, extra.yaml")
    get_settings.cache_clear()
    path = tmp_path / "m.safetensors"
    path.write_bytes(b"\x02\x00\x00\x00\x00\x00\x00\x00{}")
    with arena_env.session() as session:
        add_config(session, parse_config({"name": "run"}, source="test"))
        add_checkpoint(session, path, "run")
    first = runner.invoke(app, ["jobs", "queue", "m", "--json"])
    assert first.exit_code == 0, first.output
    jobs = json.loads(first.output)
    assert [(j["kind"], j["payload"].get("prompt_set")) for j in jobs] == [
        ("generate", "default"), ("generate", "extra.yaml"), ("score", None)]
    assert [j["after"] for j in jobs] == [None, jobs[0]["id"], jobs[1]["id"]]
    again = runner.invoke(app, ["jobs", "queue", "m", "--json"])
    assert [j["id"] for j in json.loads(again.output)] == [j["id"] for j in jobs]
    unknown = runner.invoke(app, ["jobs", "queue", "nope"])
    assert unknown.exit_code == 2 and "unknown checkpoint 'nope'" in unknown.output


def _hung_hash_job(db: Database, tmp_path: Path, attempts: int) -> tuple[int, Path]:
    """A real ``hash`` job whose file is a FIFO nobody writes: reading it blocks forever."""
    import os

    fifo = tmp_path / "hangs.safetensors"
    os.mkfifo(fifo)
    with db.session() as session:
        job, _ = queue.enqueue(session, "hash", {"path": str(fifo), "config": "c", "name": "h"},
                               max_attempts=attempts)
        return job.id, fifo


def test_a_hung_job_is_given_up_at_its_timeout(db: Database, tmp_path: Path) -> None:
    """In the worker's main thread the timeout interrupts the blocked job; the job is retried
    while tries remain, then failed, with the reason on its row."""
    job_id, _ = _hung_hash_job(db, tmp_path, attempts=2)
    settings = Settings(home=tmp_path, database_url=db.url, job_timeout_seconds={"hash": 0.5})
    lines: list[str] = []
    first = run_worker(db, settings, once=True, kinds=["hash"], echo=lines.append)
    assert first.retried == [job_id] and first.failed == [job_id], lines
    status, attempts, error = _status(db, job_id)
    assert (status, attempts) == ("failed", 2)
    assert "timed out after 0.5 s (ARENA_JOB_TIMEOUT_SECONDS)" in (error or "")
    assert any("gave up" in line and "queued again" in line for line in lines)


def test_a_job_stuck_outside_the_main_thread_is_given_up_by_its_heartbeat(
    db: Database, tmp_path: Path
) -> None:
    """Where no timer signal reaches the job (a worker in a thread), the heartbeat gives the
    job up at the deadline; what the stuck call finishes later is not recorded."""
    import threading

    job_id, fifo = _hung_hash_job(db, tmp_path, attempts=1)
    settings = Settings(home=tmp_path, database_url=db.url, job_timeout_seconds={"hash": 0.5},
                        job_lease_seconds=1.0)
    lines: list[str] = []
    worker = threading.Thread(target=run_worker, args=(db, settings),
                              kwargs={"once": True, "kinds": ["hash"], "echo": lines.append})
    worker.start()
    deadline = time.monotonic() + 30
    status, attempts, error = _status(db, job_id)
    while status == "running" or attempts == 0:
        assert time.monotonic() < deadline, "the heartbeat never gave the job up"
        time.sleep(0.1)
        status, attempts, error = _status(db, job_id)
    assert (status, attempts) == ("failed", 1) and "timed out" in (error or "")
    with fifo.open("wb"):  # let the stuck read end; the worker must not record its result
        pass
    worker.join(timeout=30)
    assert not worker.is_alive()
    assert _status(db, job_id)[:2] == ("failed", 1)
    assert any("failed" in line and "timed out" in line for line in lines), lines
