"""Vote-path CPU benchmark: in-process ``issue_match`` + ``record_vote`` cycles, no HTTP.

Builds the same pool as ``vote_load.py`` in a fresh SQLite file (or PostgreSQL database), then
runs N match + vote cycles (the 60/20/20 fixed/free/ffa mix) in one thread and prints the
process CPU time per cycle, split into issuing and voting. The baseline, measured in the same
run on the same database, is a plain SQLAlchemy Core cycle: insert a match, its images and a
vote, one transaction each (no checks, no ratings), so the ratio says how many bare writes
one arena cycle costs.

    python benchmarks/vote_path.py [--cycles 2000] [--backend sqlite|postgresql]
                                   [--strategy active] [--limits] [--quick]
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from vote_load import MODES, baseline_cycles, build_pool, drop, fresh_url

from arena.db import Database
from arena.matches import issue_match
from arena.migrate import upgrade
from arena.settings import Settings
from arena.votes import record_vote


def arena_cycles(db: Database, settings: Settings, n: int, limits: bool,
                 seed: int = 0) -> tuple[float, float]:
    """CPU seconds spent issuing and voting over ``n`` cycles by 16 voters."""
    rng = random.Random(seed)
    voters = [f"bench-voter-{i:04d}" for i in range(16)]
    address = "127.0.0.1" if limits else None
    issue_cpu = vote_cpu = 0.0
    for i in range(n):
        voter = voters[i % len(voters)]
        mode = rng.choice(MODES)
        start = time.process_time()
        match = issue_match(db, settings, voter, mode, rng=rng, address=address)
        middle = time.process_time()
        if mode == "ffa" and rng.random() < 0.5:
            order = [0, 1, 2, 3]
            rng.shuffle(order)
            record_vote(db, settings, match.token, voter, ranking=order, address=address)
        else:
            winner = "tie" if mode == "fixed" and rng.random() < 0.1 else rng.randrange(
                len(match.images))
            record_vote(db, settings, match.token, voter, winner=winner, address=address)
        end = time.process_time()
        issue_cpu += middle - start
        vote_cpu += end - middle
    return issue_cpu, vote_cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cycles", type=int, default=2000)
    parser.add_argument("--backend", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--strategy", default="active", choices=["uniform", "balanced", "active"])
    parser.add_argument("--limits", action="store_true",
                        help="keep the default per-voter and per-address limits on")
    parser.add_argument("--quick", action="store_true", help="300 cycles, a small pool")
    args = parser.parse_args()
    cycles = 300 if args.quick else args.cycles
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "home"
        url, database = fresh_url(args.backend, Path(tmp), "arena")
        try:
            upgrade(url)
            db = Database(url)
            build_pool(db, home, 8, 2 if args.quick else 4, 2)
            big = 10**9  # limits on, but never reached: the cost of counting is measured
            limit_values = {} if not args.limits else {
                name: big for name in ("votes_per_minute", "matches_per_minute",
                                       "address_matches_per_minute", "address_votes_per_minute",
                                       "address_voters_per_hour")}
            off = {name: 0 for name in ("votes_per_minute", "matches_per_minute",
                                        "address_matches_per_minute", "address_votes_per_minute",
                                        "address_voters_per_hour")}
            settings = Settings(home=home, database_url=url,
                                matchmaking_strategy=args.strategy, **(limit_values or off))
            arena_cycles(db, settings, min(100, cycles), args.limits, seed=1)  # warm-up
            issue_cpu, vote_cpu = arena_cycles(db, settings, cycles, args.limits)
            base_cpu = baseline_cycles(db, cycles)
            db.dispose()
        finally:
            drop(database)
    per = (issue_cpu + vote_cpu) / cycles * 1000
    base = base_cpu / cycles * 1000
    print(f"[{args.backend}, {args.strategy}, limits {'on' if args.limits else 'off'}] "
          f"{cycles} cycles: CPU per match+vote cycle {per:.2f} ms "
          f"(issue {issue_cpu / cycles * 1000:.2f} ms, vote {vote_cpu / cycles * 1000:.2f} ms)")
    print(f"  baseline bare Core match+images+vote: {base:.2f} ms CPU per cycle; "
          f"arena / baseline = {per / base:.2f}")


if __name__ == "__main__":
    main()
