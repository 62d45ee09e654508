"""An operator's exclusion of a prompt's votes, recorded and replayed
(:func:`arena.leaderboard.fits.change_and_recompute`): every board, plain and robust, Elo,
TrueSkill and Bradley-Terry, stored aggregates included, equals a fresh arena that never got
those votes; including them again restores the boards; a later vote on the prompt is stored and
moves nothing; a decision made elsewhere is never served from aggregates made before it
(SQLite and PostgreSQL)."""

from __future__ import annotations

import random
from typing import Any

from sqlalchemy import func, select

from arena.db import Database
from arena.decisions import change_exclusion, decisions, exclusions
from arena.leaderboard import fits
from arena.leaderboard import log as board_logs
from arena.leaderboard import voters as voters_module
from arena.leaderboard.fits import bt_rows, change_and_recompute
from arena.leaderboard.log import board_log, store_log, stored_log
from arena.leaderboard.voters import robust_fit
from arena.models import Vote
from arena.ratings import rating_config
from tests.support.snapshots import snapshot_table
from tests.support.voted_arena import SETTINGS, World, boards, build, events, play

EXCLUDED = ("fixed-2", "free-2")  # one prompt of the fixed (alice) boards, one of free
PROMPTS_OF = {"fixed": ("fixed", "fixed-2"), "free": ("free", "free-2"), "ffa": ("ffa",)}


def prompted(seed: int, count: int) -> list[tuple[Any, ...]]:
    """:func:`events`, each on one of its kind's prompts."""
    rng = random.Random(seed)
    return [(*e, rng.choice(PROMPTS_OF[e[1]])) for e in events(seed, count)]


def counted(played: list[tuple[Any, ...]]) -> int:
    return sum(1 for e in played if e[3] != "skip" and e[4] not in EXCLUDED)


def decide(world: World, action: str) -> int:
    replayed = 0
    for key in EXCLUDED:
        _, replayed = change_and_recompute(world.db, "prompt", world.prompts[key], action,
                                           f"{action} {key}", SETTINGS)
    return replayed


def forget_caches() -> None:
    """As a restarted process: only the stored aggregates are left."""
    board_logs.clear_cache()
    fits.clear_cache()
    voters_module._CACHE.clear()


def test_excluding_a_prompts_votes_equals_a_fresh_arena_without_them(
        db: Database, second_db: Database) -> None:
    arena, clean = build(db), build(second_db)
    before, after = prompted(21, 90), prompted(22, 40)
    for event in before:
        play(arena, *event)
    everything = boards(db)
    assert decide(arena, "exclude") == counted(before)
    for event in before:
        if event[4] not in EXCLUDED:
            play(clean, *event)
    assert boards(db) == boards(second_db)

    # Included again: every board is what it was with all the votes.
    assert decide(arena, "include") == sum(1 for e in before if e[3] != "skip")
    assert boards(db) == everything
    decide(arena, "exclude")

    # New votes on an excluded prompt are stored and move no online rating.
    snapshots = snapshot_table(db)
    spam = [e for e in after if e[4] in EXCLUDED]
    for event in spam:
        play(arena, *event)
    assert snapshot_table(db) == snapshots
    with db.session(readonly=True) as s:
        stored = s.scalar(select(func.count(Vote.id)))
    assert stored == sum(1 for e in before + spam if e[3] != "skip")
    for event in after:
        if event[4] not in EXCLUDED:
            play(arena, *event)
            play(clean, *event)
    assert boards(db) == boards(second_db)
    forget_caches()  # from the aggregates the replay stored, and the votes after them
    assert boards(db) == boards(second_db)
    with db.session(readonly=True) as s:
        assert [d.action for d in decisions(s, "prompt")] == ["exclude"] * 2 + [
            "include"] * 2 + ["exclude"] * 2


def test_a_decision_made_elsewhere_is_never_served_from_older_aggregates(db: Database) -> None:
    """Another process recorded the decision (no replay here yet): the board log, the
    Bradley-Terry fit and the robust fit this process holds, and the aggregate it stored, were
    made with the prompt's votes and are not used."""
    world = build(db)
    played = prompted(23, 60)
    for event in played:
        play(world, *event)
    config = rating_config(SETTINGS)
    on_free = [e for e in played if e[1] == "free" and e[3] != "skip"]
    with db.session() as s:
        log = board_log(s, "free", config)
        store_log(s, log)
        games = sum(r["games"] for r in bt_rows(s, "free", SETTINGS))
        robust_votes = robust_fit(s, "free", SETTINGS, store=True).n_votes
    assert log.votes == len(on_free) and games == 2 * len(on_free)
    assert robust_votes == len(on_free)
    with db.session() as s:
        change_exclusion(s, "prompt", world.prompts["free-2"], "exclude", "spam")
    left = len([e for e in on_free if e[4] != "free-2"])
    assert 0 < left < len(on_free)
    with db.session(readonly=True) as s:
        assert stored_log(s, "free", config, exclusions(s)) is None
        assert board_log(s, "free", config).votes == left
        assert sum(r["games"] for r in bt_rows(s, "free", SETTINGS)) == 2 * left
        assert robust_fit(s, "free", SETTINGS).n_votes == left
