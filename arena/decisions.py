"""Operator decisions: exclude or include a voter's votes, hide or unhide a typed prompt, exclude
or include a prompt's votes.

Decisions are an append-only log (``operator_decisions``, with a trigger in the database as
for votes): each records its time and reason, and the newest decision per subject and kind of
action is the one in force. Votes themselves always stay in the log; every reader of the
boards takes the :class:`Exclusions` in force (:func:`exclusions`: the excluded voters, and the
prompts whose votes are excluded) to leave votes out, so a replay of the log honours the
decisions recorded at the time of the replay, and the vote path reads
:func:`newest_exclusion` of the voter and the prompt with the match it loads, to know whether
a new vote moves the online ratings.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Connection, ScalarSelect, select
from sqlalchemy.orm import Session

from arena.errors import NotFound, UserError
from arena.models import Match, OperatorDecision, Prompt, Voter

__all__ = [
    "ACTIONS",
    "Decision",
    "Exclusions",
    "change_exclusion",
    "decisions",
    "excluded_prompt_ids",
    "excluded_voter_ids",
    "exclusions",
    "hidden_prompt_ids",
    "newest_exclusion",
    "record_decision",
]

# Each subject's actions, as (action, the action that undoes it) pairs.
ACTIONS: dict[str, dict[str, str]] = {
    "voter": {"exclude": "include", "include": "exclude"},
    "prompt": {"hide": "unhide", "unhide": "hide", "exclude": "include", "include": "exclude"},
}
_SUBJECT_TABLES = {"voter": Voter, "prompt": Prompt}
MAX_REASON = 2000


@dataclass(frozen=True, slots=True)
class Decision:
    """One recorded decision."""

    id: int
    subject: str
    subject_id: int
    action: str
    reason: str
    created_at: datetime

    def as_dict(self) -> dict[str, object]:
        return {"id": self.id, "subject": self.subject, "subject_id": self.subject_id,
                "action": self.action, "reason": self.reason,
                "created_at": self.created_at.isoformat()}


def _decision(row: OperatorDecision) -> Decision:
    return Decision(row.id, row.subject, row.subject_id, row.action, row.reason, row.created_at)


def record_decision(session: Session, subject: str, subject_id: int, action: str,
                    reason: str) -> Decision:
    """Record ``action`` on a voter or prompt (by row id) with a reason; returns the decision.

    Raises a one-line :class:`UserError` for an unknown subject or action, an empty reason, or
    a subject that does not exist (:class:`NotFound`).
    """
    if subject not in ACTIONS:
        raise UserError(f"unknown subject {subject!r}; expected one of: {', '.join(ACTIONS)}")
    if action not in ACTIONS[subject]:
        raise UserError(f"unknown action {action!r} for a {subject}; expected one of: "
                        f"{', '.join(ACTIONS[subject])}")
    reason = " ".join((reason or "").split())
    if not reason:
        raise UserError("a decision needs a reason (--reason TEXT)")
    if len(reason) > MAX_REASON:
        raise UserError(f"the reason is {len(reason)} characters; at most {MAX_REASON}")
    if session.get(_SUBJECT_TABLES[subject], subject_id) is None:
        raise NotFound(f"no {subject} with id {subject_id}")
    row = OperatorDecision(subject=subject, subject_id=subject_id, action=action, reason=reason)
    session.add(row)
    session.flush()
    return _decision(row)


def decisions(session: Session | Connection, subject: str | None = None,
              subject_id: int | None = None) -> list[Decision]:
    """Recorded decisions, oldest first (optionally of one subject kind, or one subject)."""
    query = select(OperatorDecision.id, OperatorDecision.subject, OperatorDecision.subject_id,
                   OperatorDecision.action, OperatorDecision.reason,
                   OperatorDecision.created_at).order_by(OperatorDecision.id)
    if subject is not None:
        query = query.where(OperatorDecision.subject == subject)
    if subject_id is not None:
        query = query.where(OperatorDecision.subject_id == subject_id)
    return [Decision(*row) for row in session.execute(query)]


def _in_force(log: list[Decision], subject: str, on: str) -> dict[int, Decision]:
    """The newest decision per subject among ``on`` and its undoing action, where it is ``on``
    (``log``: the subject kind's decisions, oldest first)."""
    pair = {on, ACTIONS[subject][on]}
    newest: dict[int, Decision] = {}
    for decision in log:
        if decision.action in pair:
            newest[decision.subject_id] = decision
    return {key: d for key, d in newest.items() if d.action == on}


def excluded_voter_ids(session: Session | Connection) -> dict[int, Decision]:
    """Voter row ids whose votes are excluded from every board, with the decision in force."""
    return _in_force(decisions(session, "voter"), "voter", "exclude")


def excluded_prompt_ids(session: Session | Connection) -> dict[int, Decision]:
    """Prompt row ids whose votes are excluded from every board, with the decision in force."""
    return _in_force(decisions(session, "prompt"), "prompt", "exclude")


def hidden_prompt_ids(session: Session | Connection) -> dict[int, Decision]:
    """Prompt row ids no longer issued in matches, with the decision in force."""
    return _in_force(decisions(session, "prompt"), "prompt", "hide")


@dataclass(frozen=True, slots=True)
class Exclusions:
    """The exclusions in force: the voters, and the prompts, whose votes no board counts (a
    vote is left out when its voter or its match's prompt is excluded). Hashable: the
    leaderboard keys its caches and stored aggregates by it, so a new decision is never served
    from numbers made under the old ones."""

    voters: frozenset[int] = frozenset()
    prompts: frozenset[int] = frozenset()

    def __bool__(self) -> bool:
        return bool(self.voters or self.prompts)

    def counts(self, voter_id: int, prompt_id: int) -> bool:
        """Whether a vote by ``voter_id`` on a match of ``prompt_id`` counts."""
        return voter_id not in self.voters and prompt_id not in self.prompts

    def where(self) -> list[Any]:
        """SQL conditions on ``Match`` keeping the votes (and shown matches) that count; a
        vote's voter is its match's voter, so a query of votes joins ``Match``."""
        where: list[Any] = []
        if self.voters:
            where.append(Match.voter_id.not_in(sorted(self.voters)))
        if self.prompts:
            where.append(Match.prompt_id.not_in(sorted(self.prompts)))
        return where

    def parameters(self) -> dict[str, list[int]]:
        """The exclusions as part of a stored aggregate's key (none: no key, so aggregates
        stored before there were any keep their key)."""
        out: dict[str, list[int]] = {}
        if self.voters:
            out["excluded_voters"] = sorted(self.voters)
        if self.prompts:
            out["excluded_prompts"] = sorted(self.prompts)
        return out


def exclusions(session: Session | Connection) -> Exclusions:
    """The exclusions in force (one read of the decision log)."""
    log = decisions(session)
    return Exclusions(
        frozenset(_in_force([d for d in log if d.subject == "voter"], "voter", "exclude")),
        frozenset(_in_force([d for d in log if d.subject == "prompt"], "prompt", "exclude")),
    )


def newest_exclusion(subject: str, subject_id: ColumnElement[int]) -> ScalarSelect[str]:
    """The newest "exclude" or "include" recorded on the voter or prompt ``subject_id`` (a
    column of the enclosing query, or a bound value), NULL when none: an indexed row read a
    query carries along, so the vote path learns it with the match it loads (no round trip
    of its own). A vote is excluded when either its voter's or its prompt's says "exclude"."""
    return (
        select(OperatorDecision.action)
        .where(OperatorDecision.subject == subject,
               OperatorDecision.subject_id == subject_id,
               OperatorDecision.action.in_(("exclude", "include")))
        .order_by(OperatorDecision.id.desc()).limit(1).scalar_subquery()
    )


def change_exclusion(session: Session, subject: str, subject_id: int, action: str,
                     reason: str) -> Decision:
    """Record ``action`` ("exclude" or "include") on a voter's or prompt's votes; a decision
    that would change nothing (already excluded, or not excluded) is refused with a one-line
    :class:`UserError` and records nothing. The caller replays the log afterwards
    (:func:`arena.leaderboard.fits.recompute`) so every board follows."""
    if subject not in ACTIONS or action not in ("exclude", "include"):
        raise UserError(f"expected to exclude or include a voter's or a prompt's votes, got "
                        f"{action!r} on a {subject!r}")
    if session.get(_SUBJECT_TABLES[subject], subject_id) is None:
        raise NotFound(f"no {subject} with id {subject_id}")
    excluded = subject_id in _in_force(decisions(session, subject, subject_id), subject,
                                       "exclude")
    if (action == "exclude") == excluded:
        state = "already excluded" if excluded else "not excluded"
        raise UserError(f"the votes of {subject} {subject_id} are {state}; nothing recorded")
    return record_decision(session, subject, subject_id, action, reason)
