"""A small arena voted on by honest voters and a vote rigger, and every board it shows, for the
tests of operator exclusions (a voter's votes, a prompt's votes): an arena where votes were
excluded must show the same boards as a fresh arena that never got those votes.

:func:`build` writes eight checkpoints, prompts (one per match kind, a second fixed prompt of
the same character and a second free prompt) with an image per checkpoint, and the voters,
in the same order in every arena so their row ids agree. :func:`events` draws who votes what
(by checkpoint index); :func:`play` shows one match and votes or skips it through the real
vote path; :func:`boards` reads every board and system a user can see.
"""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from arena.db import Database
from arena.leaderboard.rows import leaderboard
from arena.leaderboard.voters import robust_fit
from arena.matches import skip_match
from arena.models import (
    Checkpoint,
    Image,
    Match,
    MatchImage,
    Prompt,
    TrainingConfigRecord,
    Voter,
    utcnow,
)
from arena.settings import Settings
from arena.votes import record_vote

SETTINGS = Settings(votes_per_minute=0, skips_per_minute=0, bootstrap_rounds=20)
CHECKPOINTS = 8
BOARDS = ("overall", "fixed", "fixed/alice", "free", "ffa")
HONEST = tuple(f"honest-{i}" for i in range(5))
RIGGER = "rigger-0001"
# Prompts by key: one per match kind (the key is the kind), and a second of two kinds.
PROMPTS = (("fixed", "fixed", "alice"), ("free", "free", None), ("ffa", "ffa", None),
           ("fixed-2", "fixed", "alice"), ("free-2", "free", None))


@dataclass
class World:
    db: Database
    checkpoints: list[int]
    prompts: dict[str, int]
    voters: dict[str, int] = field(default_factory=dict)


def build(db: Database) -> World:
    """Eight checkpoints, the prompts with an image per checkpoint, and the voters."""
    with db.session() as s:
        config = TrainingConfigRecord(name="cfg", content_hash="c" * 64, data={})
        s.add(config)
        s.flush()
        checkpoints = []
        for i in range(CHECKPOINTS):
            ckpt = Checkpoint(name=f"ckpt-{i}", path=f"/m/{i}", format="safetensors",
                              sha256=f"{i:064d}", short_hash=f"{i:010d}", size_bytes=1,
                              config_id=config.id)
            s.add(ckpt)
            s.flush()
            checkpoints.append(ckpt.id)
        prompts = {}
        for key, kind, character in PROMPTS:
            prompt = Prompt(text=f"{key} prompt", text_hash=uuid.uuid4().hex, kind=kind,
                            character=character)
            s.add(prompt)
            s.flush()
            prompts[key] = prompt.id
            for cid in checkpoints:
                s.add(Image(sha256=uuid.uuid4().hex * 2, served_sha256=uuid.uuid4().hex * 2,
                            checkpoint_id=cid, prompt_id=prompt.id, width=8, height=8))
        world = World(db, checkpoints, prompts)
        for name in (*HONEST, RIGGER):
            voter = Voter(external_id=name)
            s.add(voter)
            s.flush()
            world.voters[name] = voter.id
        return world


def play(world: World, voter: str, kind: str, shown: list[int], outcome: Any,
         prompt: str | None = None) -> None:
    """Show a match (checkpoints by index) of ``prompt`` (a key of ``world.prompts``; default
    the kind's first prompt) to ``voter``; vote ``outcome`` or skip it."""
    token = uuid.uuid4().hex
    prompt_id = world.prompts[prompt or kind]
    with world.db.session() as s:
        match = Match(token=token, kind=kind, prompt_id=prompt_id,
                      voter_id=world.voters[voter], expires_at=utcnow() + timedelta(hours=1))
        s.add(match)
        s.flush()
        for position, index in enumerate(shown):
            cid = world.checkpoints[index]
            image = s.query(Image).filter_by(checkpoint_id=cid, prompt_id=prompt_id).one()
            s.add(MatchImage(match_id=match.id, position=position, checkpoint_id=cid,
                             image_id=image.id))
    if outcome == "skip":
        skip_match(world.db, SETTINGS, token, voter)
    elif isinstance(outcome, list):
        record_vote(world.db, SETTINGS, token, voter, ranking=outcome)
    else:
        record_vote(world.db, SETTINGS, token, voter, winner=outcome)


def events(seed: int, count: int, target: int = 5) -> list[tuple[str, str, list[int], Any]]:
    """Honest voters voting by index (lower is better, with noise) and skipping now and then;
    a rigger who votes for checkpoint ``target`` when it is shown and skips the rest."""
    rng = random.Random(seed)
    out: list[tuple[str, str, list[int], Any]] = []
    for _ in range(count):
        kind = rng.choice(("fixed", "free", "ffa"))
        shown = rng.sample(range(CHECKPOINTS), 4 if kind == "ffa" else 2)
        voter = RIGGER if rng.random() < 0.3 else rng.choice(HONEST)
        if voter == RIGGER:
            outcome: Any = shown.index(target) if target in shown else "skip"
        elif rng.random() < 0.05:
            outcome = "skip"
        elif kind == "ffa":
            outcome = sorted(range(4), key=lambda p: shown[p] + rng.gauss(0, 2))
        else:
            noisy = [shown[p] + rng.gauss(0, 2) for p in range(2)]
            outcome = "tie" if kind == "fixed" and rng.random() < 0.1 else noisy.index(min(noisy))
        out.append((voter, kind, shown, outcome))
    return out


def boards(db: Database) -> dict[tuple[str, str], list[tuple[Any, ...]]]:
    """Every board and system, by checkpoint name: the numbers that depend on the votes."""
    shown: dict[tuple[str, str], list[tuple[Any, ...]]] = {}
    with db.session(readonly=True) as s:
        for board in BOARDS:
            for system in ("elo", "trueskill"):
                shown[(board, system)] = sorted(
                    (r["checkpoint"], round(r["rating"], 9), r["games"], r["wins"], r["draws"],
                     r["losses"]) for r in leaderboard(s, board, system, SETTINGS))
            shown[(board, "bt")] = sorted(
                (r["checkpoint"], round(r["rating"], 6), round(r["lower"], 6),
                 round(r["upper"], 6), r["games"]) for r in leaderboard(s, board, "bt", SETTINGS))
            shown[(board, "robust")] = sorted(
                (r.checkpoint_id, round(r.rating, 6), round(r.lower, 6), round(r.upper, 6))
                for r in robust_fit(s, board, SETTINGS).ratings)
    return shown
