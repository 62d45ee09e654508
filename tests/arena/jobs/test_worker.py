"""Workers as separate processes: several on one PostgreSQL queue take every job exactly once,
and a worker killed with SIGKILL mid-job leaves a job that another worker finishes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from arena.db import Database
from arena.jobs import queue
from arena.jobs.plan import CheckpointRequest, queue_checkpoint
from arena.jobs.worker import run_worker
from arena.models import Checkpoint, Job
from arena.registry import add_config
from arena.settings import Settings
from training.config import parse_config

ROOT = Path(__file__).resolve().parents[3]


def _worker(db: Database, home: Path, *args: str, lease: float = 30.0) -> subprocess.Popen:
    env = {
        **os.environ,
        "ARENA_DATABASE_URL": db.url,
        "ARENA_HOME": str(home),
        "ARENA_JOB_LEASE_SECONDS": str(lease),
        "ARENA_WORKER_POLL_SECONDS": "0.2",
    }
    return subprocess.Popen(
        [sys.executable, "-m", "arena.cli.main", "worker", *args],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        # Ctrl-C's default action, whatever this run inherited: a shell starts a background
        # job with SIGINT ignored, and Python then never raises KeyboardInterrupt for it.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )


def _register(db: Database, settings: Settings, paths: list[Path]) -> None:
    with db.session() as session:
        add_config(session, parse_config({"name": "run"}, source="test"))
        for path in paths:
            queue_checkpoint(session, settings, CheckpointRequest(str(path), config="run"))


@pytest.fixture
def pg_db(pg_db_url: str) -> Iterator[Database]:
    database = Database(pg_db_url)
    yield database
    database.dispose()


def test_two_worker_processes_on_postgresql_run_each_job_once(pg_db: Database,
                                                              tmp_path: Path) -> None:
    files = []
    for i in range(24):
        path = tmp_path / f"ckpt-{i:02d}.safetensors"
        path.write_bytes(b"\x02\x00\x00\x00\x00\x00\x00\x00{}" + os.urandom(256 << 10))
        files.append(path)
    settings = Settings(home=tmp_path / "home", database_url=pg_db.url)
    _register(pg_db, settings, files)
    workers = [_worker(pg_db, tmp_path / "home", "--once", "--kinds", "hash") for _ in range(2)]
    outputs = [w.communicate(timeout=240)[0] for w in workers]
    assert [w.returncode for w in workers] == [0, 0], outputs
    with pg_db.session(readonly=True) as session:
        jobs = session.scalars(select(Job).where(Job.kind == "hash")).all()
        assert len(jobs) == 24
        assert {(j.status, j.attempts) for j in jobs} == {("done", 1)}
        hashed = dict(session.execute(select(Checkpoint.path, Checkpoint.sha256)).all())
    from metrics.file_hash import sha256_file

    assert hashed == {str(p): sha256_file(p) for p in files}
    started = sum(out.count(": started") for out in outputs)
    assert started == 24  # one start line per job across both workers


def test_concurrent_claims_on_postgresql_never_share_a_job(pg_db: Database) -> None:
    """Four threads, each with its own connection pool, claim from one queue at once."""
    with pg_db.session() as session:
        for i in range(60):
            queue.enqueue(session, "hash", {"i": i})
    taken: list[list[int]] = [[] for _ in range(4)]
    barrier = threading.Barrier(4)

    def claim_all(slot: int) -> None:
        own = Database(pg_db.url)
        try:
            barrier.wait()
            while (job := queue.claim(own, f"w{slot}", ["hash"], 30)) is not None:
                taken[slot].append(job.id)
        finally:
            own.dispose()

    threads = [threading.Thread(target=claim_all, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    every = [job for part in taken for job in part]
    assert len(every) == 60 and len(set(every)) == 60


def test_job_of_a_killed_worker_is_finished_by_another(db: Database, tmp_path: Path) -> None:
    big = tmp_path / "big.safetensors"
    with big.open("wb") as handle:  # sparse: hashing reads 3 GiB, the disk holds almost none
        handle.write(b"\x02\x00\x00\x00\x00\x00\x00\x00{}")  # a safetensors header
        handle.truncate(3 << 30)
    home = tmp_path / "home"
    settings = Settings(home=home, database_url=db.url, job_lease_seconds=1.5,
                        prompt_sets="default")
    _register(db, settings, [big])
    with db.session(readonly=True) as session:
        job_id = session.scalar(select(Job.id).where(Job.kind == "hash"))
    victim = _worker(db, home, "--kinds", "hash", lease=1.5)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:  # until the job reports progress into its row
            with db.session(readonly=True) as session:
                job = session.get(Job, job_id)
                assert job is not None
                if job.status == "running" and job.progress_done > 0:
                    break
            assert victim.poll() is None, victim.communicate()[0]
            time.sleep(0.02)
        else:
            pytest.fail("the worker never reported progress")
        assert job.progress_total == 3 << 30 and job.progress_done < job.progress_total
        victim.send_signal(signal.SIGKILL)
        victim.wait(timeout=30)
    finally:
        if victim.poll() is None:
            victim.kill()
    while True:  # the lease runs out, since nobody renews it any more
        with db.session(readonly=True) as session:
            job = session.get(Job, job_id)
            assert job is not None
            if job.lease_expires_at is not None and job.lease_expires_at.timestamp() < time.time():
                break
        time.sleep(0.1)
    stats = run_worker(db, settings, once=True, kinds=["hash"], echo=lambda _: None)
    assert stats.done == [job_id]
    with db.session(readonly=True) as session:
        job = session.get(Job, job_id)
        assert job is not None and job.status == "done" and job.attempts == 2
        from metrics.file_hash import sha256_file

        assert session.scalar(select(Checkpoint.sha256)) == sha256_file(big)


def test_interrupted_worker_gives_its_job_back(db: Database, tmp_path: Path) -> None:
    big = tmp_path / "big.safetensors"
    with big.open("wb") as handle:
        handle.write(b"\x02\x00\x00\x00\x00\x00\x00\x00{}")  # a safetensors header
        handle.truncate(3 << 30)
    home = tmp_path / "home"
    settings = Settings(home=home, database_url=db.url, prompt_sets="default")
    _register(db, settings, [big])
    worker = _worker(db, home, "--kinds", "hash", lease=1.0)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            with db.session(readonly=True) as session:
                job = session.scalar(select(Job).where(Job.kind == "hash"))
                assert job is not None
                if job.status == "running" and job.progress_done > 0:
                    break
            time.sleep(0.02)
        worker.send_signal(signal.SIGINT)
        output = worker.communicate(timeout=60)[0]
    finally:
        if worker.poll() is None:
            worker.kill()
    assert worker.returncode == 130, output
    assert "interrupted; the job is queued again" in output
    with db.session(readonly=True) as session:
        job = session.scalar(select(Job).where(Job.kind == "hash"))
        assert job is not None and job.status == "queued" and job.worker is None
        assert "interrupted" in (job.error or "")
