"""In-memory Elo and TrueSkill state of one leaderboard, updated one vote at a time.

The same :class:`RatingBook` serves the online path (the database layer loads the rows of a
vote's participants, applies the vote, writes the touched rows back, all in the vote's
transaction) and the replay of the whole log, so both produce the same numbers bit for bit.
:class:`CheckpointRating` is a plain dataclass whose fields map one to one to database
columns, so a row round-trips exactly.

One book holds one board (:mod:`metrics.boards` says which boards a vote counts on).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from metrics.elo import EloParams, elo_update, hold_rating, time_weighted_average
from metrics.outcomes import (
    BOTH_BAD,
    TIE,
    VoteRecord,
    pairwise,
    placements,
    trueskill_games,
)
from metrics.trueskill_fast import TrueSkillModel, TrueSkillParams, conservative_score

__all__ = [
    "CheckpointRating",
    "RatingBook",
    "RatingConfig",
]

@dataclass(frozen=True, slots=True)
class RatingConfig:
    """Everything that decides the numbers: Elo and TrueSkill parameters and how a "both bad"
    vote counts (a draw by default; excluded when False)."""

    elo: EloParams = field(default_factory=EloParams)
    trueskill: TrueSkillParams = field(default_factory=TrueSkillParams)
    both_bad_as_draw: bool = True


@dataclass(slots=True)
class CheckpointRating:
    """One checkpoint's ratings on one board; fields map 1:1 to database columns.

    ``weighted_sum`` is the integral of the Elo rating over time up to ``held_since``;
    ``first_time`` is when the checkpoint first played on this board (unix seconds, ``None``
    before its first vote).
    """

    checkpoint_id: int
    elo: float
    mu: float
    sigma: float
    games: int = 0
    wins: int = 0
    draws: int = 0
    losses: int = 0
    weighted_sum: float = 0.0
    held_since: float | None = None
    first_time: float | None = None

    @property
    def conservative(self) -> float:
        """TrueSkill's ``mu - 3 sigma``."""
        return conservative_score(self.mu, self.sigma)

    def time_weighted_elo(self, now: float) -> float:
        """Average Elo from the first vote to ``now``, each value weighted by how long it was
        held (the Illustrious report's Fixed-Characteristics curve)."""
        return time_weighted_average(
            self.weighted_sum, self.held_since, self.first_time, self.elo, now
        )


class RatingBook:
    """Elo and TrueSkill state of one board, keyed by checkpoint id."""

    def __init__(
        self,
        config: RatingConfig | None = None,
        states: Iterable[CheckpointRating] = (),
    ) -> None:
        self.config = config or RatingConfig()
        self.trueskill = TrueSkillModel(self.config.trueskill)
        self.states: dict[int, CheckpointRating] = {s.checkpoint_id: s for s in states}
        self._fast = self.trueskill.engine == "fast"

    def new_state(self, checkpoint_id: int) -> CheckpointRating:
        """A checkpoint that has not played on this board yet."""
        return CheckpointRating(
            checkpoint_id,
            elo=self.config.elo.initial,
            mu=self.config.trueskill.mu,
            sigma=self.config.trueskill.sigma,
        )

    def get(self, checkpoint_id: int) -> CheckpointRating:
        """The state of a checkpoint (a fresh one, not stored, if it has not played)."""
        state = self.states.get(checkpoint_id)
        return state if state is not None else self.new_state(checkpoint_id)

    def apply(self, vote: VoteRecord) -> tuple[int, ...]:
        """Apply one vote and return the ids of the checkpoints whose state changed (none when
        the vote teaches nothing, e.g. "both bad" with ``both_bad_as_draw=False``)."""
        if vote.ranking is None and len(vote.participants) == 2 and self._fast:
            return self._apply_duel(vote)
        both_bad = self.config.both_bad_as_draw
        outcomes = pairwise(vote, both_bad)
        if not outcomes:
            return ()
        states = self.states
        current: list[CheckpointRating] = []
        for checkpoint in vote.participants:
            state = states.get(checkpoint)
            if state is None:
                state = states[checkpoint] = self.new_state(checkpoint)
            current.append(state)
        elo = elo_update({s.checkpoint_id: s.elo for s in current}, outcomes, self.config.elo)
        rated = self.trueskill.rate_games(
            {s.checkpoint_id: (s.mu, s.sigma) for s in current}, trueskill_games(vote, both_bad)
        )
        placed = placements(vote, both_bad)
        now = vote.time
        for state in current:
            checkpoint = state.checkpoint_id
            state.weighted_sum, state.held_since = hold_rating(
                state.weighted_sum, state.held_since, state.elo, now
            )
            if state.first_time is None:
                state.first_time = state.held_since
            state.elo = elo[checkpoint]
            state.mu, state.sigma = rated[checkpoint]
            state.games += 1
            placement = placed[checkpoint]
            if placement == "win":
                state.wins += 1
            elif placement == "draw":
                state.draws += 1
            else:
                state.losses += 1
        return vote.participants

    def _apply_duel(self, vote: VoteRecord) -> tuple[int, ...]:
        """:meth:`apply` for a duel, without the general path's intermediate outcome, game
        and placement lists: the same operations in the same order (:func:`pairwise`,
        :func:`elo_update`, :func:`trueskill_games`, :meth:`TrueSkillModel.rate`,
        :func:`placements`), so the same numbers bit for bit (tests compare the two paths)."""
        winner = vote.winner
        draw = winner in (TIE, BOTH_BAD)
        if winner == BOTH_BAD and not self.config.both_bad_as_draw:
            return ()
        states = self.states
        pair = []
        for checkpoint in vote.participants:
            state = states.get(checkpoint)
            if state is None:
                state = states[checkpoint] = self.new_state(checkpoint)
            pair.append(state)
        first, second = pair
        # Elo: the winner first (score 1), or shown order for a draw (score 0.5).
        best, other = (second, first) if winner == 1 else (first, second)
        score = 0.5 if draw else 1.0
        elo = self.config.elo
        delta = elo.k * (score - 1.0 / (1.0 + elo.base ** ((other.elo - best.elo) / elo.scale)))
        new_best, new_other = best.elo + delta, other.elo - delta
        ranks = (0, 0) if draw else ((0, 1) if winner == 0 else (1, 0))
        rated = self.trueskill.rate(((first.mu, first.sigma), (second.mu, second.sigma)), ranks)
        now = vote.time
        for state, new_elo, (mu, sigma) in ((best, new_best, rated[best is second]),
                                            (other, new_other, rated[other is second])):
            state.weighted_sum, state.held_since = hold_rating(
                state.weighted_sum, state.held_since, state.elo, now
            )
            if state.first_time is None:
                state.first_time = state.held_since
            state.elo = new_elo
            state.mu, state.sigma = mu, sigma
            state.games += 1
            if draw:
                state.draws += 1
            elif state is best:
                state.wins += 1
            else:
                state.losses += 1
        return vote.participants
