"""What choosing a match costs per request, in process, with 500 checkpoints and 1,000 prompts.

Builds a SQLite arena (a temporary file, migrated) with ``--checkpoints`` checkpoints and
``--prompts`` fixed-characteristic prompts, one image per checkpoint and prompt (500,000
images at full size), TrueSkill snapshots for every checkpoint on the ``fixed`` board, and a
voter with ``--history`` earlier matches (half of them voted). Then, with the pool index and
the standings cache warm, times :func:`arena.matchmaking.choose` per strategy (a prompt drawn,
the voter's history read in one query, the checkpoints picked, the images picked), against a
baseline measured in the same run: one primary-key SELECT in the same kind of session. Also
prints the pure strategy call (:func:`metrics.pairing.pick_checkpoints` over all checkpoints),
one re-read of the shared standings (done at most every 1.5 s per process) and one check of
whether the pool changed (at most once a second per process).

    python benchmarks/matchmaking_cost.py [--checkpoints 500] [--prompts 1000] [--quick]
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import insert, select

from arena import matchmaking
from arena.db import Database
from arena.matches import issue_match
from arena.migrate import upgrade
from arena.models import Checkpoint, RatingSnapshot, utcnow
from arena.settings import Settings
from arena.votes import record_vote
from metrics.pairing import STRATEGIES, pick_checkpoints
from tests.support.matchmaking import make_pool

VOTER = "voter-bench-0001"


def _per_call_ms(fn: Callable[[], object], calls: int) -> float:
    """Median of 5 batches of ``calls`` calls, in ms per call."""
    batches = []
    for _ in range(5):
        started = time.perf_counter()
        for _ in range(calls):
            fn()
        batches.append((time.perf_counter() - started) / calls * 1000)
    return statistics.median(batches)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoints", type=int, default=500)
    parser.add_argument("--prompts", type=int, default=1000)
    parser.add_argument("--history", type=int, default=100)
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--quick", action="store_true", help="100 checkpoints, 100 prompts")
    args = parser.parse_args()
    n_ckpt, n_prompts = (100, 100) if args.quick else (args.checkpoints, args.prompts)
    with tempfile.TemporaryDirectory() as folder:
        url = f"sqlite:///{folder}/arena.db"
        upgrade(url)
        db = Database(url)
        started = time.perf_counter()
        ids = make_pool(db, n_ckpt, {"fixed": n_prompts})
        rng = random.Random(0)
        limits = {name: 0 for name in Settings.model_fields
                  if name.endswith(("_per_minute", "_per_hour"))}
        settings = Settings(home=Path(folder), database_url=url, **limits)
        for i in range(args.history):
            match = issue_match(db, settings, VOTER, "fixed", rng=rng)
            if i % 2:
                record_vote(db, settings, match.token, VOTER, winner=0)
        # TrueSkill snapshots for every checkpoint, with the parameters the votes recorded.
        with db.session() as session:
            parameters = session.scalar(
                select(RatingSnapshot.parameters).where(RatingSnapshot.system == "trueskill")
            )
            rated = set(session.scalars(
                select(RatingSnapshot.checkpoint_id).where(
                    RatingSnapshot.board == "fixed", RatingSnapshot.system == "trueskill")
            ))
            unrated = [c for c in ids if c not in rated]
            if unrated:  # an empty list would be one INSERT of no values
                session.execute(insert(RatingSnapshot), [
                    {"board": "fixed", "system": "trueskill", "checkpoint_id": c,
                     "rating": 0.0, "mu": rng.gauss(25, 4), "sigma": rng.uniform(0.8, 3.0),
                     "games": 40, "parameters": parameters, "updated_at": utcnow()}
                    for c in unrated
                ])
        print(f"matchmaking cost: {n_ckpt} checkpoints x {n_prompts} prompts "
              f"({n_ckpt * n_prompts} images), a voter with {args.history} matches; "
              f"setup {time.perf_counter() - started:.0f} s")
        with db.session(readonly=True) as session:
            def baseline() -> object:
                return session.scalar(select(Checkpoint.name).where(Checkpoint.id == ids[0]))

            base_ms = _per_call_ms(baseline, args.calls)
            print(f"  baseline: one primary-key SELECT        {base_ms:8.3f} ms")
            for strategy in STRATEGIES:
                def call(strategy: str = strategy) -> object:
                    return matchmaking.choose(session, "fixed", VOTER, rng, strategy=strategy)

                call()  # pool index and standings cache warm
                ms = _per_call_ms(call, args.calls)
                print(f"  choose, {strategy:8s} (prompt, history, set) {ms:8.3f} ms "
                      f"= {ms / base_ms:5.1f}x the baseline query  "
                      f"(target < 5 ms: {'met' if ms < 5 else 'NOT met'})")
            standings = matchmaking.standings(session, "fixed")
            for strategy in STRATEGIES:
                ms = _per_call_ms(
                    lambda s=strategy: pick_checkpoints(s, ids, 2, standings, rng), args.calls
                )
                print(f"  pick_checkpoints only, {strategy:8s}      {ms:8.3f} ms")
            ms = _per_call_ms(lambda: matchmaking.standings(session, "fixed", reread=True), 5)
            print(f"  standings re-read (every 1.5 s at most)  {ms:8.3f} ms")
            pool = matchmaking.pool_index(session)

            def pool_check() -> None:
                pool.checked_at = 0.0  # as if the last check were over a second ago
                pool.refresh(session)

            ms = _per_call_ms(pool_check, 5)
            print(f"  pool change check (every 1 s at most)    {ms:8.3f} ms")
        db.dispose()


if __name__ == "__main__":
    main()
