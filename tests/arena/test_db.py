"""The Core connections of the voting path keep the sessions' guarantees: one transaction,
committed on success and rolled back on any error, on both backends."""

from __future__ import annotations

import pytest
from sqlalchemy import func, insert, select

from arena.db import Database
from arena.models import Voter, utcnow


def voters(db: Database) -> int:
    with db.connection(readonly=True) as conn:
        return conn.execute(select(func.count()).select_from(Voter)).scalar_one()


def test_connection_commits_on_success_and_rolls_back_on_error(db: Database) -> None:
    row = {"external_id": "voter-committed", "created_at": utcnow()}
    with db.connection(serialized=True) as conn:
        conn.execute(insert(Voter), row)
    assert voters(db) == 1
    with pytest.raises(RuntimeError), db.connection() as conn:
        conn.execute(insert(Voter), {**row, "external_id": "voter-rolled-back"})
        raise RuntimeError("a refusal after the write")
    assert voters(db) == 1
    with pytest.raises(ValueError, match="writing session"), db.connection(serialized=True,
                                                                           readonly=True):
        pass
