"""Voters: the robust board's view of them, and operator exclusions honoured by every board and
by a replay (SQLite and PostgreSQL)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from typer.testing import CliRunner

from arena.cli.main import app
from arena.db import Database
from arena.decisions import Exclusions, decisions
from arena.errors import InputError, NotFound, UserError
from arena.export import vote_documents
from arena.leaderboard import store as board_store
from arena.leaderboard import voters as voters_module
from arena.leaderboard.rows import leaderboard
from arena.leaderboard.voters import exclude_voter, include_voter, robust_fit, suspicious
from arena.models import Vote
from arena.ratings import robust_params
from arena.settings import Settings
from arena.web.app import create_app
from tests.support.voted_arena import HONEST, RIGGER, SETTINGS, boards, build, events, play


def test_excluding_a_voter_equals_a_fresh_arena_without_their_votes(
        db: Database, second_db: Database) -> None:
    arena, clean = build(db), build(second_db)
    before, after = events(1, 90), events(2, 30)
    for event in before:
        play(arena, *event)
    all_votes = boards(db)
    decision, replayed = exclude_voter(db, str(arena.voters[RIGGER]), "votes only for ckpt-5",
                                       SETTINGS)
    assert decision.action == "exclude" and replayed == sum(
        1 for v, _, _, o in before if o != "skip" and v != RIGGER)
    for event in after:  # the excluded voter's new votes are stored and count nowhere
        play(arena, *event)
    for event in before + after:
        if event[0] != RIGGER:
            play(clean, *event)
    assert boards(db) == boards(second_db)
    # Once included again, the boards count the rigger's votes again, as a replay does.
    include_voter(db, str(arena.voters[RIGGER]), "test over", SETTINGS)
    with db.session(readonly=True) as s:
        games = sum(r["wins"] + r["draws"] for r in leaderboard(s, "overall", "elo", SETTINGS))
        assert [d.action for d in decisions(s, "voter")] == ["exclude", "include"]
    votes = sum(1 for _, _, _, o in before + after if o != "skip")
    assert games >= votes  # every vote has a winner or two drawers: nobody left out
    assert boards(db) != all_votes  # the later votes count too


def test_suspicious_names_the_rigger_and_the_checkpoint(db: Database) -> None:
    world = build(db)
    for event in events(3, 160):
        play(world, *event)
    with db.session(readonly=True) as s:
        report = suspicious(s, "overall", SETTINGS)
        everyone = suspicious(s, "overall", SETTINGS, every=True)
    flagged = [r for r in report["rows"] if r["flagged"]]
    assert [r["voter_id"] for r in flagged] == [world.voters[RIGGER]]
    assert any("ckpt-5" in reason for reason in flagged[0]["reasons"])
    assert flagged[0]["focus_checkpoint"] == "ckpt-5"
    assert RIGGER not in json.dumps(report)  # a pseudonym, never the voter's own id
    assert report["flagged_votes"] == flagged[0]["votes"] > 0
    assert len(everyone["rows"]) == len(HONEST) + 1


def test_the_robust_fit_is_stored_with_its_parameters(db: Database) -> None:
    world = build(db)
    for event in events(6, 60):
        play(world, *event)
    with db.session() as s:
        fitted = robust_fit(s, "overall", SETTINGS, store=True)
    voters_module._CACHE.clear()  # a restarted process: only the stored aggregate is left
    with db.session(readonly=True) as s:
        parameters = voters_module._stored_parameters(robust_params(SETTINGS), Exclusions())
        stored = board_store.load(s, "overall", voters_module.ROBUST, parameters)
        again = robust_fit(s, "overall", SETTINGS)
    assert stored is not None and stored[1]["result"]["ratings"]
    assert again == fitted
    assert {v: s.reliability for v, s in again.voters.items()} == {
        v: s.reliability for v, s in fitted.voters.items()}


def test_bad_operator_input_is_refused_and_records_nothing(db: Database) -> None:
    world = build(db)
    play(world, HONEST[0], "free", [0, 1], 0)
    with pytest.raises(NotFound):
        exclude_voter(db, "99999", "no such voter", SETTINGS)
    with pytest.raises(UserError, match="reason"):
        exclude_voter(db, str(world.voters[HONEST[0]]), "  ", SETTINGS)
    with pytest.raises(UserError, match="not excluded"):
        include_voter(db, str(world.voters[HONEST[0]]), "never excluded", SETTINGS)
    with db.session(readonly=True) as s:
        assert decisions(s) == []
        with pytest.raises(InputError, match="board"):
            suspicious(s, "nowhere", SETTINGS)


def test_export_says_which_votes_are_excluded_and_why(db: Database) -> None:
    world = build(db)
    play(world, HONEST[0], "free", [0, 1], 0)
    play(world, RIGGER, "free", [5, 1], 0)
    exclude_voter(db, str(world.voters[RIGGER]), "rigging ckpt-5", SETTINGS)
    with db.session(readonly=True) as s:
        docs = list(vote_documents(s))
    assert [d["excluded"] for d in docs] == [None, "rigging ckpt-5"]


def test_cli_lists_excludes_and_includes(arena_env: Database) -> None:
    world = build(arena_env)
    for event in events(4, 160):
        play(world, *event)
    runner = CliRunner()
    listed = runner.invoke(app, ["voters", "suspicious", "--json"])
    assert listed.exit_code == 0, listed.output
    rows = json.loads(listed.output)["rows"]
    pseudonym = next(r["voter"] for r in rows if r["voter_id"] == world.voters[RIGGER])
    text = runner.invoke(app, ["voters", "suspicious"])
    assert text.exit_code == 0 and "FLAGGED" in text.output and "ckpt-5" in text.output
    excluded = runner.invoke(app, ["voters", "exclude", pseudonym, "--reason", "rigging"])
    assert excluded.exit_code == 0, excluded.output
    assert "no longer count on every board" in excluded.output
    again = runner.invoke(app, ["voters", "exclude", pseudonym, "--reason", "twice"])
    assert again.exit_code == 2 and "already excluded" in again.output
    listed = json.loads(runner.invoke(app, ["voters", "suspicious", "--json"]).output)
    assert [e["voter"] for e in listed["excluded"]] == [pseudonym]
    assert world.voters[RIGGER] not in [r["voter_id"] for r in listed["rows"]]
    missing = runner.invoke(app, ["voters", "exclude", "nobody", "--reason", "x"])
    assert missing.exit_code == 2 and missing.output.count("\n") == 1
    included = runner.invoke(app, ["voters", "include", pseudonym, "--json"])
    assert included.exit_code == 0, included.output
    assert json.loads(included.output)["decision"]["action"] == "include"


def test_admin_endpoint_needs_the_admin_token(db: Database, tmp_path: Path) -> None:
    world = build(db)
    for event in events(5, 120):
        play(world, *event)
    settings = Settings(home=tmp_path / "home", database_url=db.url,
                        admin_token="admin-secret", bootstrap_rounds=20)
    client = TestClient(create_app(settings, db, ui=False))
    url = "/api/v1/voters/suspicious"
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Bearer "}):
        refused = client.get(url, headers=headers)
        assert refused.status_code == 403 and set(refused.json()) == {"error"}, headers
    ok = client.get(url, params={"board": "overall"},
                    headers={"Authorization": "Bearer admin-secret"})
    assert ok.status_code == 200, ok.text
    assert [r["voter_id"] for r in ok.json()["rows"]] == [world.voters[RIGGER]]
    unknown = client.get(url, params={"board": "nowhere"},
                         headers={"Authorization": "Bearer admin-secret"})
    assert unknown.status_code in (400, 404) and "board" in unknown.json()["error"]


def test_the_robust_board_says_what_it_discounted_on_every_surface(
        arena_env: Database, tmp_path: Path) -> None:
    world = build(arena_env)
    for event in events(7, 160):
        play(world, *event)
    runner = CliRunner()
    text = runner.invoke(app, ["ratings", "--system", "robust"])
    assert text.exit_code == 0, text.output
    assert "robust board: 1 flagged voters left out" in text.output
    shown = json.loads(runner.invoke(app, ["ratings", "--system", "robust", "--json"]).output)
    assert shown["robust"]["flagged_voters"] == 1 and shown["parameters"]["rounds"] == 100
    rigged = sum(1 for v, _, _, o in events(7, 160) if v == RIGGER and o != "skip")
    assert shown["robust"]["flagged_votes"] == rigged
    settings = Settings(home=tmp_path / "home", database_url=arena_env.url)
    client = TestClient(create_app(settings, arena_env, ui=False))
    answer = client.get("/api/v1/leaderboard", params={"system": "robust"}).json()
    assert answer["robust"]["flagged_votes"] == rigged
    assert [r["checkpoint"] for r in answer["rows"]] == [r["checkpoint"] for r in shown["rows"]]
    exported = runner.invoke(app, ["export", "leaderboard", "--format", "json", "--system", "bt"])
    assert json.loads(exported.output)["robust"]["flagged_voters"] == 1


def test_a_view_serves_the_robust_fit_at_hand_and_refits_in_the_background(
        db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    """Reading every shown match is seconds on a large board: a view (``wait=False``) takes
    the fit at hand, saying which vote it covers, and the refit process catches up."""
    import time

    from arena.leaderboard.robust import robust_rows

    world = build(db)
    first_events, later = events(11, 60), events(12, 20)
    for event in first_events:
        play(world, *event)
    voters_module._CACHE.clear()
    with db.session(readonly=True) as s:
        first, _ = robust_rows(s, "overall", SETTINGS)  # nothing at hand: fitted on the spot
    for event in later:
        play(world, *event)
    monkeypatch.setattr(voters_module, "BT_REFIT_SECONDS", 0.0)
    with db.session(readonly=True) as s:
        stale, _ = robust_rows(s, "overall", SETTINGS, wait=False)
        newest = max(v for v, *_ in s.execute(select(Vote.id)))
    assert stale == first and {r["fit_vote_id"] for r in stale} != {newest}
    deadline = time.monotonic() + 120  # a wait for the other process, not a speed check
    rows = stale
    while time.monotonic() < deadline and rows[0]["fit_vote_id"] != newest:
        time.sleep(0.2)
        with db.session(readonly=True) as s:
            rows, _ = robust_rows(s, "overall", SETTINGS, wait=False)
    with db.session(readonly=True) as s:
        exact, _ = robust_rows(s, "overall", SETTINGS)
    assert rows == exact and {r["fit_vote_id"] for r in exact} == {newest}
    assert sum(r["games"] for r in exact) > sum(r["games"] for r in first)


def test_a_dashboard_view_never_fits_the_robust_board_itself(db: Database) -> None:
    """With no fit at hand a view gets none (it shows its notices without the robust ones);
    the first fit runs in the refit process, which stores it for the next server start."""
    import time

    from arena.leaderboard.voters import robust_fit_in_hand

    world = build(db)
    for event in events(13, 60):
        play(world, *event)
    voters_module._CACHE.clear()
    with db.session(readonly=True) as s:
        assert robust_fit_in_hand(s, "fixed", SETTINGS) is None
    deadline = time.monotonic() + 120  # a wait for the other process, not a speed check
    found = None
    while found is None and time.monotonic() < deadline:
        time.sleep(0.2)
        with db.session(readonly=True) as s:
            found = robust_fit_in_hand(s, "fixed", SETTINGS, start=False)
    assert found is not None
    voters_module._CACHE.clear()  # a restarted process: the stored fit is at hand
    with db.session(readonly=True) as s:
        again = robust_fit_in_hand(s, "fixed", SETTINGS, start=False)
        exact = robust_fit(s, "fixed", SETTINGS)
    assert again is not None and again[1].ratings == found[1].ratings == exact.ratings
