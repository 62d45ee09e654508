"""``arena worker``: take jobs from the queue and run them, renewing their lease meanwhile.

While a job runs, a heartbeat thread renews the job's lease and writes its progress into the
row every few seconds; if the worker is killed the lease runs out and another worker takes
the job again (see :mod:`arena.jobs.queue`). A job that raises is retried up to its
``max_attempts``; :class:`arena.jobs.context.JobFailed` and any input error
(:class:`metrics.errors.InputError`: an unknown checkpoint, a model folder or prompt set that
cannot be used) fail it at once with their one-line message (retrying cannot help). The one
place a job's errors are translated.
"""

from __future__ import annotations

import os
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from arena.db import Database
from arena.errors import InputError, UserError, one_line
from arena.jobs import queue
from arena.jobs.context import JobContext, JobFailed, JobLost, JobTimedOut
from arena.jobs.kinds import KINDS
from arena.settings import Settings

__all__ = ["WorkerStats", "run_one", "run_worker", "worker_name"]


def worker_name() -> str:
    """This worker's name in job rows: host and process id."""
    return f"{socket.gethostname()}:{os.getpid()}"


@dataclass
class WorkerStats:
    """What a worker run did."""

    done: list[int] = field(default_factory=list)
    retried: list[int] = field(default_factory=list)
    failed: list[int] = field(default_factory=list)
    lost: list[int] = field(default_factory=list)


def _check_kinds(kinds: Sequence[str] | None) -> list[str]:
    chosen = list(kinds) if kinds else list(KINDS)
    unknown = [k for k in chosen if k not in KINDS]
    if unknown:
        raise UserError(f"--kinds: unknown job kind {unknown[0]!r}; expected {', '.join(KINDS)}")
    return chosen


@dataclass
class _Deadline:
    """When a try of a job must end, and whether the heartbeat already gave the job up."""

    seconds: float
    at: float
    given_up: str | None = None  # the job's status after the heartbeat gave it up

    @property
    def reason(self) -> str:
        return f"timed out after {self.seconds:g} s (ARENA_JOB_TIMEOUT_SECONDS)"


def _heartbeat_loop(
    db: Database, ctx: JobContext, worker: str, lease: float, stop: threading.Event,
    deadline: _Deadline,
) -> None:
    interval = min(max(lease / 4, 0.2), 5.0)
    while not stop.wait(interval):
        if time.monotonic() > deadline.at + interval:
            # The job did not stop at its deadline (stuck where neither the timer signal nor
            # a progress report reaches it): give the job up here, so it is retried by
            # another worker or failed, and whatever it finishes later is not recorded.
            try:
                deadline.given_up = queue.fail(db, ctx.job_id, worker, deadline.reason)
            except Exception:
                continue
            ctx.progress.lost.set()
            return
        try:
            if not queue.heartbeat(db, ctx.job_id, worker, lease, ctx.progress.snapshot()):
                ctx.progress.lost.set()
                return
        except Exception:  # a missed beat is retried; the lease allows a few
            continue


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def run_one(
    db: Database,
    settings: Settings,
    worker: str,
    kinds: Sequence[str],
    device: str | None = None,
    echo: Callable[[str], None] = print,
    stats: WorkerStats | None = None,
) -> bool:
    """Claim and run one ready job; False when none was ready."""
    stats = stats if stats is not None else WorkerStats()
    lease = settings.job_lease_seconds
    claimed = queue.claim(db, worker, kinds, lease)
    if claimed is None:
        return False
    ctx = JobContext(
        db, settings, claimed.id, claimed.payload, claimed.checkpoint_name, device=device
    )
    label = f"job {claimed.id} {claimed.kind}" + (
        f" {claimed.checkpoint_name}" if claimed.checkpoint_name else ""
    )
    echo(f"{label}: started (attempt {claimed.attempt} of {claimed.max_attempts})")
    stop = threading.Event()
    started = time.monotonic()
    timeout = settings.job_timeout(claimed.kind)
    deadline = _Deadline(timeout, started + timeout)
    ctx.progress.deadline = deadline.at
    beat = threading.Thread(
        target=_heartbeat_loop, args=(db, ctx, worker, lease, stop, deadline), daemon=True
    )
    beat.start()
    result: dict[str, Any] = {}
    error: tuple[str, bool] | None = None
    try:
        with _alarm(timeout):
            result = KINDS[claimed.kind](ctx)
    except JobTimedOut:
        error = (deadline.reason, True)
    except JobLost:
        if deadline.given_up is not None:
            return _given_up(db, settings, claimed, deadline, echo, label, stats)
        stats.lost.append(claimed.id)
        echo(f"{label}: stopped: the job was cancelled or taken over by another worker")
        return True
    except KeyboardInterrupt:
        # Stopped by its operator: give the job back at once rather than at lease expiry.
        queue.fail(db, claimed.id, worker, "the worker was interrupted", retryable=True)
        echo(f"{label}: interrupted; the job is queued again")
        raise
    except (JobFailed, InputError) as exc:
        error = (one_line(exc), False)
    except Exception as exc:  # any crash of a job is recorded on its row
        error = (_one_line(exc), True)
    finally:
        stop.set()
        beat.join()
    if deadline.given_up is not None:  # whatever the job did after its deadline is void
        return _given_up(db, settings, claimed, deadline, echo, label, stats)
    seconds = time.monotonic() - started
    if error is None:
        if queue.finish(db, claimed.id, worker, result, ctx.progress.snapshot()):
            stats.done.append(claimed.id)
            summary = result.get("summary", "")
            echo(f"{label}: done in {seconds:.1f}s" + (f" ({summary})" if summary else ""))
        else:
            stats.lost.append(claimed.id)
            echo(f"{label}: finished, but the job was cancelled or taken over meanwhile")
        return True
    status = queue.fail(db, claimed.id, worker, error[0], retryable=error[1])
    if status is None:
        stats.lost.append(claimed.id)
        echo(f"{label}: failed ({error[0]}), but the job was cancelled or taken over meanwhile")
        return True
    _report(echo, label, status, f"after {seconds:.1f}s: {error[0]}", stats, claimed.id)
    _after_failure(db, settings, claimed, status)
    return True


def _given_up(db: Database, settings: Settings, claimed: queue.Claimed, deadline: _Deadline,
              echo: Callable[[str], None], label: str, stats: WorkerStats) -> bool:
    status = deadline.given_up or "failed"
    _report(echo, label, status, deadline.reason, stats, claimed.id)
    _after_failure(db, settings, claimed, status)
    return True


def _report(echo: Callable[[str], None], label: str, status: str, why: str,
            stats: WorkerStats, job_id: int) -> None:
    if status == "queued":
        stats.retried.append(job_id)
        echo(f"{label}: gave up {why}; queued again")
    else:
        stats.failed.append(job_id)
        echo(f"{label}: failed {why}")


def _after_failure(db: Database, settings: Settings, claimed: queue.Claimed,
                   status: str) -> None:
    """A typed prompt's images wait for every checkpoint queued for it; one that failed for
    good is waited for no longer (see :func:`arena.jobs.render.reveal_typed_prompt`)."""
    if status == "failed" and claimed.kind == "generate" and "prompt_id" in claimed.payload:
        from arena.jobs.render import reveal_typed_prompt

        reveal_typed_prompt(db, settings, int(claimed.payload["prompt_id"]))


@contextmanager
def _alarm(seconds: float) -> Iterator[None]:
    """Raise :class:`JobTimedOut` in the job after ``seconds`` (a timer signal, which also
    interrupts a blocking wait); only in the main thread, where Python delivers signals.
    Elsewhere the job stops at its next progress report past the deadline."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def expire(_signum: int, _frame: Any) -> None:
        raise JobTimedOut("the job ran past its timeout")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def run_worker(
    db: Database,
    settings: Settings,
    *,
    once: bool = False,
    kinds: Sequence[str] | None = None,
    device: str | None = None,
    echo: Callable[[str], None] = print,
    stop: threading.Event | None = None,
) -> WorkerStats:
    """Run jobs until stopped; with ``once``, until no job is ready."""
    chosen = _check_kinds(kinds)
    worker = worker_name()
    stats = WorkerStats()
    stop = stop or threading.Event()
    while not stop.is_set():
        if run_one(db, settings, worker, chosen, device, echo, stats):
            continue
        if once:
            break
        stop.wait(settings.worker_poll_seconds)
    return stats
