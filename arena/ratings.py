"""Rating snapshots in SQL: online updates in the vote transaction and the replay of the log.

Votes are the source of truth; ``rating_snapshots`` rows are derived. Each vote updates the
Elo and TrueSkill rows of its participants on every board it counts on
(:func:`metrics.boards.boards_for`), inside the caller's serialized transaction, through
the same :class:`metrics.rating_book.RatingBook` that :func:`replay` uses to replay the log
in id order, so both give the same numbers bit for bit. Bradley-Terry is not updated per
vote: the leaderboard fits it from the board's aggregated log (:mod:`arena.leaderboard.fits`,
which also holds ``arena ratings recompute``). This module also says which votes a board holds
(:func:`board_where`) and how a stored vote reads to the rating systems (:func:`record_from`).

A snapshot row maps 1:1 to :class:`metrics.rating_book.CheckpointRating`: the ``elo`` row holds
the Elo rating and its time-weighted-average state, the ``trueskill`` row ``mu``, ``sigma`` and
``rating = mu - 3 sigma``; both hold the game counts. ``parameters`` records the rating
parameters the row was computed with.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

from sqlalchemy import Connection, bindparam, delete, func, insert, select, update
from sqlalchemy.orm import Session

from arena.decisions import Exclusions, exclusions
from arena.errors import StaleRatings, Unavailable, UserError
from arena.models import (
    Match,
    MatchImage,
    Prompt,
    RatingSnapshot,
    Vote,
    utcnow,
)
from arena.settings import Settings, get_settings
from metrics.boards import OVERALL, boards_for, parse_board
from metrics.bradley_terry import RIDGE
from metrics.elo import EloParams
from metrics.outcomes import InvalidVote, VoteRecord
from metrics.rating_book import CheckpointRating, RatingBook, RatingConfig
from metrics.rating_systems import ONLINE_SYSTEMS, check_system
from metrics.robust import RobustParams
from metrics.trueskill_fast import TrueSkillParams

__all__ = [
    "apply_vote_online",
    "board_where",
    "rating_config",
    "rating_parameters",
    "record_from",
    "replay",
    "robust_params",
    "snapshot_rows",
    "stale_boards",
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


def robust_params(settings: Settings | None = None) -> RobustParams:
    """The robust board's parameters in force (bootstrap rounds and seed as Bradley-Terry's)."""
    s = settings or get_settings()
    return RobustParams(rounds=s.bootstrap_rounds, seed=s.bootstrap_seed,
                        both_bad_as_draw=s.both_bad_as_draw)


def rating_parameters(system: str, settings: Settings | None = None) -> dict[str, Any]:
    """The parameters that produce a system's numbers, for provenance (``--json``)."""
    s = settings or get_settings()
    entry = check_system(system)
    system = entry.parameters
    config = rating_config(s)
    if system == "robust":
        return {**robust_params(s).describe(),
                "scale": "elo: 400 points per factor 10 in odds, mean 1000"}
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


def record_from(outcome: str, winner_position: int | None, ranking: list[int] | None,
                participants: list[int], time: float) -> VoteRecord:
    """The rating systems' view of a stored vote's columns (participants by shown position)."""
    if outcome == "ranking":
        return VoteRecord(tuple(participants), ranking=tuple(ranking or ()), time=time)
    if outcome == "win":
        return VoteRecord(tuple(participants), winner=winner_position, time=time)
    return VoteRecord(tuple(participants), winner=outcome, time=time)  # type: ignore[arg-type]


def board_where(board: str) -> list[Any]:
    """SQL conditions (on ``Match`` and ``Prompt``) selecting the votes of ``board``; a
    InputError names a board that does not exist (:mod:`metrics.boards` parses it)."""
    parsed = parse_board(board)
    where: list[Any] = [] if parsed.kind is None else [Match.kind == parsed.kind]
    if parsed.character is not None:
        where.append(Prompt.character == parsed.character)
    return where


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


def _log(session: Session, board: str = OVERALL, excluded: Exclusions | None = None
         ) -> Iterator[tuple[int, VoteRecord, str, str | None]]:
    """``(vote id, record, match kind, character)`` for the votes on ``board`` that count
    (none left out by the exclusions in force, or by ``excluded``), in id order."""
    excluded = exclusions(session) if excluded is None else excluded
    where = [*board_where(board), *excluded.where()]
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


def replay(session: Session, settings: Settings | None = None, progress: bool = True,
           observe: Callable[[int, str, VoteRecord, list[str]], None] | None = None) -> int:
    """Replay the whole vote log in id order inside ``session`` (the caller's serialized
    transaction) and rewrite every snapshot; ``observe(vote_id, kind, record, boards)`` sees
    each vote (:func:`arena.leaderboard.fits.recompute` aggregates the boards with it).
    Returns the number of votes replayed."""
    from tqdm import tqdm

    config = rating_config(settings or get_settings())
    parameters = {system: _parameters(config, system) for system in ONLINE_SYSTEMS}
    books: dict[str, RatingBook] = {}
    last_vote: dict[tuple[str, int], int] = {}
    excluded = exclusions(session)
    counted = select(func.count(Vote.id))
    if excluded:
        counted = counted.join(Match, Match.id == Vote.match_id).where(*excluded.where())
    total = session.scalar(counted) or 0
    session.execute(delete(RatingSnapshot))
    bar = tqdm(total=total, desc="replaying votes", unit="vote",
               disable=None if progress else True)
    replayed = 0
    for vote_id, record, kind, character in _log(session, excluded=excluded):
        boards = boards_for(kind, character)
        for board in boards:
            book = books.get(board)
            if book is None:
                book = books[board] = RatingBook(config)
            for c in book.apply(record):
                last_vote[(board, c)] = vote_id
        if observe is not None:
            observe(vote_id, kind, record, boards)
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
