"""The robust board: Bradley-Terry that weighs voters by reliability and models shown position.

Steps, each from the modules that define them:

1. behaviour signals of every voter (:func:`metrics.reliability.voter_signals`); voters they
   flag are left out;
2. Crowd-BT by alternating MAP on the other voters' votes
   (:func:`metrics.reliability.fit_crowd_bt`), each vote weighted by its voter's reliability, with
   a position term per match kind (:mod:`metrics.factor_bt`, factorBT-style); voters whose
   posterior says they vote against the consensus order are flagged too and the fit is redone
   without them;
3. ratings on the Elo scale as in :mod:`metrics.bradley_terry`; intervals by the percentile
   bootstrap resampling *voters* with replacement (all of a voter's votes together, since one
   voter's votes are not independent), each round refitting strengths and position terms with
   the voters' weights of the full fit held fixed (refitting the reliabilities in every round
   would cost the full fit's alternation each time).

A voter's weight is 0 when flagged, else ``2 eta - 1`` (the slope of its answer probability
in the model's: 0 for a voter answering at random). A vote is
*discounted* when its voter's weight is below ``discount_below``. With every voter honest and
reliable the likelihood is plain Bradley-Terry's plus a position term near zero, so the two
boards agree within their intervals.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from metrics.bradley_terry import BTRating, to_elo_scale
from metrics.errors import InputError
from metrics.factor_bt import SLOTS, comparisons_of, design, fit_rows
from metrics.outcomes import placements
from metrics.reliability import (
    CrowdBTFit,
    ReliabilityParams,
    VoterKey,
    VoterMatch,
    VoterSignals,
    against_consensus,
    fit_crowd_bt,
    voter_signals,
)

__all__ = ["PositionTerm", "RobustParams", "RobustResult", "robust_bradley_terry"]


@dataclass(frozen=True)
class RobustParams:
    """Everything that decides the robust board's numbers."""

    reliability: ReliabilityParams = field(default_factory=ReliabilityParams)
    rounds: int = 100
    seed: int = 0
    confidence: float = 0.95
    both_bad_as_draw: bool = True
    discount_below: float = 0.5

    def __post_init__(self) -> None:
        if self.rounds < 0:
            raise InputError(f"rounds: expected a number of bootstrap rounds >= 0, "
                             f"got {self.rounds}")
        if not 0 < self.confidence < 1:
            raise InputError(f"confidence: expected a level between 0 and 1, "
                             f"got {self.confidence}")

    def describe(self) -> dict[str, object]:
        """The parameters as plain data (provenance of a stored board)."""
        r = self.reliability
        return {"prior_agree": r.prior_agree, "prior_disagree": r.prior_disagree,
                "alpha": r.alpha, "min_votes": r.min_votes, "rounds": self.rounds,
                "seed": self.seed, "confidence": self.confidence,
                "both_bad_as_draw": self.both_bad_as_draw,
                "discount_below": self.discount_below}


@dataclass(frozen=True)
class PositionTerm:
    """The fitted advantage of a shown position over position 0 of the same match kind, in
    log-odds, with its bootstrap interval."""

    kind: str
    position: int
    value: float
    lower: float
    upper: float


@dataclass(frozen=True)
class RobustResult:
    """Ratings best first, position terms, every voter's signals and weight, what was
    discounted, and per checkpoint the votes read (``tallies``: games, wins, draws, losses
    over every vote the board reads, discounted or not, as every board counts games)."""

    ratings: tuple[BTRating, ...]
    position: tuple[PositionTerm, ...]
    voters: dict[VoterKey, VoterSignals]
    selective: dict[int, float]
    weights: dict[VoterKey, float]
    n_votes: int
    flagged_voters: int
    flagged_votes: int
    discounted_voters: int
    discounted_votes: int
    params: RobustParams
    tallies: dict[int, tuple[int, int, int, int]] = field(default_factory=dict)

    def to_state(self) -> dict[str, Any]:
        """The result as JSON-ready data (voters as ``[key, fields]`` pairs: keys may be
        numbers); :meth:`from_state` reads it back with the same parameters."""
        return {
            "ratings": [asdict(r) for r in self.ratings],
            "position": [asdict(t) for t in self.position],
            "voters": [[v, asdict(s)] for v, s in self.voters.items()],
            "selective": [[c, p] for c, p in self.selective.items()],
            "weights": [[v, w] for v, w in self.weights.items()],
            "counts": [self.n_votes, self.flagged_voters, self.flagged_votes,
                       self.discounted_voters, self.discounted_votes],
            "tallies": [[c, list(t)] for c, t in self.tallies.items()],
        }

    @classmethod
    def from_state(cls, state: dict[str, Any], params: RobustParams) -> RobustResult:
        """The result :meth:`to_state` wrote."""
        return cls(tuple(BTRating(**r) for r in state["ratings"]),
                   tuple(PositionTerm(**t) for t in state["position"]),
                   {v: VoterSignals(**s) for v, s in state["voters"]},
                   {c: p for c, p in state["selective"]},
                   {v: w for v, w in state["weights"]}, *state["counts"], params,
                   {c: (t[0], t[1], t[2], t[3]) for c, t in state["tallies"]})



def _ranks(lower: np.ndarray, upper: np.ndarray) -> np.ndarray:
    return 1 + (lower[None, :] > upper[:, None]).sum(axis=1)


def robust_bradley_terry(matches: Sequence[VoterMatch],
                         params: RobustParams | None = None) -> RobustResult:
    """The robust board of the matches shown to voters (skipped ones feed the signals)."""
    p = params or RobustParams()
    board = voter_signals(matches, p.reliability)
    signals = board.voters
    voted = [m for m in matches if m.vote is not None]
    ids = sorted({c for m in voted for c in m.participants})
    index = {c: i for i, c in enumerate(ids)}
    n = len(ids)
    flagged = {v for v, s in signals.items() if s.flagged}
    tested = sum(s.votes >= p.reliability.min_votes for s in signals.values())
    fit = None
    kept: list[VoterMatch] = []
    order: list[VoterKey] = []
    while n:
        kept = [m for m in voted if m.voter not in flagged]
        order = sorted({m.voter for m in kept}, key=repr)
        slot = {v: i for i, v in enumerate(order)}
        c = comparisons_of([(m.kind, m.vote) for m in kept], index,  # type: ignore[misc]
                           p.both_bad_as_draw)
        voter = np.array([slot[kept[v].voter] for v in c.vote], dtype=np.int64)
        fit = fit_crowd_bt(c, voter, n, len(order), p.reliability)
        against = set()
        for v, i in slot.items():
            s = signals[v]
            s.reliability = float(fit.eta[i])
            s.agreement = float(fit.agree[i] / fit.total[i]) if fit.total[i] else None
            s.against_p = against_consensus(fit.agree[i], fit.total[i], p.reliability)
            if s.votes >= p.reliability.min_votes and (
                    s.against_p > 1.0 - p.reliability.alpha / max(tested, 1)):
                s.reasons.append(f"agrees with the consensus order in "
                                 f"{100 * (s.agreement or 0):.0f}% of its comparisons "
                                 f"(P(reliability < 0.5) = {s.against_p:.4f})")
                against.add(v)
        if not against:
            break
        flagged |= against
    weights = {v: 0.0 if v in flagged else
               (2.0 * (s.reliability if s.reliability is not None else 1.0) - 1.0)
               for v, s in signals.items()}
    counts = {v: s.votes for v, s in signals.items()}
    discounted = [v for v, w in weights.items() if w < p.discount_below and counts[v]]
    tallies = _tallies(voted, p.both_bad_as_draw)
    empty = RobustResult((), (), signals, board.selective, weights, len(voted),
                         len(flagged & set(counts)), sum(counts[v] for v in flagged if v in counts),
                         len(discounted), sum(counts[v] for v in discounted), p, tallies)
    if fit is None or not kept:
        return empty
    rating = to_elo_scale(fit.params[:n])
    gamma = fit.params[n:]
    lower, upper = rating.copy(), rating.copy()
    g_low, g_high = gamma.copy(), gamma.copy()
    if p.rounds and len(order) > 1:
        samples, g_samples = _bootstrap(kept, order, index, fit, p)
        tail = 100.0 * (1.0 - p.confidence) / 2.0
        lower, upper = np.percentile(samples, [tail, 100.0 - tail], axis=0)
        g_low, g_high = np.percentile(g_samples, [tail, 100.0 - tail], axis=0)
    ranks = _ranks(lower, upper)
    rows = sorted((BTRating(c, float(rating[i]), float(lower[i]), float(upper[i]),
                            int(ranks[i])) for i, c in enumerate(ids)),
                  key=lambda row: (-row.rating, row.checkpoint_id))
    used = {m.kind for m in kept}
    position = tuple(PositionTerm(kind, pos, float(gamma[j]), float(g_low[j]), float(g_high[j]))
                     for j, (kind, pos) in enumerate(SLOTS) if kind in used)
    return RobustResult(tuple(rows), position, signals, board.selective, weights, len(voted),
                        empty.flagged_voters, empty.flagged_votes, empty.discounted_voters,
                        empty.discounted_votes, p, tallies)


def _tallies(voted: Sequence[VoterMatch], both_bad_as_draw: bool
             ) -> dict[int, tuple[int, int, int, int]]:
    """Per checkpoint: games, wins, draws and losses over the voted matches."""
    counts: dict[int, list[int]] = {}
    slot = {"win": 1, "draw": 2, "loss": 3}
    for m in voted:
        for c, placed in placements(m.vote, both_bad_as_draw).items():  # type: ignore[arg-type]
            tally = counts.setdefault(c, [0, 0, 0, 0])
            tally[0] += 1
            tally[slot[placed]] += 1
    return {c: (t[0], t[1], t[2], t[3]) for c, t in sorted(counts.items())}


def _bootstrap(kept: list[VoterMatch], order: list[VoterKey], index: dict[int, int],
               fit: CrowdBTFit, p: RobustParams) -> tuple[np.ndarray, np.ndarray]:
    """Per round: voters drawn with replacement, strengths and position terms refitted with
    the full fit's voter weights."""
    n = len(index)
    c = comparisons_of([(m.kind, m.vote) for m in kept], index,  # type: ignore[misc]
                       p.both_bad_as_draw)
    slot = {v: i for i, v in enumerate(order)}
    voter = np.array([slot[kept[v].voter] for v in c.vote], dtype=np.int64)
    x, inverse = design(c, n)
    weight = c.weight * fit.weights()[voter]
    rng = np.random.default_rng(p.seed)
    samples = np.empty((p.rounds, n))
    g_samples = np.empty((p.rounds, len(SLOTS)))
    for r in range(p.rounds):
        drawn = rng.multinomial(len(order), np.full(len(order), 1.0 / len(order)))[voter]
        w = np.bincount(inverse, weights=weight * drawn, minlength=len(x))
        params = fit_rows(x, w, n, start=fit.params)
        samples[r] = to_elo_scale(params[:n])
        g_samples[r] = params[n:]
    return samples, g_samples
