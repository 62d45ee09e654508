"""Stored board aggregates: a view started from them equals a view built from a full replay,
one made with other parameters (or other exclusions) is never used, and the background
refresher stores only settled votes and follows a new exclusion. On both databases, with votes
cast through the real path."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import func, select

from arena.db import Database
from arena.decisions import change_exclusion, exclusions
from arena.demo.voters import simulate_votes
from arena.leaderboard import fits
from arena.leaderboard import log as board_log_module
from arena.leaderboard import store as board_store
from arena.leaderboard import worker as board_worker
from arena.leaderboard.figures import all_figures
from arena.leaderboard.fits import bt_rows, recompute, stored_fit
from arena.leaderboard.log import BoardLog, read_after, store_log, stored_log
from arena.leaderboard.view import load_view
from arena.leaderboard.worker import Refresher, refresh
from arena.matchmaking import SETTLE_SECONDS
from arena.models import BoardAggregate, Match, Vote
from arena.ratings import rating_config
from arena.settings import Settings
from tests.support.pool import CHARACTERS, build_pool

SETTINGS = Settings(votes_per_minute=0, bootstrap_rounds=20)
BOARDS = ("overall", "ffa", f"fixed/{CHARACTERS[0]}")


def forget_caches() -> None:
    """What a restarted process knows: nothing in memory."""
    board_log_module.clear_cache()
    fits.clear_cache()


def shown(db: Database, board: str, system: str, settings: Settings = SETTINGS) -> str:
    """Everything a view shows (rows, notices, every figure) as one comparable string."""
    with db.session(readonly=True) as s:
        view = load_view(s, board, system, settings, wait=True)
    return json.dumps({"rows": view.rows, "notices": view.notices, "votes": view.log.votes,
                       "figures": all_figures(view)}, sort_keys=True, default=str)


def replayed(db: Database, board: str, settings: Settings = SETTINGS) -> BoardLog:
    """The board log built from the first vote, ignoring anything stored."""
    config = rating_config(settings)
    log = BoardLog(board, config.elo, config.both_bad_as_draw)
    with db.session(readonly=True) as s:
        read_after(s, log)
    return log


@pytest.fixture
def recomputed(db: Database, tmp_path: Path) -> Database:
    """60 votes, `arena ratings recompute` (storing every board's aggregates), 25 more."""
    build_pool(db, tmp_path / "pool-home", tmp_path / "pool")
    assert simulate_votes(db, SETTINGS, 60, seed=4) == 60
    recompute(db, SETTINGS, progress=False)
    assert simulate_votes(db, SETTINGS, 25, seed=5) == 25
    return db


@pytest.mark.parametrize("board", BOARDS)
def test_view_from_stored_aggregate_equals_full_replay(recomputed: Database, board: str) -> None:
    db = recomputed
    with db.session(readonly=True) as s:
        stored = stored_log(s, board, rating_config(SETTINGS))
    assert stored is not None and 0 < stored.votes < replayed(db, board).votes
    forget_caches()
    from_stored = {system: shown(db, board, system) for system in ("elo", "tw_elo")}
    with db.session() as s:  # no stored aggregate: the view replays the whole board
        board_store.clear(s)
    forget_caches()
    assert from_stored == {system: shown(db, board, system) for system in ("elo", "tw_elo")}
    # The aggregate continued from the stored one is the replayed one, field for field.
    with db.session(readonly=True) as s:
        continued = stored
        read_after(s, continued)
    assert continued.to_state() == replayed(db, board).to_state()


@pytest.mark.parametrize("board", BOARDS)
def test_stored_fit_equals_a_fresh_fit(db: Database, tmp_path: Path, board: str) -> None:
    build_pool(db, tmp_path / "pool-home", tmp_path / "pool")
    simulate_votes(db, SETTINGS, 60, seed=6)
    recompute(db, SETTINGS, progress=False)
    forget_caches()
    with db.session(readonly=True) as s:
        fit = stored_fit(s, board, SETTINGS)
        assert fit is not None and fit.last_vote_id == replayed(db, board).last_vote_id
        from_store = bt_rows(s, board, SETTINGS, wait=False)
    with db.session() as s:
        board_store.clear(s)
    forget_caches()
    with db.session(readonly=True) as s:
        assert from_store == bt_rows(s, board, SETTINGS)
    forget_caches()
    assert shown(db, board, "bt")  # renders from a fresh fit too


def test_a_stored_fit_behind_the_log_is_shown_with_its_vote(recomputed: Database) -> None:
    """A cold view shows the stored fit at once and says which vote it covers (a refit
    starts in the background); the API (wait=True) fits the newest votes."""
    forget_caches()
    with recomputed.session(readonly=True) as s:
        fit = stored_fit(s, "overall", SETTINGS)
        assert fit is not None
        view = load_view(s, "overall", "bt", SETTINGS)
        newest = view.log.last_vote_id
        assert newest > fit.last_vote_id
        assert any(f"votes up to #{fit.last_vote_id}" in n for n in view.notices)
        assert {r["fit_vote_id"] for r in bt_rows(s, "overall", SETTINGS)} == {newest}


def test_other_parameters_are_never_used(recomputed: Database) -> None:
    """Aggregates stored with another Elo K (and a tampered one with it) change nothing
    under the parameters in force."""
    db = recomputed
    other = Settings(votes_per_minute=0, bootstrap_rounds=20, elo_k=16.0)
    forget_caches()
    expected = shown(db, "overall", "elo")
    with db.session() as s:
        board_store.clear(s)
        log = replayed(db, "overall", other)
        log.votes += 1000  # would show in the status line and the figures if it were used
        next(iter(log._elo.values())).rating += 500.0
        store_log(s, log)
    forget_caches()
    with db.session(readonly=True) as s:
        assert stored_log(s, "overall", rating_config(SETTINGS)) is None
        assert stored_log(s, "overall", rating_config(other)) is not None
    assert shown(db, "overall", "elo") == expected


def test_an_aggregate_past_the_log_is_not_used(recomputed: Database) -> None:
    """A stored aggregate covering votes this database lacks (a copy of another arena's
    rows) is ignored."""
    db = recomputed
    with db.session() as s:
        row = s.scalars(select(BoardAggregate).where(BoardAggregate.board == "overall",
                                                     BoardAggregate.aggregate == "log")).one()
        row.last_vote_id = 10**9
    with db.session(readonly=True) as s:
        assert stored_log(s, "overall", rating_config(SETTINGS)) is None


def test_refresher_stores_only_settled_votes(recomputed: Database,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """Votes become storable once the newest vote id was seen past them SETTLE_SECONDS ago;
    the stored aggregate then equals a replay up to exactly that id."""
    db = recomputed
    monkeypatch.setattr(board_worker, "STORE_EVERY", 1)
    state = Refresher()
    with db.session(readonly=True) as s:
        before = stored_log(s, "overall", rating_config(SETTINGS))
    assert before is not None
    forget_caches()
    refresh(db, SETTINGS, state, now=0.0)  # sees the newest id; nothing settled yet
    seen = replayed(db, "overall").last_vote_id
    simulate_votes(db, SETTINGS, 10, seed=7)  # newer votes, not settled at the next pass
    refresh(db, SETTINGS, state, now=SETTLE_SECONDS + 1)
    with db.session(readonly=True) as s:
        after = stored_log(s, "overall", rating_config(SETTINGS))
        fit = stored_fit(s, "overall", SETTINGS)
    assert after is not None and fit is not None
    assert after.last_vote_id == fit.last_vote_id == seen > before.last_vote_id
    config = rating_config(SETTINGS)
    upto = BoardLog("overall", config.elo, config.both_bad_as_draw)
    with db.session(readonly=True) as s:
        read_after(s, upto, upto=seen)
    assert after.to_state() == upto.to_state()
    assert [r["rating"] for r in fit.rows] == [
        r["rating"] for r in fits.fit_bt_rows(upto.ballots, config, SETTINGS, seen)]


def test_refresher_follows_a_new_exclusion(recomputed: Database,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """A prompt's votes excluded by a decision made in another process (no replay yet): the
    refresher's next pass stores an aggregate keyed by the new exclusions, without those
    votes."""
    db = recomputed
    monkeypatch.setattr(board_worker, "STORE_EVERY", 1)
    state = Refresher()
    refresh(db, SETTINGS, state, now=0.0)
    refresh(db, SETTINGS, state, now=SETTLE_SECONDS + 1)  # advances the aggregate it holds
    with db.session() as s:
        prompt = s.scalar(select(Match.prompt_id).join(Vote, Vote.match_id == Match.id)
                          .group_by(Match.prompt_id).order_by(func.count(Vote.id).desc())
                          .limit(1))
        change_exclusion(s, "prompt", prompt, "exclude", "spam")
    refresh(db, SETTINGS, state, now=SETTLE_SECONDS + 2)
    config = rating_config(SETTINGS)
    with db.session(readonly=True) as s:
        excluded = exclusions(s)
        after = stored_log(s, "overall", config, excluded)
        assert after is not None
        expected = BoardLog("overall", config.elo, config.both_bad_as_draw, excluded=excluded)
        read_after(s, expected, upto=after.read_to)
    assert after.to_state() == expected.to_state()
    assert after.votes < replayed(db, "overall").votes


def test_recompute_rewrites_the_aggregates(recomputed: Database) -> None:
    db = recomputed
    recompute(db, SETTINGS, progress=False)
    with db.session(readonly=True) as s:
        for board in BOARDS:
            stored = stored_log(s, board, rating_config(SETTINGS))
            assert stored is not None
            assert stored.to_state() == replayed(db, board).to_state()
