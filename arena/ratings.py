"""Rating snapshots in SQL: online updates in the vote transaction, replay, Bradley-Terry fits.

Votes are the source of truth; ``rating_snapshots`` rows are derived. Each vote updates the
Elo and TrueSkill rows of its participants on every board it counts on
(:func:`metrics.boards.boards_for`), inside the caller's serialized transaction, through
the same :class:`metrics.rating_book.RatingBook` that :func:`recompute` uses to replay the log
in id order, so both give the same numbers bit for bit. Bradley-Terry is not updated per
vote: the leaderboard fits it with bootstrap intervals from the board's aggregated log
(:mod:`arena.leaderboard.log`), once per board and newest vote on that board; the newest fit is
stored with the board's aggregates (:mod:`arena.leaderboard.store`) for the next server start.

A snapshot row maps 1:1 to :class:`metrics.rating_book.CheckpointRating`: the ``elo`` row holds
the Elo rating and its time-weighted-average state, the ``trueskill`` row ``mu``, ``sigma`` and
``rating = mu - 3 sigma``; both hold the game counts. ``parameters`` records the rating
parameters the row was computed with.
"""

from __future__ import annotations

import atexit
import multiprocessing
import multiprocessing.pool
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, bindparam, delete, func, insert, select, update
from sqlalchemy.orm import Session

from arena.db import Database
from arena.errors import StaleRatings, Unavailable, UserError
from arena.leaderboard import store as board_store
from arena.leaderboard.log import BoardLog, board_log, board_where, record_from, store_log
from arena.models import (
    Match,
    MatchImage,
    Prompt,
    RatingSnapshot,
    Vote,
    utcnow,
)
from arena.registry import checkpoint_labels
from arena.settings import Settings, get_settings
from metrics.boards import OVERALL, boards_for
from metrics.bradley_terry import RIDGE, Ballot, bradley_terry, group_ballots
from metrics.elo import EloParams
from metrics.outcomes import InvalidVote, VoteRecord, placements
from metrics.rating_book import CheckpointRating, RatingBook, RatingConfig
from metrics.rating_systems import ONLINE_SYSTEMS, check_system
from metrics.trueskill_fast import TrueSkillParams

__all__ = [
    "apply_vote_online",
    "bt_parameters",
    "bt_rows",
    "clear_cache",
    "fit_bt_rows",
    "rating_config",
    "rating_parameters",
    "recompute",
    "refit_pool",
    "snapshot_rows",
    "stale_boards",
    "store_fit",
    "stored_fit",
    "vote_record",
]


def rating_config(settings: Settings | None = None) -> RatingConfig:
    """The rating parameters in force (from ``ARENA_ELO_K``, ``ARENA_TRUESKILL_*``, ...)."""
    s = settings or get_settings()
    return RatingConfig(
        elo=EloParams(k=s.elo_k),
        trueskill=TrueSkillParams(
            mu=s.trueskill_mu,
            sigma=s.trueskill_sigma,
            beta=s.trueskill_beta,
            tau=s.trueskill_tau,
            draw_probability=s.trueskill_draw_probability,
        ),
        both_bad_as_draw=s.both_bad_as_draw,
    )


def _parameters(config: RatingConfig, system: str) -> dict[str, Any]:
    if system == "elo":
        e = config.elo
        values: dict[str, Any] = {"k": e.k, "scale": e.scale, "base": e.base, "initial": e.initial}
    else:
        t = config.trueskill
        values = {
            "mu": t.mu,
            "sigma": t.sigma,
            "beta": t.beta,
            "tau": t.tau,
            "draw_probability": t.draw_probability,
        }
    return {**values, "both_bad_as_draw": config.both_bad_as_draw}


def rating_parameters(system: str, settings: Settings | None = None) -> dict[str, Any]:
    """The parameters that produce a system's numbers, for provenance (``--json``)."""
    s = settings or get_settings()
    entry = check_system(system)
    system = entry.parameters
    config = rating_config(s)
    if system == "bt":
        return {
            "bootstrap_rounds": s.bootstrap_rounds,
            "seed": s.bootstrap_seed,
            "confidence": 0.95,
            "ridge": RIDGE,
            "scale": "elo: 400 points per factor 10 in odds, mean 1000",
            "both_bad_as_draw": config.both_bad_as_draw,
        }
    extra = {"sort": entry.sort} if system == "trueskill" else {}
    return {**_parameters(config, system), **extra}


def vote_record(vote: Vote, participants: list[int]) -> VoteRecord:
    """The rating systems' view of a stored vote (``participants``: checkpoint ids by shown
    position)."""
    try:
        return record_from(vote.outcome, vote.winner_position, vote.ranking, participants,
                           vote.created_at.timestamp())
    except InvalidVote as exc:
        raise UserError(f"vote {vote.id}: {exc}") from None


def _state(checkpoint_id: int, elo: Any, ts: Any, book: RatingBook) -> CheckpointRating:
    state = book.new_state(checkpoint_id)
    counts = elo or ts
    if counts is not None:
        state.games, state.wins = counts.games, counts.wins
        state.draws, state.losses = counts.draws, counts.losses
    if elo is not None:
        state.elo = elo.rating
        state.weighted_sum, state.held_since = elo.weighted_sum, elo.held_since
        state.first_time = elo.first_time
    if ts is not None and ts.mu is not None and ts.sigma is not None:
        state.mu, state.sigma = ts.mu, ts.sigma
    return state


def _values(system: str, state: CheckpointRating, vote_id: int | None,
            parameters: dict[str, Any]) -> dict[str, Any]:
    """The snapshot columns of one system's view of ``state`` (same keys for both systems, so
    rows are written in one executemany)."""
    elo = system == "elo"
    return {
        "rating": state.elo if elo else state.conservative,
        "mu": None if elo else state.mu,
        "sigma": None if elo else state.sigma,
        "weighted_sum": state.weighted_sum if elo else 0.0,
        "held_since": state.held_since if elo else None,
        "first_time": state.first_time if elo else None,
        "games": state.games,
        "wins": state.wins,
        "draws": state.draws,
        "losses": state.losses,
        "last_vote_id": vote_id,
        "parameters": parameters,
        "updated_at": utcnow(),
    }


def _board_samples(session: Session | Connection,
                   boards: list[str] | None = None) -> list[tuple[str, str, dict[str, Any]]]:
    """One snapshot's ``(board, system, parameters)`` per board and online system."""
    where = [RatingSnapshot.system.in_(ONLINE_SYSTEMS)]
    if boards is not None:
        where.append(RatingSnapshot.board.in_(boards))
    first_ids = (
        select(func.min(RatingSnapshot.id)).where(*where)
        .group_by(RatingSnapshot.board, RatingSnapshot.system)
    )
    return [
        (board, system, parameters)
        for board, system, parameters in session.execute(
            select(RatingSnapshot.board, RatingSnapshot.system, RatingSnapshot.parameters)
            .where(RatingSnapshot.id.in_(first_ids))
        )
    ]


def stale_boards(session: Session, settings: Settings | None = None) -> list[str]:
    """The boards whose online snapshots were made with other parameters than the settings'
    (votes on them are refused until ``arena ratings recompute``)."""
    config = rating_config(settings)
    current = {system: _parameters(config, system) for system in ONLINE_SYSTEMS}
    return sorted({board for board, system, used in _board_samples(session)
                   if used != current[system]})


def _refuse_other_parameters(session: Session | Connection, boards: Sequence[str],
                             parameters: dict[str, dict[str, Any]],
                             rows: Sequence[Any]) -> None:
    """Refuse to update a board whose snapshots were made with other rating parameters.

    Online updates keep each board on one parameter set (they refuse here, and ``recompute``
    rewrites every row), so any one row of a board and system tells its set: the
    participants' rows where they have one, else one other row of the board (read only then).
    """
    stored = [(r.board, r.system, r.parameters) for r in rows]
    seen = {(board, system) for board, system, _ in stored}
    unseen = [b for b in boards if any((b, system) not in seen for system in ONLINE_SYSTEMS)]
    if unseen:
        stored += _board_samples(session, unseen)
    for board, system, used in stored:
        if used != parameters[system]:
            changed = sorted(k for k in parameters[system] if used.get(k) != parameters[system][k])
            raise Unavailable(
                f"the {system} ratings on board {board!r} were computed with other parameters "
                f"({', '.join(changed) or 'a different set'} changed): votes are refused until "
                "an operator runs `arena ratings recompute`"
            )


def _online_statements():  # type: ignore[no-untyped-def]
    """Built once (building a statement costs more than running it on a few rows)."""
    table = RatingSnapshot.__table__
    rows = select(table).where(
        table.c.board.in_(bindparam("boards", expanding=True)),
        table.c.system.in_(ONLINE_SYSTEMS),
        table.c.checkpoint_id.in_(bindparam("checkpoints", expanding=True)),
    )
    # Plain Core executemany: the SET clause is the keys of each parameter dict.
    return rows, update(table).where(table.c.id == bindparam("row_id")), insert(table)


_SNAPSHOT_ROWS, _UPDATE_SNAPSHOT, _INSERT_SNAPSHOT = _online_statements()


def apply_vote_online(session: Session | Connection, vote_id: int, record: VoteRecord,
                      kind: str, character: str | None, settings: Settings | None = None) -> None:
    """Update the Elo and TrueSkill snapshots of the vote's participants on every board the
    vote counts on (:func:`boards_for` of the match ``kind`` and prompt ``character``), in the
    caller's (serialized) transaction; ``vote_id`` is the stored vote that ``record`` is."""
    participants = list(record.participants)
    config = rating_config(settings)
    boards = boards_for(kind, character)
    conn = session.connection() if isinstance(session, Session) else session
    rows = conn.execute(
        _SNAPSHOT_ROWS, {"boards": list(boards), "checkpoints": participants}
    ).all()
    index = {(r.board, r.system, r.checkpoint_id): r for r in rows}
    parameters = {system: _parameters(config, system) for system in ONLINE_SYSTEMS}
    _refuse_other_parameters(conn, boards, parameters, rows)
    updates: list[dict[str, Any]] = []
    inserts: list[dict[str, Any]] = []
    for board in boards:
        book = RatingBook(config)
        for c in participants:
            elo, ts = index.get((board, "elo", c)), index.get((board, "trueskill", c))
            if elo is not None or ts is not None:
                book.states[c] = _state(c, elo, ts, book)
        for c in book.apply(record):
            for system in ONLINE_SYSTEMS:
                values = _values(system, book.states[c], vote_id, parameters[system])
                row = index.get((board, system, c))
                if row is None:
                    inserts.append({"board": board, "system": system, "checkpoint_id": c,
                                    **values})
                else:
                    # Its parameters are the ones in force (checked above): not rewritten.
                    values.pop("parameters")
                    updates.append({"row_id": row.id, **values})
    # One executemany each instead of a statement per row (up to 24 rows a vote).
    if updates:
        conn.execute(_UPDATE_SNAPSHOT, updates)
    if inserts:
        conn.execute(_INSERT_SNAPSHOT, inserts)


def _log(session: Session, board: str = OVERALL) -> Iterator[tuple[int, VoteRecord, str,
                                                                   str | None]]:
    """``(vote id, record, match kind, character)`` for the votes on ``board``, in id order."""
    where = board_where(board)
    positions: dict[int, list[int]] = {}
    for match_id, checkpoint_id in session.execute(
        select(MatchImage.match_id, MatchImage.checkpoint_id)
        .join(Match, Match.id == MatchImage.match_id)
        .join(Prompt, Prompt.id == Match.prompt_id)
        .join(Vote, Vote.match_id == Match.id)
        .where(*where)
        .order_by(MatchImage.match_id, MatchImage.position)
    ):
        positions.setdefault(match_id, []).append(checkpoint_id)
    query = (
        select(Vote, Match.kind, Prompt.character)
        .join(Match, Match.id == Vote.match_id)
        .join(Prompt, Prompt.id == Match.prompt_id)
        .where(*where)
        .order_by(Vote.id)
    )
    for vote, kind, character in session.execute(query.execution_options(yield_per=5000)):
        yield vote.id, vote_record(vote, positions[vote.match_id]), kind, character


def recompute(db: Database, settings: Settings | None = None, progress: bool = True) -> int:
    """Replay the whole vote log in id order and rewrite every snapshot and every board's
    stored aggregates (:mod:`arena.leaderboard.store`: the board log and its Bradley-Terry fit);
    returns the number of votes replayed. Runs as one serialized transaction, so no vote
    lands half-way."""
    from tqdm import tqdm

    s = settings or get_settings()
    config = rating_config(s)
    parameters = {system: _parameters(config, system) for system in ONLINE_SYSTEMS}
    books: dict[str, RatingBook] = {}
    logs: dict[str, BoardLog] = {}
    last_vote: dict[tuple[str, int], int] = {}
    with db.session(serialized=True) as session:
        total = session.scalar(select(func.count(Vote.id))) or 0
        session.execute(delete(RatingSnapshot))
        board_store.clear(session)
        bar = tqdm(total=total, desc="replaying votes", unit="vote",
                   disable=None if progress else True)
        replayed = newest = 0
        for vote_id, record, kind, character in _log(session):
            newest = vote_id
            for board in boards_for(kind, character):
                book = books.get(board)
                if book is None:
                    book = books[board] = RatingBook(config)
                    logs[board] = BoardLog(board, config.elo, config.both_bad_as_draw)
                for c in book.apply(record):
                    last_vote[(board, c)] = vote_id
                logs[board].add(vote_id, kind, record)
            replayed += 1
            bar.update()
        bar.close()
        rows = [
            {"board": board, "system": system, "checkpoint_id": c,
             **_values(system, state, last_vote[(board, c)], parameters[system])}
            for board, book in books.items()
            for c, state in book.states.items()
            for system in ONLINE_SYSTEMS
        ]
        if rows:
            session.execute(insert(RatingSnapshot), rows)
        for log in tqdm(logs.values(), desc="storing boards and Bradley-Terry fits",
                        unit="board", disable=None if progress else True):
            log.read_to = newest  # every board's log has seen every vote
            store_log(session, log)
            store_fit(session, log, s, fit_bt_rows(log.ballots, config, s, log.last_vote_id))
    return replayed


def snapshot_rows(session: Session, board: str, system: str,
                  settings: Settings | None = None) -> list[RatingSnapshot]:
    """The stored ``system`` snapshots of ``board``; :class:`StaleRatings` when any of them
    was computed with other parameters than those in force (numbers from two parameter sets
    are never shown together)."""
    board_where(board)
    snapshots = session.scalars(
        select(RatingSnapshot).where(RatingSnapshot.board == board, RatingSnapshot.system == system)
    ).all()
    expected = _parameters(rating_config(settings), system)
    if any(s.parameters != expected for s in snapshots):
        raise StaleRatings(
            f"the {system} snapshots on board {board!r} were computed with other rating "
            "parameters; run `arena ratings recompute`"
        )
    return list(snapshots)


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


_BT_RUNNING: set[tuple[Any, ...]] = set()


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
           config.both_bad_as_draw)
    with _BT_GUARD:
        fit = _BT_CACHE.get(key)
    if fit is None:
        fit = stored_fit(session, board, s)
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


def bt_parameters(settings: Settings) -> dict[str, Any]:
    """What decides a Bradley-Terry fit's numbers (the key of its stored aggregate)."""
    return {"bootstrap_rounds": settings.bootstrap_rounds, "seed": settings.bootstrap_seed,
            "ridge": RIDGE, "both_bad_as_draw": settings.both_bad_as_draw}


def stored_fit(session: Session, board: str, settings: Settings) -> BTFit | None:
    """The board's stored fit made with exactly these parameters, or None. It counts as
    fitted long ago, so a view that finds newer votes starts a refit at once."""
    found = board_store.load(session, board, board_store.BT, bt_parameters(settings))
    if found is None:
        return None
    last_vote_id, rows = found
    return BTFit(last_vote_id, tuple(rows), float("-inf"))


def store_fit(session: Session, log: BoardLog, settings: Settings,
              rows: Sequence[dict[str, Any]]) -> None:
    """Store the fit of ``log``'s ballots (rows without names, as :func:`fit_bt_rows` makes
    them) as its board's stored fit."""
    board_store.save(session, log.board, board_store.BT, bt_parameters(settings),
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
    with _BT_GUARD:
        if key in _BT_RUNNING or time.monotonic() - fit.fitted_at < BT_REFIT_SECONDS:
            return
        _BT_RUNNING.add(key)

    def done(rows: list[dict[str, Any]]) -> None:
        _keep_fit(key, BTFit(last_vote_id, tuple(rows), time.monotonic()))
        with _BT_GUARD:
            _BT_RUNNING.discard(key)

    def failed(_error: BaseException | None = None) -> None:  # the next view tries again
        with _BT_GUARD:
            _BT_RUNNING.discard(key)

    try:
        refit_pool().apply_async(fit_bt_rows, (dict(ballots), config, settings, last_vote_id),
                                 callback=done, error_callback=failed)
    except Exception:  # a pool that cannot start: the next view tries again
        failed()
        raise


_POOL: list[multiprocessing.pool.Pool] = []


def refit_pool() -> multiprocessing.pool.Pool:
    """The process Bradley-Terry refits run in: a refit is seconds of Python on a large
    board, which would hold this interpreter's lock (the dashboard's renders in the
    leaderboard worker; the votes, were it the server). Daemonic, so it ends with this
    process."""
    with _BT_GUARD:
        if not _POOL:
            pool = multiprocessing.get_context("spawn").Pool(1)
            atexit.register(pool.terminate)  # before interpreter teardown, not in __del__
            _POOL.append(pool)
        return _POOL[0]


def fit_bt_rows(ballots: Mapping[Ballot, int], config: RatingConfig,
                settings: Settings, last_vote_id: int) -> list[dict[str, Any]]:
    """Bradley-Terry rows (without names) fitted on a board log's ``ballots``."""
    result = bradley_terry(
        group_ballots(ballots, config.both_bad_as_draw),
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
