"""Recording a vote: checks, the append-only row and the rating updates in one transaction."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, insert, select
from sqlalchemy.exc import IntegrityError

from arena.db import Database
from arena.errors import Conflict, UserError
from arena.limits import charge
from arena.matches import load_match_for
from arena.models import Vote, Voter, utcnow
from arena.ratings import apply_vote_online
from arena.settings import Settings
from metrics.match_kinds import KINDS, check_winner, ranking_kinds
from metrics.outcomes import VoteRecord

_INSERT_VOTE = insert(Vote)  # built once; a plain Core insert (the log is append-only)


@dataclass(frozen=True)
class RevealedImage:
    """After the vote: which checkpoint (and config) made the image at each position."""

    position: int
    checkpoint: str
    config: str


@dataclass(frozen=True)
class Reveal:
    """The answer to a vote."""

    token: str
    mode: str
    vote_id: int
    images: tuple[RevealedImage, ...]
    votes_cast: int

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "token": self.token,
            "mode": self.mode,
            "vote_id": self.vote_id,
            "votes_cast": self.votes_cast,
            "images": [vars(i) for i in self.images],
        }


def _parse_winner(mode: str, winner: Any) -> tuple[str, int | None]:
    """What the match kind allows (:func:`metrics.match_kinds.check_winner`); an
    :class:`~metrics.errors.InputError` names what is allowed."""
    return check_winner(mode, winner)


def record_vote(
    db: Database,
    settings: Settings,
    token: str,
    voter_external_id: str,
    winner: int | str | None = None,
    ranking: list[int] | None = None,
    address: str | None = None,
) -> Reveal:
    """Store one vote and update every affected rating board, all in one transaction.

    Refuses (changing nothing) an unknown, foreign, expired, skipped or already-voted match,
    an invalid winner or ranking, and a voter or ``address`` over its rate limit.
    """
    if (winner is None) == (ranking is None):
        raise UserError("give exactly one of 'winner' or 'ranking'")
    try:
        with db.connection(serialized=True) as conn:
            match = load_match_for(conn, token, voter_external_id)
            charge(conn, settings, "vote", voter_external_id, address)
            order: list[int] | None = None
            position: int | None = None
            if ranking is not None:
                if not KINDS[match.kind].rankings:
                    raise UserError(f"a full ranking is only allowed in a {ranking_kinds()}")
                outcome, order = "ranking", list(ranking)
            else:
                outcome, position = _parse_winner(match.kind, winner)
            now = utcnow()
            # The structural checks (positions exist, no repeats) live in one place; their
            # InvalidVote is an input error every surface answers as it is.
            record = VoteRecord(
                participants=match.checkpoints,
                winner=position if outcome == "win" else (None if order else outcome),
                ranking=tuple(order) if order is not None else None,
                time=now.timestamp(),  # what a replay reads back from created_at
            )
            vote_id = conn.execute(_INSERT_VOTE, {
                "match_id": match.id, "voter_id": match.voter_id, "outcome": outcome,
                "winner_position": position, "ranking": order, "created_at": now,
            }).inserted_primary_key[0]
            # A vote by an excluded voter, or on an excluded prompt, is stored (the log keeps
            # everything) but moves no rating, as a replay of the log leaves it out
            # (arena.decisions; read with the match).
            if not match.excluded:
                apply_vote_online(conn, vote_id, record, match.kind, match.character, settings)
            return Reveal(
                token=token,
                mode=match.kind,
                vote_id=vote_id,
                images=tuple(
                    RevealedImage(position, *label) for position, label in enumerate(match.labels)
                ),
                votes_cast=match.votes_cast + 1,
            )
    except IntegrityError as exc:
        # Two requests raced past the checks: the unique constraint keeps the first vote.
        raise Conflict("this match has already been voted on") from exc


def votes_cast(db: Database, voter_external_id: str) -> int:
    """How many votes the voter (by its external id) has cast; 0 for a voter not seen yet."""
    with db.connection(readonly=True) as conn:
        return int(conn.scalar(
            select(func.count(Vote.id)).join(Voter, Voter.id == Vote.voter_id)
            .where(Voter.external_id == voter_external_id)
        ) or 0)
