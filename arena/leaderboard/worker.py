"""The leaderboard's own process: it renders views, refits Bradley-Terry and stores aggregates.

Rendering a view (the board log, the figures, their JSON) and fitting Bradley-Terry are
Python work; in the server's interpreter they would hold the lock the vote path needs (a
vote thread waits for it at every database round trip, so a vote overlapping a render takes
several times longer). One worker process per server therefore owns its own engine and
caches and does all of it at a lower CPU priority; a Gradio handler sends (board, system,
knob) and waits for the finished view, which frees the interpreter while it waits.

In the background the worker reads every board once (its stored aggregate and the votes
after it), and keeps each board's stored aggregate recent (:func:`refresh`): every
``STORE_EVERY`` settled votes on a board it stores the board log and its Bradley-Terry fit,
so a restarted server's first view reads a short tail. A vote counts as settled once the
newest vote id was seen to be past it ``SETTLE_SECONDS`` ago: votes commit in id order
(:mod:`arena.db`), and the window keeps a stored aggregate from skipping a vote even if one
ever committed late.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import logging
import multiprocessing
import os
import threading
import time
from collections import deque
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import OperationalError

from arena.db import Database
from arena.matchmaking import SETTLE_SECONDS
from arena.settings import Settings

__all__ = ["NICE", "REFRESH_SECONDS", "STORE_EVERY", "Refresher", "close_workers", "worker_for"]

NICE = 10  # the worker's CPU priority below the server's: votes first
REFRESH_SECONDS = 15.0
STORE_EVERY = 2_000  # settled votes on a board between two stored aggregates
CLOSE_SECONDS = 2.0  # how long a stopping server waits for its worker before killing it
_MAX_WORKERS = 4  # live worker processes (one per database a process serves; tests use more)

log = logging.getLogger(__name__)


@dataclass
class Refresher:
    """The background state of one worker: newest vote ids seen (with when), and per board
    the settled aggregate being advanced and the vote count last stored."""

    seen: deque[tuple[float, int]] = field(default_factory=deque)
    settled: dict[str, Any] = field(default_factory=dict)
    stored_votes: dict[str, int] = field(default_factory=dict)
    settle_to: int = 0

    def settle(self, newest: int, now: float) -> int:
        """The newest vote id that no uncommitted vote can precede any more."""
        self.seen.append((now, newest))
        while self.seen and now - self.seen[0][0] >= SETTLE_SECONDS:
            self.settle_to = max(self.settle_to, self.seen.popleft()[1])
        return self.settle_to


def refresh(db: Database, settings: Settings, state: Refresher,
            now: float | None = None) -> None:
    """One background pass: read every board (filling this process's caches; the first pass
    also loads each board's Bradley-Terry fit, later ones leave refits to views), then store
    the aggregate of each board that gained ``STORE_EVERY`` settled votes since last stored,
    with its Bradley-Terry fit. ``now``: the monotonic time (tests pass their own)."""
    from arena.decisions import exclusions
    from arena.leaderboard.fits import bt_rows, fit_bt_rows, refit_pool, store_fit
    from arena.leaderboard.log import BoardLog, board_log, read_after, store_log, stored_log
    from arena.leaderboard.view import board_choices
    from arena.models import Vote
    from arena.ratings import rating_config

    config = rating_config(settings)
    first = not state.seen
    with db.session(readonly=True) as session:
        newest = session.scalar(select(func.max(Vote.id))) or 0
        boards = board_choices(session)
        excluded = exclusions(session)
        for board in boards:
            board_log(session, board, config)
            if first:
                bt_rows(session, board, settings, wait=False)
    settle_to = state.settle(newest, time.monotonic() if now is None else now)
    for board in boards:
        with db.session(readonly=True) as session:
            settled = state.settled.get(board)
            if settled is None or settled.excluded != excluded:  # a new operator decision
                settled = stored_log(session, board, config, excluded)
                state.stored_votes[board] = settled.votes if settled else 0
                settled = settled or BoardLog(board, config.elo, config.both_bad_as_draw,
                                              excluded=excluded)
                state.settled[board] = settled
            read_after(session, settled, upto=settle_to)
        if settled.votes - state.stored_votes[board] < STORE_EVERY:
            continue
        rows = refit_pool().apply(fit_bt_rows, (dict(settled.ballots), config, settings,
                                                settled.last_vote_id))
        with db.session() as session:
            store_log(session, settled)
            store_fit(session, settled, settings, rows)
        state.stored_votes[board] = settled.votes


# --- inside the worker process ---------------------------------------------------------

_DB: list[Database] = []
_SETTINGS: list[Settings] = []
_BACKGROUND: list[threading.Thread] = []


def _start(url: str, settings: Settings, server: int) -> None:
    from arena.lifeline import exit_with_parent

    exit_with_parent(server)  # a killed server leaves no worker behind
    with contextlib.suppress(OSError):  # not permitted: same priority, still its own lock
        os.nice(NICE)
    # What the first view would otherwise load (seconds on a small machine): the render
    # modules, scipy.stats (imported lazily by metrics.rank_stats), the ORM's mappers.
    import scipy.stats  # noqa: F401
    from sqlalchemy.orm import configure_mappers

    import arena.leaderboard.render  # noqa: F401

    configure_mappers()
    _DB.append(Database(url))
    _SETTINGS.append(settings)


def _render(board: str, system: str, knob: str, max_age: float) -> Any:
    from arena.leaderboard.render import render

    return render(_DB[0], _SETTINGS[0], board, system, knob, max_age)


def _rows(board: str, system: str) -> Any:
    """The board's rows for the JSON API: Bradley-Terry from the fit at hand (stored, or this
    worker's), a refit started here when newer votes exist, never in the server's process; an
    unknown board is a :class:`NotFound` naming the known ones."""
    from arena.leaderboard.rows import board_rows
    from arena.leaderboard.view import require_board

    with _DB[0].session(readonly=True) as session:
        require_board(session, board)
        return board_rows(session, board, system, _SETTINGS[0], wait=False)


def _loop() -> None:
    state = Refresher()
    while True:
        try:
            refresh(_DB[0], _SETTINGS[0], state)
        except OperationalError as exc:  # the database is away: one line a pass, not a trace
            reason = str(exc.orig or exc).strip().splitlines()[0]
            log.warning("leaderboard background refresh: database unavailable (%s)", reason)
        except Exception:  # a failed pass only means the next one tries again
            log.warning("leaderboard background refresh failed", exc_info=True)
        time.sleep(REFRESH_SECONDS)


def _background() -> None:
    if not _BACKGROUND:
        thread = threading.Thread(target=_loop, name="leaderboard-refresh", daemon=True)
        _BACKGROUND.append(thread)
        thread.start()


def _ping() -> int:
    return os.getpid()


# --- in the server process -------------------------------------------------------------

class BoardWorker:
    """The worker process serving one database's leaderboard views."""

    def __init__(self, url: str, settings: Settings) -> None:
        self._args = (url, settings, os.getpid())
        self._pool = self._new_pool()

    def _new_pool(self) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"),
                                   initializer=_start, initargs=self._args)

    def view(self, board: str, system: str, knob: str, max_age: float) -> Any:
        """The rendered view (:class:`arena.leaderboard.render.Rendered`); a UserError from the
        worker is raised here. A worker that died is replaced once."""
        try:
            return self._pool.submit(_render, board, system, knob, max_age).result()
        except BrokenProcessPool:
            log.warning("the leaderboard worker died; starting another")
            self._pool = self._new_pool()
            return self._pool.submit(_render, board, system, knob, max_age).result()

    async def rows(self, board: str, system: str) -> Any:
        """:func:`arena.leaderboard.rows.board_rows` computed in the worker (Bradley-Terry
        from the fit at hand, see :func:`_rows`), awaited on the event loop without a thread
        of this process; a UserError from the worker is raised here."""
        try:
            return await asyncio.wrap_future(self._pool.submit(_rows, board, system))
        except BrokenProcessPool:
            log.warning("the leaderboard worker died; starting another")
            self._pool = self._new_pool()
            return await asyncio.wrap_future(self._pool.submit(_rows, board, system))

    def start_background(self) -> None:
        """Start the worker's background reading and storing (:func:`refresh`)."""
        self._pool.submit(_background)

    def ping(self) -> int:
        """Wait until the worker runs; its process id."""
        return self._pool.submit(_ping).result()

    def close(self, timeout: float = CLOSE_SECONDS) -> None:
        """Stop the worker process: asked to end, then killed if it has not within
        ``timeout`` seconds (a render or a refit in progress is not waited for)."""
        # The executor's own processes: shutdown() has no timeout to bound the wait with.
        processes = list((getattr(self._pool, "_processes", None) or {}).values())
        self._pool.shutdown(wait=False, cancel_futures=True)
        deadline = time.monotonic() + timeout
        for process in processes:
            process.join(max(0.0, deadline - time.monotonic()))
            if process.is_alive():
                process.kill()
                process.join(1.0)


_WORKERS: dict[tuple[str, str], BoardWorker] = {}
_GUARD = threading.Lock()


def worker_for(db: Database, settings: Settings) -> BoardWorker:
    """The worker for this database and settings, started on first use."""
    key = (db.url, settings.model_dump_json())
    with _GUARD:
        worker = _WORKERS.get(key)
        if worker is None:
            worker = _WORKERS[key] = BoardWorker(db.url, settings)
            while len(_WORKERS) > _MAX_WORKERS:
                _WORKERS.pop(next(iter(_WORKERS))).close()
        return worker


def close_workers() -> None:
    """Stop every worker process of this process."""
    with _GUARD:
        workers = list(_WORKERS.values())
        _WORKERS.clear()
    for worker in workers:
        worker.close()


atexit.register(close_workers)
