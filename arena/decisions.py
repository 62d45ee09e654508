"""Operator decisions: exclude or include a voter's votes, hide or unhide a typed prompt, exclude
or include a prompt's votes.

Decisions are an append-only log (``operator_decisions``, with a trigger in the database as
for votes): each records its time and reason, and the newest decision per subject and kind of
action is the one in force. Votes themselves always stay in the log; the rating code reads
:func:`excluded_voter_ids` and :func:`excluded_prompt_ids` to leave votes out, so a replay of
the log honours the decisions recorded at the time of the replay.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, select
from sqlalchemy.orm import Session

from arena.errors import NotFound, UserError
from arena.models import OperatorDecision, Prompt, Voter

__all__ = [
    "ACTIONS",
    "Decision",
    "decisions",
    "excluded_prompt_ids",
    "excluded_voter_ids",
    "hidden_prompt_ids",
    "record_decision",
    "voter_excluded",
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


def _in_force(session: Session | Connection, subject: str, on: str) -> dict[int, Decision]:
    """The newest decision per subject among ``on`` and its undoing action, where it is ``on``."""
    pair = {on, ACTIONS[subject][on]}
    newest: dict[int, Decision] = {}
    for decision in decisions(session, subject):
        if decision.action in pair:
            newest[decision.subject_id] = decision
    return {key: d for key, d in newest.items() if d.action == on}


def excluded_voter_ids(session: Session | Connection) -> dict[int, Decision]:
    """Voter row ids whose votes are excluded from every board, with the decision in force."""
    return _in_force(session, "voter", "exclude")


def voter_excluded(session: Session | Connection, voter_id: int) -> bool:
    """Whether an exclusion of this voter's votes is in force (one indexed row read: the vote
    path asks it for every vote)."""
    newest = session.execute(
        select(OperatorDecision.action)
        .where(OperatorDecision.subject == "voter", OperatorDecision.subject_id == voter_id,
               OperatorDecision.action.in_(("exclude", "include")))
        .order_by(OperatorDecision.id.desc()).limit(1)
    ).scalar()
    return newest == "exclude"


def excluded_prompt_ids(session: Session | Connection) -> dict[int, Decision]:
    """Prompt row ids whose votes are excluded from every board, with the decision in force."""
    return _in_force(session, "prompt", "exclude")


def hidden_prompt_ids(session: Session | Connection) -> dict[int, Decision]:
    """Prompt row ids no longer issued in matches, with the decision in force."""
    return _in_force(session, "prompt", "hide")
