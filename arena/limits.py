"""Rate limits per voter and per client address, counted from the database.

Every limited action (a match issued, a vote, a skip, a typed prompt, a new voter id) adds a
``limit_events`` row in the same transaction as the action itself, and is refused (429, the
transaction rolled back) when the voter or the address already has as many rows in the
window as the limit allows. Because the count lives in the database, the limits hold across
every server process and host that share it. Counting and inserting are exact: on SQLite every
writing transaction is exclusive, and on PostgreSQL a transaction-scoped advisory lock per
limited subject (address first, then voter, so no two transactions wait on each other in a
cycle) serialises the requests of one address or voter. Rows older than the longest window
are pruned now and then.
"""

from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import Connection, bindparam, delete, func, insert, select, text

from arena.errors import RateLimited
from arena.identity import address_key, limit_address
from arena.models import LimitEvent, utcnow
from arena.settings import Settings
from metrics.file_hash import sha256_bytes

__all__ = ["ACTIONS", "Limit", "ReadLimiter", "charge"]

_PRUNE_EVERY = 200  # on average one transaction in this many prunes expired rows


@dataclass(frozen=True)
class Limit:
    """How one action is limited: its window and the settings holding each limit."""

    noun: str
    window_seconds: int
    per_voter: str | None
    per_address: str

    def unit(self) -> str:
        return "a minute" if self.window_seconds == 60 else "an hour"


ACTIONS: dict[str, Limit] = {
    "match": Limit("matches", 60, "matches_per_minute", "address_matches_per_minute"),
    "vote": Limit("votes", 60, "votes_per_minute", "address_votes_per_minute"),
    "skip": Limit("skips", 60, "skips_per_minute", "address_skips_per_minute"),
    "prompt": Limit("typed prompts", 3600, "prompts_per_hour", "address_prompts_per_hour"),
    "voter": Limit("new voter ids", 3600, None, "address_voters_per_hour"),
}
_LONGEST = max(limit.window_seconds for limit in ACTIONS.values())


def _lock(conn: Connection, subject: str) -> None:
    if conn.dialect.name == "postgresql":
        key = int.from_bytes(bytes.fromhex(sha256_bytes(subject.encode())[:16]), "big", signed=True)
        conn.execute(_ADVISORY_LOCK, {"key": key})


def _statements():  # type: ignore[no-untyped-def]
    """Built once (building a statement costs more than running it): both counts in one
    round trip, the event row, the pruning."""
    def used(column):  # type: ignore[no-untyped-def]
        return (
            select(func.count(LimitEvent.id))
            .where(LimitEvent.action == bindparam("action"), column == bindparam(column.key),
                   LimitEvent.created_at > bindparam("since"))
            .scalar_subquery()
        )

    counts = select(used(LimitEvent.address), used(LimitEvent.voter))
    prune = delete(LimitEvent).where(LimitEvent.created_at < bindparam("before"))
    return counts, insert(LimitEvent), prune


_ADVISORY_LOCK = text("SELECT pg_advisory_xact_lock(:key)")
_COUNTS, _INSERT_EVENT, _PRUNE = _statements()


def charge(
    conn: Connection, settings: Settings, action: str, voter: str | None, address: str | None
) -> None:
    """Count one ``action`` by ``voter`` from ``address`` in the caller's transaction, or raise
    :class:`RateLimited` when either is at its limit (the caller's transaction then rolls back,
    so a refused action leaves nothing behind). ``address`` None: an in-process caller (the
    CLI, simulations, scripts), which answers to the per-voter limits only."""
    limit = ACTIONS[action]
    per_voter = getattr(settings, limit.per_voter) if limit.per_voter and voter else 0
    per_address = getattr(settings, limit.per_address) if address is not None else 0
    if not per_voter and not per_address:
        return
    now = utcnow()
    key = address_key(settings, address) if address is not None else "local"
    if per_address:
        _lock(conn, f"address:{key}")
    if per_voter:
        _lock(conn, f"voter:{voter}")
    by_address, by_voter = conn.execute(_COUNTS, {
        "action": action, "address": key, "voter": voter,
        "since": now - timedelta(seconds=limit.window_seconds),
    }).one()
    for allowed, used, who in ((per_address, by_address, "address"),
                               (per_voter, by_voter, "voter")):
        if allowed and used >= allowed:
            raise RateLimited(
                f"rate limit: at most {allowed} {limit.noun} {limit.unit()} per {who}; "
                "wait a little"
            )
    conn.execute(_INSERT_EVENT, {"action": action, "voter": voter, "address": key,
                                 "created_at": now})
    if random.random() < 1 / _PRUNE_EVERY:
        conn.execute(_PRUNE, {"before": now - timedelta(seconds=_LONGEST)})


class ReadLimiter:
    """Per-address reads a minute (``ARENA_ADDRESS_READS_PER_MINUTE``), counted in this
    process's memory: a read writes nothing, so counting it in the database would add a write
    to every poll of a board; what the limit protects is this process's own vote path.

    A token bucket per address: it refills at the limit's rate and holds at most ten
    seconds' worth, so a client polling in a loop is held to the rate at once instead of
    spending a minute's reads in a burst. Addresses are grouped as every per-address limit
    groups them (IPv6 by network)."""

    BURST_SECONDS = 10.0

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._lock = threading.Lock()
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, when)
        self._swept = time.monotonic()

    def charge(self, address: str) -> None:
        """Count one read from ``address``, or raise :class:`RateLimited` at the limit."""
        allowed = self.settings.address_reads_per_minute
        if not allowed:
            return
        rate = allowed / 60.0
        burst = max(1.0, rate * self.BURST_SECONDS)
        key = limit_address(self.settings, address)
        now = time.monotonic()
        with self._lock:
            if now - self._swept > 60:  # forget addresses whose bucket is full again
                self._buckets = {k: (t, w) for k, (t, w) in self._buckets.items()
                                 if t + (now - w) * rate < burst}
                self._swept = now
            tokens, when = self._buckets.get(key, (burst, now))
            tokens = min(burst, tokens + (now - when) * rate)
            if tokens < 1.0:
                self._buckets[key] = (tokens, now)
                raise RateLimited(f"rate limit: at most {allowed} leaderboard reads a minute "
                                  "per address; wait a little")
            self._buckets[key] = (tokens - 1.0, now)
