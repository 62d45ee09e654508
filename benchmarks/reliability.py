"""Reliability harness: load, crashes, hostile inputs, and the table that says what held.

Against a real `arena serve` on SQLite and on PostgreSQL (``--workers 2``): 64 concurrent
voters for 60 s through the JSON API (with double submissions, replays of old tokens, votes
with other voters' tokens, forged voter ids, skips and admin calls with wrong tokens) while
the whole server is SIGKILLed three times and restarted; then every acknowledged vote must be
stored exactly once, no refused vote stored, the online snapshots equal to a replay of the
log, and the admin tokens absent from the server log. The committed corpus of hostile inputs
(tests/support/hostile_inputs.jsonl) runs against each database too.

    python benchmarks/reliability.py [--clients 64] [--seconds 60] [--kills 3]
                                     [--backend sqlite|postgresql|both] [--quick]

``--quick`` is 8 voters x 10 s with one kill. Exits non-zero when anything was lost,
duplicated, stored though refused or unhandled. (No speed is measured here: see
benchmarks/vote_load.py.)
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import uuid
from pathlib import Path

from sqlalchemy import create_engine, text

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the tests' harness modules

from arena.db import Database
from arena.migrate import upgrade
from arena.settings import Settings
from tests.support.hostile import load_corpus, prepare, run_entry
from tests.support.pool import build_pool
from tests.support.reliability import Server, Verdict, run_load, table, verify

PG_SERVER = os.environ.get("ARENA_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432")


def _pg_admin():  # type: ignore[no-untyped-def]
    return create_engine(f"{PG_SERVER}/postgres", isolation_level="AUTOCOMMIT")


def _database(backend: str, home: Path) -> str:
    if backend == "sqlite":
        url = f"sqlite:///{home / 'arena.db'}"
    else:
        name = f"arena_rel_{uuid.uuid4().hex[:10]}"
        with _pg_admin().connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        url = f"{PG_SERVER}/{name}"
    upgrade(url)
    return url


def _drop(url: str) -> None:
    if url.startswith("postgresql"):
        name = url.rsplit("/", 1)[1]
        with _pg_admin().connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def run_backend(backend: str, clients: int, seconds: float, kills: int,
                root: Path) -> tuple[Verdict, int, int, list[str]]:
    """The load + crash run and the hostile corpus on one backend."""
    home = root / backend / "home"
    home.mkdir(parents=True)
    url = _database(backend, home)
    db = Database(url)
    try:
        pool = build_pool(db, home, root / backend / "pool-src")
        log = root / backend / "server.log"
        server = Server(home, url, workers=2 if backend == "postgresql" else 1, log=log)
        if not server.start():
            raise SystemExit(f"{backend}: the server did not start; see {log}")
        print(f"{backend}: {clients} voters for {seconds:g} s, {kills} SIGKILLs ...", flush=True)
        try:
            tally, restarts_ok = run_load(server, clients, seconds, kills)
        finally:
            server.stop()
        verdict = verify(db, Settings(home=home, database_url=url), tally, backend, clients,
                         seconds, kills, restarts_ok, log)
        corpus = load_corpus()
        arena = prepare(db, home, root / backend / "hostile", pool.checkpoints[0].name)
        failures = []
        for entry in corpus:
            problem = run_entry(entry, arena)
            if problem is not None:
                failures.append(f"{backend} {entry['id']}: {problem}")
        return verdict, len(corpus), len(corpus) - len(failures), failures
    finally:
        db.dispose()
        _drop(url)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--kills", type=int, default=3)
    parser.add_argument("--backend", choices=("sqlite", "postgresql", "both"), default="both")
    parser.add_argument("--quick", action="store_true", help="8 voters x 10 s, one SIGKILL.")
    args = parser.parse_args()
    if args.quick:
        args.clients, args.seconds, args.kills = 8, 10.0, 1
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    backends = ["sqlite", "postgresql"] if args.backend == "both" else [args.backend]
    verdicts, tried, handled, failures = [], 0, 0, []
    with tempfile.TemporaryDirectory(prefix="arena-reliability-") as folder:
        for backend in backends:
            verdict, n, ok, problems = run_backend(backend, args.clients, args.seconds,
                                                   args.kills, Path(folder))
            verdicts.append(verdict)
            tried, handled, failures = tried + n, handled + ok, failures + problems
    print()
    print(table(verdicts, (tried, handled)))
    for failure in failures:
        print("unhandled:", failure)
    if failures or not all(v.ok for v in verdicts):
        raise SystemExit(1)


if __name__ == "__main__":
    main()
