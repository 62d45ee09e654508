"""Fixtures shared by every test: real databases (a SQLite file and the PostgreSQL server).

Each test gets a fresh, migrated database: SQLite tests copy a file migrated once per session,
PostgreSQL tests clone a database migrated once per session (``CREATE DATABASE ... TEMPLATE``).
Under ``CI=true`` an unreachable PostgreSQL server fails the run instead of skipping.
"""

from __future__ import annotations

import os
import shutil
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import settings as hypothesis_settings
from sqlalchemy import create_engine, text

from arena.db import Database
from arena.migrate import upgrade
from arena.settings import get_settings

# Tests never assert on wall-clock time: Hypothesis' per-example deadline would be one.
hypothesis_settings.register_profile("arena", deadline=None)
hypothesis_settings.load_profile("arena")

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

PG_SERVER = os.environ.get("ARENA_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432")
BACKENDS = ("sqlite", "postgresql")


def _pg_admin():  # type: ignore[no-untyped-def]
    return create_engine(f"{PG_SERVER}/postgres", isolation_level="AUTOCOMMIT")


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite file migrated to head once per test session."""
    path = tmp_path_factory.mktemp("template") / "arena.db"
    upgrade(f"sqlite:///{path}")
    Database(f"sqlite:///{path}").engine.dispose()
    return path


@pytest.fixture(scope="session")
def pg_template() -> Iterator[str]:
    """A PostgreSQL database migrated to head once per session; dropped at the end."""
    admin = _pg_admin()
    try:
        with admin.connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception as exc:
        admin.dispose()
        message = f"PostgreSQL at {PG_SERVER} is unreachable: {exc}"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    name = f"arena_tmpl_{uuid.uuid4().hex[:10]}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    upgrade(f"{PG_SERVER}/{name}")
    yield name
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def _close_board_workers() -> None:
    """Stop the leaderboard worker processes a test started (they would go on refreshing a
    database the fixture is about to remove)."""
    board_worker = sys.modules.get("arena.leaderboard.worker")
    if board_worker is not None:
        board_worker.close_workers()


def _fresh_database(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if backend == "sqlite":
        template: Path = request.getfixturevalue("sqlite_template")
        target = tmp_path / "arena.db"
        shutil.copyfile(template, target)
        yield f"sqlite:///{target}"
        _close_board_workers()
        return
    template_name: str = request.getfixturevalue("pg_template")
    name = f"arena_t_{uuid.uuid4().hex[:12]}"
    admin = _pg_admin()
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}" TEMPLATE "{template_name}"'))
    try:
        yield f"{PG_SERVER}/{name}"
    finally:
        _close_board_workers()
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture
def one_torch_thread() -> Iterator[None]:
    """Torch on one thread for the test: the tiny models gain nothing from more, and the
    machine is shared."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def pg_server() -> str:
    """The PostgreSQL server's URL without a database name."""
    return PG_SERVER


@pytest.fixture
def pg_db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """URL of a fresh, migrated database on PostgreSQL only."""
    yield from _fresh_database("postgresql", request, tmp_path)


@pytest.fixture(params=BACKENDS)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """URL of a fresh, migrated database on each backend."""
    yield from _fresh_database(request.param, request, tmp_path)


@pytest.fixture
def db(db_url: str) -> Iterator[Database]:
    """A fresh, migrated database (SQLite file or PostgreSQL) as an arena Database."""
    database = Database(db_url)
    yield database
    database.dispose()


@pytest.fixture
def second_db(db: Database, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    """A second fresh, migrated database on the same backend as ``db``."""
    backend = "sqlite" if db.url.startswith("sqlite") else "postgresql"
    (tmp_path / "second").mkdir()
    urls = _fresh_database(backend, request, tmp_path / "second")
    other = Database(next(urls))
    yield other
    other.dispose()
    next(urls, None)


@pytest.fixture
def bare_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The working folder is an empty temporary folder and no ARENA_HOME or database URL is
    set, as for a newcomer's first command; the settings cache is cleared around the test."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("ARENA_HOME", raising=False)
    monkeypatch.delenv("ARENA_DATABASE_URL", raising=False)
    get_settings.cache_clear()
    yield tmp_path
    get_settings.cache_clear()


@pytest.fixture
def arena_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A temporary ARENA_HOME with the settings cache cleared around the test."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("ARENA_HOME", str(home))
    monkeypatch.delenv("ARENA_DATABASE_URL", raising=False)
    get_settings.cache_clear()
    yield home
    get_settings.cache_clear()


@pytest.fixture
def arena_env(
    arena_home: Path, db: Database, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Database]:
    """ARENA_HOME and ARENA_DATABASE_URL pointing at a fresh database, for CLI and app tests."""
    monkeypatch.setenv("ARENA_DATABASE_URL", db.url)
    get_settings.cache_clear()
    yield db
    get_settings.cache_clear()
