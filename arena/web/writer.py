"""Where the voting endpoints' transactions run: on the event loop itself when that cannot
wait (SQLite, no other writer at work), else on writer threads.

A hand-off to a thread costs more CPU than a short SQLite transaction gains by it: the two
threads pass the GIL back and forth at every statement (vote_load, 8 clients on SQLite:
about 1 ms of server CPU per match+vote cycle of about 4). So on SQLite a transaction runs
inline when this process's write lock is free and no other process holds the database's: the
lock is tried without waiting, and the transaction's ``BEGIN IMMEDIATE`` runs with a busy
timeout of 0, failing at once instead of sleeping (up to the 30 s busy timeout) on the event
loop. Either refusal hands the transaction to the writer thread, where it waits as before:
the event loop never waits for a lock, only runs the transaction's own statements.
PostgreSQL transactions wait on the network: they always run on threads, which overlap them.
"""

from __future__ import annotations

import asyncio
import functools
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine, event
from sqlalchemy.exc import OperationalError

from arena.db import Database

T = TypeVar("T")
_BUSY_KEY = "arena_busy_timeout_ms"  # the connection's busy timeout, when changed here


def writer_threads(db: Database) -> ThreadPoolExecutor:
    """The threads that run the voting endpoints' transactions: one on SQLite, whose writers
    queue behind one lock anyway (one thread spares the GIL hand-offs of many), four on
    PostgreSQL, where transactions overlap while they wait on the network. More threads cost
    more than they overlap: every statement releases the GIL, and each waiting thread takes
    it (vote_load, 8 clients: 4.2-4.6 ms of server CPU per cycle with 16, 3.4 ms with 4)."""
    workers = 1 if db.dialect == "sqlite" else 4
    return ThreadPoolExecutor(max_workers=workers, thread_name_prefix="arena-writer")


class Writer:
    """Runs the voting endpoints' transactions for one app (``app.state.writer``)."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.threads = writer_threads(db)
        self._inline = db.dialect == "sqlite"
        self._attempt = threading.local()  # .on: an inline attempt; .began: its BEGIN passed
        if self._inline:
            self._watch_connections(db.engine)

    async def run(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        """``fn(*args, **kwargs)``, one transaction, inline or on a writer thread.

        A request whose client goes away still finishes its transaction; only the answer is
        dropped."""
        if self._inline and self.db.write_lock.acquire(blocking=False):
            attempt = self._attempt
            attempt.on, attempt.began = True, False
            try:
                return fn(*args, **kwargs)
            except OperationalError:
                if attempt.began:
                    raise
                # Another process holds the database's write lock: nothing ran; wait for it
                # on the writer thread below.
            finally:
                attempt.on = False
                self.db.write_lock.release()
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.threads, functools.partial(fn, *args, **kwargs))

    def _watch_connections(self, engine: Engine) -> None:
        """Give the connection of an inline attempt a busy timeout of 0 and every other one
        the configured timeout (set when a connection is checked out of the pool, before any
        statement), and note when the attempt's ``BEGIN IMMEDIATE`` (emitted by
        :mod:`arena.db`'s own ``begin`` listener, which runs before this one) passed."""
        attempt = self._attempt

        def checkout(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
            inline = getattr(attempt, "on", False)
            configured = record.info.get(_BUSY_KEY)  # set while this connection's is 0
            if inline and configured is None:
                record.info[_BUSY_KEY] = dbapi_connection.execute(
                    "PRAGMA busy_timeout").fetchone()[0]
                dbapi_connection.execute("PRAGMA busy_timeout=0")
            elif not inline and configured is not None:
                dbapi_connection.execute(f"PRAGMA busy_timeout={int(configured)}")
                del record.info[_BUSY_KEY]

        def began(conn: Connection) -> None:
            if getattr(attempt, "on", False) and not conn.get_execution_options().get(
                    "arena_readonly", False):
                attempt.began = True

        event.listen(engine, "checkout", checkout)
        event.listen(engine, "begin", began)
