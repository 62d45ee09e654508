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

Beside them, the information limit of the same arena (:mod:`metrics.information_limit`): the
fewest four-way votes, and duels, that any matchmaking rule with an efficient estimator
could need for an expected tau of 0.9 on the same seeds' strengths, against which (c)'s
settled median shows how much room any other rule could still find. (A first crossing of a
noisy tau can come well before the expected tau gets there, so the limit bounds settled
figures, not first crossings.)
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import replace
from typing import Any

from metrics.information_limit import information_limit
from metrics.simulate import SimulationConfig, run_many, summarize

__all__ = ["benchmark_arms", "limit_lines", "run_benchmark", "tau_figure_html"]


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
    limits = {
        size: information_limit(base.checkpoints, base.spread, base.voter.lapse, seeds,
                                size=size, full_ranking=base.voter.full_ranking,
                                target=base.target_tau)
        for size in (4, 2)
    }
    best = report["votes_to_tau"]["best_c"]
    c_held = _median(summaries[best]) if best else None
    report["information_limit"] = {
        "four_way": limits[4],
        "duel": limits[2],
        "c_held_over_limit": c_held / limits[4]["median"] if c_held else None,
    }
    return report


def limit_lines(report: dict[str, Any]) -> list[str]:
    """The information limit of a :func:`run_benchmark` report, as printed lines."""
    limit = report["information_limit"]
    lines = []
    for key, label in (("four_way", "four-way full rankings"), ("duel", "duels")):
        spread = limit[key]
        lines.append(
            f"information limit, {label}: expected tau >= 0.9 needs at least "
            f"{spread['median']:.0f} votes (median over seeds; {spread['min']:.0f}-"
            f"{spread['max']:.0f}) with any matchmaking rule (Cramér-Rao, oracle allocation; "
            "metrics/information_limit.py)"
        )
    over = limit["c_held_over_limit"]
    if over:
        lines.append(
            f"(c) needs {over:.2f}x the four-way limit for tau >= 0.9 held: what any other "
            "matchmaking rule could still save"
        )
    return lines


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
