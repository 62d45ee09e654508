"""The one way to reach the database: engine setup and transactional sessions."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path

from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DisconnectionError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from arena.errors import UserError

# Key of the PostgreSQL advisory lock that serialises vote transactions, so that votes commit
# in id order and a replay of the log sees them in the order the online ratings did.
VOTE_LOCK_KEY = 0x1A7E_A4E4
_VOTE_LOCK = text("SELECT pg_advisory_xact_lock(:key)")
# A pooled server connection idle longer than this is pinged before use.
IDLE_PING_SECONDS = 10.0


def _ping_when_idle(engine: Engine) -> None:
    """Check a pooled connection before use only when it sat idle over IDLE_PING_SECONDS.

    A connection idle that long may have been closed by a server restart, a proxy or an idle
    timeout: it is pinged, and replaced when the ping fails (the pool retries the checkout).
    One just returned by another request is not: ``pool_pre_ping`` pings on every checkout, a
    round trip per transaction (two per match+vote cycle). A connection broken while in use
    still fails its request, and SQLAlchemy then discards every pooled connection.
    """
    dialect = engine.dialect

    @event.listens_for(engine, "checkin")
    def _idle_from(_dbapi_connection, record) -> None:  # type: ignore[no-untyped-def]
        record.info["idle_since"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _ping_if_idle(dbapi_connection, record, _proxy) -> None:  # type: ignore[no-untyped-def]
        since = record.info.get("idle_since")
        if since is None or time.monotonic() - since <= IDLE_PING_SECONDS:
            return
        try:
            dialect.do_ping(dbapi_connection)
        except dialect.loaded_dbapi.Error as exc:
            raise DisconnectionError(f"pooled connection lost while idle: {exc}") from exc


def _sqlite_setup(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
        # Let SQLAlchemy emit BEGIN itself, so serialized sessions can ask for BEGIN IMMEDIATE.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn) -> None:  # type: ignore[no-untyped-def]
        # A deferred transaction that reads and then writes fails at once with "database is
        # locked" when another writer committed in between (WAL snapshot); writers therefore
        # take the write lock up front and wait for it (busy_timeout) instead.
        readonly = conn.get_execution_options().get("arena_readonly", False)
        conn.exec_driver_sql("BEGIN" if readonly else "BEGIN IMMEDIATE")


def make_engine(url: str) -> Engine:
    """An engine for ``url``; SQLite gets WAL, foreign keys and a busy timeout."""
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise UserError(f"database URL {url!r} is not a valid SQLAlchemy URL") from exc
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database or ""
        if database and database != ":memory:":
            folder = Path(database).parent
            try:
                folder.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise UserError(f"cannot create the database folder {folder}: {exc}") from exc
        engine = create_engine(parsed, connect_args={"timeout": 30})
        _sqlite_setup(engine)
        return engine
    try:
        engine = create_engine(parsed, pool_size=10, max_overflow=20)
    except ModuleNotFoundError as exc:
        raise UserError(
            f"the driver for {parsed.drivername!r} is not installed ({exc.name}); "
            "install the 'postgres' extra"
        ) from exc
    _ping_when_idle(engine)
    return engine


class Database:
    """An engine and the session factory over it."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = make_engine(url)
        self.dialect = self.engine.dialect.name
        # SQLite has one writer at a time; in-process writers queue on this lock instead of
        # polling the file lock (busy_timeout sleeps up to 100 ms between tries, which turns
        # contention into long latency tails). Other processes still meet busy_timeout.
        self.write_lock = threading.RLock() if self.dialect == "sqlite" else nullcontext()
        self._read_engine = self.engine.execution_options(arena_readonly=True)
        self._factory = sessionmaker(self.engine, expire_on_commit=False)
        self._read_factory = sessionmaker(self._read_engine, expire_on_commit=False)

    @classmethod
    def from_settings(cls, settings: object | None = None) -> Database:
        """The database named by the settings (``ARENA_DATABASE_URL`` or the SQLite default)."""
        from arena.settings import Settings, get_settings

        resolved = settings if isinstance(settings, Settings) else get_settings()
        return cls(resolved.url)

    def check(self) -> None:
        """Connect once; a database that cannot be reached is a one-line user error."""
        try:
            # A read: it must not wait for (or take) SQLite's write lock.
            with self.engine.execution_options(arena_readonly=True).connect() as conn:
                conn.execute(text("SELECT 1"))
        except OperationalError as exc:
            reason = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)
            shown = make_url(self.url).render_as_string(hide_password=True)
            raise UserError(f"cannot reach the database {shown}: {reason}") from exc

    @contextmanager
    def session(self, serialized: bool = False, readonly: bool = False) -> Iterator[Session]:
        """A session in one transaction: committed on success, rolled back on any error.

        ``serialized=True`` makes the transaction exclusive among serialized ones (on
        PostgreSQL a transaction-scoped advisory lock; on SQLite every writing transaction is
        already exclusive): vote recording uses it so that concurrent votes never lose a rating
        update and commit in id order. ``readonly=True`` lets SQLite readers run beside a
        writer; such a session must not write.
        """
        if serialized and readonly:
            raise ValueError("a serialized session is a writing session")
        with nullcontext() if readonly else self.write_lock:
            yield from self._transaction(serialized, readonly)

    @contextmanager
    def connection(self, serialized: bool = False, readonly: bool = False) -> Iterator[Connection]:
        """A Core connection in one transaction, with the same guarantees as :meth:`session`.

        For the voting path (match issue, vote, skip), which runs only Core statements: an ORM
        session costs more than the statements it would run (session and transaction state,
        identity map), about a third of a short transaction's CPU.
        """
        if serialized and readonly:
            raise ValueError("a serialized session is a writing session")
        engine = self._read_engine if readonly else self.engine
        with nullcontext() if readonly else self.write_lock, engine.begin() as conn:
            if serialized and self.dialect == "postgresql":
                conn.execute(_VOTE_LOCK, {"key": VOTE_LOCK_KEY})
            yield conn

    def _transaction(self, serialized: bool, readonly: bool) -> Iterator[Session]:
        session = (self._read_factory if readonly else self._factory)()
        try:
            if serialized and self.dialect == "postgresql":
                session.execute(_VOTE_LOCK, {"key": VOTE_LOCK_KEY})
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()

    def dispose(self) -> None:
        """Close every pooled connection."""
        self.engine.dispose()
