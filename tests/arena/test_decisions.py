"""Operator decisions: recorded with time and reason, append-only in the database, the newest
decision per subject in force, the exclusions in force as one value and the vote path's one
round trip (SQLite and PostgreSQL)."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import literal, select, text
from sqlalchemy.exc import DBAPIError

from arena.db import Database
from arena.decisions import (
    Exclusions,
    change_exclusion,
    decisions,
    excluded_prompt_ids,
    excluded_voter_ids,
    exclusions,
    hidden_prompt_ids,
    newest_exclusion,
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


def test_the_exclusions_in_force_are_one_value(db: Database) -> None:
    voters, prompt = _subjects(db)
    with db.session() as session:
        record_decision(session, "voter", voters[0], "exclude", "bot")
        record_decision(session, "prompt", prompt, "hide", "reported")  # hidden, still counts
    with db.session(readonly=True) as session:
        assert exclusions(session) == Exclusions(frozenset({voters[0]}))
    with db.session() as session:
        change_exclusion(session, "prompt", prompt, "exclude", "spam prompt")
    with db.session(readonly=True) as session:
        excluded = exclusions(session)
        assert set(excluded_prompt_ids(session)) == {prompt}
        assert set(hidden_prompt_ids(session)) == {prompt}  # the two pairs are independent
    assert excluded == Exclusions(frozenset({voters[0]}), frozenset({prompt}))
    assert not excluded.counts(voters[1], prompt) and not excluded.counts(voters[0], prompt + 1)
    assert excluded.counts(voters[1], prompt + 1)
    assert excluded.parameters() == {"excluded_voters": [voters[0]], "excluded_prompts": [prompt]}
    assert Exclusions().parameters() == {} and not Exclusions()
    with db.session() as session:
        change_exclusion(session, "prompt", prompt, "include", "checked, fine")
    with db.session(readonly=True) as session:
        assert exclusions(session) == Exclusions(frozenset({voters[0]}))
        assert set(hidden_prompt_ids(session)) == {prompt}


def test_an_exclusion_that_changes_nothing_is_refused(db: Database) -> None:
    voters, prompt = _subjects(db)
    with db.session() as session:
        change_exclusion(session, "prompt", prompt, "exclude", "spam")
    cases = [("prompt", prompt, "exclude", "already excluded"),
             ("voter", voters[0], "include", "not excluded"),
             ("prompt", 10_000, "exclude", "no prompt with id 10000"),
             ("prompt", prompt, "hide", "exclude or include"),
             ("prompt", prompt, "include", "reason")]
    for subject, key, action, message in cases:
        reason = "" if message == "reason" else "x"
        with pytest.raises(UserError, match=message), db.session() as session:
            change_exclusion(session, subject, key, action, reason)
    with db.session(readonly=True) as session:
        assert [d.action for d in decisions(session)] == ["exclude"]


def test_the_newest_exclusion_of_voter_and_prompt_is_one_query(db: Database) -> None:
    """What the vote path reads with the match it loads (arena.matches.load_match_for):
    the newest exclude / include of the voter and of the prompt."""
    voters, prompt = _subjects(db)
    with db.session() as session:
        record_decision(session, "voter", voters[0], "exclude", "bot")
        record_decision(session, "voter", voters[1], "exclude", "bot?")
        record_decision(session, "voter", voters[1], "include", "a human")
        record_decision(session, "prompt", prompt, "hide", "spam")  # hiding excludes nothing

    def newest(connection: Any, voter: int, prompt_id: int) -> tuple[str | None, str | None]:
        return connection.execute(select(newest_exclusion("voter", literal(voter)),
                                         newest_exclusion("prompt", literal(prompt_id)))).one()

    with db.connection(readonly=True) as connection:
        answers = [newest(connection, voters[0], prompt), newest(connection, voters[1], prompt)]
    with db.session() as session:
        record_decision(session, "prompt", prompt, "exclude", "spam")
    with db.connection(readonly=True) as connection:
        answers += [newest(connection, voters[1], prompt),
                    newest(connection, voters[1], prompt + 1)]
    assert answers == [("exclude", None), ("include", None), ("include", "exclude"),
                       ("include", None)]
