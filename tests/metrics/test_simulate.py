"""The convergence simulator: deterministic, a faithful voter model, and what `active` buys."""

from __future__ import annotations

import math
import random
from collections import Counter
from statistics import mean

import pytest
from scipy.stats import kendalltau

from metrics.simulate import (
    RunResult,
    SimulationConfig,
    VoterModel,
    kendall_tau,
    run,
    simulated_vote,
    summarize,
)

QUIET = VoterModel(lapse=0.0, draw_rate=0.0, both_bad_rate=0.0)


def test_same_seed_same_run_other_seed_other_run() -> None:
    config = SimulationConfig(checkpoints=10, strategy="active", estimator="trueskill",
                              kinds={"fixed": 1.0, "ffa": 1.0}, max_votes=300)
    first, again, other = run(config, 3), run(config, 3), run(config, 4)
    assert first == again
    assert first.tau != other.tau


def test_kendall_tau_matches_scipy() -> None:
    rng = random.Random(0)
    truth = [rng.gauss(0, 1) for _ in range(30)]
    estimate = [t + rng.gauss(0, 0.7) for t in truth]
    assert kendall_tau(estimate, truth) == pytest.approx(kendalltau(estimate, truth).statistic)
    assert kendall_tau(truth, truth) == 1.0
    assert kendall_tau([-t for t in truth], truth) == -1.0


def test_duels_follow_bradley_terry() -> None:
    rng = random.Random(1)
    theta = {1: 1.0, 2: 0.0}
    wins = sum(simulated_vote("free", (1, 2), theta, QUIET, rng).winner == 0
               for _ in range(20_000))
    assert wins / 20_000 == pytest.approx(1 / (1 + math.exp(-1.0)), abs=0.015)


def test_four_way_first_place_follows_plackett_luce() -> None:
    rng = random.Random(2)
    theta = {1: 1.0, 2: 0.5, 3: 0.0, 4: -1.0}
    firsts: Counter[int] = Counter()
    for _ in range(20_000):
        vote = simulated_vote("ffa", (1, 2, 3, 4), theta, QUIET, rng)
        assert vote.ranking is not None and sorted(vote.ranking) == [0, 1, 2, 3]
        firsts[vote.participants[vote.ranking[0]]] += 1
    total = sum(math.exp(v) for v in theta.values())
    for c, strength in theta.items():
        assert firsts[c] / 20_000 == pytest.approx(math.exp(strength) / total, abs=0.015)


def test_draws_and_both_bad_only_where_the_kind_allows() -> None:
    rng = random.Random(3)
    voter = VoterModel(lapse=0.0, draw_rate=0.5, both_bad_rate=0.2)
    theta = {1: 0.0, 2: 0.0}
    fixed = Counter(str(simulated_vote("fixed", (1, 2), theta, voter, rng).winner)
                    for _ in range(4000))
    free = Counter(str(simulated_vote("free", (1, 2), theta, voter, rng).winner)
                   for _ in range(4000))
    assert fixed["tie"] / 4000 == pytest.approx(0.5, abs=0.03)
    assert fixed["both_bad"] / 4000 == pytest.approx(0.2, abs=0.03)
    assert "tie" not in free and free["both_bad"] / 4000 == pytest.approx(0.2, abs=0.03)


def _final_rank_error(strategy: str, seeds: range) -> float:
    config = SimulationConfig(checkpoints=16, spread=3.0, strategy=strategy, estimator="bt",
                              kinds={"ffa": 1.0}, max_votes=150, first_eval=150)
    return mean(run(config, s).rank_error[-1] for s in seeds)


def test_active_ranks_better_than_uniform_on_a_small_fixed_case() -> None:
    # 16 checkpoints far apart (sd 3 in log odds), 150 four-way votes: random sets spend
    # most comparisons on orders already known.
    assert _final_rank_error("active", range(12)) < 0.95 * _final_rank_error("uniform", range(12))


def test_active_brings_a_newcomer_in_quickly() -> None:
    # A checkpoint added after 300 votes: how often it plays in the next 50 four-way votes.
    def newcomer_matches(strategy: str) -> int:
        config = SimulationConfig(checkpoints=20, strategy=strategy, estimator="bt",
                                  kinds={"ffa": 1.0}, max_votes=350, first_eval=350,
                                  newcomer_after=300)
        return sum(run(config, s).matched[20] for s in range(6))

    assert newcomer_matches("active") > 2 * newcomer_matches("uniform")


def test_every_checkpoint_keeps_being_matched_under_active() -> None:
    config = SimulationConfig(checkpoints=30, spread=3.0, strategy="active", estimator="bt",
                              max_votes=600, first_eval=600)
    for seed in range(3):
        matched = run(config, seed).matched
        assert len(matched) == 30
        # Random pairs would match each about 40 times; nobody is starved.
        assert min(matched.values()) >= 10, matched


def test_summary_medians_treat_unreached_runs_as_censored() -> None:
    config = SimulationConfig(checkpoints=10)
    results = [RunResult(seed=s, votes=[10], tau=[0.5], rank_error=[1.0], top_ok=[False],
                         votes_to_tau=v, votes_to_target=None, matched={1: 3})
               for s, v in enumerate((100, 300, None))]
    summary = summarize(config, results)
    assert summary["votes_to_tau"]["median"] == 300.0
    assert summary["votes_to_tau"]["censored"] == 1
    assert summary["votes_to_target"]["median"] is None


def test_bad_configurations_are_refused() -> None:
    with pytest.raises(ValueError, match="matchmaking strategy"):
        SimulationConfig(strategy="greedy")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="kinds"):
        SimulationConfig(kinds={"duel": 1.0})
    with pytest.raises(ValueError, match="lapse"):
        VoterModel(lapse=1.5)


def test_tau_first_reaches_the_target_no_later_than_it_settles() -> None:
    config = SimulationConfig(checkpoints=10, spread=3.0, strategy="active", estimator="bt",
                              kinds={"ffa": 1.0}, voter=QUIET, max_votes=3000)
    result = run(config, 0)
    assert result.votes_first_tau is not None and result.votes_to_tau is not None
    assert result.votes_first_tau <= result.votes_to_tau
    held = [t for v, t in zip(result.votes, result.tau, strict=True) if v >= result.votes_to_tau]
    assert min(held) >= 0.9 and result.votes[-1] >= 2 * result.votes_to_tau
