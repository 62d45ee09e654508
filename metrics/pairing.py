"""Which checkpoints meet in the next match: the ``uniform``, ``balanced`` and ``active`` rules.

Pure: numbers in, a tuple of checkpoint ids out. The live arena (:mod:`arena.matchmaking`, state
read from the database) and the simulator (:mod:`metrics.simulate`, state in memory) call the
same :func:`pick_checkpoints`, so what the simulator measures is what the arena does.

- ``uniform``: a uniformly random set (random pairs, the public-arena baseline).
- ``balanced``: the set whose checkpoints were issued the fewest matches, random among equals
  (the arena's behaviour before ``active``).
- ``active``: the set whose outcome is expected to teach the most about the ranking. Each
  checkpoint has a Gaussian skill N(mu, sigma^2) (TrueSkill, Herbrich et al. 2007) and a pair
  is observed through a probit link with performance noise beta: P(i beats j) = Phi(t),
  ``t = (mu_i - mu_j) / c``, ``c^2 = 2 beta^2 + sigma_i^2 + sigma_j^2``. The Fisher
  information of one outcome about the difference d = s_i - s_j is
  ``I = phi(t)^2 / (c^2 Phi(t) (1 - Phi(t)))``, and for a Gaussian prior the expected
  information gain of the observation is about ``0.5 * log(1 + var(d) * I)`` (the D-optimal
  design criterion for one comparison; cf. Guo et al. 2018, "Experimental design under the
  Bradley-Terry model", and the UCB/uncertainty-driven pairing of K-Sort Arena, Li et al.
  CVPR 2025). A four-way set scores the sum over its six pairs, since a full ranking of four
  reveals every pairwise order.

  The search is bounded, never over all combinations: an *anchor* is drawn (with probability
  ``explore`` uniformly, otherwise with weight sigma^2, so uncertain and new checkpoints are
  drawn most and every checkpoint keeps being drawn); its candidate partners are its
  ``neighbours`` closest checkpoints by mu on each side plus ``random_partners`` drawn at
  random; the set grows one member at a time, drawn with probability proportional to
  ``gain ** sharpness`` (gain summed over the members already in). Drawing rather than taking
  the best matters: always pairing nearest neighbours makes the comparison graph a chain, in
  which checkpoints a few places apart are linked only through long paths, and the simulator
  shows such a design losing to random pairs. Cost: O(n log n) to order by mu, plus
  O(size * candidates).

Every rule avoids the sets in ``avoid`` (what this voter was shown lately) while another set
exists, and never repeats ``last`` (the voter's previous set) when the checkpoints allow any
other set.
"""

from __future__ import annotations

import math
import random
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import combinations
from typing import Literal, get_args

from metrics.errors import InputError

__all__ = [
    "STRATEGIES",
    "STRATEGY_NOTES",
    "PairingParams",
    "Standing",
    "Strategy",
    "check_strategy",
    "pair_gain",
    "pick_checkpoints",
]

Strategy = Literal["uniform", "balanced", "active"]
STRATEGIES: tuple[Strategy, ...] = get_args(Strategy)
# What each rule does, in a sentence a leaderboard reader understands.
STRATEGY_NOTES: dict[str, str] = {
    "uniform": "every match shows a uniformly random set of checkpoints",
    "balanced": "each match shows the checkpoints that have been shown the fewest times",
    "active": "each match favours checkpoints whose place is least certain, paired with "
    "those it is most informative to compare them with (random draws keep every "
    "checkpoint in play)",
}
_SQRT2 = math.sqrt(2.0)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)
_RETRIES = 8  # random redraws before an exhaustive fallback (tiny pools only)
_ENUMERATE_LIMIT = 200  # sets in a pool small enough to search whole when the redraws fail


def check_strategy(strategy: str) -> Strategy:
    """``strategy`` if it is a matchmaking strategy; else an InputError naming the choices."""
    if strategy not in STRATEGIES:
        raise InputError(
            f"matchmaking strategy: expected one of {', '.join(STRATEGIES)}, got {strategy!r}"
        )
    return strategy  # type: ignore[return-value]


@dataclass(frozen=True, slots=True)
class Standing:
    """What matchmaking knows of one checkpoint: matches issued, TrueSkill mu and sigma."""

    issued: int = 0
    mu: float = 25.0
    sigma: float = 25.0 / 3.0


@dataclass(frozen=True, slots=True)
class PairingParams:
    """Knobs of the ``active`` rule; ``beta`` and ``default`` follow the TrueSkill settings."""

    beta: float = 25.0 / 6.0
    explore: float = 0.15
    neighbours: int = 2
    random_partners: int = 8
    sharpness: float = 1.0
    default: Standing = field(default_factory=Standing)


def pair_gain(a: Standing, b: Standing, beta: float) -> float:
    """Expected information gain (nats) of one comparison of ``a`` and ``b`` (module doc)."""
    var_d = a.sigma * a.sigma + b.sigma * b.sigma
    c2 = 2.0 * beta * beta + var_d
    t = (a.mu - b.mu) / math.sqrt(c2)
    p = 0.5 * math.erfc(-t / _SQRT2)
    q = 1.0 - p
    if p <= 0.0 or q <= 0.0:
        return 0.0
    density = _INV_SQRT_2PI * math.exp(-0.5 * t * t)
    return 0.5 * math.log1p(var_d * density * density / (c2 * p * q))


def pick_checkpoints(
    strategy: Strategy,
    available: Sequence[int],
    size: int,
    standings: Mapping[int, Standing],
    rng: random.Random,
    avoid: Collection[frozenset[int]] = (),
    last: frozenset[int] | None = None,
    params: PairingParams | None = None,
) -> tuple[int, ...]:
    """``size`` distinct checkpoints from ``available`` for the next match (module doc).

    ``standings`` may omit a checkpoint (it counts as new: ``params.default``).
    """
    if size < 2:
        raise ValueError(f"size: expected at least 2 checkpoints per match, got {size}")
    if len(available) < size:
        raise ValueError(f"available: need {size} checkpoints, got {len(available)}")
    strategy = check_strategy(strategy)
    params = params or PairingParams()
    if len(available) == size:
        return tuple(available)
    if strategy == "uniform":
        proposals = (tuple(rng.sample(available, size)) for _ in range(_RETRIES))
    elif strategy == "balanced":
        proposals = iter(_balanced(available, size, standings, rng, params.default))
    else:
        proposals = (_active(available, size, standings, rng, params) for _ in range(_RETRIES))
    first = None
    for group in proposals:
        key = frozenset(group)
        if key != last and key not in avoid:
            return group
        if first is None and key != last:
            first = group
    if first is not None:
        # Every proposal was a set the voter saw lately: a small pool is searched for one it
        # has not seen (a large one almost never gets here, and is never enumerated).
        if math.comb(len(available), size) <= _ENUMERATE_LIMIT:
            unseen = [g for g in combinations(available, size)
                      if frozenset(g) not in avoid and frozenset(g) != last]
            if unseen:
                return rng.choice(unseen)
        return first
    # Every proposal was the voter's previous set: any other set will do.
    while True:
        group = tuple(rng.sample(available, size))
        if frozenset(group) != last:
            return group


def _balanced(available: Sequence[int], size: int, standings: Mapping[int, Standing],
              rng: random.Random, default: Standing) -> list[tuple[int, ...]]:
    """Sets from the least-issued checkpoints, fewest total issued first, random among equals."""
    issued = {c: standings.get(c, default).issued for c in available}
    # The size + 4 least-issued (random among equals) bound the enumeration: at most C(8, 4).
    pool = sorted(available, key=lambda c: (issued[c], rng.random()))[: size + 4]
    groups = list(combinations(pool, size))
    rng.shuffle(groups)
    groups.sort(key=lambda g: sum(issued[c] for c in g))
    return groups


def _active(available: Sequence[int], size: int, standings: Mapping[int, Standing],
            rng: random.Random, params: PairingParams) -> tuple[int, ...]:
    default = params.default
    states = [standings.get(c, default) for c in available]
    n = len(available)
    order = sorted(range(n), key=lambda i: states[i].mu)
    beta = params.beta
    if rng.random() < params.explore:
        anchor = rng.randrange(n)
    else:
        anchor = rng.choices(range(n), weights=[s.sigma * s.sigma for s in states])[0]
    at = order.index(anchor)
    k = params.neighbours
    candidates = set(order[max(0, at - k): at]) | set(order[at + 1: at + 1 + k])
    candidates.update(rng.sample(range(n), min(n, params.random_partners + 1)))
    candidates.discard(anchor)
    group = [anchor]
    while len(group) < size:
        pool = sorted(candidates)
        gains = [sum(pair_gain(states[g], states[j], beta) for g in group) for j in pool]
        # Drawn in proportion to gain, not the argmax: always pairing nearest neighbours
        # turns the comparison graph into a chain, whose far ends are then badly linked.
        weights = [g ** params.sharpness for g in gains]
        best = rng.choices(pool, weights=weights)[0] if sum(weights) > 0 else rng.choice(pool)
        group.append(best)
        candidates.discard(best)
        if not candidates and len(group) < size:
            candidates = set(range(n)) - set(group)
    return tuple(available[i] for i in group)
