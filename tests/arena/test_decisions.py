"""Operator decisions: recorded with time and reason, append-only in the database, the newest
decision per subject in force (SQLite and PostgreSQL)."""

from __future__ import annotations

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from arena.db import Database
from arena.decisions import (
    decisions,
    excluded_prompt_ids,
    excluded_voter_ids,
    hidden_prompt_ids,
    record_decision,
)
from arena.errors import NotFound, UserError
from arena.models import Prompt, Voter


def _subjects(db: Database) -> tuple[list[int], int]:
    with db.session() as session:
        voters = [Voter(external_id=f"v{i}") for i in range(3)]
        prompt = Prompt(text="1girl, hatsune miku", text_hash="0" * 64, kind="free", source="typed")
        session.add_all([*voters, prompt])
        session.flush()
        return [v.id for v in voters], prompt.id


def test_newest_decision_per_subject_is_in_force(db: Database) -> None:
    voters, prompt = _subjects(db)
    with db.session() as session:
        record_decision(session, "voter", voters[0], "exclude", "votes only for one checkpoint")
        record_decision(session, "voter", voters[1], "exclude", "bot")
        record_decision(session, "voter", voters[1], "include", "appealed; a human")
        record_decision(session, "prompt", prompt, "hide", "  rating tag\nslipped through ")
    with db.session(readonly=True) as session:
        assert set(excluded_voter_ids(session)) == {voters[0]}
        assert set(hidden_prompt_ids(session)) == {prompt}
        assert excluded_prompt_ids(session) == {}
        log = decisions(session)
    assert [(d.subject, d.subject_id, d.action) for d in log] == [
        ("voter", voters[0], "exclude"), ("voter", voters[1], "exclude"),
        ("voter", voters[1], "include"), ("prompt", prompt, "hide"),
    ]
    assert log[3].reason == "rating tag slipped through"  # one line
    assert all(d.created_at.tzinfo is not None for d in log)


def test_bad_decisions_are_refused_and_store_nothing(db: Database) -> None:
    voters, prompt = _subjects(db)
    cases = [("voter", voters[0], "hide", "x"), ("judge", 1, "exclude", "x"),
             ("voter", voters[0], "exclude", "   "), ("prompt", prompt, "frobnicate", "x")]
    for subject, key, action, reason in cases:
        with pytest.raises(UserError), db.session() as session:
            record_decision(session, subject, key, action, reason)
    with pytest.raises(NotFound), db.session() as session:
        record_decision(session, "voter", 10_000, "exclude", "no such voter")
    with db.session(readonly=True) as session:
        assert decisions(session) == []


def test_decisions_are_append_only_in_the_database(db: Database) -> None:
    voters, _ = _subjects(db)
    with db.session() as session:
        record_decision(session, "voter", voters[2], "exclude", "rigging")
    for statement in ("UPDATE operator_decisions SET reason = 'changed'",
                      "DELETE FROM operator_decisions"):
        with pytest.raises(DBAPIError), db.connection() as connection:
            connection.execute(text(statement))
    with db.session(readonly=True) as session:
        assert [d.reason for d in decisions(session)] == ["rigging"]
