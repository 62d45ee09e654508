"""Issuing matches: voters, unguessable tokens, shuffled positions, per-match image names,
expiry, skips."""

from __future__ import annotations

import random
import re
import secrets
import unicodedata
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import Connection, bindparam, func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from arena import matchmaking
from arena.db import Database
from arena.decisions import hidden_prompt_ids, newest_exclusion
from arena.errors import Conflict, Forbidden, Gone, NotFound, UserError
from arena.identity import address_key
from arena.image_store import served_path
from arena.limits import charge
from arena.models import (
    Checkpoint,
    GenerationRequest,
    Image,
    Match,
    MatchImage,
    Prompt,
    TrainingConfigRecord,
    Vote,
    Voter,
    new_served_name,
    utcnow,
)
from arena.prompt_policy import check_typed_prompt
from arena.settings import Settings
from metrics.file_hash import sha256_bytes
from metrics.match_kinds import KINDS, TYPED_PROMPT_KIND, check_kind

VOTER_ID = re.compile(r"^[A-Za-z0-9._:\-]{8,100}$")
SERVED_NAME = re.compile(r"^[0-9a-f]{32}$")
MAX_PROMPT_CHARS = 2000


@dataclass(frozen=True)
class ShownImage:
    """What a voter learns about one image before voting: its position and its name for this
    match only (random, so it says nothing about the image and never recurs)."""

    position: int
    name: str


@dataclass(frozen=True)
class IssuedMatch:
    """A match as sent to the voter: nothing in it names a checkpoint."""

    token: str
    mode: str
    prompt: str
    images: tuple[ShownImage, ...]
    notice: str | None = None


def check_voter_id(external_id: str) -> str:
    """Validate a voter id from a cookie or the X-Voter-Id header."""
    if not VOTER_ID.match(external_id or ""):
        raise UserError(
            "voter id must be 8-100 characters of letters, digits, '.', '_', ':' or '-'"
        )
    return external_id


_VOTER_ID = select(Voter.id).where(Voter.external_id == bindparam("external_id"))
_INSERT_VOTER = insert(Voter)
_INSERT_MATCH = insert(Match)
_INSERT_MATCH_IMAGES = insert(MatchImage)


def get_or_create_voter(
    conn: Connection, external_id: str, settings: Settings, address: str | None = None
) -> int:
    """The id of the voter row for an external id, created on first sight (safe under races);
    a new voter counts against the address's limit on new voter ids."""
    check_voter_id(external_id)
    voter_id = conn.execute(_VOTER_ID, {"external_id": external_id}).scalar()
    if voter_id is not None:
        return voter_id
    charge(conn, settings, "voter", None, address)
    try:
        with conn.begin_nested():
            return conn.execute(
                _INSERT_VOTER, {"external_id": external_id, "created_at": utcnow()}
            ).inserted_primary_key[0]
    except IntegrityError:
        voter_id = conn.execute(_VOTER_ID, {"external_id": external_id}).scalar()
        if voter_id is None:  # the conflicting row was rolled back meanwhile
            raise Conflict("this voter id is being registered by another request; retry") from None
    return voter_id


def register_voter(db: Database, external_id: str, settings: Settings,
                   address: str | None = None) -> int:
    """:func:`get_or_create_voter` in a transaction of its own."""
    with db.connection() as conn:
        return get_or_create_voter(conn, external_id, settings, address)


def prompt_hash(text: str) -> str:
    """The identity of a prompt's text: sha256 of the whitespace-normalised text."""
    return sha256_bytes(" ".join(text.split()).encode())


def _request_generation(session: Session, settings: Settings, typed: str, text: str,
                        voter_id: int, address: str | None) -> str:
    """Record a typed prompt the pool lacks (``typed`` as given, ``text`` in safe mode) and
    queue its rendering; return the voter's notice. A prompt an operator hid is not queued.

    One ``generate`` job per active checkpoint (deduplicated per checkpoint and prompt), within
    the per-voter and total bounds (:func:`arena.jobs.plan.queue_free_prompt`).
    """
    from arena.jobs.plan import queue_free_prompt

    hidden = hidden_prompt_ids(session)
    if hidden and session.scalar(select(Prompt.id).where(
            Prompt.text_hash.in_({prompt_hash(t) for t in (typed, text)}),
            Prompt.kind == TYPED_PROMPT_KIND,
            Prompt.id.in_(list(hidden))).limit(1)) is not None:
        return ("Your prompt was withdrawn by the arena's operators and is not rendered. "
                "Here is a prompt from the pool.")
    digest = prompt_hash(text)
    prompt = session.scalar(select(Prompt).where(Prompt.text_hash == digest,
                                                 Prompt.kind == TYPED_PROMPT_KIND))
    if prompt is None:
        prompt = Prompt(text=" ".join(text.split()), text_hash=digest, kind=TYPED_PROMPT_KIND,
                        source="voter")
        session.add(prompt)
        session.flush()
    submitter = address_key(settings, address) if address is not None else None
    queued = queue_free_prompt(session, settings, prompt.id, prompt.text, voter_id, submitter)
    session.add(GenerationRequest(
        prompt_id=prompt.id, voter_id=voter_id, job_id=queued.jobs[0] if queued.jobs else None
    ))
    if queued.refused is not None:
        return (
            f"Your prompt is not in the pool yet, and it could not join the rendering queue: "
            f"{queued.refused}. Meanwhile, here is a prompt from the pool."
        )
    return (
        "Your prompt is not in the pool yet: it was queued for generation. "
        "Meanwhile, here is a prompt from the pool."
    )


def issue_match(
    db: Database,
    settings: Settings,
    voter_external_id: str,
    mode: str,
    prompt: str | None = None,
    rng: random.Random | None = None,
    address: str | None = None,
) -> IssuedMatch:
    """Choose images for a new match of ``mode``, store it with shuffled positions, return it.

    A free-prompt duel may carry a voter's prompt: served when the pool holds it from two or
    more checkpoints, otherwise stored as a generation request while a pool prompt is served.
    The match (and a typed prompt, and a new voter) count against the voter's and the
    ``address``'s limits.
    """
    rng = rng or random.SystemRandom()
    check_kind(mode, "mode")
    typed = (prompt or "").strip()
    if typed and not KINDS[mode].typed_prompts:
        raise UserError(f"a prompt can only be given for mode {TYPED_PROMPT_KIND!r}")
    if len(typed) > MAX_PROMPT_CHARS:
        raise UserError(f"prompt is {len(typed)} characters; at most {MAX_PROMPT_CHARS} allowed")
    if any(unicodedata.category(c) in ("Cc", "Cs") and c not in "\t\n\r" for c in typed):
        raise UserError("prompt contains control characters; type plain text")
    check_voter_id(voter_external_id)
    if typed:  # pools are rendered in the report's safe mode: only the `general` rating
        typed_safe = check_typed_prompt(typed, settings)
    notice = None
    token = secrets.token_urlsafe(24)
    # One transaction reads what the choice needs and writes the match: on SQLite the write
    # lock is then held while choosing (well under a millisecond), which costs less than a
    # second transaction.
    with db.connection() as conn:
        prompt_id = None
        if typed:
            for text in dict.fromkeys((typed, typed_safe)):
                prompt_id = prompt_id or matchmaking.find_prompt(conn, prompt_hash(text),
                                                               TYPED_PROMPT_KIND)
        # The choice reads the voter's row id with its history: one round trip, not two.
        choice = matchmaking.choose(
            conn, mode, voter_external_id, rng, prompt_id, strategy=settings.matchmaking_strategy
        )
        voter_id = choice.voter_id
        order = list(choice.images)
        rng.shuffle(order)
        shown = tuple(ShownImage(i, new_served_name()) for i in range(len(order)))
        if voter_id is None:
            voter_id = get_or_create_voter(conn, voter_external_id, settings, address)
        charge(conn, settings, "match", voter_external_id, address)
        if typed:
            charge(conn, settings, "prompt", voter_external_id, address)
        if typed and prompt_id is None:
            with Session(bind=conn) as session:  # the rare path: ORM rows and a queued job
                notice = _request_generation(session, settings, typed, typed_safe, voter_id,
                                             address)
                session.flush()
        now = utcnow()
        match_id = conn.execute(_INSERT_MATCH, {
            "token": token, "kind": mode, "prompt_id": choice.prompt_id, "voter_id": voter_id,
            "issued_at": now, "expires_at": now + timedelta(seconds=settings.match_ttl_seconds),
        }).inserted_primary_key[0]
        conn.execute(_INSERT_MATCH_IMAGES, [
            {"match_id": match_id, "position": image.position, "image_id": img.image_id,
             "checkpoint_id": img.checkpoint_id, "served_name": image.name}
            for image, img in zip(shown, order, strict=True)
        ])
    return IssuedMatch(token=token, mode=mode, prompt=choice.prompt, images=shown, notice=notice)


@dataclass(frozen=True)
class OpenMatch:
    """A match a voter may still vote on or skip, with what the vote and its reveal need."""

    id: int
    kind: str
    voter_id: int
    prompt_id: int
    character: str | None
    checkpoints: tuple[int, ...]  # by shown position
    labels: tuple[tuple[str, str], ...]  # (checkpoint, training config) by shown position
    votes_cast: int  # the voter's votes so far
    excluded: bool  # an operator excluded the voter's or the prompt's votes (arena.decisions)


def _open_match_statement():  # type: ignore[no-untyped-def]
    """Built once (building a statement costs more than running it): one row per image."""
    counted = Vote.__table__.alias("counted")
    votes_cast = (
        select(func.count(counted.c.id)).where(counted.c.voter_id == Match.voter_id)
        .correlate(Match).scalar_subquery()
    )
    return (
        select(Match.id, Match.kind, Match.voter_id, Match.expires_at, Match.skipped_at,
               Voter.external_id, Vote.id, Match.prompt_id, Prompt.character, votes_cast,
               newest_exclusion("voter", Match.voter_id),
               newest_exclusion("prompt", Match.prompt_id),
               MatchImage.checkpoint_id, Checkpoint.name, TrainingConfigRecord.name)
        .join(Voter, Voter.id == Match.voter_id)
        .join(Prompt, Prompt.id == Match.prompt_id)
        .join(MatchImage, MatchImage.match_id == Match.id)
        .join(Checkpoint, Checkpoint.id == MatchImage.checkpoint_id)
        .join(TrainingConfigRecord, TrainingConfigRecord.id == Checkpoint.config_id)
        .outerjoin(Vote, Vote.match_id == Match.id)
        .where(Match.token == bindparam("token"))
        .order_by(MatchImage.position)
    )


_OPEN_MATCH = _open_match_statement()
_SKIP = update(Match).where(Match.id == bindparam("match_id")).values(skipped_at=bindparam("now"))


def load_match_for(conn: Connection, token: str, voter_external_id: str) -> OpenMatch:
    """The match behind ``token`` if this voter may still act on it; else a clear refusal.

    One round trip: the match, its voter, prompt, images with their checkpoint labels, any
    vote on it, the voter's vote count and whether the voter's or the prompt's votes are
    excluded now."""
    rows = conn.execute(_OPEN_MATCH, {"token": token}).all()
    if not rows:
        raise NotFound("unknown match token")
    (match_id, kind, voter_id, expires_at, skipped_at, owner, vote_id, prompt_id, character,
     cast, voter_decision, prompt_decision) = rows[0][:12]
    if owner != voter_external_id:
        raise Forbidden("this match was issued to another voter")
    if vote_id is not None:
        raise Conflict("this match has already been voted on")
    if skipped_at is not None:
        raise Conflict("this match was skipped")
    if expires_at <= utcnow():
        raise Gone("this match has expired; ask for a new one")
    return OpenMatch(
        id=match_id, kind=kind, voter_id=voter_id, prompt_id=prompt_id, character=character,
        checkpoints=tuple(row[12] for row in rows),
        labels=tuple((row[13], row[14]) for row in rows),
        votes_cast=int(cast or 0),
        excluded="exclude" in (voter_decision, prompt_decision),
    )


def skip_match(
    db: Database, settings: Settings, token: str, voter_external_id: str,
    address: str | None = None,
) -> None:
    """The voter passes on a match: it can no longer be voted on and teaches nothing."""
    with db.connection(serialized=True) as conn:
        match = load_match_for(conn, token, voter_external_id)
        charge(conn, settings, "skip", voter_external_id, address)
        conn.execute(_SKIP, {"match_id": match.id, "now": utcnow()})


def served_image_for(db: Database, settings: Settings, name: str, voter_external_id: str) -> bytes:
    """The metadata-free bytes behind a match's image ``name``, for the voter the match was
    issued to and only until it expires or is skipped."""
    if not SERVED_NAME.match(name):
        raise NotFound("unknown image")
    with db.connection(readonly=True) as conn:
        row = conn.execute(
            select(Image.served_sha256, Voter.external_id, Match.expires_at, Match.skipped_at)
            .select_from(MatchImage)
            .join(Match, Match.id == MatchImage.match_id)
            .join(Voter, Voter.id == Match.voter_id)
            .join(Image, Image.id == MatchImage.image_id)
            .where(MatchImage.served_name == name)
        ).first()
    if row is None:
        raise NotFound("unknown image")
    served_sha256, owner, expires_at, skipped_at = row
    if owner != voter_external_id:
        raise Forbidden("this image belongs to a match issued to another voter")
    if expires_at <= utcnow() or skipped_at is not None:
        raise Gone("this match has expired or was skipped; its images are no longer served")
    # A missing file is the server's fault: a 500 (logged), never a row revealed without it.
    return served_path(settings.home, served_sha256).read_bytes()
