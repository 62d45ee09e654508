"""The schema comes from Alembic alone, matches the models, and is the same on both backends."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, select, text
from sqlalchemy.exc import DBAPIError, IntegrityError

from arena.db import Database
from arena.migrate import current_revision, head_revision
from arena.models import Base, Match, Prompt, Vote, Voter, utcnow


def test_migrated_database_matches_models(db: Database) -> None:
    """Autogenerate finds no difference between the ORM models and the migrated schema."""
    with db.engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        diff = compare_metadata(context, Base.metadata)
    assert diff == []
    assert current_revision(db.engine) == head_revision()


def test_both_backends_have_the_same_tables(
    sqlite_template, pg_template: str, pg_server: str  # type: ignore[no-untyped-def]
) -> None:
    lite = Database(f"sqlite:///{sqlite_template}")
    pg = Database(f"{pg_server}/{pg_template}")
    try:
        def shape(database: Database) -> dict[str, list[str]]:
            inspector = inspect(database.engine)
            return {
                t: sorted(c["name"] for c in inspector.get_columns(t))
                for t in inspector.get_table_names()
            }

        assert shape(lite) == shape(pg)
        assert set(shape(lite)) == set(Base.metadata.tables) | {"alembic_version"}
    finally:
        lite.dispose()
        pg.dispose()


def _a_match(db: Database) -> tuple[int, int]:
    with db.session() as s:
        voter = Voter(external_id="v1")
        prompt = Prompt(text="1girl", text_hash="h", kind="free")
        s.add_all([voter, prompt])
        s.flush()
        match = Match(token="t", kind="free", prompt_id=prompt.id, voter_id=voter.id,
                      expires_at=utcnow())
        s.add(match)
        s.flush()
        return match.id, voter.id


def test_one_vote_per_match_is_a_database_constraint(db: Database) -> None:
    match_id, voter_id = _a_match(db)
    with db.session() as s:
        s.add(Vote(match_id=match_id, voter_id=voter_id, outcome="win", winner_position=0))
    with pytest.raises(IntegrityError), db.session() as s:
        s.add(Vote(match_id=match_id, voter_id=voter_id, outcome="tie"))
    with db.session() as s:
        assert s.query(Vote).count() == 1


def test_votes_are_append_only_in_the_database(db: Database) -> None:
    """Raw SQL (bypassing the ORM guard) cannot change or delete a vote either."""
    match_id, voter_id = _a_match(db)
    with db.session() as s:
        s.add(Vote(match_id=match_id, voter_id=voter_id, outcome="win", winner_position=1))
    for statement in ("UPDATE votes SET outcome = 'tie'", "DELETE FROM votes"):
        with pytest.raises(DBAPIError, match="append-only"), db.engine.begin() as conn:
            conn.execute(text(statement))
    with pytest.raises(ValueError, match="append-only"), db.session() as s:
        vote = s.query(Vote).one()
        assert (vote.outcome, vote.winner_position) == ("win", 1)
        vote.outcome = "tie"
    with db.session() as s:
        assert s.query(Vote).one().outcome == "win"


def test_timestamps_come_back_aware_in_utc(db: Database) -> None:
    match_id, _ = _a_match(db)
    with db.session() as s:
        match = s.get(Match, match_id)
        assert match is not None and match.issued_at.utcoffset() is not None


def test_sqlite_runs_in_wal_mode_with_foreign_keys(tmp_path) -> None:  # type: ignore[no-untyped-def]
    database = Database(f"sqlite:///{tmp_path / 'x.db'}")
    with database.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    database.dispose()


def test_scores_are_unique_in_the_schema(db_url: str) -> None:
    """Migration 0008 keys every stored score, keeps the first of duplicate scores (a retried
    score job stored twice), and the key is unique from then on."""
    import json

    # db_url is already at head: step back to 0007 (dropping the key), write old rows, redo.
    from alembic import command

    from arena.migrate import alembic_config, upgrade
    from arena.models import MetricScore

    command.downgrade(alembic_config(db_url), "0007_operator_decisions")
    database = Database(db_url)
    row = {"metric": "ccip", "metric_model": "m", "metric_version": "v1",
           "parameters": json.dumps({"threshold": 0.2, "references": "/refs/a"}),
           "character": "miku", "value": 0.5,
           "details": json.dumps({"reference_sha256": ["r1"]}),
           "images_used": json.dumps(["b", "a"]), "created_at": utcnow()}
    insert = text("INSERT INTO metric_scores (metric, metric_model, metric_version, parameters, "
                  "character, value, details, images_used, created_at) VALUES (:metric, "
                  ":metric_model, :metric_version, :parameters, :character, :value, :details, "
                  ":images_used, :created_at)")
    with database.engine.begin() as conn:
        conn.execute(insert, row)
        # the same score again, references read from another folder: still the same score
        conn.execute(insert, {**row, "parameters": json.dumps({"threshold": 0.2,
                                                              "references": "/refs/b"}),
                              "images_used": json.dumps(["a", "b"])})
        conn.execute(insert, {**row, "images_used": json.dumps(["a", "c"])})
    database.dispose()
    upgrade(db_url)
    database = Database(db_url)
    try:
        with database.session(readonly=True) as s:
            kept = s.execute(select(MetricScore.id, MetricScore.images_used)
                             .order_by(MetricScore.id)).all()
        assert [images for _, images in kept] == [["b", "a"], ["a", "c"]]
        with pytest.raises(IntegrityError), database.session() as s:
            s.add(MetricScore(metric="ccip", metric_model="m", metric_version="v1",
                              parameters={"threshold": 0.2}, character="miku", value=0.7,
                              details={"reference_sha256": ["r1"]}, images_used=["a", "c"]))
    finally:
        database.dispose()
