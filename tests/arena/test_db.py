"""The Core connections of the voting path keep the sessions' guarantees: one transaction,
committed on success and rolled back on any error, on both backends."""

from __future__ import annotations

import pytest
from sqlalchemy import create_engine, func, insert, select, text
from sqlalchemy.exc import OperationalError

import arena.db
from arena.db import Database
from arena.models import Voter, utcnow


def voters(db: Database) -> int:
    with db.connection(readonly=True) as conn:
        return conn.execute(select(func.count()).select_from(Voter)).scalar_one()


def test_connection_commits_on_success_and_rolls_back_on_error(db: Database) -> None:
    row = {"external_id": "voter-committed", "created_at": utcnow()}
    with db.connection(serialized=True) as conn:
        conn.execute(insert(Voter), row)
    assert voters(db) == 1
    with pytest.raises(RuntimeError), db.connection() as conn:
        conn.execute(insert(Voter), {**row, "external_id": "voter-rolled-back"})
        raise RuntimeError("a refusal after the write")
    assert voters(db) == 1
    with pytest.raises(ValueError, match="writing session"), db.connection(serialized=True,
                                                                           readonly=True):
        pass


def _backend_pid(db: Database) -> int:
    with db.connection(readonly=True) as conn:
        return conn.execute(text("SELECT pg_backend_pid()")).scalar_one()


def _terminate(db: Database, pid: int) -> None:
    admin = create_engine(db.engine.url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        assert conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid}).scalar()
    admin.dispose()


def test_a_pooled_connection_lost_while_idle_is_replaced(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A server connection closed while it sat in the pool (a restart, an idle timeout) is
    pinged before its next use and replaced: the request succeeds. Pinging is what saves it:
    a connection reused within the idle window is not pinged and fails."""
    if db.dialect == "sqlite":
        pytest.skip("SQLite has no server connection to lose")
    monkeypatch.setattr(arena.db, "IDLE_PING_SECONDS", 3600.0)
    lost = _backend_pid(db)
    _terminate(db, lost)
    with pytest.raises(OperationalError):
        _backend_pid(db)  # reused at once: no ping, the closed connection fails
    # SQLAlchemy discarded the pool on that failure; lose the next connection while idle.
    idle = _backend_pid(db)
    _terminate(db, idle)
    monkeypatch.setattr(arena.db, "IDLE_PING_SECONDS", 0.0)
    assert _backend_pid(db) not in (lost, idle)
