"""Rating snapshots on both databases: online == replay, concurrency, leaderboards, the CLI."""

from __future__ import annotations

import json
import threading
import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select
from typer.testing import CliRunner

from arena.cli.main import app
from arena.db import Database
from arena.errors import InputError, UserError
from arena.leaderboard.fits import recompute
from arena.leaderboard.rows import leaderboard
from arena.models import (
    Checkpoint,
    Image,
    Match,
    MatchImage,
    Prompt,
    RatingSnapshot,
    TrainingConfigRecord,
    Vote,
    Voter,
    utcnow,
)
from arena.settings import Settings
from arena.votes import record_vote
from metrics.boards import boards_for
from metrics.outcomes import VoteRecord
from metrics.rating_book import RatingBook
from metrics.trueskill_fast import TrueSkillModel
from tests.support.snapshots import snapshot_table

CHECKPOINTS = 5
CHARACTERS = ("alice", "bob")
VOTER = "voter-ratings-0001"
SETTINGS = Settings(votes_per_minute=0)


@dataclass
class World:
    """Checkpoints (ids by index) and, per (kind, character), a prompt with one image each."""

    db: Database
    checkpoints: list[int]
    prompts: dict[tuple[str, str | None], int]
    images: dict[tuple[int, int], int]
    voter_id: int


def build_world(db: Database) -> World:
    """A training config, five checkpoints, prompts for each board and one image per pair."""
    with db.session() as s:
        config = TrainingConfigRecord(name="cfg-a", content_hash="c" * 64, data={"lr": 1e-5})
        s.add(config)
        s.flush()
        checkpoints = []
        for i in range(CHECKPOINTS):
            ckpt = Checkpoint(name=f"ckpt-{i}", path=f"/models/{i}.safetensors",
                              format="safetensors", sha256=f"{i:064d}", short_hash=f"{i:010d}",
                              size_bytes=1, config_id=config.id)
            s.add(ckpt)
            s.flush()
            checkpoints.append(ckpt.id)
        prompts: dict[tuple[str, str | None], int] = {}
        for kind, character in [("fixed", c) for c in CHARACTERS] + [("free", None),
                                                                      ("ffa", None)]:
            prompt = Prompt(text=f"{kind} {character}", text_hash=uuid.uuid4().hex, kind=kind,
                            character=character)
            s.add(prompt)
            s.flush()
            prompts[(kind, character)] = prompt.id
        images = {}
        for pid in prompts.values():
            for cid in checkpoints:
                image = Image(sha256=uuid.uuid4().hex * 2, served_sha256=uuid.uuid4().hex * 2,
                              checkpoint_id=cid, prompt_id=pid, width=8, height=8)
                s.add(image)
                s.flush()
                images[(pid, cid)] = image.id
        voter = Voter(external_id=VOTER)
        s.add(voter)
        s.flush()
        return World(db, checkpoints, prompts, images, voter.id)


def cast(world: World, kind: str, character: str | None, shown: list[int],
         outcome: Any) -> None:
    """Issue a match showing checkpoints (by index) and vote on it through record_vote."""
    token = uuid.uuid4().hex
    prompt_id = world.prompts[(kind, character)]
    with world.db.session() as s:
        match = Match(token=token, kind=kind, prompt_id=prompt_id, voter_id=world.voter_id,
                      expires_at=utcnow() + timedelta(hours=1))
        s.add(match)
        s.flush()
        for position, index in enumerate(shown):
            cid = world.checkpoints[index]
            s.add(MatchImage(match_id=match.id, position=position, checkpoint_id=cid,
                             image_id=world.images[(prompt_id, cid)]))
    if isinstance(outcome, list):
        record_vote(world.db, SETTINGS, token, VOTER, ranking=outcome)
    else:
        record_vote(world.db, SETTINGS, token, VOTER, winner=outcome)


def logged_votes(world: World) -> list[tuple[str, str | None, VoteRecord]]:
    """The log read back independently of arena.ratings: kind, character, record."""
    with world.db.session() as s:
        out = []
        for vote in s.scalars(select(Vote).order_by(Vote.id)):
            match = vote.match
            ids = tuple(mi.checkpoint_id for mi in match.images)
            t = vote.created_at.timestamp()
            if vote.outcome == "ranking":
                record = VoteRecord(ids, ranking=tuple(vote.ranking), time=t)
            elif vote.outcome == "win":
                record = VoteRecord(ids, winner=vote.winner_position, time=t)
            else:
                record = VoteRecord(ids, winner=vote.outcome, time=t)
            out.append((match.kind, match.prompt.character, record))
        return out


duel = st.permutations(range(CHECKPOINTS)).map(lambda p: list(p[:2]))
four = st.permutations(range(CHECKPOINTS)).map(lambda p: list(p[:4]))
votes_strategy = st.lists(
    st.one_of(
        st.tuples(st.just("fixed"), st.sampled_from(CHARACTERS), duel,
                  st.sampled_from([0, 1, "tie", "both_bad"])),
        st.tuples(st.just("free"), st.none(), duel, st.sampled_from([0, 1, "both_bad"])),
        st.tuples(st.just("ffa"), st.none(), four,
                  st.one_of(st.integers(0, 3), st.permutations(range(4)).map(list))),
    ),
    min_size=1,
    max_size=8,
)


@settings(max_examples=12, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(votes=votes_strategy)
def test_online_snapshots_equal_replay(db: Database, votes: list[tuple[Any, ...]]) -> None:
    """Any vote sequence: snapshots written online == recompute == an in-memory replay.

    Examples accumulate in one database; the property holds for the whole log each time."""
    world = _world(db)
    for kind, character, shown, outcome in votes:
        cast(world, kind, character, shown, outcome)
    online = snapshot_table(db)
    assert recompute(db, progress=False) == len(logged_votes(world))
    assert snapshot_table(db) == online

    books: dict[str, RatingBook] = {}
    for kind, character, record in logged_votes(world):
        for board in boards_for(kind, character):
            books.setdefault(board, RatingBook()).apply(record)
    expected = {}
    for board, book in books.items():
        for c, state in book.states.items():
            expected[(board, "elo", c)] = (state.elo, state.games, state.wins, state.draws)
            expected[(board, "trueskill", c)] = (state.conservative, state.games, state.wins,
                                                 state.draws)
    assert {row[:3]: (row[3], row[6], row[7], row[8]) for row in online} == expected


_WORLDS: dict[str, World] = {}


def _world(db: Database) -> World:
    # One world per database across hypothesis examples (the fixture is function-scoped).
    if db.url not in _WORLDS:
        _WORLDS[db.url] = build_world(db)
    return _WORLDS[db.url]


def test_concurrent_votes_on_one_checkpoint_both_count(db: Database) -> None:
    """Two threads vote at once on matches sharing checkpoint 0: both updates land."""
    world = build_world(db)
    barrier = threading.Barrier(2)
    errors: list[BaseException] = []

    def vote(other: int) -> None:
        try:
            barrier.wait()
            cast(world, "free", None, [0, other], 0)
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=vote, args=(i,)) for i in (1, 2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    with db.session() as s:
        rows = s.scalars(select(RatingSnapshot).where(
            RatingSnapshot.checkpoint_id == world.checkpoints[0])).all()
    assert {(r.board, r.system) for r in rows} == {
        (b, sys) for b in ("free", "overall") for sys in ("elo", "trueskill")}
    assert all(r.games == 2 and r.wins == 2 for r in rows)
    online = snapshot_table(db)
    recompute(db, progress=False)
    assert snapshot_table(db) == online


def _sample_log(world: World) -> None:
    plan = [("fixed", "alice", [0, 1], 0), ("fixed", "alice", [1, 2], "tie"),
            ("fixed", "bob", [2, 3], 1), ("free", None, [3, 4], "both_bad"),
            ("free", None, [0, 4], 0), ("ffa", None, [0, 1, 2, 3], 2),
            ("ffa", None, [4, 3, 2, 1], [3, 2, 1, 0]), ("fixed", "bob", [0, 3], 0)]
    for kind, character, shown, outcome in plan:
        cast(world, kind, character, shown, outcome)


def test_leaderboards(db: Database) -> None:
    """Each system's rows: sorted, named, linked to the config, counts that add up."""
    world = build_world(db)
    _sample_log(world)
    with db.session() as s:
        elo = leaderboard(s, "overall", "elo", SETTINGS)
        ts = leaderboard(s, "overall", "trueskill", SETTINGS)
        bt = leaderboard(s, "overall", "bt", SETTINGS)
        alice = leaderboard(s, "fixed/alice", "elo", SETTINGS)
        empty = leaderboard(s, "fixed/nobody", "elo", SETTINGS)
    assert [r["rating"] for r in elo] == sorted((r["rating"] for r in elo), reverse=True)
    assert sum(r["rating"] for r in elo) == pytest.approx(1000.0 * len(elo))
    assert {r["config"] for r in elo + ts + bt} == {"cfg-a"}
    assert {r["checkpoint"] for r in elo} == {f"ckpt-{i}" for i in range(CHECKPOINTS)}
    assert all(r["lower"] is None and r["time_weighted"] is not None for r in elo)
    assert all(r["rating"] == pytest.approx(r["mu"] - 3 * r["sigma"]) for r in ts)
    assert [r["rating"] for r in ts] == sorted((r["rating"] for r in ts), reverse=True)
    assert all(r["lower"] <= r["rating"] <= r["upper"] and r["rank"] >= 1 for r in bt)
    assert sum(r["rating"] for r in bt) == pytest.approx(1000.0 * len(bt))
    games = {r["checkpoint"]: (r["games"], r["wins"], r["draws"]) for r in elo}
    assert {r["checkpoint"]: (r["games"], r["wins"], r["draws"]) for r in bt} == games
    # both_bad counts as a draw by default: ckpt-4 drew (both bad), lost a duel and came
    # last in a ranking; ckpt-1, ranked first there, has that win.
    assert games["ckpt-4"] == (3, 0, 1)
    assert games["ckpt-1"] == (4, 1, 1)
    assert {r["checkpoint"] for r in alice} == {"ckpt-0", "ckpt-1", "ckpt-2"}
    assert empty == []


def test_leaderboard_refusals(db: Database) -> None:
    """Unknown boards and systems, and snapshots made with other parameters, are refused."""
    world = build_world(db)
    _sample_log(world)
    with db.session() as s:
        default = leaderboard(s, "overall", "elo", SETTINGS)
        with pytest.raises(InputError, match="board: expected"):
            leaderboard(s, "weekly", "elo", SETTINGS)
        with pytest.raises(InputError, match="system: expected"):
            leaderboard(s, "overall", "glicko", SETTINGS)
        with pytest.raises(UserError, match="arena ratings recompute"):
            leaderboard(s, "overall", "elo", Settings(votes_per_minute=0, elo_k=16.0))
    recompute(db, Settings(elo_k=16.0), progress=False)
    with db.session() as s:
        halved = leaderboard(s, "overall", "elo", Settings(elo_k=16.0))
    # After the recompute the same games are rated with the other K: every checkpoint is
    # there with its games, and every rating that moved from the start moved differently.
    assert {r["checkpoint"]: r["games"] for r in halved} == {
        r["checkpoint"]: r["games"] for r in default}
    before = {r["checkpoint"]: r["rating"] for r in default}
    assert any(rating != 1000.0 for rating in before.values())
    assert all(r["rating"] != pytest.approx(before[r["checkpoint"]])
               for r in halved if before[r["checkpoint"]] != 1000.0)


def test_cli_json_matches_package_and_recompute(arena_env: Database) -> None:
    """`arena ratings --json` TrueSkill rows equal the trueskill package on the same votes."""
    world = build_world(arena_env)
    _sample_log(world)
    runner = CliRunner()
    result = runner.invoke(app, ["ratings", "--system", "trueskill", "--json"])
    assert result.exit_code == 0, result.output
    shown = json.loads(result.output)
    assert shown["parameters"]["sort"] == "mu - 3 sigma"
    package = TrueSkillModel(engine="package")
    ratings: dict[int, tuple[float, float]] = {}
    from metrics.outcomes import trueskill_games

    for _, _, record in logged_votes(world):
        pre = {c: ratings.get(c, (25.0, 25.0 / 3)) for c in record.participants}
        ratings.update(package.rate_games(pre, trueskill_games(record)))
    for row in shown["rows"]:
        mu, sigma = ratings[row["checkpoint_id"]]
        assert abs(row["mu"] - mu) < 1e-6 and abs(row["sigma"] - sigma) < 1e-6

    result = runner.invoke(app, ["ratings", "recompute", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == {"votes_replayed": 8}
    result = runner.invoke(app, ["ratings", "--board", "nowhere"])
    assert result.exit_code == 2 and "board: expected" in result.output
    result = runner.invoke(app, ["ratings", "--system", "bt"])
    assert result.exit_code == 0 and "ckpt-0" in result.output
