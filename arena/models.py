"""The SQL schema as a typed SQLAlchemy 2.0 ORM.

Data flows one way: training config -> checkpoint -> images -> matches -> votes -> ratings
and metric scores. Votes are the append-only source of truth; rating snapshots are derived
and can always be rebuilt by replaying the vote log (``arena ratings recompute``).
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    event,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from metrics.match_kinds import MATCH_KINDS

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

_KINDS_SQL = "kind IN (" + ", ".join(f"'{k}'" for k in MATCH_KINDS) + ")"
VOTE_OUTCOMES = ("win", "tie", "both_bad", "ranking")
JOB_STATES = ("queued", "running", "done", "failed", "cancelled")
_JOB_STATES_SQL = "status IN (" + ", ".join(f"'{s}'" for s in JOB_STATES) + ")"


def utcnow() -> datetime:
    """Timezone-aware now in UTC (the only clock the schema uses)."""
    return datetime.now(UTC)


def new_served_name() -> str:
    """A fresh random name for one image of one match (128 bits, hex)."""
    return secrets.token_hex(16)


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp stored in UTC and always returned timezone-aware (SQLite drops the zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: the schema stores aware UTC times")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map: ClassVar[dict[Any, Any]] = {
        datetime: UTCDateTime(),
        dict[str, Any]: JSON,
        list[Any]: JSON,
    }


class TrainingConfigRecord(Base):
    """A training configuration (the report's Table 5 knobs), stored once per content hash."""

    __tablename__ = "training_configs"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    content_hash: Mapped[str] = mapped_column(String(64), unique=True)
    base_model: Mapped[str | None] = mapped_column(String(200))
    data: Mapped[dict[str, Any]]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    checkpoints: Mapped[list[Checkpoint]] = relationship(back_populates="config")


class Checkpoint(Base):
    """A checkpoint file or diffusers folder, linked to the config that produced it."""

    __tablename__ = "checkpoints"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    path: Mapped[str] = mapped_column(Text)
    format: Mapped[str] = mapped_column(String(20))
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    short_hash: Mapped[str] = mapped_column(String(10))
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    step: Mapped[int | None]
    config_id: Mapped[int] = mapped_column(ForeignKey("training_configs.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # What the trainer knew about this checkpoint (e.g. a kohya file's ss_* header keys).
    training_metadata: Mapped[dict[str, Any] | None]

    config: Mapped[TrainingConfigRecord] = relationship(back_populates="checkpoints")

    __table_args__ = (CheckConstraint("format IN ('safetensors', 'diffusers')", name="format"),)


class Prompt(Base):
    """A prompt served in one match kind; fixed-characteristic prompts name their character."""

    __tablename__ = "prompts"

    id: Mapped[int] = mapped_column(primary_key=True)
    text: Mapped[str] = mapped_column(Text)
    text_hash: Mapped[str] = mapped_column(String(64))
    negative_prompt: Mapped[str] = mapped_column(Text, default="")
    kind: Mapped[str] = mapped_column(String(10))
    character: Mapped[str | None] = mapped_column(String(200), index=True)
    source: Mapped[str] = mapped_column(String(20), default="bank")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    __table_args__ = (
        UniqueConstraint("text_hash", "kind", name="uq_prompts_text_hash_kind"),
        CheckConstraint(_KINDS_SQL, name="kind"),
    )


class Image(Base):
    """One generated image in the content-addressed store, with how it was made."""

    __tablename__ = "images"

    id: Mapped[int] = mapped_column(primary_key=True)
    sha256: Mapped[str] = mapped_column(String(64), unique=True)
    # Hash of the metadata-free copy voters are served: the only name a voter ever sees.
    served_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    checkpoint_id: Mapped[int] = mapped_column(ForeignKey("checkpoints.id"))
    prompt_id: Mapped[int] = mapped_column(ForeignKey("prompts.id"))
    seed: Mapped[int | None] = mapped_column(BigInteger)
    sampler: Mapped[str | None] = mapped_column(String(50))
    steps: Mapped[int | None]
    cfg: Mapped[float | None]
    width: Mapped[int]
    height: Mapped[int]
    parameters: Mapped[str] = mapped_column(Text, default="")
    hidden: Mapped[bool] = mapped_column(Boolean, default=False, index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    checkpoint: Mapped[Checkpoint] = relationship()
    prompt: Mapped[Prompt] = relationship()

    __table_args__ = (Index("ix_images_prompt_checkpoint", "prompt_id", "checkpoint_id"),)


class Voter(Base):
    """Someone who votes, known by an opaque id from a cookie or the X-Voter-Id header."""

    __tablename__ = "voters"

    id: Mapped[int] = mapped_column(primary_key=True)
    external_id: Mapped[str] = mapped_column(String(100), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Match(Base):
    """A match issued to one voter: a prompt, 2 or 4 images by shown position, an expiry."""

    __tablename__ = "matches"

    id: Mapped[int] = mapped_column(primary_key=True)
    token: Mapped[str] = mapped_column(String(64), unique=True)
    kind: Mapped[str] = mapped_column(String(10))
    prompt_id: Mapped[int] = mapped_column(ForeignKey("prompts.id"))
    voter_id: Mapped[int] = mapped_column(ForeignKey("voters.id"))
    issued_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime]
    skipped_at: Mapped[datetime | None]

    prompt: Mapped[Prompt] = relationship()
    images: Mapped[list[MatchImage]] = relationship(
        order_by="MatchImage.position", cascade="all, delete-orphan"
    )

    __table_args__ = (
        CheckConstraint(_KINDS_SQL, name="kind"),
        # A voter's matches newest first: matchmaking reads a voter's latest matches on
        # every request, which a voter_id-only index answers by sorting all of them.
        Index("ix_matches_voter_recent", "voter_id", "id"),
    )


class MatchImage(Base):
    """The image shown at one position of a match (positions 0..n-1 as the voter saw them)."""

    __tablename__ = "match_images"

    match_id: Mapped[int] = mapped_column(ForeignKey("matches.id"), primary_key=True)
    position: Mapped[int] = mapped_column(Integer, primary_key=True)
    image_id: Mapped[int] = mapped_column(ForeignKey("images.id"))
    checkpoint_id: Mapped[int] = mapped_column(ForeignKey("checkpoints.id"), index=True)
    # The image's name for this match only (its URL); random, so it says nothing about the
    # image and cannot be recognised in another match.
    served_name: Mapped[str] = mapped_column(String(32), unique=True, default=new_served_name)

    image: Mapped[Image] = relationship()
    checkpoint: Mapped[Checkpoint] = relationship()


class Vote(Base):
    """The append-only vote log: the source of truth for every rating."""

    __tablename__ = "votes"

    id: Mapped[int] = mapped_column(primary_key=True)
    match_id: Mapped[int] = mapped_column(ForeignKey("matches.id"), unique=True)
    voter_id: Mapped[int] = mapped_column(ForeignKey("voters.id"), index=True)
    outcome: Mapped[str] = mapped_column(String(10))
    winner_position: Mapped[int | None]
    ranking: Mapped[list[Any] | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    match: Mapped[Match] = relationship()

    __table_args__ = (
        CheckConstraint("outcome IN ('win', 'tie', 'both_bad', 'ranking')", name="outcome"),
    )


@event.listens_for(Vote, "before_update")
def _votes_are_append_only(_mapper, _connection, target: Vote) -> None:  # type: ignore[no-untyped-def]
    raise ValueError(f"vote {target.id} is in the append-only log and cannot be changed")


@event.listens_for(Vote, "before_delete")
def _votes_are_never_deleted(_mapper, _connection, target: Vote) -> None:  # type: ignore[no-untyped-def]
    raise ValueError(f"vote {target.id} is in the append-only log and cannot be deleted")


class RatingSnapshot(Base):
    """Derived rating state of one checkpoint on one board in one rating system."""

    __tablename__ = "rating_snapshots"

    id: Mapped[int] = mapped_column(primary_key=True)
    board: Mapped[str] = mapped_column(String(250))
    system: Mapped[str] = mapped_column(String(20))
    checkpoint_id: Mapped[int] = mapped_column(ForeignKey("checkpoints.id"), index=True)
    rating: Mapped[float]
    mu: Mapped[float | None]
    sigma: Mapped[float | None]
    games: Mapped[int] = mapped_column(default=0)
    wins: Mapped[int] = mapped_column(default=0)
    draws: Mapped[int] = mapped_column(default=0)
    losses: Mapped[int] = mapped_column(default=0)
    # Time-weighted average state (the report's plotted Elo): sum of rating x seconds held,
    # when the current value started being held, and when the first game was played.
    weighted_sum: Mapped[float] = mapped_column(default=0.0)
    held_since: Mapped[float | None]
    first_time: Mapped[float | None]
    last_vote_id: Mapped[int | None]
    parameters: Mapped[dict[str, Any]]
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)

    __table_args__ = (
        UniqueConstraint("board", "system", "checkpoint_id", name="uq_rating_snapshots_key"),
    )


class LimitEvent(Base):
    """One rate-limited action (match, vote, skip, typed prompt, new voter) by a voter and a
    client address (keyed, not stored in the clear); counted to enforce the limits across
    every server process."""

    __tablename__ = "limit_events"

    id: Mapped[int] = mapped_column(primary_key=True)
    action: Mapped[str] = mapped_column(String(10))
    voter: Mapped[str | None] = mapped_column(String(100))
    address: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    __table_args__ = (
        Index("ix_limit_events_voter", "action", "voter", "created_at"),
        Index("ix_limit_events_address", "action", "address", "created_at"),
        Index("ix_limit_events_created_at", "created_at"),
    )


def score_key(metric: str, metric_version: str, checkpoint_id: int | None,
              character: str | None, images_used: list[Any], parameters: dict[str, Any],
              details: dict[str, Any]) -> str:
    """What makes a score the same score: the metric and its model version, the checkpoint and
    character, exactly which images (and CCIP references, by content hash) it was computed
    over, and its parameters (not where the references were read from). sha256 of that."""
    import hashlib
    import json

    content = {
        "metric": metric, "version": metric_version, "checkpoint": checkpoint_id,
        "character": character, "images": sorted(map(str, images_used or [])),
        "references": sorted(map(str, (details or {}).get("reference_sha256") or [])),
        "parameters": {k: v for k, v in (parameters or {}).items() if k != "references"},
    }
    return hashlib.sha256(json.dumps(content, sort_keys=True, default=str).encode()).hexdigest()


def _score_key_default(context: Any) -> str:
    row = context.get_current_parameters()
    return score_key(row["metric"], row["metric_version"], row.get("checkpoint_id"),
                     row.get("character"), row.get("images_used") or [],
                     row.get("parameters") or {}, row.get("details") or {})


class MetricScore(Base):
    """A computed metric (CCIP, CLIP score, ...) with everything needed to reproduce it.

    ``score_key`` (:func:`score_key`, filled in on insert) is unique: a retried or repeated
    score job cannot store the same score twice."""

    __tablename__ = "metric_scores"
    __table_args__ = (UniqueConstraint("score_key"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    metric: Mapped[str] = mapped_column(String(50))
    metric_model: Mapped[str] = mapped_column(String(200))
    metric_version: Mapped[str] = mapped_column(String(200))
    parameters: Mapped[dict[str, Any]]
    checkpoint_id: Mapped[int | None] = mapped_column(ForeignKey("checkpoints.id"), index=True)
    character: Mapped[str | None] = mapped_column(String(200))
    value: Mapped[float]
    details: Mapped[dict[str, Any]]
    images_used: Mapped[list[Any]]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    score_key: Mapped[str] = mapped_column(String(64), default=_score_key_default)

    checkpoint: Mapped[Checkpoint | None] = relationship()


class CachedFeature(Base):
    """An embedding of one image (by content hash) under one model (name + file hash)."""

    __tablename__ = "feature_cache"

    image_sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    model_key: Mapped[str] = mapped_column(String(200), primary_key=True)
    dim: Mapped[int]
    vector: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Job(Base):
    """Queued long work (hash, generate, score) taken by ``arena worker`` (:mod:`arena.jobs`).

    A worker holds a job under a lease it renews while working; a job whose lease expired
    (its worker died) is taken again until ``max_attempts`` is spent, then marked failed.
    ``after_id`` names the job that must be done first; ``dedup_key`` makes queueing the
    same work twice return the first job.
    """

    __tablename__ = "jobs"

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(50))
    payload: Mapped[dict[str, Any]]
    status: Mapped[str] = mapped_column(String(10), default="queued", index=True)
    attempts: Mapped[int] = mapped_column(default=0)
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    max_attempts: Mapped[int] = mapped_column(default=3)
    dedup_key: Mapped[str | None] = mapped_column(String(300), unique=True)
    checkpoint_name: Mapped[str | None] = mapped_column(String(200), index=True)
    after_id: Mapped[int | None] = mapped_column(ForeignKey("jobs.id"))
    worker: Mapped[str | None] = mapped_column(String(200))
    lease_expires_at: Mapped[datetime | None]
    heartbeat_at: Mapped[datetime | None]
    progress_done: Mapped[int] = mapped_column(BigInteger, default=0)
    progress_total: Mapped[int | None] = mapped_column(BigInteger)
    progress_unit: Mapped[str | None] = mapped_column(String(20))
    result: Mapped[dict[str, Any] | None]

    __table_args__ = (CheckConstraint(_JOB_STATES_SQL, name="status"),)


class GenerationRequest(Base):
    """A prompt a voter typed that the pool could not serve yet; a job renders it later."""

    __tablename__ = "generation_requests"

    id: Mapped[int] = mapped_column(primary_key=True)
    prompt_id: Mapped[int] = mapped_column(ForeignKey("prompts.id"))
    voter_id: Mapped[int | None] = mapped_column(ForeignKey("voters.id"))
    job_id: Mapped[int | None] = mapped_column(ForeignKey("jobs.id"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    prompt: Mapped[Prompt] = relationship()


class BoardAggregate(Base):
    """A derived aggregate of one board's votes up to ``last_vote_id`` (the leaderboard's
    board log, or a Bradley-Terry fit), stored so that a cold view reads only the votes after
    it; keyed by the parameters that decide its numbers (``parameters_key`` is their canonical
    JSON) and always reproducible by a replay of the log (:mod:`arena.leaderboard.store`)."""

    __tablename__ = "board_aggregates"

    id: Mapped[int] = mapped_column(primary_key=True)
    board: Mapped[str] = mapped_column(String(250))
    aggregate: Mapped[str] = mapped_column(String(10))
    parameters_key: Mapped[str] = mapped_column(String(500))
    parameters: Mapped[dict[str, Any]]
    last_vote_id: Mapped[int] = mapped_column(BigInteger)
    votes: Mapped[int] = mapped_column(BigInteger)
    data: Mapped[bytes] = mapped_column(LargeBinary)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)

    __table_args__ = (
        UniqueConstraint("board", "aggregate", "parameters_key", name="uq_board_aggregates_key"),
    )


class OperatorDecision(Base):
    """An operator's recorded decision about a voter or a typed prompt (append-only): exclude or
    include a voter's votes, hide or unhide a prompt, exclude or include a prompt's votes. The
    latest decision per subject is in force; votes always stay in the log
    (:mod:`arena.decisions`)."""

    __tablename__ = "operator_decisions"

    id: Mapped[int] = mapped_column(primary_key=True)
    subject: Mapped[str] = mapped_column(String(10))
    subject_id: Mapped[int] = mapped_column(BigInteger)
    action: Mapped[str] = mapped_column(String(10))
    reason: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    __table_args__ = (
        CheckConstraint("subject IN ('voter', 'prompt')", name="subject"),
        CheckConstraint(
            "action IN ('exclude', 'include', 'hide', 'unhide')", name="action"
        ),
        Index("ix_operator_decisions_subject", "subject", "subject_id", "id"),
    )


@event.listens_for(OperatorDecision, "before_update")
def _decisions_are_append_only(_mapper, _connection, target: OperatorDecision) -> None:  # type: ignore[no-untyped-def]
    raise ValueError(f"decision {target.id} is recorded and cannot be changed")


@event.listens_for(OperatorDecision, "before_delete")
def _decisions_are_never_deleted(_mapper, _connection, target: OperatorDecision) -> None:  # type: ignore[no-untyped-def]
    raise ValueError(f"decision {target.id} is recorded and cannot be deleted")
