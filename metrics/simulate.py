"""The convergence simulator: how many votes a matchmaking rule and a rating system need.

Pure (no database, web or torch): N checkpoints get hidden true log-strengths theta drawn from
N(0, spread^2). Simulated voters judge the matches that :func:`metrics.pairing.pick_checkpoints`
(the function the live arena calls) chooses:

- a duel is won by i with the Bradley-Terry probability ``1 / (1 + exp(theta_j - theta_i))``
  (Bradley & Terry 1952); a ``fixed`` duel is a tie with probability
  ``draw_rate * 4 p (1 - p)`` (most likely between equals), any duel is "both bad" with
  probability ``both_bad_rate``;
- a four-way match is ranked by Plackett-Luce (Plackett 1975, Luce 1959): the best image is
  drawn with probability proportional to exp(theta), then the best of the rest, and so on; a
  share ``full_ranking`` of voters submit the whole order, the others only the best image;
- with probability ``lapse`` a voter answers at random (inattention, taste, misclicks).

Every vote goes through :class:`metrics.rating_book.RatingBook` (the live arena's online Elo
and TrueSkill), whose TrueSkill mu and sigma and the issued counts are what matchmaking sees.
The ranking is estimated by Elo, TrueSkill mu, or a Bradley-Terry fit of every vote so far
(:func:`metrics.bradley_terry.fit_strengths`), and compared with the truth at a geometric grid
of vote counts: Kendall's tau (tau-a), the mean absolute rank error, and whether the top
``top_k`` are exactly right (the same ``top_k`` checkpoints as the truth's; their order among
themselves is measured by tau).

"Votes needed" for a target is the first evaluated vote count from which the target held at
every later evaluation until the vote count had at least doubled (a run stops once every target
has settled this way, or at ``max_votes``; a target not settled by then is censored, reported
as None). Also reported: the first evaluated vote count at which tau reached the target at
all (``votes_first_tau``), which a noisy estimator reaches long before it stays there. A
four-way vote counts as one vote.

Attack and voter behaviour: with ``attack`` set (:mod:`metrics.attack`), a share of the
votes comes from a vote-rigging attacker spread over many voter ids, who skips the matches it
does not act on; ``random_voters`` is the share of voters who answer every vote at random and
``skip_rate`` the chance an honest voter skips a match. ``run(..., keep_log=True)`` (or the
``robust`` estimator, :mod:`metrics.robust`) keeps every shown match with its voter, vote or
skip and answer time (:class:`metrics.reliability.VoterMatch`), and a run that keeps its log
goes on to ``max_votes``.

Newcomer: with ``newcomer_after`` set, the last checkpoint joins only after that many votes;
reported are the votes (all matches, from its arrival) until its estimated rank stays within one
place of its true rank, by the same settling rule.
"""

from __future__ import annotations

import math
import random
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from statistics import median
from typing import Any, Literal

import numpy as np

from metrics.attack import AttackConfig, Attacker, answer_seconds
from metrics.bradley_terry import fit_strengths
from metrics.elo import EloParams
from metrics.errors import InputError
from metrics.match_kinds import KINDS, MATCH_SIZES, check_kind
from metrics.outcomes import BOTH_BAD, TIE, VoteRecord, pairwise
from metrics.pairing import PairingParams, Standing, Strategy, check_strategy, pick_checkpoints
from metrics.rating_book import RatingBook, RatingConfig
from metrics.rating_systems import SYSTEMS
from metrics.reliability import VoterMatch
from metrics.robust import RobustParams, robust_bradley_terry
from metrics.trueskill_fast import TrueSkillParams

__all__ = [
    "ESTIMATORS",
    "RunResult",
    "SimulationConfig",
    "VoterModel",
    "kendall_tau",
    "run",
    "run_many",
    "simulated_vote",
    "summarize",
]

Estimator = Literal["elo", "trueskill", "bt", "robust"]
# The rating systems the simulator ranks by (:data:`metrics.rating_systems.SYSTEMS`).
ESTIMATORS: tuple[Estimator, ...] = tuple(  # type: ignore[assignment]
    name for name, s in SYSTEMS.items() if s.simulated)
RECENT_SETS = 20  # how many of a simulated voter's last sets matchmaking avoids (as the arena)
NEWCOMER_STEP = 10  # votes between checks of a newcomer's rank


@dataclass(frozen=True, slots=True)
class VoterModel:
    """How simulated voters answer (see the module doc)."""

    lapse: float = 0.15
    draw_rate: float = 0.10
    both_bad_rate: float = 0.05
    full_ranking: float = 1.0

    def __post_init__(self) -> None:
        for name in ("lapse", "draw_rate", "both_bad_rate", "full_ranking"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise InputError(f"voter {name}: expected a probability in [0, 1], got {value!r}")
        if self.draw_rate + self.both_bad_rate > 1.0:
            raise InputError("voter draw_rate + both_bad_rate: expected at most 1")


@dataclass(frozen=True)
class SimulationConfig:
    """One simulated arena: checkpoints, matchmaking, rating system, voters, targets."""

    checkpoints: int = 50
    spread: float = 1.0
    strategy: Strategy = "uniform"
    estimator: Estimator = "elo"
    elo_k: float = 4.0
    kinds: Mapping[str, float] = field(default_factory=lambda: {"fixed": 1.0})
    voter: VoterModel = field(default_factory=VoterModel)
    voters: int = 200
    max_votes: int = 20_000
    target_tau: float = 0.9
    top_k: int = 5
    first_eval: int = 20
    grid_factor: float = 1.05
    newcomer_after: int | None = None
    pairing: PairingParams = field(default_factory=PairingParams)
    attack: AttackConfig | None = None
    random_voters: float = 0.0
    skip_rate: float = 0.0

    def __post_init__(self) -> None:
        check_strategy(self.strategy)
        if self.estimator not in ESTIMATORS:
            raise InputError(
                f"estimator: expected one of {', '.join(ESTIMATORS)}, got {self.estimator!r}"
            )
        if not self.kinds or any(w < 0 for w in self.kinds.values()) or not any(
            self.kinds.values()
        ):
            raise InputError(f"kinds: expected positive weights per match kind, got {self.kinds}")
        for kind in self.kinds:
            check_kind(kind, "kinds")
        need = max(MATCH_SIZES[k] for k in self.kinds)
        if self.checkpoints < max(need + 1, self.top_k):
            raise InputError(
                f"checkpoints: expected at least {max(need + 1, self.top_k)}, "
                f"got {self.checkpoints}"
            )
        if self.max_votes < 1:
            raise InputError(f"max_votes: expected a positive number, got {self.max_votes}")
        if self.spread <= 0:
            raise InputError(f"spread: expected a positive number, got {self.spread}")
        for name in ("random_voters", "skip_rate"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise InputError(f"{name}: expected a share in [0, 1), got {getattr(self, name)!r}")
        if self.attack is not None and self.attack.target_place > self.checkpoints:
            raise InputError(f"attack target_place: expected at most {self.checkpoints}, "
                             f"got {self.attack.target_place}")
        if self.grid_factor <= 1.0:
            raise InputError(f"grid_factor: expected a number above 1, got {self.grid_factor}")

    def describe(self) -> dict[str, Any]:
        """The configuration as plain data (for ``--json`` provenance)."""
        data = asdict(self)
        data["kinds"] = dict(self.kinds)
        return data


@dataclass
class RunResult:
    """One seed's run: the evaluated vote counts and the measures at each."""

    seed: int
    votes: list[int] = field(default_factory=list)
    tau: list[float] = field(default_factory=list)
    rank_error: list[float] = field(default_factory=list)
    top_ok: list[bool] = field(default_factory=list)
    votes_to_tau: int | None = None
    votes_first_tau: int | None = None
    votes_to_target: int | None = None
    newcomer_votes: int | None = None
    newcomer_games: int | None = None
    matched: dict[int, int] = field(default_factory=dict)
    theta: dict[int, float] = field(default_factory=dict)
    target: int | None = None
    attacker_ids: frozenset[int] = frozenset()
    log: list[VoterMatch] = field(default_factory=list)


def kendall_tau(estimate: Sequence[float], truth: Sequence[float]) -> float:
    """Kendall's tau-a between two score lists (pairs tied in the estimate count zero)."""
    e, t = np.asarray(estimate, dtype=float), np.asarray(truth, dtype=float)
    n = len(e)
    signs = np.sign(e[:, None] - e[None, :]) * np.sign(t[:, None] - t[None, :])
    return float(np.triu(signs, 1).sum() / (n * (n - 1) / 2))


def _ranks(scores: Sequence[float]) -> np.ndarray:
    """Rank of each index, 0 best; ties broken by index so the result is deterministic."""
    order = sorted(range(len(scores)), key=lambda i: (-scores[i], i))
    ranks = np.empty(len(scores), dtype=int)
    ranks[order] = np.arange(len(scores))
    return ranks


class _Settle:
    """Tracks when a target started holding, and whether it has held until votes doubled."""

    def __init__(self) -> None:
        self.since: int | None = None
        self.settled: int | None = None

    def update(self, votes: int, holds: bool) -> None:
        if self.settled is not None:
            return
        if not holds:
            self.since = None
            return
        if self.since is None:
            self.since = votes
        if votes >= 2 * self.since and votes > self.since:
            self.settled = self.since


def simulated_vote(kind: str, group: tuple[int, ...], theta: Mapping[int, float],
                   voter: VoterModel, rng: random.Random, time: float = 0.0) -> VoteRecord:
    """One simulated voter's verdict on ``group`` (true log-strengths ``theta``)."""
    entry = KINDS[kind]
    if not entry.rankings:
        a, b = group
        p = 0.5 if rng.random() < voter.lapse else 1.0 / (1.0 + math.exp(theta[b] - theta[a]))
        u = rng.random()
        both_bad = voter.both_bad_rate if entry.both_bad else 0.0
        if u < both_bad:
            return VoteRecord(group, winner=BOTH_BAD, time=time)
        if entry.ties and u < both_bad + voter.draw_rate * 4.0 * p * (1.0 - p):
            return VoteRecord(group, winner=TIE, time=time)
        return VoteRecord(group, winner=0 if rng.random() < p else 1, time=time)
    positions = list(range(len(group)))
    if rng.random() < voter.lapse:
        rng.shuffle(positions)
        order = positions
    else:  # Plackett-Luce: best of the remaining, with probability proportional to exp(theta)
        order = []
        while positions:
            weights = [math.exp(theta[group[i]]) for i in positions]
            pick = rng.choices(range(len(positions)), weights=weights)[0]
            order.append(positions.pop(pick))
    if rng.random() < voter.full_ranking:
        return VoteRecord(group, ranking=tuple(order), time=time)
    return VoteRecord(group, winner=order[0], time=time)


def _grid(config: SimulationConfig) -> list[int]:
    points, value = [], float(config.first_eval)
    while value < config.max_votes:
        points.append(round(value))
        value = max(value * config.grid_factor, value + 1)
    points.append(config.max_votes)
    return sorted(set(points))


class _Crowd:
    """Issues matches to simulated voters (honest ones and an attacker's ids) until one votes;
    keeps the shown matches when asked. The honest path draws from ``rng`` exactly as before
    attackers existed, so runs without them are unchanged; answer times and image draws come
    from a second stream."""

    def __init__(self, config: SimulationConfig, rng: random.Random, seed: int,
                 theta: dict[int, float], standings: dict[int, Standing], keep: bool) -> None:
        self.config, self.rng, self.theta, self.standings = config, rng, theta, standings
        self.aux = random.Random(f"{seed}/voters")
        self.kinds = list(config.kinds)
        self.weights = [config.kinds[k] for k in self.kinds]
        self.recent: dict[int, deque[frozenset[int]]] = {}
        self.random_voters = round(config.random_voters * config.voters)
        self.random_model = replace(config.voter, lapse=1.0)
        order = sorted(theta, key=lambda c: -theta[c])
        attack = config.attack
        self.attacker = Attacker.against(attack, order) if attack and attack.share else None
        self.log: list[VoterMatch] | None = [] if keep else None

    def _issue(self, available: list[int], first: int, count: int,
               ) -> tuple[int, str, tuple[int, ...]]:
        """A match for one of voters ``first .. first + count - 1`` (drawn after the kind)."""
        rng = self.rng
        kind = self.kinds[0] if len(self.kinds) == 1 else rng.choices(
            self.kinds, weights=self.weights)[0]
        voter = first + rng.randrange(count)
        history = self.recent.setdefault(voter, deque(maxlen=RECENT_SETS))
        group = pick_checkpoints(
            self.config.strategy, available, MATCH_SIZES[kind], self.standings, rng,
            avoid=history, last=history[-1] if history else None, params=self.config.pairing,
        )
        history.append(frozenset(group))
        return voter, kind, group

    def _skipped(self, voter: int, kind: str, group: tuple[int, ...]) -> None:
        for c in group:  # an issued match counts for matchmaking even when skipped
            old = self.standings.get(c)
            if old is not None:
                self.standings[c] = Standing(old.issued + 1, old.mu, old.sigma)
        if self.log is not None:
            self.log.append(VoterMatch(voter, kind, group))

    def _voted(self, voter: int, kind: str, record: VoteRecord, who: str) -> None:
        seconds = answer_seconds(who, self.aux)  # drawn whether kept or not: same streams
        if self.log is not None:
            self.log.append(VoterMatch(voter, kind, record.participants, record, seconds))

    def _attacker_vote(self, available: list[int], time: float,
                       ) -> tuple[tuple[int, ...], VoteRecord] | None:
        attacker = self.attacker
        assert attacker is not None
        for _ in range(attacker.config.max_tries):
            voter, kind, group = self._issue(available, self.config.voters, attacker.config.ids)
            images = tuple(self.aux.randrange(attacker.config.pool) for _ in group)
            record, recognised = attacker.answer(kind, group, images, self.rng, time)
            if record is None:
                self._skipped(voter, kind, group)
                continue
            attacker.reveal(group, images)
            self._voted(voter, kind, record, "recognised" if recognised else "random")
            return group, record
        return None

    def next_vote(self, available: list[int], time: float,
                  ) -> tuple[tuple[int, ...], VoteRecord]:
        """The next vote cast: the checkpoints shown and the ballot."""
        attack = self.config.attack
        if self.attacker is not None and attack and self.aux.random() < attack.share:
            done = self._attacker_vote(available, time)
            if done is not None:
                return done
        while True:
            voter, kind, group = self._issue(available, 0, self.config.voters)
            if self.config.skip_rate and self.aux.random() < self.config.skip_rate:
                self._skipped(voter, kind, group)
                continue
            careless = voter < self.random_voters
            model = self.random_model if careless else self.config.voter
            record = simulated_vote(kind, group, self.theta, model, self.rng, time)
            self._voted(voter, kind, record, "random" if careless else "honest")
            return group, record


def run(config: SimulationConfig, seed: int, keep_log: bool = False) -> RunResult:
    """Simulate one arena under ``seed`` (deterministic: same config and seed, same result);
    ``keep_log`` keeps every shown match in the result and runs to ``max_votes``."""
    rng = random.Random(seed)
    n = config.checkpoints
    ids = list(range(1, n + 1))
    theta = {c: rng.gauss(0.0, config.spread) for c in ids}
    truth = [theta[c] for c in ids]
    index = {c: i for i, c in enumerate(ids)}
    params = config.pairing
    ts = TrueSkillParams(mu=params.default.mu, sigma=params.default.sigma, beta=params.beta)
    book = RatingBook(RatingConfig(elo=EloParams(k=config.elo_k), trueskill=ts))
    standings: dict[int, Standing] = {}
    wins = np.zeros((n, n))
    newcomer = ids[-1] if config.newcomer_after is not None else None
    available = [c for c in ids if c != newcomer]
    crowd = _Crowd(config, rng, seed, theta, standings,
                   keep_log or config.estimator == "robust")
    grid = deque(_grid(config))
    result = RunResult(seed)
    tau_settle, target_settle, newcomer_settle = _Settle(), _Settle(), _Settle()
    arrived = 0

    def estimate() -> list[float]:
        if config.estimator == "bt":
            return list(fit_strengths(wins))
        if config.estimator == "robust":
            fitted = robust_bradley_terry(crowd.log or [], RobustParams(rounds=0))
            ratings = {row.checkpoint_id: row.rating for row in fitted.ratings}
            return [ratings.get(c, 1000.0) for c in ids]
        if config.estimator == "trueskill":
            return [book.get(c).mu for c in ids]
        return [book.get(c).elo for c in ids]

    for votes in range(1, config.max_votes + 1):
        if newcomer is not None and votes - 1 == config.newcomer_after:
            available.append(newcomer)
            arrived = votes - 1
        group, record = crowd.next_vote(available, float(votes))
        book.apply(record)
        for a, b, score in pairwise(record):
            wins[index[a], index[b]] += score
            if score < 1.0:
                wins[index[b], index[a]] += 1.0 - score
        for c in group:
            state = book.get(c)
            old = standings.get(c)
            standings[c] = Standing((old.issued if old else 0) + 1, state.mu, state.sigma)
        check_newcomer = (
            newcomer is not None and arrived and (votes - arrived) % NEWCOMER_STEP == 0
            and newcomer_settle.settled is None
        )
        if (grid and votes == grid[0]) or check_newcomer:
            scores = estimate()
        if check_newcomer:
            ranks, true_ranks = _ranks(scores), _ranks(truth)
            k = index[newcomer]
            newcomer_settle.update(votes - arrived, abs(int(ranks[k]) - int(true_ranks[k])) <= 1)
        if not grid or votes != grid[0]:
            continue
        grid.popleft()
        ranks, true_ranks = _ranks(scores), _ranks(truth)
        tau = kendall_tau(scores, truth)
        top = config.top_k
        top_ok = set(np.flatnonzero(ranks < top)) == set(np.flatnonzero(true_ranks < top))
        result.votes.append(votes)
        result.tau.append(tau)
        result.rank_error.append(float(np.abs(ranks - true_ranks).mean()))
        result.top_ok.append(top_ok)
        tau_settle.update(votes, tau >= config.target_tau)
        if result.votes_first_tau is None and tau >= config.target_tau:
            result.votes_first_tau = votes
        target_settle.update(votes, tau >= config.target_tau and top_ok)
        newcomer_done = newcomer is None or newcomer_settle.settled is not None
        settled = tau_settle.settled is not None and target_settle.settled is not None
        if settled and newcomer_done and not keep_log:
            break
    result.votes_to_tau = tau_settle.settled
    result.votes_to_target = target_settle.settled
    if newcomer is not None and newcomer_settle.settled is not None:
        result.newcomer_votes = newcomer_settle.settled
        result.newcomer_games = book.get(newcomer).games
    result.matched = {c: standings[c].issued if c in standings else 0 for c in ids}
    if keep_log:
        result.theta = dict(theta)
        result.log = crowd.log or []
        if crowd.attacker is not None:
            result.target = crowd.attacker.target
            result.attacker_ids = frozenset(
                range(config.voters, config.voters + crowd.attacker.config.ids))
    return result


def run_many(config: SimulationConfig, seeds: Iterable[int],
             progress: Callable[[Iterable[int]], Iterable[int]] | None = None) -> list[RunResult]:
    """One :func:`run` per seed; ``progress`` may wrap the seeds (e.g. ``tqdm``)."""
    seeds = list(seeds)
    return [run(config, seed) for seed in (progress(seeds) if progress else seeds)]


def _spread(values: list[int | None]) -> dict[str, Any]:
    done = sorted(v for v in values if v is not None)
    censored = len(values) - len(done)
    if censored * 2 >= len(values) or not done:
        middle = None  # the median itself is censored
    else:
        middle = float(median([*done, *([math.inf] * censored)]))
    return {
        "median": middle,
        "p25": float(np.percentile(done, 25)) if done else None,
        "p75": float(np.percentile(done, 75)) if done and not censored else None,
        "min": done[0] if done else None,
        "max": done[-1] if done and not censored else None,
        "censored": censored,
        "runs": len(values),
    }


def summarize(config: SimulationConfig, results: Sequence[RunResult]) -> dict[str, Any]:
    """Median and spread over seeds of the votes needed, and the median curves."""
    common = min(len(r.votes) for r in results)
    curve_votes = results[0].votes[:common]
    summary: dict[str, Any] = {
        "config": config.describe(),
        "seeds": [r.seed for r in results],
        "votes_to_tau": _spread([r.votes_to_tau for r in results]),
        "votes_first_tau": _spread([r.votes_first_tau for r in results]),
        "votes_to_target": _spread([r.votes_to_target for r in results]),
        "curve": {
            "votes": curve_votes,
            "tau_median": [float(median(r.tau[i] for r in results)) for i in range(common)],
            "rank_error_median": [
                float(median(r.rank_error[i] for r in results)) for i in range(common)
            ],
        },
        "least_matched": min(min(r.matched.values(), default=0) for r in results),
    }
    if config.newcomer_after is not None:
        summary["newcomer_votes"] = _spread([r.newcomer_votes for r in results])
    return summary
