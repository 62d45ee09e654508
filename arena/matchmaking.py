"""Which images a voter is shown: the one place that picks prompts, checkpoints and images.

A request samples a prompt that can serve the match kind, lets the strategy in force
(``ARENA_MATCHMAKING_STRATEGY``: uniform, balanced or active; see :mod:`metrics.pairing`, the
same function the simulator drives) pick the checkpoints among those with images for it, and
picks one image per checkpoint, the same seed on both sides of a ``fixed`` duel where the pool
has one.

Shared state: what the strategy knows of each checkpoint (matches issued per kind, TrueSkill
mu and sigma on the kind's board) is read from the database (``matches``/``match_images`` and
``rating_snapshots``), so every server process sees the same numbers; it is cached per process
for ``STANDINGS_SECONDS``, and matches this process issues in the meantime are added locally
until the next read. Issued counts are read incrementally (only matches newer than those
already counted). A match id is counted as settled only once a read at least
``SETTLE_SECONDS`` old has seen a newer id: on PostgreSQL ids are assigned before commit, so a
match with a smaller id can still become visible after a larger one; only a write transaction
open longer than that window could be missed. The pool
index (prompts and their images by checkpoint) is read in one query and rebuilt when the
images table changes.

Per voter, one query reads the sets of checkpoints of its latest matches (avoided while the
prompt offers other sets; the previous one is never repeated when any other exists) and the
images already revealed to it on the chosen prompt (images of matches it voted on), which are
not shown again while the pool has other images of that prompt and checkpoint.
"""

from __future__ import annotations

import random
import threading
import time
from collections import defaultdict, deque
from dataclasses import dataclass, field, replace
from datetime import timedelta

from sqlalchemy import Connection, String, bindparam, case, cast, func, select
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from arena.decisions import hidden_prompt_ids
from arena.errors import UserError
from arena.models import (
    Image,
    Match,
    MatchImage,
    OperatorDecision,
    Prompt,
    RatingSnapshot,
    Vote,
    Voter,
    utcnow,
)
from arena.settings import get_settings
from metrics.match_kinds import KINDS, MATCH_KINDS
from metrics.match_kinds import MATCH_SIZES as SIZES
from metrics.pairing import (
    PairingParams,
    Standing,
    Strategy,
    check_strategy,
    pick_checkpoints,
)

__all__ = [
    "SIZES",
    "Choice",
    "PoolImage",
    "choose",
    "clear_cache",
    "find_prompt",
    "invalidate",
    "standings",
]

# What the reads here run on: a Core connection on the voting path, a session elsewhere.
Reader = Connection | Session

POOL_CHECK_SECONDS = 1.0
STANDINGS_SECONDS = 1.5
SETTLE_SECONDS = 60.0  # how long a match id may take from assignment to commit and still count
PROMPT_TRIES = 4  # prompts drawn at most when one offers only the voter's previous set
SEEN_WINDOW = 50  # how many of a voter's latest matches count as "already shown"


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
    checkpoints: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class Choice:
    """A prompt and the images to show, in an order still to be shuffled, and the voter's
    row id (None for a voter not stored yet)."""

    prompt_id: int
    prompt: str
    images: tuple[PoolImage, ...]
    voter_id: int | None = None


_POOL_STAMP = select(
    select(func.count()).select_from(Image).where(Image.hidden.is_(True)).scalar_subquery(),
    select(func.max(Image.id)).scalar_subquery(),
    # an operator hiding or unhiding a prompt changes what may be served
    select(func.max(OperatorDecision.id)).where(OperatorDecision.subject == "prompt")
    .scalar_subquery(),
)


class PoolIndex:
    """In-memory view of the servable pool, rebuilt when the images table changes."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        # (hidden images, newest image id, newest prompt decision id)
        self._stamp: tuple[int, int | None, int | None] | None = None
        self.checked_at = 0.0
        self.prompts: dict[int, PromptEntry] = {}
        self.text_index: dict[tuple[str, str], int] = {}
        self.by_kind: dict[str, list[PromptEntry]] = {}

    def invalidate(self) -> None:
        """Force a rebuild on next use (after an import in this process)."""
        with self._lock:
            self._stamp = None

    def refresh(self, session: Reader) -> None:
        """Rebuild if the pool changed since the last look (checked at most once a second)."""
        now = time.monotonic()
        if self._stamp is not None and now - self.checked_at < POOL_CHECK_SECONDS:
            return
        # Both cheap on a large pool: max(id) from the primary key, and the (few) hidden
        # images from their index. A new image raises max(id); a revealed or hidden one
        # changes the count (a reveal and a hide in the same second would cancel out).
        stamp_row = session.execute(_POOL_STAMP).one()
        stamp = (int(stamp_row[0]), stamp_row[1], stamp_row[2])
        with self._lock:
            self.checked_at = now
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
            hidden = hidden_prompt_ids(session)  # an operator's decision: no more matches
            for image_id, ckpt, seed, served, pid, kind, text, character, text_hash in rows:
                if pid in hidden:
                    continue
                entry = prompts.get(pid)
                if entry is None:
                    entry = prompts[pid] = PromptEntry(pid, kind, text, character)
                    text_index[(text_hash, kind)] = pid
                entry.by_checkpoint.setdefault(ckpt, []).append(
                    PoolImage(image_id, ckpt, seed, served)
                )
            for entry in prompts.values():
                entry.checkpoints = tuple(sorted(entry.by_checkpoint))
            by_kind: dict[str, list[PromptEntry]] = {}
            for kind, need in SIZES.items():
                own = [p for p in prompts.values() if p.kind == kind and len(p.checkpoints) >= need]
                if not own and KINDS[kind].borrows_prompts:
                    # A pool without four-way prompts still serves four-way matches.
                    own = [p for p in prompts.values() if len(p.checkpoints) >= need]
                by_kind[kind] = own
            self.prompts, self.text_index, self.by_kind = prompts, text_index, by_kind
            self._stamp = stamp


class Standings:
    """Per kind and checkpoint: matches issued and TrueSkill mu/sigma, read from the database.

    ``defaults`` is what a checkpoint without a snapshot counts as (the TrueSkill prior).
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self._reading = threading.Lock()
        self._read_at: float | None = None
        self._settled_to = 0  # matches with id <= this are in _settled
        self._reads: deque[tuple[float, int]] = deque()  # (when, newest match id seen)
        self._settled: dict[str, dict[int, int]] = defaultdict(dict)
        self.by_kind: dict[str, dict[int, Standing]] = {}

    def _fresh(self, now: float) -> bool:
        return self._read_at is not None and now - self._read_at < STANDINGS_SECONDS

    def refresh(self, session: Reader, default: Standing, force: bool = False) -> None:
        """Re-read issued counts and ratings if the cached ones are older than the window.

        One thread reads at a time (the settled counts are accumulated); while one reads,
        the others go on with the cached numbers, or wait for them if there are none yet."""
        if not force and self._fresh(time.monotonic()):
            return
        if not self._reading.acquire(blocking=force or self._read_at is None):
            return
        try:
            if force or not self._fresh(time.monotonic()):
                self._read(session, default)
        finally:
            self._reading.release()

    def _read(self, session: Reader, default: Standing) -> None:
        now = time.monotonic()
        settle_to = self._settled_to
        if not self._reads:  # a new process: what was issued a window ago has committed
            settle_to = max(settle_to, _issued_a_window_ago(session))
        while self._reads and now - self._reads[0][0] >= SETTLE_SECONDS:
            settle_to = max(settle_to, self._reads.popleft()[1])
        settled_flag = case((Match.id <= settle_to, 1), else_=0).label("settled")
        counted = session.execute(
            select(Match.kind, MatchImage.checkpoint_id, settled_flag,
                   func.count(), func.max(Match.id))
            .join(MatchImage, MatchImage.match_id == Match.id)
            .where(Match.id > self._settled_to)
            .group_by(Match.kind, MatchImage.checkpoint_id, settled_flag)
        ).all()
        ratings = session.execute(
            select(RatingSnapshot.board, RatingSnapshot.checkpoint_id,
                   RatingSnapshot.mu, RatingSnapshot.sigma)
            .where(RatingSnapshot.system == "trueskill",
                   RatingSnapshot.board.in_(MATCH_KINDS))
        ).all()
        with self.lock:
            tail: dict[str, dict[int, int]] = defaultdict(dict)
            newest = settle_to
            for kind, ckpt, settled, count, top in counted:
                target = self._settled[kind] if settled else tail[kind]
                target[ckpt] = target.get(ckpt, 0) + int(count)
                newest = max(newest, int(top))
            self._settled_to = settle_to
            self._reads.append((now, newest))
            by_kind: dict[str, dict[int, Standing]] = {}
            for kind in MATCH_KINDS:
                issued = dict(self._settled[kind])
                for ckpt, count in tail[kind].items():
                    issued[ckpt] = issued.get(ckpt, 0) + count
                by_kind[kind] = {
                    c: Standing(n, default.mu, default.sigma) for c, n in issued.items()
                }
            for board, ckpt, mu, sigma in ratings:
                table = by_kind[board]
                old = table.get(ckpt, default)
                table[ckpt] = Standing(old.issued, float(mu), float(sigma))
            self.by_kind = by_kind
            self._read_at = now

    def add_local(self, kind: str, checkpoints: tuple[int, ...], default: Standing) -> None:
        """Count a match this process just issued until the next read includes it.

        Call with ``self.lock`` held."""
        table = self.by_kind.setdefault(kind, {})
        for c in checkpoints:
            old = table.get(c, default)
            table[c] = replace(old, issued=old.issued + 1)


def _issued_a_window_ago(session: Reader) -> int:
    """The newest match id issued at least ``SETTLE_SECONDS`` ago (0 if none).

    Ids are assigned when a match is inserted, so every match up to it was inserted over a
    window ago and has committed by the assumption the window rests on. Without this a new
    process would count the whole table on every read for its first window (seconds each
    on a million matches). A backward scan of the primary key that stops at the first old
    match."""
    cutoff = utcnow() - timedelta(seconds=SETTLE_SECONDS)
    newest = session.execute(
        select(Match.id).where(Match.issued_at <= cutoff).order_by(Match.id.desc()).limit(1)
    ).scalar()
    return int(newest or 0)


@dataclass
class _State:
    pool: PoolIndex = field(default_factory=PoolIndex)
    standings: Standings = field(default_factory=Standings)


_STATES: dict[str, _State] = {}
_STATES_LOCK = threading.Lock()


def clear_cache() -> None:
    """Forget every database's pool index and standings, as a restarted process would."""
    with _STATES_LOCK:
        _STATES.clear()


def _state(session: Reader) -> _State:
    bind = session.engine if isinstance(session, Connection) else session.get_bind()
    key = str(bind.url)
    with _STATES_LOCK:
        return _STATES.setdefault(key, _State())


def invalidate(url: str) -> None:
    """Make the next match on the database at ``url`` re-read the pool (after an import)."""
    with _STATES_LOCK:
        state = _STATES.get(str(make_url(url)))
    if state is not None:
        state.pool.invalidate()


def pool_index(session: Reader) -> PoolIndex:
    """This process's index of the pool behind ``session``'s database."""
    return _state(session).pool


def standings(session: Reader, kind: str, reread: bool = False) -> dict[int, Standing]:
    """What matchmaking knows of each checkpoint for ``kind`` in this process (matches issued,
    TrueSkill mu and sigma); ``reread`` reads the database now instead of within the cache
    window."""
    settings = get_settings()
    state = _state(session)
    state.standings.refresh(
        session, Standing(0, settings.trueskill_mu, settings.trueskill_sigma), force=reread
    )
    with state.standings.lock:
        return dict(state.standings.by_kind.get(kind, {}))


@dataclass(frozen=True)
class _History:
    voter_id: int | None
    recent: list[frozenset[int]]
    last: frozenset[int] | None
    revealed: set[int]


def _history_statement():  # type: ignore[no-untyped-def]
    """Built once: constructing a statement costs more than running it on an indexed table.

    One row whatever the voter's history: the database joins each of the latest matches'
    checkpoints into a string, and those of the requested kind into one more, and the images
    the voter has voted on for the prompt, each once. Fetching and unpacking a row costs more
    in Python than the database spends on the grouping, and a row per match grew with the
    voter's history."""
    voter = select(Voter.id).where(Voter.external_id == bindparam("voter")).scalar_subquery()
    prompt, kind = bindparam("prompt"), bindparam("kind")
    latest = (
        select(Match.id, Match.kind).where(Match.voter_id == voter)
        .order_by(Match.id.desc()).limit(SEEN_WINDOW).subquery("latest")
    )
    sets = (
        select(latest.c.id, latest.c.kind,
               func.aggregate_strings(cast(MatchImage.checkpoint_id, String), ",")
               .label("members"))
        .join(MatchImage, MatchImage.match_id == latest.c.id)
        .group_by(latest.c.id, latest.c.kind)
        .cte("sets")
    )
    seen = (
        select(MatchImage.image_id).distinct()
        .join(Match, Match.id == MatchImage.match_id)
        .join(Vote, Vote.match_id == Match.id)
        .where(Match.voter_id == voter, Match.prompt_id == prompt)
        .subquery("seen")
    )
    return select(
        voter,
        select(func.aggregate_strings(sets.c.members, ";"))
        .where(sets.c.kind == kind).scalar_subquery(),
        select(sets.c.members).order_by(sets.c.id.desc()).limit(1).scalar_subquery(),
        select(func.aggregate_strings(cast(seen.c.image_id, String), ","))
        .scalar_subquery(),
    )


_HISTORY = _history_statement()


def _ids(joined: str | None) -> list[int]:
    return [int(i) for i in joined.split(",")] if joined else []


def _history(session: Reader, voter: str, kind: str, prompt_id: int) -> _History:
    """One round trip, one row: the row id of the voter with external id ``voter`` (None if
    not stored yet), the checkpoint sets of its latest matches of ``kind`` and of its latest
    match of any kind, and the images of ``prompt_id`` it has voted on."""
    voter_id, recent, last, revealed = session.execute(
        _HISTORY, {"voter": voter, "prompt": prompt_id, "kind": kind}
    ).one()
    return _History(
        voter_id,
        [frozenset(_ids(group)) for group in recent.split(";")] if recent else [],
        frozenset(_ids(last)) if last else None,
        set(_ids(revealed)),
    )


def _pick_images(entry: PromptEntry, checkpoints: tuple[int, ...], rng: random.Random,
                 same_seed: bool, revealed: set[int]) -> tuple[PoolImage, ...]:
    lists = []
    for c in checkpoints:
        images = entry.by_checkpoint[c]
        fresh = [i for i in images if i.image_id not in revealed]
        lists.append(fresh or images)
    if same_seed:
        common = set.intersection(*({i.seed for i in imgs if i.seed is not None} for imgs in lists))
        if common:
            seed = rng.choice(sorted(common))
            return tuple(next(i for i in imgs if i.seed == seed) for imgs in lists)
    return tuple(rng.choice(imgs) for imgs in lists)


def choose(
    session: Reader,
    kind: str,
    voter: str | None,
    rng: random.Random,
    prompt_id: int | None = None,
    strategy: str | None = None,
) -> Choice:
    """Pick a prompt and the checkpoints' images for a new match of ``kind`` for the voter
    with external id ``voter`` (None: no history to respect).

    ``strategy`` defaults to the ``matchmaking_strategy`` setting. The prompt is ``prompt_id``
    or one drawn at random among those that can serve ``kind``.
    """
    if kind not in SIZES:
        raise UserError(f"mode {kind!r} is not a match kind; expected fixed, free or ffa")
    settings = get_settings()
    chosen: Strategy = check_strategy(strategy or settings.matchmaking_strategy)
    state = _state(session)
    state.pool.refresh(session)
    need = SIZES[kind]
    entries = state.pool.by_kind.get(kind, [])
    if prompt_id is None and not entries:
        raise UserError(
            f"the pool has no {kind} prompt with images from {need} or more checkpoints; "
            "import or generate images first"
        )
    default = Standing(0, settings.trueskill_mu, settings.trueskill_sigma)
    params = PairingParams(beta=settings.trueskill_beta, default=default)
    for _ in range(PROMPT_TRIES):
        entry = state.pool.prompts[prompt_id] if prompt_id is not None else rng.choice(entries)
        if voter is None:
            history = _History(None, [], None, set())
            break
        history = _history(session, voter, kind, entry.prompt_id)
        # A prompt that offers only the voter's previous set: draw another one if any.
        only_last = len(entry.checkpoints) == need and frozenset(entry.checkpoints) == history.last
        if prompt_id is not None or not only_last or len(entries) == 1:
            break
    state.standings.refresh(session, default)
    with state.standings.lock:
        group = pick_checkpoints(
            chosen, entry.checkpoints, need, state.standings.by_kind.get(kind, {}), rng,
            avoid=history.recent, last=history.last, params=params,
        )
        state.standings.add_local(kind, group, default)
    images = _pick_images(entry, group, rng, same_seed=KINDS[kind].same_seed,
                          revealed=history.revealed)
    return Choice(entry.prompt_id, entry.text, images, history.voter_id)


def find_prompt(session: Reader, text_hash: str, kind: str) -> int | None:
    """The pool prompt with this text that can serve ``kind`` now, if any."""
    pool = _state(session).pool
    pool.refresh(session)
    prompt_id = pool.text_index.get((text_hash, kind))
    if prompt_id is None:
        return None
    entry = pool.prompts[prompt_id]
    return prompt_id if len(entry.checkpoints) >= SIZES[kind] else None
