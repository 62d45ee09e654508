"""Votes needed for a trustworthy ranking: random pairs + Elo / Bradley-Terry against `active`.

Runs :func:`metrics.convergence.run_benchmark` (the same as ``arena simulate --benchmark``):
``--checkpoints`` checkpoints (default 50) with hidden Bradley-Terry strengths (sd 1 in log
odds), ``--seeds`` independent arenas (default 20), simulated voters who answer at random 15%
of the time, call 10% of even fixed duels a tie and 5% of duels "both bad". Prints, per arm,
the median [p25-p75] votes after which Kendall tau stayed >= 0.9 (see metrics/simulate.py for
"stayed"), the same with the top 5 right, and the ratios (a) / (c) and (b) / (c) against the
targets 16x and 3x, all measured in this run. Also prints the votes a newly added checkpoint
needs to settle within one rank of its true place, and the information limit: the fewest
votes any matchmaking rule could need in the same arena (metrics/information_limit.py).

    python benchmarks/convergence.py [--checkpoints 50] [--seeds 20] [--quick] [--json FILE]
        [--plot FILE.html]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tqdm import tqdm

from metrics.convergence import limit_lines, run_benchmark, tau_figure_html
from metrics.simulate import SimulationConfig


def _cell(spread: dict) -> str:  # type: ignore[type-arg]
    if spread["median"] is None:
        return f"not reached in {spread['censored']}/{spread['runs']} runs"
    low, high = spread["p25"], spread["p75"]
    text = f"{spread['median']:8.0f}"
    if low is not None and high is not None:
        text += f" [{low:.0f}-{high:.0f}]"
    if spread["censored"]:
        text += f" ({spread['censored']} not reached)"
    return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoints", type=int, default=50)
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--quick", action="store_true", help="20 checkpoints, 3 seeds")
    parser.add_argument("--json", type=Path, help="also write the full report here")
    parser.add_argument("--plot", type=Path, help="write tau against votes (plotly HTML)")
    args = parser.parse_args()
    checkpoints, seeds = (20, 3) if args.quick else (args.checkpoints, args.seeds)
    base = SimulationConfig(checkpoints=checkpoints)
    started = time.perf_counter()
    report = run_benchmark(
        base, range(seeds),
        lambda name: lambda s: tqdm(s, desc=name, unit="seed", leave=False, file=sys.stderr),
    )
    elapsed = time.perf_counter() - started
    print(f"convergence: {checkpoints} checkpoints, {seeds} seeds, voters: "
          f"{base.voter}; {elapsed:.0f} s")
    print("votes until Kendall tau >= 0.9 held (median [p25-p75]) | first reached | "
          "held with the top 5 right too")
    for name, summary in report["arms"].items():
        line = f"  {name:46s} {_cell(summary['votes_to_tau'])} | "
        line += f"{_cell(summary['votes_first_tau'])} | {_cell(summary['votes_to_target'])}"
        if "newcomer_votes" in summary:
            line += f" | newcomer within one rank: {_cell(summary['newcomer_votes'])} votes"
        print(line)
    for key, label in (("votes_to_tau", "held"), ("votes_first_tau", "first reached")):
        ratios = report[key]
        for ratio, target in (("ratio_a_over_c", 16.0), ("ratio_b_over_c", 3.0)):
            value = ratios[ratio]
            bound = ratios.get(f"{ratio}_at_least")
            shown = f"{value:.1f}x" if value else (
                f"more than {bound:.0f}x ((a)'s median not reached within its budget)"
                if bound else "n/a (a median was not reached)")
            verdict = "" if not (value or bound) else (
                "met" if (value or bound) >= target else "NOT met")
            print(f"{ratio}, tau {label}, c = {ratios['best_c']}: {shown} "
                  f"(target {target:.0f}x) {verdict}")
    for line in limit_lines(report):
        print(line)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2, default=str))
    if args.plot:
        curves = {n: s for n, s in report["arms"].items() if not n.startswith("newcomer")}
        args.plot.write_text(tau_figure_html(curves, f"{checkpoints} checkpoints, {seeds} seeds"))


if __name__ == "__main__":
    main()
