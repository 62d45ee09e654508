"""Where the voting transactions run (arena.web.writer): inline on SQLite while no other
writer is at work, else on the writer thread, which waits for the lock while the event loop
goes on serving."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from arena.db import Database
from arena.matches import register_voter
from arena.settings import Settings
from arena.web.writer import Writer


def _write(db: Database, home: Path, name: str) -> tuple[str, int]:
    """Store a voter; where it ran and its row id."""
    settings = Settings(home=home, database_url=db.url)
    return threading.current_thread().name, register_voter(db, name, settings)


def test_an_uncontended_transaction_runs_inline_on_sqlite_only(db: Database,
                                                               tmp_path: Path) -> None:
    writer = Writer(db)
    where, voter_id = asyncio.run(writer.run(_write, db, tmp_path, "voter-inline-1"))
    assert voter_id > 0
    if db.dialect == "sqlite":
        assert where == threading.current_thread().name  # the event loop's thread
    else:  # PostgreSQL's transactions wait on the network: always on the writer threads
        assert where.startswith("arena-writer")


def _sqlite_only(db: Database) -> None:
    if db.dialect != "sqlite":
        pytest.skip("SQLite's write locks")


def test_another_process_lock_sends_the_transaction_to_the_writer_thread(
    db: Database, tmp_path: Path
) -> None:
    """The event loop never sleeps on the lock (busy timeout): the attempt fails at once, and
    the writer thread waits with the configured busy timeout, then writes."""
    _sqlite_only(db)
    writer = Writer(db)
    asyncio.run(writer.run(_write, db, tmp_path, "voter-warm-up"))  # a pooled connection
    holder = sqlite3.connect(make_url(db.url).database, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # as another process's writer would

    async def main() -> tuple[str, int]:
        task = asyncio.create_task(writer.run(_write, db, tmp_path, "voter-waits-1"))
        await asyncio.sleep(0.3)  # the loop goes on while the transaction waits
        assert not task.done()
        holder.execute("ROLLBACK")
        return await task

    try:
        where, voter_id = asyncio.run(main())
    finally:
        holder.close()
    assert where.startswith("arena-writer") and voter_id > 0
    # The next uncontended transaction runs inline again.
    assert asyncio.run(writer.run(_write, db, tmp_path, "voter-inline-2"))[0] == \
        threading.current_thread().name


def test_a_writer_in_this_process_sends_the_transaction_to_the_writer_thread(
    db: Database, tmp_path: Path
) -> None:
    """Another thread of this process in a write transaction (the UI's handlers): the loop
    does not wait for it either."""
    _sqlite_only(db)
    writer = Writer(db)
    inside, release = threading.Event(), threading.Event()

    def other_writer() -> None:
        with db.connection():
            inside.set()
            release.wait(30)

    other = threading.Thread(target=other_writer)
    other.start()
    inside.wait(30)

    async def main() -> tuple[str, int]:
        task = asyncio.create_task(writer.run(_write, db, tmp_path, "voter-waits-2"))
        await asyncio.sleep(0.3)
        assert not task.done()
        release.set()
        return await task

    try:
        where, voter_id = asyncio.run(main())
    finally:
        release.set()
        other.join()
    assert where.startswith("arena-writer") and voter_id > 0
