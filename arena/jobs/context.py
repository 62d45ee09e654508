"""What a job kind is given to run: the database, settings, device and a progress reporter."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

from arena.db import Database
from arena.settings import Settings


class JobFailed(Exception):
    """A job cannot succeed as given (e.g. its checkpoint file is gone): fail it without
    retrying. Input errors (:class:`metrics.errors.InputError`) fail a job the same way
    without being wrapped in this."""


class JobTimedOut(Exception):
    """The job ran past its timeout (``ARENA_JOB_TIMEOUT_SECONDS``): the worker gives it up."""


class JobLost(Exception):
    """The worker no longer holds the job (cancelled, or taken over after its lease lapsed)."""


@dataclass
class Progress:
    """Progress of the running job; the worker's heartbeat writes it into the job's row.

    When the heartbeat finds the job cancelled or taken over it sets ``lost``, and the job's
    next progress report raises :class:`JobLost`, so the job stops there; past ``deadline``
    (a ``time.monotonic()`` value) a progress report raises :class:`JobTimedOut`.
    """

    done: int = 0
    total: int | None = None
    unit: str | None = None
    lost: threading.Event = field(default_factory=threading.Event, repr=False)
    deadline: float | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def _check(self) -> None:
        if self.lost.is_set():
            raise JobLost("the job was cancelled or taken over by another worker")
        if self.deadline is not None and time.monotonic() > self.deadline:
            raise JobTimedOut("the job ran past its timeout")

    def set(self, done: int, total: int | None = None, unit: str | None = None) -> None:
        self._check()
        with self._lock:
            self.done = done
            if total is not None:
                self.total = total
            if unit is not None:
                self.unit = unit

    def advance(self, count: int = 1) -> None:
        self._check()
        with self._lock:
            self.done += count

    def snapshot(self) -> tuple[int, int | None, str | None]:
        with self._lock:
            return self.done, self.total, self.unit


@dataclass
class JobContext:
    """One run of one job."""

    db: Database
    settings: Settings
    job_id: int
    payload: dict[str, Any]
    checkpoint_name: str | None
    device: str | None = None
    progress: Progress = field(default_factory=Progress)
