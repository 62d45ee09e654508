"""The short reliability harness on both databases: 8 voters for 10 s against `arena serve`
(two workers on PostgreSQL), one SIGKILL of the whole server half-way, then the checks:
nothing acknowledged is lost, nothing is stored twice or stored though refused, the online
snapshots equal a replay, and the server came back without repair. The full run (64 voters x
60 s, three SIGKILLs) is benchmarks/reliability.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from arena.db import Database
from arena.settings import Settings
from tests.support.pool import build_pool
from tests.support.reliability import Server, run_load, table, verify

pytestmark = pytest.mark.slow


def test_votes_survive_load_hostile_clients_and_a_sigkill(
    arena_env: Database, arena_home: Path, tmp_path: Path
) -> None:
    db = arena_env
    build_pool(db, arena_home, tmp_path / "pool-src")
    backend = db.dialect
    log = tmp_path / "server.log"
    server = Server(arena_home, db.url, workers=2 if backend == "postgresql" else 1, log=log)
    assert server.start(), log.read_text()
    try:
        tally, restarts_ok = run_load(server, clients=8, seconds=10, kills=1, seed=1)
    finally:
        server.stop()
    verdict = verify(db, Settings(home=arena_home, database_url=db.url), tally, backend, 8, 10,
                     faults=1, restarts_ok=restarts_ok, log=log)
    print(table([verdict]))
    assert verdict.acknowledged > 0 and tally.rounds > 0
    assert verdict.lost == 0
    assert verdict.duplicated == 0
    assert verdict.stored_though_refused == 0
    assert verdict.snapshot_mismatches == 0 and verdict.snapshots > 0
    assert verdict.restarts_ok == 1
    assert not verdict.token_in_logs
    # Admin calls with a missing or wrong token were made, and every one was refused.
    assert verdict.admin_accepted == 0 and verdict.admin_refused > 0
    # The hostile share of the load was met and refused for the right reasons.
    assert {"already voted", "forged voter id"} <= set(verdict.refused)
