"""The convergence benchmark: votes to a trustworthy ranking, baselines against ``active``.

Pure (numbers in, numbers out; plotly is imported only to draw). Arms, each run over the same
seeds with :func:`metrics.simulate.run_many`:

- (a) random pairs + online Elo with K = 4, the public-arena baseline;
- (b) random pairs + a Bradley-Terry fit of every vote, the stronger baseline;
- (c) ``active`` matchmaking with four-way matches ranked in full, estimated by TrueSkill mu
  and by a Bradley-Terry fit (the better one is (c));
- reference: random four-way matches + Bradley-Terry, which separates what the four-way
  ranking brings from what ``active`` choice brings.

Ratios are (a) / (c) and (b) / (c) of the median votes needed to reach Kendall tau >= 0.9,
both for tau having settled there (``votes_to_tau``) and for tau first reaching it
(``votes_first_tau``); a censored median (not reached in half the runs) gives no ratio.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import replace
from typing import Any

from metrics.simulate import SimulationConfig, run_many, summarize

__all__ = ["benchmark_arms", "run_benchmark", "tau_figure_html"]


def benchmark_arms(base: SimulationConfig) -> dict[str, SimulationConfig]:
    """The benchmark's arms on ``base``'s arena (checkpoints, voters, targets); vote budgets
    scale with the number of checkpoints (duels 3,000 per checkpoint, four-way 240)."""
    duel, four = {"fixed": 1.0}, {"ffa": 1.0}
    # Budgets: the baselines need tens of thousands of votes; their runs stop once settled.
    slow, fast = 3000 * base.checkpoints, 240 * base.checkpoints
    return {
        "a: uniform duels + Elo K=4": replace(
            base, strategy="uniform", estimator="elo", elo_k=4.0, kinds=duel, max_votes=slow
        ),
        "b: uniform duels + Bradley-Terry": replace(
            base, strategy="uniform", estimator="bt", kinds=duel, max_votes=slow
        ),
        "c: active four-way + TrueSkill": replace(
            base, strategy="active", estimator="trueskill", kinds=four, max_votes=fast
        ),
        "c: active four-way + Bradley-Terry": replace(
            base, strategy="active", estimator="bt", kinds=four, max_votes=fast
        ),
        "reference: uniform four-way + Bradley-Terry": replace(
            base, strategy="uniform", estimator="bt", kinds=four, max_votes=fast
        ),
        "newcomer: active four-way + Bradley-Terry": replace(
            base, strategy="active", estimator="bt", kinds=four, max_votes=fast,
            newcomer_after=40 * base.checkpoints,
        ),
        "newcomer: uniform four-way + Bradley-Terry": replace(
            base, strategy="uniform", estimator="bt", kinds=four, max_votes=fast,
            newcomer_after=40 * base.checkpoints,
        ),
    }


def _median(summary: dict[str, Any], key: str = "votes_to_tau") -> float | None:
    value = summary[key]["median"]
    return None if value is None else float(value)


def run_benchmark(
    base: SimulationConfig,
    seeds: Iterable[int],
    progress: Callable[[str], Callable[[Iterable[int]], Iterable[int]]] | None = None,
) -> dict[str, Any]:
    """Run every arm over ``seeds``; returns the summaries and the two headline ratios.

    ``progress(arm_name)`` may return a wrapper for the seeds (a progress bar)."""
    seeds = list(seeds)
    summaries: dict[str, dict[str, Any]] = {}
    for name, config in benchmark_arms(base).items():
        results = run_many(config, seeds, progress(name) if progress else None)
        summaries[name] = summarize(config, results)
    report: dict[str, Any] = {"arms": summaries, "targets": {"a_over_c": 16.0, "b_over_c": 3.0}}
    for key in ("votes_to_tau", "votes_first_tau"):
        c_values = {n: _median(summaries[n], key) for n in summaries if n.startswith("c: ")}
        finite = {n: v for n, v in c_values.items() if v is not None}
        best = min(finite, key=lambda n: finite[n]) if finite else None
        a = _median(summaries["a: uniform duels + Elo K=4"], key)
        b = _median(summaries["b: uniform duels + Bradley-Terry"], key)
        c = finite.get(best) if best else None
        a_budget = summaries["a: uniform duels + Elo K=4"]["config"]["max_votes"]
        report[key] = {
            "best_c": best,
            "ratio_a_over_c": a / c if a and c else None,
            "ratio_b_over_c": b / c if b and c else None,
            # (a)'s median not reached within its budget: the ratio is at least budget / c.
            "ratio_a_over_c_at_least": a_budget / c if a is None and c else None,
        }
    return report


def tau_figure_html(summaries: dict[str, dict[str, Any]], title: str) -> str:
    """A self-contained plotly page: median Kendall tau against votes, one line per arm."""
    import plotly.graph_objects as go

    figure = go.Figure()
    for name, summary in summaries.items():
        curve = summary["curve"]
        figure.add_trace(
            go.Scatter(x=curve["votes"], y=curve["tau_median"], mode="lines", name=name)
        )
    target = next(iter(summaries.values()))["config"]["target_tau"] if summaries else 0.9
    figure.add_hline(y=target, line_dash="dot", annotation_text=f"tau = {target}")
    figure.update_layout(
        title=title, xaxis_title="votes (a four-way vote counts as one)",
        yaxis_title="Kendall tau (median over seeds)", xaxis_type="log",
    )
    return figure.to_html(include_plotlyjs=True, full_html=True)
