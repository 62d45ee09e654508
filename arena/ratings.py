"""Rating snapshots in SQL: online updates in the vote transaction, replay, leaderboards.

Votes are the source of truth; ``rating_snapshots`` rows are derived. Each vote updates the
Elo and TrueSkill rows of its participants on every board it counts on
(:func:`metrics.rating_book.boards_for`), inside the caller's serialized transaction, through
the same :class:`metrics.rating_book.RatingBook` that :func:`recompute` uses to replay the log
in id order, so both give the same numbers bit for bit. Bradley-Terry is not stored: the
leaderboard fits it from the log with bootstrap intervals each time it is asked for.

A snapshot row maps 1:1 to :class:`metrics.rating_book.CheckpointRating`: the ``elo`` row holds
the Elo rating and its time-weighted-average state, the ``trueskill`` row ``mu``, ``sigma`` and
``rating = mu - 3 sigma``; both hold the game counts. ``parameters`` records the rating
parameters the row was computed with.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from sqlalchemy import bindparam, delete, func, insert, select, update
from sqlalchemy.orm import Session

from arena.db import Database
from arena.errors import Unavailable, UserError
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
from metrics.bradley_terry import RIDGE, bradley_terry
from metrics.elo import EloParams, time_weighted_average
from metrics.outcomes import InvalidVote, VoteRecord, placements
from metrics.rating_book import (
    MATCH_KINDS,
    OVERALL,
    CheckpointRating,
    RatingBook,
    RatingConfig,
    boards_for,
)
from metrics.trueskill_fast import TrueSkillParams

__all__ = [
    "ONLINE_SYSTEMS",
    "SYSTEMS",
    "apply_vote_online",
    "leaderboard",
    "rating_config",
    "rating_parameters",
    "recompute",
    "stale_boards",
    "vote_record",
]

SYSTEMS = ("elo", "trueskill", "bt")
ONLINE_SYSTEMS = ("elo", "trueskill")


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
    extra = {"sort": "mu - 3 sigma"} if system == "trueskill" else {}
    return {**_parameters(config, system), **extra}


def vote_record(vote: Vote, participants: list[int]) -> VoteRecord:
    """The rating systems' view of a stored vote (``participants``: checkpoint ids by shown
    position)."""
    time = vote.created_at.timestamp()
    try:
        if vote.outcome == "ranking":
            return VoteRecord(tuple(participants), ranking=tuple(vote.ranking or ()), time=time)
        if vote.outcome == "win":
            return VoteRecord(tuple(participants), winner=vote.winner_position, time=time)
        return VoteRecord(tuple(participants), winner=vote.outcome, time=time)  # type: ignore[arg-type]
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


def _board_samples(session: Session,
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


def _refuse_other_parameters(session: Session, boards: Sequence[str],
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


def apply_vote_online(session: Session, vote_id: int, record: VoteRecord, kind: str,
                      character: str | None, settings: Settings | None = None) -> None:
    """Update the Elo and TrueSkill snapshots of the vote's participants on every board the
    vote counts on (:func:`boards_for` of the match ``kind`` and prompt ``character``), in the
    caller's (serialized) transaction; ``vote_id`` is the stored vote that ``record`` is."""
    participants = list(record.participants)
    config = rating_config(settings)
    boards = boards_for(kind, character)
    conn = session.connection()
    rows = conn.execute(
        _SNAPSHOT_ROWS, {"boards": list(boards), "checkpoints": participants}
    ).all()
    index = {(r.board, r.system, r.checkpoint_id): r for r in rows}
    parameters = {system: _parameters(config, system) for system in ONLINE_SYSTEMS}
    _refuse_other_parameters(session, boards, parameters, rows)
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


def _board_filter(board: str) -> list[Any]:
    if board == OVERALL:
        return []
    if board in MATCH_KINDS:
        return [Match.kind == board]
    character = board.removeprefix("fixed/")
    if board.startswith("fixed/") and character:
        return [Match.kind == "fixed", Prompt.character == character]
    raise UserError(
        f"board: expected {OVERALL}, {', '.join(MATCH_KINDS)} or fixed/<character>, got {board!r}"
    )


def _log(session: Session, board: str = OVERALL) -> Iterator[tuple[int, VoteRecord, str,
                                                                   str | None]]:
    """``(vote id, record, match kind, character)`` for the votes on ``board``, in id order."""
    where = _board_filter(board)
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
    """Replay the whole vote log in id order and rewrite every snapshot; returns the number of
    votes replayed. Runs as one serialized transaction, so no vote lands half-way."""
    from tqdm import tqdm

    config = rating_config(settings)
    parameters = {system: _parameters(config, system) for system in ONLINE_SYSTEMS}
    books: dict[str, RatingBook] = {}
    last_vote: dict[tuple[str, int], int] = {}
    with db.session(serialized=True) as session:
        total = session.scalar(select(func.count(Vote.id))) or 0
        session.execute(delete(RatingSnapshot))
        bar = tqdm(total=total, desc="replaying votes", unit="vote",
                   disable=None if progress else True)
        replayed = 0
        for vote_id, record, kind, character in _log(session):
            for board in boards_for(kind, character):
                book = books.get(board)
                if book is None:
                    book = books[board] = RatingBook(config)
                for c in book.apply(record):
                    last_vote[(board, c)] = vote_id
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


def leaderboard(
    session: Session, board: str = OVERALL, system: str = "elo",
    settings: Settings | None = None,
) -> list[dict[str, Any]]:
    """Rows best first: rank, checkpoint (id, name, training config), rating, interval
    (``lower``/``upper``, Bradley-Terry only), games, wins, draws, losses, and per system
    ``time_weighted`` (Elo, as of the board's last vote) or ``mu``/``sigma`` (TrueSkill,
    ``rating`` = mu - 3 sigma). Bradley-Terry ranks account for interval overlap."""
    if system not in SYSTEMS:
        raise UserError(f"system: expected one of {', '.join(SYSTEMS)}, got {system!r}")
    _board_filter(board)
    config = rating_config(settings)
    if system == "bt":
        return _bt_rows(session, board, config, settings or get_settings())
    snapshots = session.scalars(
        select(RatingSnapshot).where(RatingSnapshot.board == board, RatingSnapshot.system == system)
    ).all()
    expected = _parameters(config, system)
    if any(s.parameters != expected for s in snapshots):
        raise UserError(
            f"the {system} snapshots on board {board!r} were computed with other rating "
            "parameters; run `arena ratings recompute`"
        )
    names = checkpoint_labels(session, [s.checkpoint_id for s in snapshots])
    now = max((s.held_since for s in snapshots if s.held_since is not None), default=0.0)
    rows = []
    for s in snapshots:
        row: dict[str, Any] = {
            "checkpoint_id": s.checkpoint_id,
            "checkpoint": names[s.checkpoint_id][0],
            "config": names[s.checkpoint_id][1],
            "rating": s.rating,
            "lower": None,
            "upper": None,
            "games": s.games,
            "wins": s.wins,
            "draws": s.draws,
            "losses": s.losses,
        }
        if system == "elo":
            row["time_weighted"] = time_weighted_average(
                s.weighted_sum, s.held_since, s.first_time, s.rating, now
            )
        else:
            row["mu"], row["sigma"] = s.mu, s.sigma
        rows.append(row)
    rows.sort(key=lambda r: (-r["rating"], r["checkpoint"]))
    for rank, row in enumerate(rows, start=1):
        row["rank"] = rank
    return rows


# Bradley-Terry fits keyed by (database, board, newest vote id, parameters): the log is
# append-only, so the same newest vote means the same fit. Bounded, oldest entries dropped.
_BT_CACHE: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
_BT_CACHE_SIZE = 32


def _bt_rows(session: Session, board: str, config: RatingConfig,
             settings: Settings) -> list[dict[str, Any]]:
    key = (
        str(session.get_bind().url), board, session.scalar(select(func.max(Vote.id))),
        settings.bootstrap_rounds, settings.bootstrap_seed, config.both_bad_as_draw,
    )
    if key not in _BT_CACHE:
        while len(_BT_CACHE) >= _BT_CACHE_SIZE:
            _BT_CACHE.pop(next(iter(_BT_CACHE)))
        _BT_CACHE[key] = _fit_bt_rows(session, board, config, settings)
    return [dict(row) for row in _BT_CACHE[key]]


def _fit_bt_rows(session: Session, board: str, config: RatingConfig,
                 settings: Settings) -> list[dict[str, Any]]:
    records = [record for _, record, _, _ in _log(session, board)]
    result = bradley_terry(
        records,
        rounds=settings.bootstrap_rounds,
        seed=settings.bootstrap_seed,
        both_bad_as_draw=config.both_bad_as_draw,
    )
    counts: dict[int, dict[str, int]] = {}
    for record in records:
        for c, placed in placements(record, config.both_bad_as_draw).items():
            tally = counts.setdefault(c, {"games": 0, "win": 0, "draw": 0, "loss": 0})
            tally["games"] += 1
            tally[placed] += 1
    names = checkpoint_labels(session, [r.checkpoint_id for r in result.ratings])
    return [
        {
            "rank": r.rank,
            "checkpoint_id": r.checkpoint_id,
            "checkpoint": names[r.checkpoint_id][0],
            "config": names[r.checkpoint_id][1],
            "rating": r.rating,
            "lower": r.lower,
            "upper": r.upper,
            "games": counts[r.checkpoint_id]["games"],
            "wins": counts[r.checkpoint_id]["win"],
            "draws": counts[r.checkpoint_id]["draw"],
            "losses": counts[r.checkpoint_id]["loss"],
        }
        for r in result.ratings
    ]
