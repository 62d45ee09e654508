"""The manipulation benchmark: how far an attacker moves its target on plain and robust boards.

Pure (numbers in, numbers out). One *row* is an attack (share of votes, strategy) run over
seeds with :func:`metrics.simulate.run` keeping its log; at the end of each run the target's
place (1 = best, by rating) is read on plain Bradley-Terry (:mod:`metrics.bradley_terry`, every
vote) and on the robust board (:mod:`metrics.robust`), and the gain is its true place minus that.
Also per row: the share of the attacker's votes the robust board discounted (its voter flagged
or weighing under half a reliable voter's vote), the share of honest voters flagged, and of the
attacker's ids flagged. The cost of robustness: the votes until Kendall tau >= 0.9 held on an
arena without attackers, estimated by plain Bradley-Terry and by the robust board on the same
seeds (:func:`metrics.simulate.summarize`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from statistics import median
from typing import Any

import numpy as np

from metrics.bradley_terry import bradley_terry
from metrics.errors import InputError
from metrics.robust import RobustParams, robust_bradley_terry
from metrics.simulate import SimulationConfig, run, run_many, summarize

__all__ = ["AttackOutcome", "attack_outcome", "attack_row", "convergence_cost"]

Progress = Callable[[Iterable[int]], Iterable[int]]


@dataclass(frozen=True)
class AttackOutcome:
    """One seed's attack: the target's true and estimated places, and what was caught."""

    seed: int
    target_place: int
    plain_place: int
    robust_place: int
    attacker_votes: int
    attacker_votes_discounted: int
    attacker_ids: int
    attacker_ids_flagged: int
    honest_voters: int
    honest_flagged: int


def _place(ratings: Sequence[Any], checkpoint: int) -> int:
    return 1 + [row.checkpoint_id for row in ratings].index(checkpoint)


def attack_outcome(config: SimulationConfig, seed: int,
                   params: RobustParams | None = None) -> AttackOutcome:
    """Simulate ``config`` (which must carry an attack) under ``seed``; read both boards."""
    if config.attack is None:
        raise InputError("attack: expected an AttackConfig in the simulation config")
    result = run(config, seed, keep_log=True)
    target = result.target
    if target is None:  # an attack with share 0: the target is still the one at its place
        order = sorted(result.theta, key=lambda c: -result.theta[c])
        target = order[config.attack.target_place - 1]
    plain = bradley_terry([m.vote for m in result.log if m.vote is not None], rounds=0)
    robust = robust_bradley_terry(result.log, params or RobustParams(rounds=0))
    attackers = result.attacker_ids
    attacker_votes = [m for m in result.log if m.vote is not None and m.voter in attackers]
    below = robust.params.discount_below
    honest = [s for v, s in robust.voters.items() if v not in attackers and s.votes]
    return AttackOutcome(
        seed=seed,
        target_place=config.attack.target_place,
        plain_place=_place(plain.ratings, target),
        robust_place=_place(robust.ratings, target),
        attacker_votes=len(attacker_votes),
        attacker_votes_discounted=sum(robust.weights[m.voter] < below for m in attacker_votes),
        attacker_ids=sum(1 for v in robust.voters if v in attackers),
        attacker_ids_flagged=sum(1 for v, s in robust.voters.items()
                                 if v in attackers and s.flagged),
        honest_voters=len(honest),
        honest_flagged=sum(s.flagged for s in honest),
    )


def attack_row(config: SimulationConfig, seeds: Iterable[int],
               progress: Progress | None = None) -> dict[str, Any]:
    """One benchmark row: the attack of ``config`` over ``seeds``, summarised."""
    seeds = list(seeds)
    outcomes = [attack_outcome(config, s) for s in (progress(seeds) if progress else seeds)]
    attack = config.attack
    assert attack is not None
    votes = sum(o.attacker_votes for o in outcomes)
    honest = sum(o.honest_voters for o in outcomes)
    ids = sum(o.attacker_ids for o in outcomes)
    return {
        "share": attack.share,
        "strategy": attack.strategy,
        "recognition": attack.recognition,
        "target_place": attack.target_place,
        "ids": attack.ids,
        "gain_plain": float(median(o.target_place - o.plain_place for o in outcomes)),
        "gain_robust": float(median(o.target_place - o.robust_place for o in outcomes)),
        "attacker_votes": votes,
        "discounted_share": sum(o.attacker_votes_discounted for o in outcomes) / votes
        if votes else None,
        "attacker_ids_flagged_share": sum(o.attacker_ids_flagged for o in outcomes) / ids
        if ids else None,
        "honest_flagged_share": sum(o.honest_flagged for o in outcomes) / honest
        if honest else None,
        "outcomes": [o.__dict__ for o in outcomes],
    }


def _median_ratio_interval(pairs: Sequence[tuple[int | None, int | None]], rounds: int = 2000,
                           seed: int = 0) -> tuple[float, float] | None:
    """95% percentile-bootstrap interval of robust median / plain median, resampling seeds
    (each seed's pair together); a run that never reached the target counts as infinite."""
    if not pairs:
        return None
    values = np.array([[math.inf if v is None else v for v in pair] for pair in pairs])
    rng = np.random.default_rng(seed)
    drawn = values[rng.integers(0, len(values), size=(rounds, len(values)))]
    plain, robust = np.median(drawn[:, :, 0], axis=1), np.median(drawn[:, :, 1], axis=1)
    finite = np.isfinite(plain) & np.isfinite(robust)
    if finite.mean() < 0.975:  # the interval would reach a censored median
        return None
    low, high = np.percentile(robust[finite] / plain[finite], [2.5, 97.5])
    return float(low), float(high)


def convergence_cost(base: SimulationConfig, seeds: Iterable[int],
                     progress: Callable[[str], Progress] | None = None) -> dict[str, Any]:
    """Votes until Kendall tau >= target held (and first reached) without attackers: plain
    against robust on the same seeds; beside the ratio of the medians and its seed-bootstrap
    interval, the median of the per-seed ratios (the same arena under both estimators: paired,
    so less noisy)."""
    seeds = list(seeds)
    summaries, results = {}, {}
    for estimator in ("bt", "robust"):
        config = replace(base, attack=None, estimator=estimator)
        results[estimator] = run_many(config, seeds, progress(estimator) if progress else None)
        summaries[estimator] = summarize(config, results[estimator])
    report: dict[str, Any] = {"max_votes": base.max_votes}
    for key in ("votes_to_tau", "votes_first_tau"):
        plain = summaries["bt"][key]["median"]
        robust = summaries["robust"][key]["median"]
        pairs = [(getattr(p, key), getattr(r, key))
                 for p, r in zip(results["bt"], results["robust"], strict=True)]
        ratios = [r / p for p, r in pairs if p and r]
        report[key] = {"plain": summaries["bt"][key], "robust": summaries["robust"][key],
                       "robust_over_plain": robust / plain if plain and robust else None,
                       "ratio_interval": _median_ratio_interval(pairs),
                       "per_seed": pairs,
                       "median_paired_ratio": float(median(ratios)) if ratios else None}
    return report
