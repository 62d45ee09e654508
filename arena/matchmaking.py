"""Which images a voter is shown: the one place that picks prompts and checkpoints.

The pool index is read from the database in one query and cached in memory (per database
URL) until the pool changes, so issuing a match costs a few small queries, not a pool scan.
Pair choice spreads games over checkpoints (fewest games first, random among equals) and
avoids showing a voter a pair (or four-way set) of checkpoints it has already judged for that
kind.
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from itertools import combinations

from sqlalchemy import func, select
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from arena.errors import UserError
from arena.models import Image, Match, MatchImage, Prompt
from metrics.match_kinds import MATCH_SIZES as SIZES

REFRESH_SECONDS = 1.0


@dataclass(frozen=True, slots=True)
class PoolImage:
    """One servable image as matchmaking sees it."""

    image_id: int
    checkpoint_id: int
    seed: int | None
    served_sha256: str


@dataclass
class PromptEntry:
    """A prompt and its images grouped by checkpoint."""

    prompt_id: int
    kind: str
    text: str
    character: str | None
    by_checkpoint: dict[int, list[PoolImage]] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Choice:
    """A prompt and the images to show, in an order still to be shuffled."""

    prompt_id: int
    prompt: str
    images: tuple[PoolImage, ...]


class PoolIndex:
    """In-memory view of the servable pool, rebuilt when the images table changes."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._stamp: tuple[int, int | None] | None = None
        self._checked = 0.0
        self.prompts: dict[int, PromptEntry] = {}
        self.text_index: dict[tuple[str, str], int] = {}

    def invalidate(self) -> None:
        """Force a rebuild on next use (after an import in this process)."""
        with self._lock:
            self._stamp = None

    def refresh(self, session: Session) -> None:
        """Rebuild if the pool changed since the last look (checked at most once a second)."""
        now = time.monotonic()
        if self._stamp is not None and now - self._checked < REFRESH_SECONDS:
            return
        stamp_row = session.execute(
            select(func.count(Image.id), func.max(Image.id)).where(Image.hidden.is_(False))
        ).one()
        stamp = (int(stamp_row[0]), stamp_row[1])
        with self._lock:
            self._checked = now
            if stamp == self._stamp:
                return
            rows = session.execute(
                select(
                    Image.id, Image.checkpoint_id, Image.seed, Image.served_sha256,
                    Prompt.id, Prompt.kind, Prompt.text, Prompt.character, Prompt.text_hash,
                )
                .join(Prompt, Image.prompt_id == Prompt.id)
                .where(Image.hidden.is_(False))
                .order_by(Image.id)
            ).all()
            prompts: dict[int, PromptEntry] = {}
            text_index: dict[tuple[str, str], int] = {}
            for image_id, ckpt, seed, served, pid, kind, text, character, text_hash in rows:
                entry = prompts.get(pid)
                if entry is None:
                    entry = prompts[pid] = PromptEntry(pid, kind, text, character)
                    text_index[(text_hash, kind)] = pid
                entry.by_checkpoint.setdefault(ckpt, []).append(
                    PoolImage(image_id, ckpt, seed, served)
                )
            self.prompts, self.text_index, self._stamp = prompts, text_index, stamp

    def candidates(self, kind: str) -> list[PromptEntry]:
        """Prompts that can serve a match of ``kind`` (enough checkpoints)."""
        need = SIZES[kind]
        own = [p for p in self.prompts.values() if p.kind == kind and len(p.by_checkpoint) >= need]
        if own or kind != "ffa":
            return own
        # A pool without four-way prompts still serves four-way matches from any prompt.
        return [p for p in self.prompts.values() if len(p.by_checkpoint) >= need]


class GameCounts:
    """Matches issued per (kind, checkpoint): read from the database once, then kept in memory.

    Only a spreading heuristic: several server processes each keep their own counts.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[str, Counter[int]] = {}

    def get(self, session: Session, kind: str) -> Counter[int]:
        with self._lock:
            if kind not in self._counts:
                rows = session.execute(
                    select(MatchImage.checkpoint_id, func.count())
                    .join(Match, Match.id == MatchImage.match_id)
                    .where(Match.kind == kind)
                    .group_by(MatchImage.checkpoint_id)
                ).all()
                self._counts[kind] = Counter({ckpt: n for ckpt, n in rows})
            return self._counts[kind]

    def add(self, kind: str, checkpoints: tuple[int, ...]) -> None:
        with self._lock:
            counts = self._counts.setdefault(kind, Counter())
            counts.update(checkpoints)


@dataclass
class _State:
    pool: PoolIndex = field(default_factory=PoolIndex)
    games: GameCounts = field(default_factory=GameCounts)


_STATES: dict[str, _State] = {}
_STATES_LOCK = threading.Lock()


def _state(session: Session) -> _State:
    key = str(session.get_bind().url)
    with _STATES_LOCK:
        return _STATES.setdefault(key, _State())


def invalidate(url: str) -> None:
    """Make the next match on the database at ``url`` re-read the pool (after an import)."""
    with _STATES_LOCK:
        state = _STATES.get(str(make_url(url)))
    if state is not None:
        state.pool.invalidate()


SEEN_WINDOW = 200  # how many of a voter's latest matches count as "already shown"


def _seen_sets(session: Session, voter_id: int, kind: str) -> set[frozenset[int]]:
    recent = (
        select(Match.id)
        .where(Match.voter_id == voter_id, Match.kind == kind)
        .order_by(Match.id.desc())
        .limit(SEEN_WINDOW)
        .subquery()
    )
    rows = session.execute(
        select(MatchImage.match_id, MatchImage.checkpoint_id).where(
            MatchImage.match_id.in_(select(recent.c.id))
        )
    ).all()
    groups: dict[int, set[int]] = defaultdict(set)
    for match_id, ckpt in rows:
        groups[match_id].add(ckpt)
    return {frozenset(g) for g in groups.values()}


def _pick_images(entry: PromptEntry, checkpoints: tuple[int, ...], rng: random.Random,
                 same_seed: bool) -> tuple[PoolImage, ...]:
    lists = [entry.by_checkpoint[c] for c in checkpoints]
    if same_seed:
        common = set.intersection(*({i.seed for i in imgs if i.seed is not None} for imgs in lists))
        if common:
            seed = rng.choice(sorted(common))
            return tuple(next(i for i in imgs if i.seed == seed) for imgs in lists)
    return tuple(rng.choice(imgs) for imgs in lists)


def choose(
    session: Session,
    kind: str,
    voter_id: int | None,
    rng: random.Random,
    prompt_id: int | None = None,
) -> Choice:
    """Pick a prompt and the checkpoints' images for a new match of ``kind``.

    Among all (prompt, checkpoint set) candidates, the set with the fewest games so far is
    preferred; sets this voter has already been shown for this kind are avoided while any
    other remains. Fixed-characteristic duels use the same seed on both sides where the pool
    has one.
    """
    if kind not in SIZES:
        raise UserError(f"mode {kind!r} is not a match kind; expected fixed, free or ffa")
    state = _state(session)
    state.pool.refresh(session)
    need = SIZES[kind]
    entries = (
        [state.pool.prompts[prompt_id]] if prompt_id is not None else state.pool.candidates(kind)
    )
    if not entries:
        raise UserError(
            f"the pool has no {kind} prompt with images from {need} or more checkpoints; "
            "import or generate images first"
        )
    games = state.games.get(session, kind)
    seen = _seen_sets(session, voter_id, kind) if voter_id is not None else set()
    best: list[tuple[PromptEntry, tuple[int, ...]]] = []
    best_key: tuple[int, int] | None = None
    for entry in entries:
        checkpoints = sorted(entry.by_checkpoint)
        # Four-way: the `need` least-played checkpoints first keeps the enumeration small.
        if len(checkpoints) > 8:
            checkpoints = sorted(checkpoints, key=lambda c: (games[c], rng.random()))[:8]
        for group in combinations(checkpoints, need):
            key = (int(frozenset(group) in seen), sum(games[c] for c in group))
            if best_key is None or key < best_key:
                best, best_key = [(entry, group)], key
            elif key == best_key:
                best.append((entry, group))
    entry, group = rng.choice(best)
    images = _pick_images(entry, group, rng, same_seed=kind == "fixed")
    state.games.add(kind, group)
    return Choice(entry.prompt_id, entry.text, images)


def find_prompt(session: Session, text_hash: str, kind: str) -> int | None:
    """The pool prompt with this text that can serve ``kind`` now, if any."""
    pool = _state(session).pool
    pool.refresh(session)
    prompt_id = pool.text_index.get((text_hash, kind))
    if prompt_id is None:
        return None
    entry = pool.prompts[prompt_id]
    return prompt_id if len(entry.by_checkpoint) >= SIZES[kind] else None
