"""Replay speed of the rating library on a synthetic vote log, against plain baselines.

Builds a log of ``--votes`` votes (default 1,000,000) over 50 checkpoints with hidden
Bradley-Terry strengths: 60% Fixed-Characteristics duels (10% of them draws), 20% free-prompt
duels, 20% four-way free-for-all (half "best of four", half full rankings, drawn from the
Plackett-Luce model). Then, each step measured in this run:

1. Elo + TrueSkill replay through :class:`metrics.rating_book.RatingBook` (the ``overall``
   board, every vote), against the ``trueskill`` package rating the same TrueSkill games (the
   package does no Elo), on ``--reference-votes`` votes, scaled to the full log: the first
   ones from scratch, and as many again in chunks of 2,000 spread evenly over the log, each
   chunk started from the RatingBook's state at that point (later votes meet settled ratings,
   whose four-way games need fewer sweeps). Both replay every chunk in turns of 100 votes
   (RatingBook, then the package on the same 100), so both see the same load of the shared
   cores; their states are compared at the end of each chunk.
2. Bradley-Terry fit + ``--rounds`` bootstrap rounds (:func:`metrics.bradley_terry
   .bradley_terry`, aggregation included), against one plain logistic-regression fit with one
   row per pairwise outcome (scipy L-BFGS-B on the raw likelihood, run to convergence); the two
   fits are compared. The time of the bootstrap's multinomial draws alone is printed as its
   floor: every resample needs them, and one generator draws them one after another.

Peak memory of each step is the growth of the process's peak resident set (VmHWM, reset
through /proc/self/clear_refs before the step) over its resident set when the step began.

    python benchmarks/ratings_replay.py [--votes N] [--rounds R] [--reference-votes M]
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from metrics.bradley_terry import RIDGE, VoteGroups, bradley_terry, group_votes, to_elo_scale
from metrics.outcomes import TIE, VoteRecord, pairwise, trueskill_games
from metrics.rating_book import CheckpointRating, RatingBook, RatingConfig
from metrics.trueskill_fast import TrueSkillModel

T = TypeVar("T")
N_CHECKPOINTS = 50
CHUNK = 2_000
SLICE = 100  # votes each side replays in turn, so both see the same load of the shared cores


def synthetic_log(n_votes: int, seed: int = 0) -> list[VoteRecord]:
    """The benchmark's vote log (see the module docstring for the mix)."""
    rng = np.random.default_rng(seed)
    strength = rng.normal(0.0, 0.8, N_CHECKPOINTS)
    kind = rng.choice(4, size=n_votes, p=[0.6, 0.2, 0.1, 0.1])  # fixed, free, best-of, ranking
    pairs = np.concatenate([  # four distinct checkpoints per vote, in chunks to bound memory
        np.argsort(rng.random((min(100_000, n_votes - s), N_CHECKPOINTS)), axis=1)[:, :4]
        for s in range(0, n_votes, 100_000)
    ])
    gumbel = strength[pairs] + rng.gumbel(size=(n_votes, 4))  # Plackett-Luce by Gumbel max
    draw = rng.random(n_votes) < 0.10
    votes: list[VoteRecord] = []
    for i in range(n_votes):
        k, t = int(kind[i]), 1.7e9 + 3.0 * i
        if k <= 1:
            ids = (int(pairs[i, 0]), int(pairs[i, 1]))
            if k == 0 and draw[i]:
                votes.append(VoteRecord(ids, winner=TIE, time=t))
            else:
                votes.append(VoteRecord(ids, winner=int(gumbel[i, 1] > gumbel[i, 0]), time=t))
            continue
        ids = tuple(int(c) for c in pairs[i])
        order = tuple(int(p) for p in np.argsort(-gumbel[i]))
        if k == 2:
            votes.append(VoteRecord(ids, winner=order[0], time=t))
        else:
            votes.append(VoteRecord(ids, ranking=order, time=t))
    return votes


def _status(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"/proc/self/status has no {field}")


def measure(label: str, step: Callable[[], T]) -> tuple[T, float, float]:
    """Run ``step``; return its result, seconds, and peak memory growth in MiB."""
    Path("/proc/self/clear_refs").write_text("5")
    base = _status("VmRSS")
    start = time.perf_counter()
    result = step()
    seconds = time.perf_counter() - start
    peak = (_status("VmHWM") - base) / 2**20
    print(f"  {label:<52} {seconds:9.2f} s   peak +{peak:8.1f} MiB", flush=True)
    return result, seconds, peak


def replay(votes: list[VoteRecord], marks: frozenset[int] = frozenset()) -> tuple[
    RatingBook, dict[int, list[CheckpointRating]]
]:
    """Replay every vote; also copy the states found just before each vote index in
    ``marks``."""
    book = RatingBook(RatingConfig())
    saved: dict[int, list[CheckpointRating]] = {}
    for i, vote in enumerate(votes):
        if i in marks:
            saved[i] = [dataclasses.replace(s) for s in book.states.values()]
        book.apply(vote)
    return book, saved


def package_replay(
    votes: list[VoteRecord], ratings: dict[int, tuple[float, float]]
) -> dict[int, tuple[float, float]]:
    """TrueSkill with the ``trueskill`` package itself, same games, same combination rule."""
    model = TrueSkillModel(RatingConfig().trueskill, engine="package")
    params = model.params
    for vote in votes:
        games = trueskill_games(vote)
        pre = {c: ratings.get(c, (params.mu, params.sigma)) for c in vote.participants}
        ratings.update(model.rate_games(pre, games))
    return ratings


def side_by_side(
    chunks: list[tuple[list[CheckpointRating], list[VoteRecord]]],
) -> tuple[float, float, float]:
    """RatingBook and the package on each chunk of votes from the same starting states, one
    after the other (so both see the same machine load); their seconds and the largest |mu|
    or |sigma| difference at the end of any chunk."""
    ours = theirs = diff = 0.0
    for states, part in chunks:
        book = RatingBook(RatingConfig(), [dataclasses.replace(s) for s in states])
        ratings = {s.checkpoint_id: (s.mu, s.sigma) for s in states}
        for start in range(0, len(part), SLICE):
            piece = part[start : start + SLICE]
            t0 = time.perf_counter()
            for vote in piece:
                book.apply(vote)
            t1 = time.perf_counter()
            package_replay(piece, ratings)
            t2 = time.perf_counter()
            ours, theirs = ours + t1 - t0, theirs + t2 - t1
        diff = max(diff, *(max(abs(book.states[c].mu - mu), abs(book.states[c].sigma - sigma))
                           for c, (mu, sigma) in ratings.items()))
    return ours, theirs, diff


def bootstrap_draws(groups: VoteGroups, rounds: int) -> None:
    """Draw the group counts of ``rounds`` bootstrap resamples as :func:`bradley_terry` does:
    the part of a bootstrap no fit can avoid."""
    rng = np.random.default_rng(0)
    share = groups.group_counts / groups.n_votes
    for _ in range(rounds):
        rng.multinomial(groups.n_votes, share)


def logistic_regression(votes: list[VoteRecord], n: int) -> np.ndarray:
    """Plain BT fit: one row per pairwise outcome, target = score, scipy L-BFGS-B."""
    from scipy.optimize import minimize
    from scipy.sparse import csr_matrix

    rows = [o for vote in votes for o in pairwise(vote)]
    a = np.fromiter((o.a for o in rows), dtype=np.int64, count=len(rows))
    b = np.fromiter((o.b for o in rows), dtype=np.int64, count=len(rows))
    y = np.fromiter((o.score_a for o in rows), dtype=np.float64, count=len(rows))
    m = len(rows)
    x = csr_matrix(
        (np.r_[np.ones(m), -np.ones(m)], (np.r_[np.arange(m), np.arange(m)], np.r_[a, b])),
        shape=(m, n),
    )

    def loss(theta: np.ndarray) -> tuple[float, np.ndarray]:
        z = x @ theta
        value = np.sum(np.logaddexp(0.0, z) - y * z) + 0.5 * RIDGE * theta @ theta
        grad = x.T @ (1.0 / (1.0 + np.exp(-z)) - y) + RIDGE * theta
        return float(value), grad

    # ftol 0: run until the gradient is small or no step lowers the loss. With the default
    # relative-reduction stop (ftol 2.2e-9) L-BFGS-B left |gradient| at 6e-2 on the 1M log,
    # 1.03e-3 Elo points from the optimum.
    fit = minimize(loss, np.zeros(n), jac=True, method="L-BFGS-B",
                   options={"gtol": 1e-8, "ftol": 0.0})
    return fit.x


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--votes", type=int, default=1_000_000, help="log size")
    parser.add_argument("--rounds", type=int, default=100, help="bootstrap rounds")
    parser.add_argument(
        "--reference-votes", type=int, default=50_000, help="votes the package replays"
    )
    args = parser.parse_args()
    n_ref = min(args.reference_votes, args.votes)

    print(f"synthetic log: {args.votes:,} votes over {N_CHECKPOINTS} checkpoints "
          "(60% fixed duels, 10% of them draws; 20% free duels; "
          "10% best-of-four; 10% four-way rankings)")
    votes, _, _ = measure("build log", lambda: synthetic_log(args.votes))

    print("Elo + TrueSkill replay (overall board, every vote):")
    chunk = CHUNK
    n_chunks = max(1, n_ref // chunk)
    marks = frozenset(int(k) for k in np.linspace(0, args.votes - chunk, n_chunks))
    (book, saved), t_fast, _ = measure("RatingBook replay, full log", lambda: replay(votes, marks))
    print(f"  {args.votes / t_fast:,.0f} votes/s")
    first = [([], votes[:n_ref])]
    spread = [(saved[k], votes[k : k + chunk]) for k in sorted(marks)]
    (o1, p1, d1), _, _ = measure(f"first {n_ref:,} votes: RatingBook, package", lambda: (
        side_by_side(first)))
    (o2, p2, d2), _, _ = measure(f"{len(spread)} x {chunk:,} votes spread over the log",
                                 lambda: side_by_side(spread))
    n2 = sum(len(part) for _, part in spread)
    print(f"  first {n_ref:,} votes from the start: RatingBook {o1:.2f} s, package {p1:.2f} s:"
          f" {p1 / o1:.1f}x; max |mu|, |sigma| difference {d1:.1e}")
    print(f"  {n2:,} votes in {len(spread)} chunks spread over the log, each from the "
          f"RatingBook state there: RatingBook {o2:.2f} s, package {p2:.2f} s: {p2 / o2:.1f}x; "
          f"max difference {d2:.1e}")
    print(f"  package time scaled from those {n2:,} votes to the full log: "
          f"{p2 * args.votes / n2:.0f} s vs the RatingBook replay above, {t_fast:.1f} s: "
          f"{p2 * args.votes / n2 / t_fast:.1f}x (timed at another moment: the load of the "
          "shared cores differs)")
    print("  (target >= 20x; the package does TrueSkill only, RatingBook Elo + TrueSkill)")
    top = max(book.states.values(), key=lambda s: s.conservative)
    print(f"  top by mu - 3 sigma: checkpoint {top.checkpoint_id} "
          f"(elo {top.elo:.1f}, mu {top.mu:.3f}, sigma {top.sigma:.3f})")

    print(f"Bradley-Terry, fit + {args.rounds} bootstrap rounds:")
    groups, t_group, _ = measure("aggregate votes into groups", lambda: group_votes(votes))
    result, t_boot, _ = measure(
        f"fit + {args.rounds} bootstrap rounds", lambda: bradley_terry(groups, args.rounds)
    )
    t_bt = t_group + t_boot
    _, t_draws, _ = measure(
        f"floor: the {args.rounds} multinomial draws alone",
        lambda: bootstrap_draws(groups, args.rounds),
    )
    theta, t_lr, _ = measure(
        "plain logistic regression, one fit", lambda: logistic_regression(votes, N_CHECKPOINTS)
    )
    lr_rating = to_elo_scale(theta)
    ours = {r.checkpoint_id: r.rating for r in result.ratings}
    gap = max(abs(ours[c] - lr_rating[c]) for c in ours)
    widths = [r.upper - r.lower for r in result.ratings]
    print(f"  total from votes: {t_bt:.2f} s "
          f"for {groups.n_votes:,} votes in {len(groups.group_counts):,} groups "
          "(target <= 2.5 s, moonshot 1 s)")
    print(f"  grouping {t_group:.2f} s + fit and bootstraps {t_boot:.2f} s; the fit and "
          f"bootstraps take {t_boot / t_draws:.2f}x their multinomial draws alone (a second "
          "thread draws while the first fits)")
    print(f"  ratio vs one plain logistic-regression fit: {t_lr / t_bt:.2f}x "
          f"(fit + {args.rounds} bootstraps vs 1 fit); "
          f"vs {args.rounds + 1} plain fits: {t_lr * (args.rounds + 1) / t_bt:.1f}x")
    print(f"  max |rating difference| vs logistic regression: {gap:.2e} Elo points")
    print(f"  95% interval width: median {np.median(widths):.1f}, max {max(widths):.1f}; "
          f"distinct ranks: {len({r.rank for r in result.ratings})}")
    if not math.isfinite(gap):
        raise SystemExit("logistic regression diverged")


if __name__ == "__main__":
    main()
