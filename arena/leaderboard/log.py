"""What the leaderboard derives from the vote log of one board, read incrementally.

A :class:`BoardLog` is the aggregate of a board's votes up to its newest vote id: identical
ballots counted once (Bradley-Terry, win-rate and games heatmaps), wins by shown position per
match kind (position bias), and the Elo of every checkpoint over time with its time-weighted
average (:mod:`metrics.elo`, the same update and time integral the stored snapshots use, in
the same vote-id order, so the last point equals the stored snapshot).

The log is append-only and votes commit in id order (:mod:`arena.db`), so a board's
aggregate at newest vote id N never changes; :func:`board_log` keeps one per database,
board and parameters in memory and, on each request, reads only the votes after N on that
board. A vote on another board costs nothing. The first read of a board in a process starts
from its stored aggregate (:mod:`arena.leaderboard.store`, made with the same parameters), so it
too reads only the votes after that. The Elo history is sampled: at most
``MAX_POINTS`` points, thinned by half (and the sampling stride doubled) when full.
"""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from arena.decisions import Exclusions, exclusions
from arena.leaderboard import store as board_store
from arena.models import Match, MatchImage, Prompt, Vote
from arena.ratings import board_where, record_from
from metrics.boards import boards_for
from metrics.bradley_terry import Ballot
from metrics.elo import EloParams, elo_update, hold_rating, time_weighted_average
from metrics.outcomes import VoteRecord, pairwise
from metrics.rating_book import RatingConfig

__all__ = [
    "MAX_POINTS",
    "BoardLog",
    "EloPoint",
    "board_log",
    "clear_cache",
    "log_parameters",
    "read_after",
    "store_log",
    "stored_log",
]

MAX_POINTS = 400
STATE_LAYOUT = 2  # of BoardLog.to_state; a change of layout gets a new number
_CACHE_SIZE = 64
_BATCH = 20_000


@dataclass(frozen=True)
class EloPoint:
    """Every checkpoint's Elo and time-weighted Elo after vote ``vote_id`` (unix ``time``)."""

    vote_id: int
    time: float
    elo: dict[int, float]
    time_weighted: dict[int, float]


@dataclass
class _EloState:
    rating: float
    weighted_sum: float = 0.0
    held_since: float | None = None
    first_time: float | None = None


@dataclass
class BoardLog:
    """The aggregate of one board's votes up to ``last_vote_id`` (0: none yet)."""

    board: str
    elo_params: EloParams
    both_bad_as_draw: bool
    last_vote_id: int = 0
    # Every vote up to here was read (votes of other boards included): the next read starts
    # after it, so a board voted on rarely does not re-read the others' votes.
    read_to: int = 0
    votes: int = 0
    last_time: float = 0.0
    ballots: Counter[Ballot] = field(default_factory=Counter)
    # match kind -> wins by shown position (the winner, or the first of a full ranking)
    position_wins: dict[str, list[int]] = field(default_factory=dict)
    history: list[EloPoint] = field(default_factory=list)
    stride: int = 1
    # (a, b) -> wins of a over b (draws half) and games between them, both directions
    pair_wins: dict[tuple[int, int], float] = field(default_factory=dict)
    pair_games: dict[tuple[int, int], int] = field(default_factory=dict)
    _elo: dict[int, _EloState] = field(default_factory=dict)
    # The votes an operator excluded (arena.decisions: by voter or prompt): read_after leaves
    # them out.
    excluded: Exclusions = field(default_factory=Exclusions)

    def add(self, vote_id: int, kind: str, record: VoteRecord) -> None:
        """Fold one vote (the next in id order) into the aggregate."""
        self.votes += 1
        self.last_vote_id = vote_id
        self.last_time = max(self.last_time, record.time)
        self.ballots[(record.participants, record.winner, record.ranking)] += 1
        top = record.ranking[0] if record.ranking is not None else record.winner
        if isinstance(top, int):
            wins = self.position_wins.setdefault(kind, [0] * len(record.participants))
            if len(wins) == len(record.participants):
                wins[top] += 1
        outcomes = pairwise(record, self.both_bad_as_draw)
        wins, games = self.pair_wins, self.pair_games
        for a, b, score in outcomes:
            wins[(a, b)] = wins.get((a, b), 0.0) + score
            wins[(b, a)] = wins.get((b, a), 0.0) + (1.0 - score)
            games[(a, b)] = games.get((a, b), 0) + 1
            games[(b, a)] = games.get((b, a), 0) + 1
        if outcomes:
            states = self._elo
            for c in record.participants:
                if c not in states:
                    states[c] = _EloState(self.elo_params.initial)
            new = elo_update({c: states[c].rating for c in record.participants}, outcomes,
                             self.elo_params)
            for c in record.participants:
                state = states[c]
                state.weighted_sum, state.held_since = hold_rating(
                    state.weighted_sum, state.held_since, state.rating, record.time
                )
                if state.first_time is None:
                    state.first_time = state.held_since
                state.rating = new[c]
        if self.votes % self.stride == 0:
            self.history.append(self.point())
            if len(self.history) > MAX_POINTS:
                self.history = self.history[1::2]
                self.stride *= 2

    def copy(self) -> BoardLog:
        """An independent copy (the cached one keeps growing under its lock)."""
        return replace(
            self,
            ballots=Counter(self.ballots),
            position_wins={k: list(v) for k, v in self.position_wins.items()},
            history=list(self.history),
            pair_wins=dict(self.pair_wins),
            pair_games=dict(self.pair_games),
            _elo={c: replace(s) for c, s in self._elo.items()},
        )

    def point(self) -> EloPoint:
        """The Elo of every checkpoint now (after the newest vote)."""
        now = self.last_time
        return EloPoint(
            self.last_vote_id,
            now,
            {c: s.rating for c, s in self._elo.items()},
            {c: time_weighted_average(s.weighted_sum, s.held_since, s.first_time, s.rating, now)
             for c, s in self._elo.items()},
        )

    def elo_history(self) -> list[EloPoint]:
        """The sampled history, ending with the current point."""
        if not self.votes:
            return []
        if self.history and self.history[-1].vote_id == self.last_vote_id:
            return list(self.history)
        return [*self.history, self.point()]

    def to_state(self) -> dict[str, Any]:
        """Everything :meth:`from_state` needs to continue the aggregate, as JSON-ready lists
        (floats survive JSON exactly: Python writes the shortest repr that reads back)."""
        return {
            "last_vote_id": self.last_vote_id,
            "read_to": self.read_to,
            "votes": self.votes,
            "last_time": self.last_time,
            "stride": self.stride,
            "ballots": _flat_ballots(self.ballots),
            "position_wins": self.position_wins,
            "history": [[h.vote_id, h.time, [[c, e, h.time_weighted[c]] for c, e in h.elo.items()]]
                        for h in self.history],
            "pairs": [[a, b, w, self.pair_games[(a, b)]] for (a, b), w in self.pair_wins.items()],
            "elo": [[c, s.rating, s.weighted_sum, s.held_since, s.first_time]
                    for c, s in self._elo.items()],
        }

    @classmethod
    def from_state(cls, board: str, elo_params: EloParams, both_bad_as_draw: bool,
                   state: dict[str, Any], excluded: Exclusions = Exclusions()) -> BoardLog:
        """The aggregate :meth:`to_state` wrote (for the same board and parameters)."""
        log = cls(board, elo_params, both_bad_as_draw, last_vote_id=state["last_vote_id"],
                  read_to=state["read_to"], votes=state["votes"],
                  last_time=state["last_time"], stride=state["stride"], excluded=excluded)
        log.ballots = _unflat_ballots(state["ballots"])
        log.position_wins = {k: list(v) for k, v in state["position_wins"].items()}
        log.history = [EloPoint(v, t, {c: e for c, e, _ in points},
                                {c: tw for c, _, tw in points})
                       for v, t, points in state["history"]]
        log.pair_wins = {(a, b): w for a, b, w, _ in state["pairs"]}
        log.pair_games = {(a, b): g for a, b, _, g in state["pairs"]}
        log._elo = {c: _EloState(r, ws, hs, ft) for c, r, ws, hs, ft in state["elo"]}
        return log

    def pair_matrix(self) -> tuple[list[int], list[list[float]], list[list[int]]]:
        """Checkpoint ids, wins ``W[i][j]`` of i over j (draws half) and games between them."""
        order = sorted({a for a, _ in self.pair_games})
        wins, games = self.pair_wins, self.pair_games
        return (
            order,
            [[wins.get((a, b), 0.0) for b in order] for a in order],
            [[games.get((a, b), 0) for b in order] for a in order],
        )


# Ballots are stored grouped by shape, each group one flat list of ints (tens of thousands
# of ballots on a large board decode several times faster than nested lists): a group is
# ``[participants, ranking length or -1, rows]``, a row the participants, then the winner (a
# position, or a code below) or the ranking, then the count.
_WINNER_CODES: dict[Any, int] = {None: -1, "tie": -2, "both_bad": -3}
_CODE_WINNERS = {code: winner for winner, code in _WINNER_CODES.items()}


def _flat_ballots(ballots: Counter[Ballot]) -> list[list[Any]]:
    groups: dict[tuple[int, int], list[int]] = {}
    for (participants, winner, ranking), n in ballots.items():
        if ranking is None:
            rows = groups.setdefault((len(participants), -1), [])
            rows += participants
            rows.append(winner if isinstance(winner, int) else _WINNER_CODES[winner])
        else:
            rows = groups.setdefault((len(participants), len(ranking)), [])
            rows += participants
            rows += ranking
        rows.append(n)
    return [[size, length, rows] for (size, length), rows in groups.items()]


def _unflat_ballots(groups: list[list[Any]]) -> Counter[Ballot]:
    ballots: Counter[Ballot] = Counter()
    for size, length, flat in groups:  # the groups' keys are disjoint: plain dict updates
        width = size + max(length, 1) + 1
        rows = zip(*[iter(flat)] * width, strict=True)
        if length < 0:
            dict.update(ballots, {
                (r[:size], r[size] if r[size] >= 0 else _CODE_WINNERS[r[size]], None): r[-1]
                for r in rows})
        else:
            dict.update(ballots, {(r[:size], None, r[size:-1]): r[-1] for r in rows})
    return ballots


_CACHE: dict[tuple[Any, ...], BoardLog] = {}
_LOCKS: dict[tuple[Any, ...], threading.Lock] = {}
_GUARD = threading.Lock()


def clear_cache() -> None:
    """Forget every board log held in memory, as a restarted process would."""
    with _GUARD:
        _CACHE.clear()
        _LOCKS.clear()


def log_parameters(config: RatingConfig,
                   excluded: Exclusions = Exclusions()) -> dict[str, Any]:
    """What decides a board log's numbers, and the layout of its stored state (the key of
    its stored aggregate: a row in another layout, or made with other voters or prompts
    excluded, is never read)."""
    return {"elo": asdict(config.elo), "both_bad_as_draw": config.both_bad_as_draw,
            "layout": STATE_LAYOUT, **excluded.parameters()}


def stored_log(session: Session, board: str, config: RatingConfig,
               excluded: Exclusions = Exclusions()) -> BoardLog | None:
    """The board's stored aggregate made with exactly ``config``'s parameters and the
    ``excluded`` votes left out, or None."""
    found = board_store.load(session, board, board_store.LOG, log_parameters(config, excluded))
    if found is None:
        return None
    return BoardLog.from_state(board, config.elo, config.both_bad_as_draw, found[1], excluded)


def store_log(session: Session, log: BoardLog) -> None:
    """Store ``log`` as its board's aggregate (a writing session)."""
    config = RatingConfig(elo=log.elo_params, both_bad_as_draw=log.both_bad_as_draw)
    board_store.save(session, log.board, board_store.LOG, log_parameters(config, log.excluded),
                     log.last_vote_id, log.votes, log.to_state())


def read_after(session: Session, log: BoardLog, upto: int | None = None) -> None:
    """Fold the board's votes after ``log.last_vote_id`` (up to ``upto``) into ``log``.

    Votes are read by id range (the primary key: cheap however large the log, and the same
    plan on both databases) with their match kind and character, and kept when they count
    on the board (:func:`metrics.boards.boards_for`, the one place that says so) and not left
    out by ``log.excluded``."""
    board_where(log.board)
    conn = session.connection()  # plain Core rows: no ORM row processing per vote
    after = max(log.last_vote_id, log.read_to)
    while True:
        bound = [] if upto is None else [Vote.id <= upto]
        votes = conn.execute(
            select(Vote.id, Vote.match_id, Vote.outcome, Vote.winner_position, Vote.ranking,
                   Vote.created_at, Vote.voter_id)
            .where(Vote.id > after, *bound)
            .order_by(Vote.id)
            .limit(_BATCH)
        ).all()
        if not votes:
            return
        # The matches by their ids, in a second query: joined to the id range, PostgreSQL
        # plans for a full batch (a hash join over every match) even when one vote is new.
        kinds = {
            match_id: (kind, character, prompt_id)
            for match_id, kind, character, prompt_id in conn.execute(
                select(Match.id, Match.kind, Prompt.character, Match.prompt_id)
                .join(Prompt, Prompt.id == Match.prompt_id)
                .where(Match.id.in_([v.match_id for v in votes]))
            )
        }
        after = log.read_to = votes[-1].id
        kept = [v for v in votes if log.board in boards_for(*kinds[v.match_id][:2])
                and log.excluded.counts(v.voter_id, kinds[v.match_id][2])]
        positions: dict[int, list[int]] = {}
        if kept:
            for match_id, checkpoint_id in conn.execute(
                select(MatchImage.match_id, MatchImage.checkpoint_id)
                .where(MatchImage.match_id.in_([v.match_id for v in kept]))
                .order_by(MatchImage.match_id, MatchImage.position)
            ):
                positions.setdefault(match_id, []).append(checkpoint_id)
        for v in kept:
            record = record_from(v.outcome, v.winner_position, v.ranking, positions[v.match_id],
                                 v.created_at.timestamp())
            log.add(v.id, kinds[v.match_id][0], record)
        if len(votes) < _BATCH:
            return


def board_log(session: Session, board: str, config: RatingConfig) -> BoardLog:
    """The board's aggregate up to its newest vote visible to ``session`` (read-only: it only
    reads votes after the cached newest one); the caller gets its own copy. A UserError names
    an unknown board."""
    board_where(board)
    excluded = exclusions(session)
    key = (str(session.get_bind().url), board, config.elo, config.both_bad_as_draw, excluded)
    with _GUARD:
        lock = _LOCKS.setdefault(key, threading.Lock())
    with lock:
        log = _CACHE.get(key)
        if log is None:
            log = (stored_log(session, board, config, excluded)
                   or BoardLog(board, config.elo, config.both_bad_as_draw, excluded=excluded))
        read_after(session, log)
        with _GUARD:
            _CACHE[key] = log
            while len(_CACHE) > _CACHE_SIZE:
                oldest = next(iter(_CACHE))
                _CACHE.pop(oldest)
                _LOCKS.pop(oldest, None)
        return log.copy()
