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
import socket
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from arena.db import Database
from arena.errors import InputError, UserError, one_line
from arena.jobs import queue
from arena.jobs.context import JobContext, JobFailed, JobLost
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


def _heartbeat_loop(
    db: Database, ctx: JobContext, worker: str, lease: float, stop: threading.Event
) -> None:
    interval = min(max(lease / 4, 0.2), 5.0)
    while not stop.wait(interval):
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
    beat = threading.Thread(
        target=_heartbeat_loop, args=(db, ctx, worker, lease, stop), daemon=True
    )
    beat.start()
    started = time.monotonic()
    result: dict[str, Any] = {}
    error: tuple[str, bool] | None = None
    try:
        result = KINDS[claimed.kind](ctx)
    except JobLost:
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
    elif status == "queued":
        stats.retried.append(claimed.id)
        echo(f"{label}: crashed after {seconds:.1f}s, queued again: {error[0]}")
    else:
        stats.failed.append(claimed.id)
        echo(f"{label}: failed: {error[0]}")
    return True


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
