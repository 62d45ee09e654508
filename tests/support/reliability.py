"""The reliability harness: concurrent voters (some hostile) against a real `arena serve`,
SIGKILLs of the whole server while they vote, and the checks that nothing was lost, doubled
or half-applied. Used by the short test (tests/arena/web/test_reliability_harness.py) and the
full run (benchmarks/reliability.py).

Each client gets a server-signed voter id, then loops: ask for a match, and mostly vote on it;
a share of rounds double-submits the vote, replays an old token, votes with another voter's
token, votes with a forged voter id, skips, or calls the admin API with a wrong token. Every
vote attempt ends as acknowledged (200 with a vote id), refused (a 4xx, by reason) or unknown
(no response reached the client: the server was killed, or a 5xx). Afterwards, from the
database: every acknowledged vote is stored under its token (else *lost*); every stored vote
was acknowledged or is unknown (else *stored though refused*); no match has two votes and no
vote id was acknowledged twice (else *duplicated*); and the online rating snapshots equal a
fresh replay of the log.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import random
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import func, select

from arena.db import Database
from arena.leaderboard.fits import recompute
from arena.models import Match, RatingSnapshot, Vote
from arena.settings import Settings

ADMIN_TOKEN = "harness-admin-token-7f3c9e"  # a test value, checked absent from the logs
WRONG_ADMIN_TOKENS = ("harness-wrong-token-1b2d", ADMIN_TOKEN[:-1])
# The limits are per voter and per address; every harness client shares one address, so the
# address limits are off and the per-voter limits above what one client can reach.
SERVER_ENV = {
    "ARENA_ADMIN_TOKEN": ADMIN_TOKEN,
    "ARENA_VOTES_PER_MINUTE": "0",
    "ARENA_MATCHES_PER_MINUTE": "0",
    "ARENA_SKIPS_PER_MINUTE": "0",
    "ARENA_ADDRESS_MATCHES_PER_MINUTE": "0",
    "ARENA_ADDRESS_VOTES_PER_MINUTE": "0",
    "ARENA_ADDRESS_SKIPS_PER_MINUTE": "0",
    "ARENA_ADDRESS_VOTERS_PER_HOUR": "0",
    "GRADIO_ANALYTICS_ENABLED": "False",
}
MODES = ("fixed", "fixed", "fixed", "free", "ffa")


@dataclass
class Tally:
    """What the clients saw."""

    acknowledged: dict[str, int] = field(default_factory=dict)  # token -> vote id
    acknowledged_twice: int = 0
    unknown: set[str] = field(default_factory=set)  # tokens with a vote of unknown outcome
    refused: Counter[str] = field(default_factory=Counter)
    issued: list[str] = field(default_factory=list)  # every token handed out
    rounds: int = 0
    admin_refused: int = 0
    admin_accepted: int = 0


@dataclass
class Verdict:
    """What the database says afterwards."""

    backend: str
    clients: int
    seconds: float
    acknowledged: int
    refused: Counter[str]
    unknown: int
    lost: int
    duplicated: int
    stored_though_refused: int
    snapshot_mismatches: int
    snapshots: int
    faults: int
    restarts_ok: int
    admin_refused: int  # admin calls with a missing or wrong token that were refused
    admin_accepted: int  # ... and that were not: any is a hole
    token_in_logs: bool

    @property
    def ok(self) -> bool:
        return (
            self.lost == 0 and self.duplicated == 0 and self.stored_though_refused == 0
            and self.snapshot_mismatches == 0 and self.restarts_ok == self.faults
            and not self.token_in_logs and self.acknowledged > 0 and self.admin_accepted == 0
        )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    """`arena serve` in its own process group, killable with SIGKILL and restartable."""

    def __init__(self, home: Path, url: str, workers: int, log: Path) -> None:
        self.home, self.url, self.workers, self.log_path = home, url, workers, log
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 120.0) -> bool:
        env = {**os.environ, **SERVER_ENV, "ARENA_HOME": str(self.home),
               "ARENA_DATABASE_URL": self.url}
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "arena.cli.main", "serve", "--port", str(self.port),
                 "--workers", str(self.workers)],
                env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                return False
            try:
                if httpx.get(self.base + "/api/v1/health", timeout=2).status_code == 200:
                    return True
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        return False

    def kill(self) -> None:
        """SIGKILL the server and every worker at once, as a crash would."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill()


def _reason(status: int, error: str) -> str:
    if status == 403 and "voter id" in error:
        return "forged voter id"
    if status == 403:
        return "another voter's match"
    if status == 409:
        return "already voted" if "voted" in error else "skipped"
    return {404: "unknown token", 410: "expired", 429: "rate limited", 422: "invalid body",
            400: "invalid vote", 503: "unavailable"}.get(status, f"http {status}")


class Voter:
    """One client: its signed id and its own tokens."""

    def __init__(self, http: httpx.AsyncClient, tally: Tally, rng: random.Random,
                 shared: list[str]) -> None:
        self.http, self.tally, self.rng, self.shared = http, tally, rng, shared
        self.headers: dict[str, str] = {}
        self.voted: list[str] = []

    async def register(self, deadline: float) -> bool:
        while time.monotonic() < deadline:
            try:
                response = await self.http.post("/api/v1/voters")
                if response.status_code == 201:
                    self.headers = {"X-Voter-Id": response.json()["voter_id"]}
                    return True
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.2)
        return False

    async def vote(self, token: str, headers: dict[str, str], owner: bool,
                   winner: int | str = 0) -> None:
        try:
            response = await self.http.post(
                "/api/v1/votes", json={"token": token, "winner": winner}, headers=headers
            )
        except httpx.HTTPError:
            if owner:
                self.tally.unknown.add(token)
            return
        if response.status_code == 200:
            vote_id = response.json()["vote_id"]
            if token in self.tally.acknowledged:
                self.tally.acknowledged_twice += 1
            self.tally.acknowledged[token] = vote_id
            self.voted.append(token)
        elif response.status_code >= 500:
            if owner:
                self.tally.unknown.add(token)
            self.tally.refused[f"http {response.status_code} (outcome unknown)"] += 1
        else:
            self.tally.refused[_reason(response.status_code, response.json().get("error", ""))] += 1

    async def admin(self) -> None:
        token = self.rng.choice((None, *WRONG_ADMIN_TOKENS))
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        try:
            response = await self.http.post("/api/v1/checkpoints", headers=headers,
                                            json={"path": "/nonexistent", "config": "x"})
        except httpx.HTTPError:
            return
        if response.status_code in (401, 403):
            self.tally.admin_refused += 1
        else:
            self.tally.admin_accepted += 1

    async def round(self) -> None:
        try:
            response = await self.http.post(
                "/api/v1/matches", json={"mode": self.rng.choice(MODES)}, headers=self.headers
            )
        except httpx.HTTPError:
            await asyncio.sleep(0.2)
            return
        if response.status_code != 200:
            self.tally.refused[f"match: {_reason(response.status_code, '')}"] += 1
            await asyncio.sleep(0.1)
            return
        token = response.json()["token"]
        self.tally.issued.append(token)
        self.tally.rounds += 1
        roll = self.rng.random()
        if roll < 0.10:  # double submission: two votes on one match at once
            await asyncio.gather(self.vote(token, self.headers, True, 0),
                                 self.vote(token, self.headers, True, 1))
        elif roll < 0.15 and self.voted:  # replay of an old token
            await self.vote(self.rng.choice(self.voted), self.headers, False)
        elif roll < 0.20 and self.shared:  # another voter's token
            await self.vote(self.rng.choice(self.shared[-200:]), self.headers, False)
        elif roll < 0.25:  # a forged voter id on this voter's own token
            nonce = self.headers["X-Voter-Id"].partition(".")[0]
            await self.vote(token, {"X-Voter-Id": f"{nonce}.{'A' * 43}"}, False)
        elif roll < 0.30:
            with contextlib.suppress(httpx.HTTPError):
                await self.http.post("/api/v1/skips", json={"token": token},
                                     headers=self.headers)
            return
        elif roll < 0.32:
            await self.admin()
        else:
            await self.vote(token, self.headers, True, self.rng.choice((0, 1)))
        self.shared.append(token)


async def _load(base: str, clients: int, seconds: float, seed: int, tally: Tally) -> None:
    deadline = time.monotonic() + seconds
    shared: list[str] = []
    limits = httpx.Limits(max_connections=clients * 2)

    async def run(index: int) -> None:
        async with httpx.AsyncClient(base_url=base, timeout=30, limits=limits) as http:
            voter = Voter(http, tally, random.Random(seed * 1000 + index), shared)
            if not await voter.register(deadline):
                return
            await voter.admin()  # every client tries the admin API at least once
            while time.monotonic() < deadline:
                await voter.round()

    await asyncio.gather(*(run(i) for i in range(clients)))


def run_load(server: Server, clients: int, seconds: float, kills: int, seed: int = 0) -> tuple[
        Tally, int]:
    """Drive ``clients`` voters for ``seconds`` while killing the server ``kills`` times
    (evenly spaced) and restarting it; returns the tally and how many restarts came up."""
    tally = Tally()
    restarts_ok = 0

    async def main() -> None:
        nonlocal restarts_ok
        load = asyncio.create_task(_load(server.base, clients, seconds, seed, tally))
        for _ in range(kills):
            await asyncio.sleep(seconds / (kills + 1))
            await asyncio.to_thread(server.kill)
            if await asyncio.to_thread(server.start):
                restarts_ok += 1
        await load

    asyncio.run(main())
    return tally, restarts_ok


def _snapshot_rows(db: Database) -> dict[tuple[str, str, int], tuple[Any, ...]]:
    with db.session() as s:
        rows = s.scalars(select(RatingSnapshot)).all()
        return {
            (r.board, r.system, r.checkpoint_id): (
                r.rating, r.mu, r.sigma, r.games, r.wins, r.draws, r.losses, r.weighted_sum,
                r.held_since, r.first_time, r.last_vote_id,
            )
            for r in rows
        }


def _same(a: tuple[Any, ...], b: tuple[Any, ...]) -> bool:
    return all(
        (x is None and y is None)
        or (x is not None and y is not None and math.isclose(x, y, rel_tol=1e-9, abs_tol=1e-9))
        for x, y in zip(a, b, strict=True)
    )


def verify(db: Database, settings: Settings, tally: Tally, backend: str, clients: int,
           seconds: float, faults: int, restarts_ok: int, log: Path) -> Verdict:
    """Compare what the clients were told with what the database holds."""
    with db.session() as s:
        stored = dict(s.execute(
            select(Match.token, Vote.id).join(Vote, Vote.match_id == Match.id)
        ).all())
        per_match = s.execute(
            select(func.count(Vote.id)).group_by(Vote.match_id).having(func.count(Vote.id) > 1)
        ).all()
    lost = sum(1 for token, vote_id in tally.acknowledged.items() if stored.get(token) != vote_id)
    stray = sum(1 for token in stored
                if token not in tally.acknowledged and token not in tally.unknown)
    ids = list(tally.acknowledged.values())
    duplicated = len(per_match) + tally.acknowledged_twice + (len(ids) - len(set(ids)))
    online = _snapshot_rows(db)
    recompute(db, settings, progress=False)
    replayed = _snapshot_rows(db)
    mismatches = sum(1 for key in online.keys() | replayed.keys()
                     if key not in online or key not in replayed
                     or not _same(online[key], replayed[key]))
    text = log.read_text(errors="replace") if log.exists() else ""
    leaked = any(t in text for t in (ADMIN_TOKEN, *WRONG_ADMIN_TOKENS))
    return Verdict(
        backend=backend, clients=clients, seconds=seconds,
        acknowledged=len(tally.acknowledged), refused=tally.refused,
        unknown=len(tally.unknown - tally.acknowledged.keys()), lost=lost,
        duplicated=duplicated, stored_though_refused=stray, snapshot_mismatches=mismatches,
        snapshots=len(online), faults=faults, restarts_ok=restarts_ok,
        admin_refused=tally.admin_refused, admin_accepted=tally.admin_accepted,
        token_in_logs=leaked,
    )


def table(verdicts: list[Verdict], bad_inputs: tuple[int, int] | None = None) -> str:
    """The harness's closing table."""
    lines = []
    header = ("backend", "load held", "acknowledged", "unknown", "lost", "duplicated",
              "stored though refused", "snapshots = replay", "faults survived")
    rows = []
    for v in verdicts:
        rows.append((
            v.backend, f"{v.clients} voters x {v.seconds:g} s", str(v.acknowledged),
            str(v.unknown), str(v.lost), str(v.duplicated), str(v.stored_though_refused),
            f"{v.snapshots - v.snapshot_mismatches}/{v.snapshots}",
            f"{v.restarts_ok}/{v.faults}",
        ))
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows, strict=True)]
    for row in (header, *rows):
        lines.append(" | ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)))
        if row is header:
            lines.append("-+-".join("-" * w for w in widths))
    for v in verdicts:
        reasons = ", ".join(f"{k}: {n}" for k, n in sorted(v.refused.items()))
        lines.append(f"{v.backend} refused by reason: {reasons or 'none'}")
        lines.append(f"{v.backend} admin calls with missing/wrong tokens refused: "
                     f"{v.admin_refused}, accepted: {v.admin_accepted}; "
                     f"tokens in server log: {v.token_in_logs}")
    if bad_inputs is not None:
        lines.append(f"bad inputs tried: {bad_inputs[0]}, handled: {bad_inputs[1]}")
    return "\n".join(lines)
