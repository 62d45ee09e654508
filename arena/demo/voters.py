"""Simulated voters for the demo: real matches and real votes, preferences from a hidden model.

Each simulated vote goes through the arena's own path: :func:`arena.matches.issue_match`
chooses and stores a match, :func:`arena.votes.record_vote` stores the vote and updates the
ratings, so the demo's leaderboard is computed exactly as a real one.

The preference model is Plackett-Luce (Luce 1959; Plackett 1975) over hidden log-strengths:
the best image is picked with probability proportional to ``exp(strength)``, a full ranking
is drawn by picking the best of the rest again and again; for two images this is
Bradley-Terry. A duel is called a draw or "both bad" with small fixed probabilities. The
strengths follow the training configs' order (:data:`training.presets.PRESET_NAMES`, the
four published Illustrious runs, oldest first), so the leaderboard should recover it.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from sqlalchemy import select

from arena.db import Database
from arena.matches import issue_match
from arena.models import Checkpoint, Match, TrainingConfigRecord
from arena.settings import Settings
from arena.votes import record_vote
from metrics.match_kinds import KINDS
from metrics.outcomes import BOTH_BAD, TIE

__all__ = ["MODE_MIX", "VoterModel", "preset_strengths", "simulate_votes"]

# The kinds of match simulated, in the proportions the arena is expected to see.
MODE_MIX = (("fixed", 0.6), ("free", 0.2), ("ffa", 0.2))
VOTERS = 20


def preset_strengths(step: float = 0.6) -> dict[str, float]:
    """Hidden log-strength per published config name: 0, step, 2 step, ... oldest first."""
    from training.presets import PRESET_NAMES

    return {name: i * step for i, name in enumerate(PRESET_NAMES)}


@dataclass(frozen=True)
class VoterModel:
    """Hidden strengths by training-config name (unknown configs get 0), and how often a
    duel is called a draw, "both bad", or a four-way match fully ranked."""

    strengths: Mapping[str, float]
    tie: float = 0.08
    both_bad: float = 0.04
    full_ranking: float = 0.25

    def best(self, strengths: Sequence[float], rng: random.Random) -> int:
        """A position drawn with probability proportional to ``exp(strength)``."""
        weights = [math.exp(s) for s in strengths]
        return rng.choices(range(len(weights)), weights=weights)[0]

    def ranking(self, strengths: Sequence[float], rng: random.Random) -> list[int]:
        """A full ranking (positions best first) drawn by Plackett-Luce."""
        left = list(range(len(strengths)))
        order = []
        while left:
            pick = left[self.best([strengths[i] for i in left], rng)]
            order.append(pick)
            left.remove(pick)
        return order

    def vote(self, mode: str, strengths: Sequence[float],
             rng: random.Random) -> dict[str, int | str | list[int]]:
        """The keyword arguments of :func:`arena.votes.record_vote` for one match."""
        kind = KINDS[mode]
        if kind.rankings:
            if rng.random() < self.full_ranking:
                return {"ranking": self.ranking(strengths, rng)}
            return {"winner": self.best(strengths, rng)}
        draw = rng.random()
        if kind.ties and draw < self.tie:
            return {"winner": TIE}
        if kind.both_bad and draw > 1.0 - self.both_bad:
            return {"winner": BOTH_BAD}
        return {"winner": self.best(strengths, rng)}


def _configs_by_position(db: Database, token: str) -> list[str]:
    with db.session(readonly=True) as session:
        match = session.scalar(select(Match).where(Match.token == token))
        if match is None:
            raise LookupError(f"match {token!r} vanished")
        ids = [image.checkpoint_id for image in match.images]
        names = dict(session.execute(
            select(Checkpoint.id, TrainingConfigRecord.name)
            .join(TrainingConfigRecord, TrainingConfigRecord.id == Checkpoint.config_id)
            .where(Checkpoint.id.in_(ids))
        ).all())
    return [names[i] for i in ids]


def simulate_votes(
    db: Database,
    settings: Settings,
    votes: int,
    model: VoterModel | None = None,
    seed: int = 0,
    on_vote: Callable[[], None] | None = None,
) -> int:
    """Cast ``votes`` simulated votes through the real match and vote path; returns how many
    were stored. A rate limit is respected by spreading votes over several voters."""
    model = model or VoterModel(preset_strengths())
    rng = random.Random(seed)
    # Enough voters that none of them passes the per-minute limit even if all votes land
    # within one minute.
    limit = settings.votes_per_minute
    count = max(VOTERS, votes // (limit - 1) + 1) if limit > 1 else max(VOTERS, votes)
    voters = [f"demo-voter-{seed}-{i:04d}" for i in range(count)]
    modes, weights = zip(*MODE_MIX, strict=True)
    cast = 0
    for n in range(votes):
        voter = voters[n % len(voters)]
        mode = rng.choices(modes, weights=weights)[0]
        match = issue_match(db, settings, voter, mode, rng=rng)
        configs = _configs_by_position(db, match.token)
        choice = model.vote(mode, [model.strengths.get(c, 0.0) for c in configs], rng)
        record_vote(db, settings, match.token, voter, **choice)  # type: ignore[arg-type]
        cast += 1
        if on_vote is not None:
            on_vote()
    return cast
