"""Matchmaking on both databases: the strategy setting, shared counts, what a voter is shown."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from sqlalchemy import func, select

from arena import matchmaking
from arena.db import Database
from arena.matches import issue_match, skip_match
from arena.models import Match, MatchImage, RatingSnapshot, Vote
from arena.settings import Settings, get_settings
from arena.votes import record_vote
from metrics.pairing import STRATEGIES
from tests.support.matchmaking import make_pool

ROOT = Path(__file__).resolve().parents[2]


def _settings(db: Database, home: Path) -> Settings:
    """No rate limits: these tests issue many matches per voter within a second."""
    limits = {name: 0 for name in Settings.model_fields
              if name.endswith(("_per_minute", "_per_hour"))}
    return Settings(home=home, database_url=db.url, **limits)


def _shown(db: Database, token: str) -> tuple[frozenset[int], frozenset[int]]:
    """(checkpoint ids, image ids) of the match behind ``token``."""
    with db.session() as session:
        rows = session.execute(
            select(MatchImage.checkpoint_id, MatchImage.image_id)
            .join(Match, Match.id == MatchImage.match_id)
            .where(Match.token == token)
        ).all()
    return frozenset(r[0] for r in rows), frozenset(r[1] for r in rows)


def _issued_in_db(db: Database, kind: str) -> dict[int, int]:
    with db.session() as session:
        rows = session.execute(
            select(MatchImage.checkpoint_id, func.count())
            .join(Match, Match.id == MatchImage.match_id)
            .where(Match.kind == kind)
            .group_by(MatchImage.checkpoint_id)
        ).all()
    return {int(c): int(n) for c, n in rows}


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_a_voter_never_sees_the_same_set_twice_in_a_row(
    arena_env: Database, arena_home: Path, monkeypatch: pytest.MonkeyPatch, strategy: str
) -> None:
    monkeypatch.setenv("ARENA_MATCHMAKING_STRATEGY", strategy)
    get_settings.cache_clear()
    make_pool(arena_env, checkpoints=3, prompts={"fixed": 2}, seeds=(1, 2))
    settings = _settings(arena_env, arena_home)
    rng = random.Random(7)
    previous = None
    for i in range(24):
        match = issue_match(arena_env, settings, "voter-rows-0001", "fixed", rng=rng)
        shown, _ = _shown(arena_env, match.token)
        assert len(shown) == 2
        assert shown != previous, f"match {i} repeats the previous set {sorted(shown)}"
        previous = shown
        if i % 3 == 0:
            skip_match(arena_env, settings, match.token, "voter-rows-0001")
        else:
            record_vote(arena_env, settings, match.token, "voter-rows-0001", winner=i % 2)


def test_revealed_images_are_not_shown_again_while_others_exist(
    arena_env: Database, arena_home: Path
) -> None:
    seeds = (11, 22, 33)
    make_pool(arena_env, checkpoints=2, prompts={"fixed": 1}, seeds=seeds)
    settings = _settings(arena_env, arena_home)
    rng = random.Random(3)
    revealed: set[int] = set()
    for _ in seeds:
        match = issue_match(arena_env, settings, "voter-seen-0001", "fixed", rng=rng)
        _, images = _shown(arena_env, match.token)
        assert not images & revealed, "an image this voter already judged was shown again"
        record_vote(arena_env, settings, match.token, "voter-seen-0001", winner=0)
        revealed |= images
    assert len(revealed) == 2 * len(seeds)
    # Every image of the prompt is revealed now: the voter is still served (a repeat).
    match = issue_match(arena_env, settings, "voter-seen-0001", "fixed", rng=rng)
    assert _shown(arena_env, match.token)[1] <= revealed
    # Another voter is shown anything: what one voter saw does not limit another.
    other = issue_match(arena_env, settings, "voter-other-002", "fixed", rng=rng)
    assert len(_shown(arena_env, other.token)[1]) == 2


def test_an_issued_but_unvoted_match_reveals_nothing(
    arena_env: Database, arena_home: Path
) -> None:
    make_pool(arena_env, checkpoints=2, prompts={"fixed": 1}, seeds=(5,))
    settings = _settings(arena_env, arena_home)
    first = issue_match(arena_env, settings, "voter-skip-0001", "fixed", rng=random.Random(1))
    skip_match(arena_env, settings, first.token, "voter-skip-0001")
    second = issue_match(arena_env, settings, "voter-skip-0001", "fixed", rng=random.Random(2))
    # The pool has one image per checkpoint: the same images, and no error.
    assert _shown(arena_env, first.token) == _shown(arena_env, second.token)


def test_balanced_setting_picks_the_least_issued(
    arena_env: Database, arena_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ARENA_MATCHMAKING_STRATEGY", "balanced")
    get_settings.cache_clear()
    ids = make_pool(arena_env, checkpoints=4, prompts={"free": 1})
    settings = _settings(arena_env, arena_home)
    rng = random.Random(0)
    seen: Counter[int] = Counter()
    for i in range(8):
        match = issue_match(arena_env, settings, f"voter-bal-{i:04d}", "free", rng=rng)
        seen.update(_shown(arena_env, match.token)[0])
    # Fewest issued first: 8 duels over 4 checkpoints play each exactly 4 times.
    assert seen == Counter({c: 4 for c in ids})


def test_active_keeps_matching_every_checkpoint(arena_env: Database, arena_home: Path) -> None:
    assert get_settings().matchmaking_strategy == "active"  # the default
    ids = make_pool(arena_env, checkpoints=10, prompts={"ffa": 2})
    settings = _settings(arena_env, arena_home)
    rng = random.Random(5)
    for i in range(40):
        match = issue_match(arena_env, settings, f"voter-act-{i % 5:04d}", "ffa", rng=rng)
        ranking = list(range(4))
        rng.shuffle(ranking)
        record_vote(arena_env, settings, match.token, f"voter-act-{i % 5:04d}", ranking=ranking)
    with arena_env.session() as session:
        counts = matchmaking.standings(session, "ffa", reread=True)
    assert set(ids) <= {c for c, s in counts.items() if s.issued > 0}
    # Ratings come from the snapshots the votes wrote.
    with arena_env.session() as session:
        snap = {
            r.checkpoint_id: (r.mu, r.sigma)
            for r in session.scalars(
                select(RatingSnapshot).where(
                    RatingSnapshot.board == "ffa", RatingSnapshot.system == "trueskill"
                )
            )
        }
    assert {c: (s.mu, s.sigma) for c, s in counts.items()} == snap


_CHILD = """
import json, random, sys
from arena import matchmaking
from arena.db import Database
from arena.matches import issue_match
from arena.settings import Settings
db = Database(sys.argv[1])
limits = {n: 0 for n in Settings.model_fields if n.endswith(("_per_minute", "_per_hour"))}
settings = Settings(database_url=sys.argv[1], home=sys.argv[2], **limits)
rng = random.Random(99)
for i in range(int(sys.argv[3])):
    issue_match(db, settings, f"voter-child-{i:03d}", "fixed", rng=rng)
with db.session() as session:
    seen = matchmaking.standings(session, "fixed", reread=True)
print(json.dumps({c: s.issued for c, s in seen.items()}))
"""


def _child(db: Database, home: Path, matches: int) -> dict[int, int]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-c", _CHILD, db.url, str(home), str(matches)],
        capture_output=True, text=True, env=env, cwd=ROOT, timeout=300, check=False,
    )
    assert done.returncode == 0, done.stderr
    return {int(c): n for c, n in json.loads(done.stdout.strip().splitlines()[-1]).items()}


def test_two_processes_see_the_same_issued_counts(arena_env: Database, arena_home: Path) -> None:
    make_pool(arena_env, checkpoints=6, prompts={"fixed": 3})
    settings = _settings(arena_env, arena_home)
    rng = random.Random(4)

    def ours() -> dict[int, int]:
        with arena_env.session() as session:
            return {
                c: s.issued
                for c, s in matchmaking.standings(session, "fixed", reread=True).items()
            }

    for _ in range(3):
        issue_match(arena_env, settings, "voter-parent-01", "fixed", rng=rng)
    assert ours() == _issued_in_db(arena_env, "fixed")  # first read: everything
    for _ in range(4):
        issue_match(arena_env, settings, "voter-parent-01", "fixed", rng=rng)
    child = _child(arena_env, arena_home, 5)  # another process issues 5 and reads
    assert ours() == _issued_in_db(arena_env, "fixed")  # incremental read
    assert ours() == child == _issued_in_db(arena_env, "fixed")
    assert sum(child.values()) == 2 * 12


@pytest.mark.parametrize("strategy", ["balanced", "active"])
def test_the_leaderboard_page_names_the_strategy(
    arena_env: Database, arena_home: Path, monkeypatch: pytest.MonkeyPatch, strategy: str
) -> None:
    from arena.leaderboard.view import load_view
    from arena.web.dashboard import status_text
    from metrics.pairing import STRATEGY_NOTES

    monkeypatch.setenv("ARENA_MATCHMAKING_STRATEGY", strategy)
    get_settings.cache_clear()
    with arena_env.session(readonly=True) as session:
        view = load_view(session, settings=_settings(arena_env, arena_home))
    assert f"matchmaking: {strategy} ({STRATEGY_NOTES[strategy]})" in status_text(view)


def test_concurrent_rereads_count_every_match_once(arena_env: Database, arena_home: Path) -> None:
    import threading

    make_pool(arena_env, checkpoints=5, prompts={"fixed": 2})
    settings = _settings(arena_env, arena_home)
    errors: list[BaseException] = []

    def worker(n: int) -> None:
        try:
            rng = random.Random(n)
            for _ in range(6):
                issue_match(arena_env, settings, f"voter-thread-{n:03d}", "fixed", rng=rng)
                with arena_env.session(readonly=True) as session:
                    matchmaking.standings(session, "fixed", reread=True)
        except BaseException as exc:  # reported below, in the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    for _ in range(2):  # a second read counts the same (nothing settled twice or lost)
        with arena_env.session() as session:
            seen = {c: s.issued for c, s in matchmaking.standings(session, "fixed", True).items()}
        assert seen == _issued_in_db(arena_env, "fixed")
        assert sum(seen.values()) == 2 * 4 * 6


def test_a_match_committed_after_newer_ones_is_still_counted(
    arena_env: Database, arena_home: Path
) -> None:
    """PostgreSQL assigns a match id before commit: a match with a smaller id can become
    visible after newer ones were read, and must still be counted."""
    if arena_env.dialect != "postgresql":
        pytest.skip("SQLite has one writer: ids become visible in order")
    make_pool(arena_env, checkpoints=3, prompts={"fixed": 1})
    settings = _settings(arena_env, arena_home)
    issue_match(arena_env, settings, "voter-late-0000", "fixed")
    with arena_env.session() as late:
        template = late.scalars(select(Match)).one()
        row = Match(token="late-match-token", kind="fixed", prompt_id=template.prompt_id,
                    voter_id=template.voter_id, issued_at=template.issued_at,
                    expires_at=template.expires_at)
        row.images = [MatchImage(position=i.position, image_id=i.image_id,
                                 checkpoint_id=i.checkpoint_id) for i in template.images]
        late.add(row)
        late.flush()  # its id is taken, it is not committed yet
        for n in range(1, 3):
            issue_match(arena_env, settings, f"voter-late-{n:04d}", "fixed")
        for _ in range(2):  # reads that see the newer matches but not this one
            with arena_env.session(readonly=True) as session:
                matchmaking.standings(session, "fixed", reread=True)
    with arena_env.session(readonly=True) as session:
        seen = {c: s.issued for c, s in matchmaking.standings(session, "fixed", True).items()}
    assert seen == _issued_in_db(arena_env, "fixed")
    assert sum(seen.values()) == 2 * 4


def test_a_new_process_settles_what_was_issued_a_window_ago(
    arena_env: Database, arena_home: Path
) -> None:
    """A process's first read settles every match issued over SETTLE_SECONDS ago, so it does
    not re-count the whole table on each read for a window; newer matches stay unsettled
    (they may still be joined by a late commit) and everything is counted once."""
    from datetime import timedelta

    make_pool(arena_env, checkpoints=3, prompts={"fixed": 1})
    settings = _settings(arena_env, arena_home)
    for n in range(3):
        issue_match(arena_env, settings, f"voter-old-{n:04d}", "fixed")
    with arena_env.session() as session:
        old = []
        for match in session.scalars(select(Match).order_by(Match.id)):
            match.issued_at -= timedelta(seconds=matchmaking.SETTLE_SECONDS + 5)
            old.append(match.id)
    issue_match(arena_env, settings, "voter-new-0000", "fixed")
    matchmaking.clear_cache()  # a new process
    with arena_env.session(readonly=True) as session:
        seen = {c: s.issued for c, s in matchmaking.standings(session, "fixed", True).items()}
        settled_to = matchmaking._state(session).standings._settled_to
    assert settled_to == max(old)
    assert seen == _issued_in_db(arena_env, "fixed")
    assert sum(seen.values()) == 2 * 4


def test_the_pool_index_follows_new_and_revealed_images(arena_env: Database) -> None:
    from sqlalchemy import update

    from arena.models import Image

    ids = make_pool(arena_env, checkpoints=3, prompts={"free": 1})
    with arena_env.session() as session:
        session.execute(update(Image).where(Image.checkpoint_id == ids[2]).values(hidden=True))

    def servable() -> set[int]:
        with arena_env.session(readonly=True) as session:
            pool = matchmaking.pool_index(session)
            pool.checked_at = 0.0  # as if the last check were over a second ago
            pool.refresh(session)
            return {c for entry in pool.prompts.values() for c in entry.checkpoints}

    assert servable() == set(ids[:2])
    with arena_env.session() as session:  # the worker reveals a rendered prompt's images
        session.execute(update(Image).where(Image.checkpoint_id == ids[2]).values(hidden=False))
    assert servable() == set(ids)
    with arena_env.session() as session:  # an image is withdrawn
        session.execute(update(Image).where(Image.checkpoint_id == ids[0]).values(hidden=True))
    assert servable() == set(ids[1:])


def test_the_history_row_agrees_with_the_voters_matches(
    arena_env: Database, arena_home: Path
) -> None:
    """The one-row history (the database joins each match's checkpoints) says what the match
    rows say: the latest SEEN_WINDOW matches' sets of the asked kind, the newest set of any
    kind, and the images of the prompt the voter voted on; another voter's matches count not."""
    make_pool(arena_env, checkpoints=5, prompts={"fixed": 2, "ffa": 1}, seeds=(1, 2))
    settings = _settings(arena_env, arena_home)
    rng = random.Random(11)
    voter, other = "voter-history-01", "voter-history-02"
    for i in range(matchmaking.SEEN_WINDOW + 20):
        kind = "ffa" if i % 3 == 0 else "fixed"
        match = issue_match(arena_env, settings, voter, kind, rng=rng)
        if i % 4:
            record_vote(arena_env, settings, match.token, voter, winner=0)
        else:
            skip_match(arena_env, settings, match.token, voter)
        theirs = issue_match(arena_env, settings, other, kind, rng=rng)
        record_vote(arena_env, settings, theirs.token, other, winner=1)
    with arena_env.session() as session:
        rows = session.execute(
            select(Match.id, Match.kind, Match.prompt_id, MatchImage.checkpoint_id,
                   MatchImage.image_id, Match.voter_id)
            .join(MatchImage, MatchImage.match_id == Match.id)
            .where(Match.voter_id == select(Match.voter_id).where(
                Match.token == match.token).scalar_subquery())
        ).all()
        voted = set(session.scalars(select(Vote.match_id)))
    sets: dict[int, set[int]] = {}
    for match_id, _, _, checkpoint, _, _ in rows:
        sets.setdefault(match_id, set()).add(checkpoint)
    kinds = {r[0]: r[1] for r in rows}
    latest = sorted(sets, reverse=True)[:matchmaking.SEEN_WINDOW]
    with arena_env.connection(readonly=True) as conn:
        for kind in ("fixed", "ffa"):
            for prompt_id in {r[2] for r in rows}:
                history = matchmaking._history(conn, voter, kind, prompt_id)
                assert history.voter_id == rows[0][5]
                assert sorted(map(sorted, history.recent)) == sorted(
                    sorted(sets[m]) for m in latest if kinds[m] == kind)
                assert history.last == frozenset(sets[latest[0]])
                assert history.revealed == {
                    r[4] for r in rows if r[2] == prompt_id and r[0] in voted}
        assert matchmaking._history(conn, "voter-unknown-1", "fixed", rows[0][2]) == (
            matchmaking._History(None, [], None, set()))
