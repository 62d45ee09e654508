"""The leaderboard view and its figures against ratings computed directly from the votes.

A real pool (four published configs, one checkpoint each) gets simulated votes through the
real match and vote path on both databases; every number the dashboard shows is then checked
against an independent computation from the stored vote log.
"""

from __future__ import annotations

import os
import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from scipy import stats
from sqlalchemy import select

from arena.db import Database
from arena.demo.voters import VoterModel, preset_strengths, simulate_votes
from arena.leaderboard import fits
from arena.leaderboard.figures import all_figures, knob_frame
from arena.leaderboard.fits import bt_rows, fit_bt_rows
from arena.leaderboard.log import board_log
from arena.leaderboard.view import load_view, table_frame
from arena.models import Checkpoint, MetricScore, utcnow
from arena.ratings import _log, rating_config
from arena.settings import Settings
from metrics.bradley_terry import bradley_terry, group_ballots
from metrics.outcomes import pairwise
from metrics.rating_book import RatingBook
from tests.support.pool import CHARACTERS, build_pool

SETTINGS = Settings(votes_per_minute=0, bootstrap_rounds=20)


@pytest.fixture
def voted(db: Database, tmp_path: Path) -> Database:
    """A pool of four checkpoints with 80 simulated votes."""
    build_pool(db, tmp_path / "pool-home", tmp_path / "pool")
    assert simulate_votes(db, SETTINGS, 80, seed=3) == 80
    return db


def direct_book(db: Database, board: str) -> tuple[RatingBook, list, list[str]]:
    """Elo/TrueSkill replayed from the stored log of ``board`` with a fresh RatingBook, with
    the log's records and each one's match kind."""
    book = RatingBook(rating_config(SETTINGS))
    with db.session(readonly=True) as s:
        log = [(record, kind) for _, record, kind, _ in _log(s, board)]
    records = [record for record, _ in log]
    for record in records:
        book.apply(record)
    return book, records, [kind for _, kind in log]


@pytest.mark.parametrize("board", ["overall", "fixed", f"fixed/{CHARACTERS[0]}"])
def test_view_matches_ratings_from_the_votes(voted: Database, board: str) -> None:
    book, records, kinds = direct_book(voted, board)
    assert records, "the simulation voted on every board"
    now = max(r.time for r in records)
    with voted.session(readonly=True) as s:
        elo = load_view(s, board, "elo", SETTINGS)
        tw = load_view(s, board, "tw_elo", SETTINGS)
        ts = load_view(s, board, "trueskill", SETTINGS)
        bt = load_view(s, board, "bt", SETTINGS)
    # A view never waits for the robust board's first fit: it says so instead of warning.
    assert elo.notices == [] or all("position bias" in n or "first fit runs in the background"
                                    in n for n in elo.notices)
    by_id = {r["checkpoint_id"]: r for r in elo.rows}
    assert set(by_id) == set(book.states)
    for c, state in book.states.items():
        assert by_id[c]["rating"] == pytest.approx(state.elo, abs=1e-9)
        assert by_id[c]["time_weighted"] == pytest.approx(state.time_weighted_elo(now), abs=1e-6)
        assert by_id[c]["mu"] == pytest.approx(state.mu, abs=1e-9)
        assert by_id[c]["games"] == state.games
    assert [r["rating"] for r in tw.rows] == sorted(
        (state.time_weighted_elo(now) for state in book.states.values()), reverse=True)
    # TrueSkill's rating is mu (inside mu +- 1.96 sigma); mu - 3 sigma is its own column.
    assert [r["rating"] for r in ts.rows] == sorted(
        (state.mu for state in book.states.values()), reverse=True)
    assert sorted(r["conservative"] for r in ts.rows) == sorted(
        state.conservative for state in book.states.values())

    # The figures carry the same numbers.
    figures = all_figures(elo)
    ratings = figures["ratings"]["data"][0]
    shown = dict(zip(ratings["y"], ratings["x"], strict=True))
    assert shown == {r["checkpoint"]: r["rating"] for r in elo.rows}
    history = figures["elo_history"]
    for trace in history["data"]:
        if trace["name"].endswith("(time-weighted)"):
            continue
        cid = next(c for c, i in elo.checkpoints.items() if i.name == trace["name"])
        assert trace["y"][-1] == pytest.approx(book.states[cid].elo, abs=1e-9)
        assert trace["x"][-1] == elo.log.last_vote_id

    # Bradley-Terry from the records directly, the same bootstrap (drawn over the distinct
    # ballots in the one order arena.ratings.fit_bt_rows puts them in).
    ballots = Counter((r.participants, r.winner, r.ranking) for r in records)
    canonical = dict(sorted(ballots.items(), key=lambda b: (b[0][0], str(b[0][1]),
                                                            b[0][2] or ())))
    direct = bradley_terry(group_ballots(canonical), rounds=SETTINGS.bootstrap_rounds,
                           seed=SETTINGS.bootstrap_seed)
    assert [(r["checkpoint_id"], pytest.approx(r["rating"]), pytest.approx(r["lower"]))
            for r in bt.rows] == [(r.checkpoint_id, r.rating, r.lower) for r in direct.ratings]
    bt_figure = all_figures(bt)["ratings"]["data"][0]
    assert bt_figure["error_x"]["array"] == pytest.approx(
        [r["upper"] - r["rating"] for r in bt.rows[::-1]])

    # Heatmaps: games and wins per pair counted from the records.
    wins: Counter[tuple[int, int]] = Counter()
    games: Counter[tuple[int, int]] = Counter()
    for record in records:
        for a, b, score in pairwise(record):
            wins[(a, b)] += score
            wins[(b, a)] += 1 - score
            games[(a, b)] += 1
            games[(b, a)] += 1
    ids, _, _ = elo.log.pair_matrix()
    z_games = all_figures(elo)["games"]["data"][0]["z"]
    z_rate = all_figures(elo)["win_rate"]["data"][0]["z"]
    for i, a in enumerate(ids):
        for j, b in enumerate(ids):
            # a checkpoint never plays itself: the diagonal is blank
            assert z_games[i][j] == (None if i == j else games[(a, b)])
            if games[(a, b)]:
                assert z_rate[i][j] == pytest.approx(wins[(a, b)] / games[(a, b)])

    # Position bias: wins by shown position per match kind, counted directly; every kind
    # with a decided vote on this board is shown, duels included.
    by_kind: dict[str, list[int]] = {}
    for kind, record in zip(kinds, records, strict=True):
        top = record.ranking[0] if record.ranking is not None else record.winner
        if isinstance(top, int):
            by_kind.setdefault(kind, [0] * len(record.participants))[top] += 1
    assert by_kind, "the simulation decided some votes on every board"
    assert {kind: list(bias.wins) for kind, bias in elo.position.items()} == by_kind

    # The table is the view's rows, and its rank respects the intervals.
    frame = table_frame(bt)
    assert list(frame["Checkpoint"]) == [r["checkpoint"] for r in bt.rows]
    for _, row in frame.iterrows():
        above = [r for r in bt.rows if r["lower"] > row["95% upper"] + 0.05]
        assert row["Rank"] == 1 + len(above)


def test_knobs_and_ccip_agreement(voted: Database) -> None:
    character = CHARACTERS[0]
    with voted.session() as s:
        ids = {c.name: c.id for c in s.scalars(select(Checkpoint))}
        # Stored CCIP scores (as `arena score ccip` writes them) that rise with the config order.
        for value, cid in enumerate(sorted(ids.values())):
            s.add(MetricScore(metric="ccip", metric_model="ccip-test", metric_version="t",
                              parameters={}, checkpoint_id=cid, character=character,
                              value=0.2 + 0.2 * value, details={}, images_used=[],
                              created_at=utcnow()))
    with voted.session(readonly=True) as s:
        view = load_view(s, "overall", "bt", SETTINGS)
    steps = {r["checkpoint_id"]: view.checkpoints[r["checkpoint_id"]].knobs["steps"]
             for r in view.rows}
    rho = stats.spearmanr([steps[r["checkpoint_id"]] for r in view.rows],
                          [r["rating"] for r in view.rows]).statistic
    steps_row = next(k for k in view.knobs if k.knob == "steps")
    assert steps_row.correlation.rho == pytest.approx(rho)
    assert steps_row.correlation.n == len(view.rows) == 4
    assert steps_row.correlation.lower <= rho <= steps_row.correlation.upper
    assert "Training steps" in set(knob_frame(view)["Training knob"])
    knob = all_figures(view, "steps")["knob"]["data"][0]
    assert sorted(knob["text"]) == sorted(r["config"] for r in view.rows)
    # Agreement: CCIP against the human character board, per character.
    ratings = view.character_board[character]
    pairs = [(ratings[c], view.ccip[(c, character)]) for c in ratings]
    expected = stats.spearmanr([p[0] for p in pairs], [p[1] for p in pairs]).statistic
    assert view.agreement[character].rho == pytest.approx(expected)
    assert {r["checkpoint_id"]: r["ccip"] for r in view.rows} == {
        c: pytest.approx(v) for (c, ch), v in view.ccip.items() if ch == character}


def test_other_parameters_are_not_shown(voted: Database) -> None:
    other = Settings(votes_per_minute=0, elo_k=16.0, bootstrap_rounds=20)
    with voted.session(readonly=True) as s:
        view = load_view(s, "overall", "elo", other)
        ts = load_view(s, "overall", "trueskill", other)
    assert view.rows == []
    assert any("arena ratings recompute" in n for n in view.notices)
    # TrueSkill's parameters did not change: its numbers stay, without Elo's columns.
    assert ts.rows and all(r["time_weighted"] is None for r in ts.rows)


def test_bt_cache_survives_votes_on_other_boards(voted: Database,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    from arena.matches import issue_match
    from arena.votes import record_vote

    def vote(mode: str) -> None:
        match = issue_match(voted, SETTINGS, "voter-other-board", mode)
        record_vote(voted, SETTINGS, match.token, "voter-other-board", winner=0)

    fitted: list[int] = []  # the newest vote of every fit the service computes

    def counting_fit(ballots, config, settings, last_vote_id):  # type: ignore[no-untyped-def]
        fitted.append(last_vote_id)
        return fit_bt_rows(ballots, config, settings, last_vote_id)

    monkeypatch.setattr(fits, "fit_bt_rows", counting_fit)
    with voted.session(readonly=True) as s:
        first = bt_rows(s, "ffa", SETTINGS)
    fit_vote_id = first[0]["fit_vote_id"]
    assert fitted in ([], [fit_vote_id])  # fitted now, or read from the stored aggregate
    before = len(fitted)
    for _ in range(3):  # votes on the free board only: the ffa fit stays, not refitted
        vote("free")
    with voted.session(readonly=True) as s:
        rows = bt_rows(s, "ffa", SETTINGS)
        assert len(fitted) == before and rows == first
        assert board_log(s, "free", rating_config(SETTINGS)).last_vote_id > fit_vote_id
    monkeypatch.undo()  # a background refit runs in another process, on the real function
    vote("ffa")
    with voted.session(readonly=True) as s:
        # The dashboard does not wait for the refit and says which votes the fit covers ...
        view = load_view(s, "ffa", "bt", SETTINGS)
        assert {r["fit_vote_id"] for r in bt_rows(s, "ffa", SETTINGS, wait=False)} == {
            fit_vote_id}
        assert any(f"votes up to #{fit_vote_id}" in n for n in view.notices)
        # ... while `arena ratings` and the API wait for the exact fit.
        newest = board_log(s, "ffa", rating_config(SETTINGS)).last_vote_id
        assert {r["fit_vote_id"] for r in bt_rows(s, "ffa", SETTINGS)} == {newest}


@contextmanager
def write_lock_held(db: Database) -> Iterator[None]:
    """Another thread holds a vote (serialized) transaction while the block runs."""
    holding, release = threading.Event(), threading.Event()

    def writer() -> None:
        with db.session(serialized=True) as s:
            s.get(Checkpoint, 1)
            holding.set()
            release.wait(120)

    thread = threading.Thread(target=writer)
    thread.start()
    assert holding.wait(60), "the writer did not get the write lock"
    try:
        yield
    finally:
        release.set()
        thread.join()


def test_view_reads_beside_a_writer(voted: Database) -> None:
    """A leaderboard view completes while another transaction holds the write lock."""
    result: list[int] = []

    def reader() -> None:
        with voted.session(readonly=True) as s:
            result.append(len(load_view(s, "overall", "bt", SETTINGS).rows))

    reading = threading.Thread(target=reader)
    with write_lock_held(voted):
        reading.start()
        reading.join(120)
        finished = not reading.is_alive()
    reading.join()
    assert finished and result == [4]


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_cli_reads_run_beside_a_writer(arena_env: Database, tmp_path: Path) -> None:
    """`arena ratings`, `pool stats` and feature look-ups read while a vote transaction holds
    SQLite's write lock (a writing session would wait for it and fail as locked)."""
    from typer.testing import CliRunner

    from arena.cli.main import app
    from arena.features import DatabaseFeatureCache
    from metrics.ccip import FeatureKey

    db = arena_env
    build_pool(db, tmp_path / "pool-home", tmp_path / "pool")
    simulate_votes(db, SETTINGS, 12, seed=5)
    with write_lock_held(db):
        runner = CliRunner()
        results = [runner.invoke(app, args) for args in
                   (["ratings", "--system", "bt"], ["ratings", "--json"], ["pool", "stats"])]
        other = Database(db.url)
        found = DatabaseFeatureCache(other).get_many([FeatureKey("0" * 64, "model")])
        other.dispose()
    for result in results:
        assert result.exit_code == 0, result.output
    assert "hatsune_miku" not in results[0].output and "arena-fixture" in results[0].output
    assert found == {}


def test_simulated_voters_recover_the_hidden_order(db: Database, tmp_path: Path) -> None:
    """Votes cast through the real path by voters preferring later configs put the published
    configs in their order on the Bradley-Terry board."""
    from training.presets import PRESET_NAMES

    build_pool(db, tmp_path / "pool-home", tmp_path / "pool")
    model = VoterModel(preset_strengths(step=1.5))
    assert simulate_votes(db, SETTINGS, 120, model=model, seed=1) == 120
    with db.session(readonly=True) as s:
        view = load_view(s, "overall", "bt", SETTINGS)
    assert [r["config"] for r in view.rows] == list(reversed(PRESET_NAMES))
    assert view.log.votes == 120


def test_a_fit_made_before_any_vote_is_not_served_later(db: Database, tmp_path: Path) -> None:
    """The server's warm-up may fit a board before its first vote; the tab must not keep
    showing that empty fit."""
    build_pool(db, tmp_path / "pool-home", tmp_path / "pool")
    with db.session(readonly=True) as s:
        assert bt_rows(s, "overall", SETTINGS, wait=False) == []
    simulate_votes(db, SETTINGS, 10, seed=8)
    with db.session(readonly=True) as s:
        rows = bt_rows(s, "overall", SETTINGS, wait=False)
        assert len(rows) == 4
        assert {r["fit_vote_id"] for r in rows} == {
            board_log(s, "overall", rating_config(SETTINGS)).last_vote_id}


def test_background_refit_catches_up(voted: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    """After the cool-down, a view starts a refit in the background; it lands in the cache
    and covers the newest vote."""
    import time

    from arena.matches import issue_match
    from arena.votes import record_vote

    with voted.session(readonly=True) as s:
        first = bt_rows(s, "overall", SETTINGS)
    match = issue_match(voted, SETTINGS, "voter-refit-000", "fixed")
    record_vote(voted, SETTINGS, match.token, "voter-refit-000", winner=1)
    monkeypatch.setattr(fits, "BT_REFIT_SECONDS", 0.0)
    with voted.session(readonly=True) as s:
        newest = board_log(s, "overall", rating_config(SETTINGS)).last_vote_id
        stale = bt_rows(s, "overall", SETTINGS, wait=False)
    assert {r["fit_vote_id"] for r in stale} == {first[0]["fit_vote_id"]} != {newest}
    deadline = time.monotonic() + 120  # a wait for the other process, not a speed check
    while time.monotonic() < deadline:
        with voted.session(readonly=True) as s:
            rows = bt_rows(s, "overall", SETTINGS, wait=False)
        if rows[0]["fit_vote_id"] == newest:
            break
        time.sleep(0.2)
    with voted.session(readonly=True) as s:
        exact = bt_rows(s, "overall", SETTINGS)
    assert [(r["checkpoint_id"], r["rating"], r["fit_vote_id"]) for r in rows] == [
        (r["checkpoint_id"], r["rating"], r["fit_vote_id"]) for r in exact]


def test_the_worker_process_serves_the_view_rendered_here(voted: Database) -> None:
    """The tab's views come from the leaderboard worker process; they equal a render made
    in this process, and an unknown board is the same one-line error."""
    from arena.errors import InputError
    from arena.leaderboard.render import render
    from arena.leaderboard.worker import close_workers, worker_for
    from arena.web.dashboard import view

    try:
        served = view(voted, SETTINGS, "fixed", "elo", max_age=0)
        here = render(voted, SETTINGS, "fixed", "elo", max_age=0)
        assert worker_for(voted, SETTINGS).ping() != os.getpid()
        assert served.table.equals(here.table)
        assert served.plots == here.plots and served.status == here.status
        assert Path(served.csv).read_text() == here.table.to_csv(index=False)
        with pytest.raises(InputError, match="board"):
            view(voted, SETTINGS, "no-such-board", "elo")
    finally:
        close_workers()
