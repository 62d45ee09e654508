"""Bradley-Terry fits of the leaderboard and the replay that rewrites every stored aggregate.

Bradley-Terry is not updated per vote: it is fitted with bootstrap intervals from a board's
aggregated log (:mod:`arena.leaderboard.log`), once per board and newest vote on that board,
kept in memory per (database, board, parameters) and stored with the board's aggregates
(:mod:`arena.leaderboard.store`) for the next server start. :func:`recompute` is
``arena ratings recompute``: one serialized replay of the vote log that rewrites the rating
snapshots (:func:`arena.ratings.replay`) and every board's stored log and fit;
:func:`change_and_recompute` records an operator's exclusion (or inclusion) of a voter's or a
prompt's votes and runs it, so every board follows the decision.
"""

from __future__ import annotations

import atexit
import multiprocessing
import multiprocessing.pool
import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from arena.db import Database
from arena.decisions import Decision, Exclusions, change_exclusion, exclusions
from arena.leaderboard import store as board_store
from arena.leaderboard.log import BoardLog, board_log, store_log
from arena.ratings import rating_config, replay
from arena.registry import checkpoint_labels
from arena.settings import Settings, get_settings
from metrics.bradley_terry import RIDGE, Ballot, bradley_terry, group_ballots
from metrics.outcomes import VoteRecord, placements
from metrics.rating_book import RatingConfig

__all__ = [
    "BT_REFIT_SECONDS",
    "BTFit",
    "bt_parameters",
    "bt_rows",
    "change_and_recompute",
    "clear_cache",
    "fit_bt_rows",
    "recompute",
    "refit_in_background",
    "refit_pool",
    "store_fit",
    "stored_fit",
]


def recompute(db: Database, settings: Settings | None = None, progress: bool = True) -> int:
    """Replay the whole vote log in id order and rewrite every snapshot and every board's
    stored aggregates (the board log and its Bradley-Terry fit); returns the number of votes
    replayed. Runs as one serialized transaction, so no vote lands half-way."""
    from tqdm import tqdm

    s = settings or get_settings()
    config = rating_config(s)
    logs: dict[str, BoardLog] = {}
    newest = 0
    excluded = Exclusions()  # the votes the replay leaves out

    def observe(vote_id: int, kind: str, record: VoteRecord, boards: list[str]) -> None:
        nonlocal newest
        newest = vote_id
        for board in boards:
            log = logs.get(board)
            if log is None:
                log = logs[board] = BoardLog(board, config.elo, config.both_bad_as_draw,
                                             excluded=excluded)
            log.add(vote_id, kind, record)

    with db.session(serialized=True) as session:
        excluded = exclusions(session)
        board_store.clear(session)
        replayed = replay(session, s, progress, observe)
        for log in tqdm(logs.values(), desc="storing boards and Bradley-Terry fits",
                        unit="board", disable=None if progress else True):
            log.read_to = newest  # every board's log has seen every vote it counts
            store_log(session, log)
            store_fit(session, log, s, fit_bt_rows(log.ballots, config, s, log.last_vote_id))
    return replayed


def change_and_recompute(db: Database, subject: str, subject_id: int, action: str, reason: str,
                         settings: Settings | None = None) -> tuple[Decision, int]:
    """Record an operator's ``action`` ("exclude" or "include") on a voter's or a prompt's
    votes (:func:`arena.decisions.change_exclusion`: refused when it would change nothing) and
    replay the log (:func:`recompute`), so every board, its stored aggregates and the rating
    snapshots included, is recomputed without (or again with) those votes, which stay in the
    log; returns the decision and the number of votes replayed."""
    with db.session() as session:
        decision = change_exclusion(session, subject, subject_id, action, reason)
    return decision, recompute(db, settings, progress=False)


# Bradley-Terry fits per (database, board, parameters), each with the newest vote it covers:
# the log is append-only, so a fit at newest vote N stays exact until the board gets a new
# vote, and a vote on another board keeps this board's fit.
_BT_CACHE: dict[tuple[Any, ...], BTFit] = {}
_BT_CACHE_SIZE = 64
_BT_GUARD = threading.Lock()


def clear_cache() -> None:
    """Forget every Bradley-Terry fit held in memory, as a restarted process would."""
    with _BT_GUARD:
        _BT_CACHE.clear()


# A dashboard view does not wait for a refit: it shows the newest fit (saying which vote it
# covers) and one background refit per board runs at most this often.
BT_REFIT_SECONDS = 10.0


@dataclass(frozen=True)
class BTFit:
    """Bradley-Terry rows (without names) fitted on the board's votes up to ``last_vote_id``."""

    last_vote_id: int
    rows: tuple[dict[str, Any], ...]
    fitted_at: float


def bt_rows(session: Session, board: str, settings: Settings | None = None,
            wait: bool = True) -> list[dict[str, Any]]:
    """The Bradley-Terry board (see :func:`leaderboard`), fitted with bootstrap intervals on
    the board's aggregated log (:mod:`arena.leaderboard.log`); every row carries ``fit_vote_id``,
    the newest vote the fit covers. ``wait=False`` (the dashboard) returns the cached fit even
    when newer votes exist and refits in the background, at most every ``BT_REFIT_SECONDS``;
    only a board never fitted (or fitted before it had votes) is fitted on the spot."""
    s = settings or get_settings()
    config = rating_config(s)
    log = board_log(session, board, config)
    key = (str(session.get_bind().url), board, s.bootstrap_rounds, s.bootstrap_seed,
           config.both_bad_as_draw, log.excluded)
    with _BT_GUARD:
        fit = _BT_CACHE.get(key)
    if fit is None:
        fit = stored_fit(session, board, s, log.excluded)
        if fit is not None:
            fit = _keep_fit(key, fit)
    stale = fit is not None and fit.last_vote_id != log.last_vote_id
    # A board never fitted, or fitted before its first vote, is fitted on the spot.
    if fit is None or (stale and (wait or not fit.rows)):
        fit = _store_fit(key, log.last_vote_id, log.ballots, config, s)
    elif fit.last_vote_id != log.last_vote_id:
        _refit_later(key, fit, log.last_vote_id, log.ballots, config, s)
    names = checkpoint_labels(session, [r["checkpoint_id"] for r in fit.rows])
    return [{**row, "checkpoint": names[row["checkpoint_id"]][0],
             "config": names[row["checkpoint_id"]][1]} for row in fit.rows]


def bt_parameters(settings: Settings, excluded: Exclusions = Exclusions()) -> dict[str, Any]:
    """What decides a Bradley-Terry fit's numbers (the key of its stored aggregate): the
    settings and the voters and prompts whose votes an operator excluded."""
    return {"bootstrap_rounds": settings.bootstrap_rounds, "seed": settings.bootstrap_seed,
            "ridge": RIDGE, "both_bad_as_draw": settings.both_bad_as_draw,
            **excluded.parameters()}


def stored_fit(session: Session, board: str, settings: Settings,
               excluded: Exclusions = Exclusions()) -> BTFit | None:
    """The board's stored fit made with exactly these parameters and exclusions, or None. It
    counts as fitted long ago, so a view that finds newer votes starts a refit at once."""
    found = board_store.load(session, board, board_store.BT, bt_parameters(settings, excluded))
    if found is None:
        return None
    last_vote_id, rows = found
    return BTFit(last_vote_id, tuple(rows), float("-inf"))


def store_fit(session: Session, log: BoardLog, settings: Settings,
              rows: Sequence[dict[str, Any]]) -> None:
    """Store the fit of ``log``'s ballots (rows without names, as :func:`fit_bt_rows` makes
    them) as its board's stored fit."""
    board_store.save(session, log.board, board_store.BT, bt_parameters(settings, log.excluded),
                     log.last_vote_id, log.votes, list(rows))


def _store_fit(key: tuple[Any, ...], last_vote_id: int, ballots: Mapping[Ballot, int],
               config: RatingConfig, settings: Settings) -> BTFit:
    fit = BTFit(last_vote_id, tuple(fit_bt_rows(ballots, config, settings, last_vote_id)),
                time.monotonic())
    return _keep_fit(key, fit)


def _keep_fit(key: tuple[Any, ...], fit: BTFit) -> BTFit:
    with _BT_GUARD:
        current = _BT_CACHE.get(key)
        if current is None or current.last_vote_id < fit.last_vote_id:
            _BT_CACHE.pop(key, None)
            _BT_CACHE[key] = fit
        while len(_BT_CACHE) > _BT_CACHE_SIZE:
            _BT_CACHE.pop(next(iter(_BT_CACHE)))
    return fit


def _refit_later(key: tuple[Any, ...], fit: BTFit, last_vote_id: int,
                 ballots: Mapping[Ballot, int], config: RatingConfig,
                 settings: Settings) -> None:
    if time.monotonic() - fit.fitted_at < BT_REFIT_SECONDS:
        return
    refit_in_background(
        ("bt", *key), fit_bt_rows, (dict(ballots), config, settings, last_vote_id),
        lambda rows: _keep_fit(key, BTFit(last_vote_id, tuple(rows), time.monotonic())))


_RUNNING: set[tuple[Any, ...]] = set()


def refit_in_background(key: tuple[Any, ...], fit: Callable[..., Any], args: tuple[Any, ...],
                        keep: Callable[[Any], None]) -> None:
    """Run ``fit(*args)`` in the refit process (:func:`refit_pool`) unless a refit of ``key``
    is already running there, and ``keep`` its result here when it lands. A refit that fails,
    or a pool that cannot start, only means the next view tries again."""
    with _BT_GUARD:
        if key in _RUNNING:
            return
        _RUNNING.add(key)

    def done(result: Any) -> None:
        try:
            keep(result)
        finally:
            failed()

    def failed(_error: BaseException | None = None) -> None:
        with _BT_GUARD:
            _RUNNING.discard(key)

    try:
        refit_pool().apply_async(fit, args, callback=done, error_callback=failed)
    except Exception:
        failed()
        raise


_POOL: list[multiprocessing.pool.Pool] = []


def refit_pool() -> multiprocessing.pool.Pool:
    """The process Bradley-Terry and robust refits run in: a refit is seconds of Python on a large
    board, which would hold this interpreter's lock (the dashboard's renders in the
    leaderboard worker; the votes, were it the server). Daemonic, so it ends with this
    process."""
    with _BT_GUARD:
        if not _POOL:
            from arena.lifeline import exit_with_parent

            # It ends with this process even when that one is killed (no atexit then).
            pool = multiprocessing.get_context("spawn").Pool(
                1, initializer=exit_with_parent, initargs=(os.getpid(),))
            atexit.register(pool.terminate)  # before interpreter teardown, not in __del__
            _POOL.append(pool)
        return _POOL[0]


def fit_bt_rows(ballots: Mapping[Ballot, int], config: RatingConfig,
                settings: Settings, last_vote_id: int) -> list[dict[str, Any]]:
    """Bradley-Terry rows (without names) fitted on a board log's ``ballots``, taken in one
    canonical order: the bootstrap's draws follow the ballots' order, and a log restored from
    its stored state or rebuilt by a replay lists the same ballots in another order, which
    would give other intervals for the same votes."""
    canonical = dict(sorted(ballots.items(), key=lambda b: (b[0][0], str(b[0][1]),
                                                            b[0][2] or ())))
    result = bradley_terry(
        group_ballots(canonical, config.both_bad_as_draw),
        rounds=settings.bootstrap_rounds,
        seed=settings.bootstrap_seed,
    )
    counts: dict[int, dict[str, int]] = {}
    for (participants, winner, ranking), n in ballots.items():
        record = VoteRecord(participants, winner, ranking)
        for c, placed in placements(record, config.both_bad_as_draw).items():
            tally = counts.setdefault(c, {"games": 0, "win": 0, "draw": 0, "loss": 0})
            tally["games"] += n
            tally[placed] += n
    return [
        {
            "rank": r.rank,
            "checkpoint_id": r.checkpoint_id,
            "rating": r.rating,
            "lower": r.lower,
            "upper": r.upper,
            "games": counts[r.checkpoint_id]["games"],
            "wins": counts[r.checkpoint_id]["win"],
            "draws": counts[r.checkpoint_id]["draw"],
            "losses": counts[r.checkpoint_id]["loss"],
            "fit_vote_id": last_vote_id,
        }
        for r in result.ratings
    ]
