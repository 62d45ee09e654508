"""Board aggregates stored in SQL, so that a cold leaderboard view reads only a short tail.

Three aggregates per board: ``log`` (the :class:`arena.leaderboard.log.BoardLog` state:
ballots, pair counts, wins by position, Elo state and its sampled history), ``bt`` (a
Bradley-Terry fit with its bootstrap intervals) and ``robust`` (the robust board with every
voter's reliability and signals, stored by :func:`arena.leaderboard.voters.robust_fit`).
Each row says the newest vote it covers and is keyed by the
exact parameters that decide its numbers: a row made with other parameters is never read.
They are derived like the rating snapshots: ``arena ratings recompute`` rewrites them from a
replay of the whole log, and the server's leaderboard worker stores newer ones as votes come
in (only up to votes old enough that no vote with a smaller id can still commit), so a
restarted server's first view starts from a recent aggregate and folds in the votes after it.

The payload is compressed JSON (never pickle: the database is not trusted to run code).
"""

from __future__ import annotations

import json
import zlib
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from arena.models import BoardAggregate, Vote, utcnow

__all__ = ["BT", "LOG", "clear", "load", "save"]

LOG = "log"
BT = "bt"


def _key(parameters: dict[str, Any]) -> str:
    return json.dumps(parameters, sort_keys=True, separators=(",", ":"))


def load(session: Session, board: str, aggregate: str,
         parameters: dict[str, Any]) -> tuple[int, Any] | None:
    """``(newest vote id covered, payload)`` of the stored aggregate made with exactly these
    ``parameters``, or None (none stored, or one covering votes this database lacks)."""
    row = session.execute(
        select(BoardAggregate.last_vote_id, BoardAggregate.data).where(
            BoardAggregate.board == board, BoardAggregate.aggregate == aggregate,
            BoardAggregate.parameters_key == _key(parameters))
    ).first()
    if row is None:
        return None
    newest = session.scalar(select(func.max(Vote.id))) or 0
    if row.last_vote_id > newest:  # not this log (a restored copy of another database)
        return None
    return row.last_vote_id, json.loads(zlib.decompress(row.data))


def save(session: Session, board: str, aggregate: str, parameters: dict[str, Any],
         last_vote_id: int, votes: int, payload: Any) -> None:
    """Store (or advance) an aggregate; an older one never replaces a newer one. Needs a
    writing session; a concurrent writer of the same row wins quietly."""
    data = zlib.compress(json.dumps(payload, separators=(",", ":")).encode(), 6)
    key = _key(parameters)
    values = {"last_vote_id": last_vote_id, "votes": votes, "data": data,
              "updated_at": utcnow()}
    where = (BoardAggregate.board == board, BoardAggregate.aggregate == aggregate,
             BoardAggregate.parameters_key == key)
    exists = session.scalar(select(BoardAggregate.last_vote_id).where(*where))
    if exists is not None:
        if exists < last_vote_id:
            session.execute(update(BoardAggregate).where(
                *where, BoardAggregate.last_vote_id < last_vote_id).values(**values))
        return
    try:
        with session.begin_nested():
            session.add(BoardAggregate(board=board, aggregate=aggregate, parameters_key=key,
                                       parameters=parameters, **values))
    except IntegrityError:
        pass  # another process stored it first


def clear(session: Session) -> None:
    """Delete every stored aggregate (a replay rewrites them)."""
    session.execute(delete(BoardAggregate))
