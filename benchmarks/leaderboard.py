"""Leaderboard benchmark: server time of one dashboard view, and what views cost the votes.

Builds an arena with ``--votes`` votes (default 100,000; the target is stated for 1,000,000)
over ``--checkpoints`` checkpoints on SQLite and/or PostgreSQL: matches, match images and
votes are bulk-inserted (60% fixed duels over four characters, 20% free duels, 20% four-way,
outcomes from hidden Bradley-Terry strengths), then ``recompute`` writes the snapshots and
every board's stored aggregates, as `arena ratings recompute` would. ``--reuse NAME`` keeps
the database (``$TMPDIR/arena-bench-board-NAME/arena.db``, PostgreSQL ``arena_bench_NAME``)
and reuses it on the next run (the 1M build takes minutes; each run adds a few hundred votes
through the real path); ``--recompute`` replays it again. Then, each measured in this run:

1. Server time of one view as the tab serves it (:func:`arena.web.dashboard.view`: the
   request to the leaderboard worker process, which reads in a read-only session, builds the
   board view, the table, every plotly figure serialised to the JSON Gradio sends and the
   small tables; then what the tab's handler does with it) — cold (a freshly started worker:
   the board's stored aggregate and the votes after it, the Bradley-Terry fit stored with
   it), warm (the same view again), and after one new vote cast through the real path
   (issue_match + record_vote; the view reads only that vote; Bradley-Terry shows the
   previous fit and refits in the background). Printed against the baseline of reading the
   stored Elo snapshots alone (:func:`arena.ratings.leaderboard`).
2. Vote latency (issue_match + record_vote) at a fixed request rate, in alternating rounds
   without and with a thread requesting views (four boards, Elo and Bradley-Terry) in a loop
   as the tab serves them (:func:`arena.web.dashboard.serve_view`: a render is shared for up
   to 1 s, views are paced to 10 a second), the worker's background refresher running in
   both, and in a third kind of round while 8 API clients poll
   ``GET /api/v1/leaderboard?system=bt`` on rotating boards over HTTP (the API app served
   by uvicorn in this process, so the server's side of every poll shares it with the votes;
   its rows come from the leaderboard worker, never a fit in this process; the clients run in
   a process of their own, each its own address under the default per-address read limit);
   printed: p50, p99 and the p99 ratios.

Targets (issue [dashboard]): at 1M votes a view under 1 s, a view after one new vote under
200 ms, vote p99 under views at most 1.2x the p99 without.

    python benchmarks/leaderboard.py [--votes N] [--backend sqlite|postgresql|both]
        [--checkpoints C] [--rate R] [--seconds S] [--rounds K]
        [--reuse NAME [--build-only | --recompute]]
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import create_engine, insert, text

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from arena.db import Database
from arena.matches import issue_match
from arena.migrate import upgrade
from arena.models import (
    Checkpoint,
    Image,
    Match,
    MatchImage,
    Prompt,
    TrainingConfigRecord,
    Vote,
    Voter,
)
from arena.settings import Settings
from arena.votes import record_vote

PG_SERVER = os.environ.get("ARENA_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432")
CHARACTERS = ("alice", "bob", "carol", "dave")
BATCH = 20_000


def build(db: Database, votes: int, checkpoints: int, seed: int = 0) -> None:
    """Bulk-insert a pool and ``votes`` voted matches (:func:`recompute` derives the rest)."""
    rng = np.random.default_rng(seed)
    strength = np.linspace(0.0, 2.0, checkpoints)
    with db.session() as s:
        config_ids = []
        for i in range(checkpoints):
            row = TrainingConfigRecord(name=f"bench-config-{i}", content_hash=f"{i:064x}",
                                       data={"name": f"bench-config-{i}", "steps": 1000 * (i + 1),
                                             "batch_size": 64 * (1 + i % 3)})
            s.add(row)
            s.flush()
            config_ids.append(row.id)
        ckpts = []
        for i, config_id in enumerate(config_ids):
            row = Checkpoint(name=f"bench-{i}", path=f"/bench/{i}", format="safetensors",
                             sha256=f"{i:064x}", short_hash=f"{i:010x}", size_bytes=1,
                             step=1000 * (i + 1), config_id=config_id)
            s.add(row)
            s.flush()
            ckpts.append(row.id)
        prompts: dict[str, list[int]] = {"fixed": [], "free": [], "ffa": []}
        specs = [("fixed", c) for c in CHARACTERS] + [("free", None)] * 2 + [("ffa", None)]
        for n, (kind, character) in enumerate(specs):
            row = Prompt(text=f"bench prompt {n}", text_hash=uuid.uuid4().hex, kind=kind,
                         character=character)
            s.add(row)
            s.flush()
            prompts[kind].append(row.id)
        images: dict[tuple[int, int], int] = {}
        for kind_prompts in prompts.values():
            for pid in kind_prompts:
                for cid in ckpts:
                    row = Image(sha256=uuid.uuid4().hex * 2, served_sha256=uuid.uuid4().hex * 2,
                                checkpoint_id=cid, prompt_id=pid, width=8, height=8)
                    s.add(row)
                    s.flush()
                    images[(pid, cid)] = row.id
        voter = Voter(external_id="bench-voter-bulk")
        s.add(voter)
        s.flush()
        voter_id = voter.id
    start = datetime.now(UTC) - timedelta(seconds=votes + 10)
    kinds = rng.choice(["fixed", "free", "ffa"], size=votes, p=[0.6, 0.2, 0.2])
    for first in range(0, votes, BATCH):
        matches, shown, cast = [], [], []
        for i in range(first, min(votes, first + BATCH)):
            kind = str(kinds[i])
            pid = int(rng.choice(prompts[kind]))
            size = 4 if kind == "ffa" else 2
            picked = [ckpts[j] for j in rng.choice(checkpoints, size=size, replace=False)]
            when = start + timedelta(seconds=i)
            matches.append({"id": i + 1, "token": f"bench-{i}", "kind": kind, "prompt_id": pid,
                            "voter_id": voter_id, "issued_at": when, "expires_at": when})
            shown += [{"match_id": i + 1, "position": p, "checkpoint_id": c,
                       "image_id": images[(pid, c)]} for p, c in enumerate(picked)]
            weights = np.exp(strength[[ckpts.index(c) for c in picked]])
            weights /= weights.sum()
            vote = {"id": i + 1, "match_id": i + 1, "voter_id": voter_id, "created_at": when,
                    "winner_position": None, "ranking": None}
            draw = rng.random()
            if kind == "ffa" and draw < 0.5:
                order = list(rng.choice(size, size=size, replace=False, p=weights))
                vote.update(outcome="ranking", ranking=[int(x) for x in order])
            elif kind == "fixed" and draw < 0.08:
                vote.update(outcome="tie")
            elif kind != "ffa" and draw > 0.97:
                vote.update(outcome="both_bad")
            else:
                vote.update(outcome="win", winner_position=int(rng.choice(size, p=weights)))
            cast.append(vote)
        with db.session() as s:
            s.execute(insert(Match), matches)
            s.execute(insert(MatchImage), shown)
            s.execute(insert(Vote), cast)
    if db.dialect == "postgresql":
        with db.session() as s:
            for table in ("matches", "votes"):
                s.execute(text(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                               f"(SELECT max(id) FROM {table}))"))
            # Planner statistics for the bulk-loaded tables, as after any bulk load: without
            # them (autovacuum may be off or not yet run) PostgreSQL plans the matchmaking
            # history query as if every voter had thousands of matches.
            s.execute(text("ANALYZE"))


def restart_worker(db: Database, settings: Settings) -> None:
    """A fresh leaderboard worker (empty caches), as at server start; waits until it runs."""
    from arena.leaderboard.worker import close_workers, worker_for

    close_workers()
    worker_for(db, settings).ping()


def served(shown: Any) -> None:
    """What the tab's handler does with a view in the server process."""
    from gradio.components.plot import PlotData

    for plot in shown.plots.values():
        PlotData(type="plotly", plot=plot)
    shown.table.to_json()


def served_view(db: Database, settings: Settings, board: str, system: str) -> None:
    """One view as the tab serves it to a client (shared renders, paced)."""
    from arena.web.dashboard import serve_view

    served(serve_view(db, settings, board, system))


def view_once(db: Database, settings: Settings, board: str, system: str,
              max_age: float = 0.0) -> float:
    """Server seconds of one dashboard view as the tab serves it: the request to the
    leaderboard worker, which reads (read-only session), builds the table, every figure and
    the small tables and serialises the figures to JSON, and what the handler then does.
    ``max_age=0`` computes it afresh; the tab reuses a render up to 1 s old."""
    from arena.web.dashboard import view

    began = time.perf_counter()
    served(view(db, settings, board, system, max_age=max_age))
    return time.perf_counter() - began


def baseline_once(db: Database, settings: Settings, board: str) -> float:
    from arena.leaderboard.rows import leaderboard

    began = time.perf_counter()
    with db.session(readonly=True) as s:
        leaderboard(s, board, "elo", settings)
    return time.perf_counter() - began


def vote_once(db: Database, settings: Settings, voter: str, rng: random.Random) -> float:
    began = time.perf_counter()
    match = issue_match(db, settings, voter, rng.choice(["fixed", "fixed", "free", "ffa"]),
                        rng=rng)
    record_vote(db, settings, match.token, voter, winner=0)
    return time.perf_counter() - began


POLLERS = 8
POLL_BOARDS = ["overall", "fixed", "free", "ffa", f"fixed/{CHARACTERS[0]}",
               f"fixed/{CHARACTERS[1]}"]


def _poll_process(base: str, parent: int, go: Any, quit_: Any, busy: Any, polls: Any,
                  limited: Any) -> None:
    """The clients: ``POLLERS`` threads, each its own address (the proxy header names it),
    polling ``GET /api/v1/leaderboard?system=bt`` on rotating boards over HTTP as fast as the
    server answers while ``go`` is set; refused by the per-address read limit, a client waits
    a second. A process of its own, as clients are, at a lower priority: their HTTP work is
    not the server's, and on a real deployment runs on other machines. Started once, before
    the rounds, so its start-up (an interpreter, httpx) is not charged to a round."""
    import httpx

    from arena.lifeline import exit_with_parent

    exit_with_parent(parent)
    os.nice(10)

    def client(index: int) -> None:
        with httpx.Client(base_url=base, timeout=30) as http:
            n = index
            while not quit_.is_set():
                if not go.wait(0.1):
                    continue
                with busy.get_lock():
                    busy.value += 1
                if not go.is_set():  # cleared meanwhile: finish() may have seen busy == 0
                    with busy.get_lock():
                        busy.value -= 1
                    continue
                try:
                    response = http.get("/api/v1/leaderboard",
                                        params={"board": POLL_BOARDS[n % len(POLL_BOARDS)],
                                                "system": "bt"},
                                        headers={"X-Forwarded-For": f"192.0.2.{index}"})
                finally:
                    with busy.get_lock():
                        busy.value -= 1
                if response.status_code == 429:
                    with limited.get_lock():
                        limited.value += 1
                    quit_.wait(1.0)
                    continue
                if response.status_code != 200:
                    raise SystemExit(f"leaderboard poll answered {response.status_code}: "
                                     f"{response.text[:200]}")
                n += 1
                with polls.get_lock():
                    polls.value += 1

    threads = [threading.Thread(target=client, args=(i,)) for i in range(POLLERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


class Pollers:
    """The API app served by uvicorn in a thread of this process (the server: its work shares
    this process with the votes, as in `arena serve`), polled by a client process that polls
    only between :meth:`start` and :meth:`finish`."""

    def __init__(self, db: Database, settings: Settings) -> None:
        import multiprocessing

        from arena.web.app import create_app
        from tests.support.pool import serve

        self._serving = serve(create_app(settings, db, ui=False))
        self.base = self._serving.__enter__()
        context = multiprocessing.get_context("spawn")
        self.go, self.quit = context.Event(), context.Event()
        self.busy, self.polls, self.limited = (context.Value("l", 0) for _ in range(3))
        self.process = context.Process(
            target=_poll_process, args=(self.base, os.getpid(), self.go, self.quit, self.busy,
                                        self.polls, self.limited), daemon=True)
        self.process.start()

    def start(self) -> None:
        self.polls.value = self.limited.value = 0
        self.go.set()

    def finish(self) -> tuple[int, int]:
        """Stop polling (requests in flight complete); ``(answered polls, refused polls)``."""
        self.go.clear()
        while self.busy.value and self.process.is_alive():
            time.sleep(0.01)
        if not self.process.is_alive():
            raise SystemExit(f"the polling clients failed (exit code {self.process.exitcode})")
        return self.polls.value, self.limited.value

    def close(self) -> None:
        self.quit.set()
        self.go.set()
        self.process.join(30)
        self._serving.__exit__(None, None, None)


def vote_latencies(db: Database, settings: Settings, rate: float, seconds: float,
                   with_views: bool, pollers: Pollers | None = None) -> list[float]:
    """Latencies of votes sent at a fixed rate (open loop: a late vote does not delay the
    schedule of the next), optionally while views are requested in a loop, or while
    ``POLLERS`` API clients poll Bradley-Terry boards (``pollers``)."""
    rng = random.Random(1)
    stop = threading.Event()
    views = [0]
    if pollers is not None:
        pollers.start()

    def viewer() -> None:
        boards = ["overall", "fixed", f"fixed/{CHARACTERS[0]}", "ffa"]
        n = 0
        while not stop.is_set():
            served_view(db, settings, boards[n % len(boards)], ("elo", "bt")[n // 4 % 2])
            n += 1
            views[0] = n

    thread = threading.Thread(target=viewer, daemon=True)
    if with_views:
        thread.start()
    latencies: list[float] = []
    lock = threading.Lock()
    workers: list[threading.Thread] = []

    def one(i: int) -> None:
        took = vote_once(db, settings, f"bench-rate-voter-{i:06d}", random.Random(i))
        with lock:
            latencies.append(took)

    began = time.perf_counter()
    count = int(rate * seconds)
    for i in range(count):
        due = began + i / rate
        delay = due - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        worker = threading.Thread(target=one, args=(rng.randrange(10**6) * 1000 + i,))
        worker.start()
        workers.append(worker)
    for worker in workers:
        worker.join()
    stop.set()
    if with_views:
        thread.join()
        print(f"    views served meanwhile: {views[0]}")
    if pollers is not None:
        answered, refused = pollers.finish()
        print(f"    API polls (system=bt, rotating boards, {POLLERS} clients) meanwhile: "
              f"{answered} answered, {refused} refused by the per-address read limit")
    return latencies


def p99(values: list[float]) -> float:
    return float(np.percentile(values, 99))


def p99_ratio(loaded: list[float], alone: list[float], resamples: int = 2000) -> str:
    """The p99 ratio with a 95% bootstrap interval (both sides resampled): a p99 over a few
    hundred votes is one of the few slowest, so the interval says how far a rerun may move it."""
    rng = np.random.default_rng(0)
    a, b = np.asarray(loaded), np.asarray(alone)
    ratios = (np.percentile(rng.choice(a, (resamples, a.size)), 99, axis=1)
              / np.percentile(rng.choice(b, (resamples, b.size)), 99, axis=1))
    low, high = np.percentile(ratios, [2.5, 97.5])
    return f"{p99(loaded) / p99(alone):.2f} (95% interval {low:.2f}-{high:.2f})"


def _database(backend: str, args: argparse.Namespace) -> tuple[str, Path, bool, Any]:
    """The benchmark's database: ``(url, home folder, whether it must be built, cleanup)``.
    With ``--reuse NAME`` it is kept (a SQLite file under the temporary folder, a PostgreSQL
    database ``arena_bench_NAME``) and built only if missing."""
    keep = args.reuse is not None
    folder = (Path(tempfile.gettempdir()) / f"arena-bench-board-{args.reuse}" if keep
              else Path(tempfile.mkdtemp(prefix="arena-bench-board-")))
    if backend == "sqlite":
        path = folder / "arena.db"
        fresh = not path.exists()
        folder.mkdir(parents=True, exist_ok=True)
        return f"sqlite:///{path}", folder, fresh, lambda: None
    name = f"arena_bench_{args.reuse if keep else uuid.uuid4().hex[:8]}"
    admin = create_engine(f"{PG_SERVER}/postgres", isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        fresh = conn.scalar(text("SELECT count(*) FROM pg_database WHERE datname = :n"),
                            {"n": name}) == 0
        if fresh:
            conn.execute(text(f'CREATE DATABASE "{name}"'))

    def drop() -> None:
        if not keep:
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()

    return f"{PG_SERVER}/{name}", folder, fresh, drop


def run(backend: str, args: argparse.Namespace) -> None:
    from arena.leaderboard.fits import recompute

    url, folder, fresh, cleanup = _database(backend, args)
    try:
        upgrade(url)
        db = Database(url)
        # Each API poller is its own client address (the proxy header names it), under the
        # per-address read limit in force by default.
        settings = Settings(home=folder, database_url=url, votes_per_minute=0,
                            trusted_proxy_header="X-Forwarded-For")
        print(f"\n== {backend}: {args.votes:,} votes, {args.checkpoints} checkpoints ==")
        if fresh:
            began = time.perf_counter()
            build(db, args.votes, args.checkpoints)
            print(f"  built in {time.perf_counter() - began:.1f} s")
        else:
            with db.session(readonly=True) as s:
                stored = s.scalar(text("SELECT count(*) FROM votes")) or 0
            if stored < args.votes:
                raise SystemExit(f"--reuse {args.reuse}: the {backend} database holds "
                                 f"{stored:,} votes, fewer than --votes {args.votes:,} "
                                 "(an interrupted build?); drop it or pick another name")
            print(f"  reusing {url} ({stored:,} votes)")
        if args.build_only:
            db.dispose()
            return
        with db.session(readonly=True) as s:
            stored_boards = s.scalar(text("SELECT count(*) FROM board_aggregates")) or 0
        if fresh or args.recompute or not stored_boards:
            began = time.perf_counter()
            recompute(db, settings, progress=True)  # as `arena ratings recompute` would
            print(f"  recomputed (arena ratings recompute) in {time.perf_counter() - began:.1f} s")
        voter_rng = random.Random(7)
        for board, system in (("overall", "elo"), ("overall", "bt"),
                              (f"fixed/{CHARACTERS[0]}", "tw_elo")):
            restart_worker(db, settings)
            base = statistics.median(baseline_once(db, settings, board) for _ in range(3))
            cold = view_once(db, settings, board, system)
            warm = statistics.median(view_once(db, settings, board, system) for _ in range(3))
            after = []
            for n in range(3):
                vote_once(db, settings, f"bench-one-vote-{n:04d}", voter_rng)
                after.append(view_once(db, settings, board, system))
            after_vote = statistics.median(after)
            print(f"  view {board} / {system}: cold {cold * 1000:.0f} ms (a fresh worker: "
                  "stored aggregate + the votes after it; target < 1000), "
                  f"warm {warm * 1000:.0f} ms, after one new vote {after_vote * 1000:.0f} ms "
                  f"(target < 200); baseline snapshot read {base * 1000:.1f} ms -> "
                  f"cold {cold / base:.0f}x, after a vote {after_vote / base:.1f}x")
        from arena.leaderboard.worker import Refresher, refresh, worker_for

        began = time.perf_counter()
        refresh(db, settings, Refresher())  # the worker's first background pass, timed here
        print(f"  background pass over every board (stored aggregates + tails): "
              f"{time.perf_counter() - began:.1f} s")
        restart_worker(db, settings)
        worker_for(db, settings).start_background()  # as the server does at start
        print(f"  vote latency at {args.rate}/s, {args.rounds} rounds of {args.seconds} s "
              "without and with views, alternating (after 3 s of votes not counted):")
        vote_latencies(db, settings, args.rate, 3.0, with_views=False)
        alone: list[float] = []
        loaded: list[float] = []
        polled: list[float] = []
        pollers = Pollers(db, settings)
        try:
            for _ in range(args.rounds):
                alone += vote_latencies(db, settings, args.rate, args.seconds, with_views=False)
                loaded += vote_latencies(db, settings, args.rate, args.seconds, with_views=True)
                polled += vote_latencies(db, settings, args.rate, args.seconds,
                                         with_views=False, pollers=pollers)
        finally:
            pollers.close()
        print(f"    without views: p50 {statistics.median(alone) * 1000:.0f} ms, "
              f"p99 {p99(alone) * 1000:.0f} ms ({len(alone)} votes)")
        print(f"    with views:    p50 {statistics.median(loaded) * 1000:.0f} ms, "
              f"p99 {p99(loaded) * 1000:.0f} ms ({len(loaded)} votes)")
        print(f"    p99 ratio with/without views: {p99_ratio(loaded, alone)} "
              "(target <= 1.20)")
        print(f"    with {POLLERS} API clients polling system=bt: p50 "
              f"{statistics.median(polled) * 1000:.0f} ms, p99 {p99(polled) * 1000:.0f} ms "
              f"({len(polled)} votes); p99 ratio with/without: {p99_ratio(polled, alone)} "
              "(target <= 1.20)")
        db.dispose()
    finally:
        cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--votes", type=int, default=100_000)
    parser.add_argument("--checkpoints", type=int, default=8)
    parser.add_argument("--backend", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--rate", type=float, default=10.0, help="votes per second")
    parser.add_argument("--seconds", type=float, default=10.0,
                        help="length of one round of votes at --rate")
    parser.add_argument("--rounds", type=int, default=2,
                        help="rounds without and with views, alternating")
    parser.add_argument("--reuse", metavar="NAME",
                        help="keep the database under this name and reuse it when it exists")
    parser.add_argument("--build-only", action="store_true",
                        help="build the database (bulk insert only) and stop")
    parser.add_argument("--recompute", action="store_true",
                        help="run the recompute on a reused database")
    args = parser.parse_args()
    for backend in (["sqlite", "postgresql"] if args.backend == "both" else [args.backend]):
        run(backend, args)


if __name__ == "__main__":
    main()
