"""`arena simulate`: how many votes matchmaking strategies and rating systems need."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import typer

from arena.errors import UserError
from metrics.rating_systems import system_help

QUICK = {"checkpoints": 20, "seeds": 3}


def _kinds(text: str) -> dict[str, float]:
    """``fixed=1,ffa=2`` (or ``ffa``) -> weights per match kind."""
    kinds: dict[str, float] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, _, weight = part.partition("=")
        try:
            kinds[name.strip()] = float(weight) if weight else 1.0
        except ValueError:
            raise UserError(f"--kinds: expected KIND or KIND=WEIGHT, got {part!r}") from None
    return kinds


def _bar(label: str) -> Callable[[Iterable[int]], Iterable[int]]:
    from tqdm import tqdm

    def wrap(seeds: Iterable[int]) -> Iterable[int]:
        return tqdm(seeds, desc=label, unit="seed", leave=False)

    return wrap


def _line(name: str, summary: dict[str, Any]) -> str:
    def cell(spread: dict[str, Any]) -> str:
        if spread["median"] is None:
            return f"not reached ({spread['censored']}/{spread['runs']} runs)"
        low, high = spread["p25"], spread["p75"]
        tail = f" [{low:.0f}-{high:.0f}]" if low is not None and high is not None else ""
        censored = f", {spread['censored']} not reached" if spread["censored"] else ""
        return f"{spread['median']:.0f}{tail}{censored}"

    text = (f"{name}: tau held {cell(summary['votes_to_tau'])}; "
            f"first reached {cell(summary['votes_first_tau'])}; "
            f"with top-k {cell(summary['votes_to_target'])}")
    if "newcomer_votes" in summary:
        text += f"; newcomer within one rank after {cell(summary['newcomer_votes'])} votes"
    return text


def simulate(
    checkpoints: int = typer.Option(50, "--checkpoints", "-n", help="Simulated checkpoints."),
    seeds: int = typer.Option(5, "--seeds", help="Seeds (independent arenas) per strategy."),
    strategies: list[str] = typer.Option(
        ["uniform", "active"], "--strategy", "-s", help="uniform, balanced or active (repeat)."
    ),
    rating: str = typer.Option("bt", "--rating", "-r",
                               help=f"Ranking from {system_help(simulated=True)}"),
    elo_k: float = typer.Option(4.0, "--elo-k", help="Elo K factor of the elo estimate."),
    kinds: str = typer.Option("fixed", "--kinds", help="Match kinds with weights: fixed=1,ffa=1."),
    spread: float = typer.Option(1.0, "--spread", help="SD of the true log-strengths."),
    lapse: float = typer.Option(0.15, "--lapse", help="Share of voters answering at random."),
    draw_rate: float = typer.Option(0.10, "--draw-rate", help="Tie rate of an even fixed duel."),
    both_bad_rate: float = typer.Option(0.05, "--both-bad-rate", help="'Both bad' rate."),
    full_ranking: float = typer.Option(
        1.0, "--full-ranking", help="Share of four-way votes that rank all four."
    ),
    max_votes: int = typer.Option(20_000, "--max-votes", help="Votes per run at most."),
    target_tau: float = typer.Option(0.9, "--target-tau", help="Kendall tau target."),
    top_k: int = typer.Option(5, "--top-k", help="The top k must also be the right ones."),
    newcomer_after: int | None = typer.Option(
        None, "--newcomer-after", help="Add one checkpoint after this many votes."
    ),
    benchmark: bool = typer.Option(
        False, "--benchmark", help="The convergence benchmark (baselines a, b against c)."
    ),
    quick: bool = typer.Option(False, "--quick", help="Small sizes (20 checkpoints, 3 seeds)."),
    plot: Path | None = typer.Option(None, "--plot", help="Write tau against votes (HTML)."),
    attack_share: float | None = typer.Option(
        None, "--attack-share", help="An attacker casting this share of all votes (e.g. 0.05): "
        "prints the target's place on plain Bradley-Terry and on the robust board."),
    attack_strategy: str = typer.Option(
        "target_only", "--attack-strategy", help="target_only or omnipresent."),
    recognition: float = typer.Option(
        0.6, "--recognition", help="Chance the attacker recognises an unrevealed image."),
    target_place: int = typer.Option(12, "--target-place", help="The target's true place."),
    attack_ids: int = typer.Option(20, "--attack-ids", help="Voter ids the attacker uses."),
    random_voters: float = typer.Option(
        0.0, "--random-voters", help="Share of voters answering every vote at random."),
    skip_rate: float = typer.Option(0.0, "--skip-rate", help="Chance a voter skips a match."),
    voters: int = typer.Option(200, "--voters", help="Honest voters."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Simulate voters on checkpoints of known strength; print the votes needed per strategy,
    or, with --attack-share, how far a vote-rigging attacker moves its target."""
    from arena.cli.common import print_json
    from metrics.convergence import limit_lines, run_benchmark, tau_figure_html
    from metrics.simulate import SimulationConfig, VoterModel, run_many, summarize

    if quick:
        checkpoints, seeds = QUICK["checkpoints"], QUICK["seeds"]
    base = SimulationConfig(
        checkpoints=checkpoints, spread=spread, estimator=rating,  # type: ignore[arg-type]
        elo_k=elo_k, kinds=_kinds(kinds),
        voter=VoterModel(lapse=lapse, draw_rate=draw_rate, both_bad_rate=both_bad_rate,
                         full_ranking=full_ranking),
        max_votes=max_votes, target_tau=target_tau, top_k=top_k,
        newcomer_after=newcomer_after, voters=voters, random_voters=random_voters,
        skip_rate=skip_rate,
    )
    configs = {s: SimulationConfig(**{**base.__dict__, "strategy": s}) for s in strategies}
    if seeds < 1:
        raise UserError(f"--seeds: expected at least 1, got {seeds}")
    if attack_share is not None:
        _attack(base, strategies, attack_share, attack_strategy, recognition, target_place,
                attack_ids, seeds, as_json)
        return
    if benchmark:
        report = run_benchmark(base, range(seeds), _bar)
        summaries = report["arms"]
    else:
        summaries = {
            f"{s} + {rating}": summarize(c, run_many(c, range(seeds), _bar(s)))
            for s, c in configs.items()
        }
        report = {"arms": summaries}
    if plot is not None:
        curves = {n: s for n, s in summaries.items() if not n.startswith("newcomer")}
        plot.write_text(tau_figure_html(curves, f"{checkpoints} checkpoints, {seeds} seeds"))
    if as_json:
        print_json(report)
        return
    typer.echo(f"{checkpoints} checkpoints, {seeds} seeds; votes to Kendall tau >= {target_tau} "
               f"(median [p25-p75]), and with the top {top_k} right")
    for name, summary in summaries.items():
        typer.echo(_line(name, summary))
    if benchmark:
        for key in ("votes_to_tau", "votes_first_tau"):
            ratios = report[key]
            for ratio, target in (("ratio_a_over_c", 16.0), ("ratio_b_over_c", 3.0)):
                value, bound = ratios[ratio], ratios.get(f"{ratio}_at_least")
                shown = f"{value:.1f}x" if value else (f"> {bound:.0f}x" if bound else "n/a")
                typer.echo(f"{ratio} ({key}, {ratios['best_c']}): {shown} "
                           f"(target {target:.0f}x)")
        for line in limit_lines(report):
            typer.echo(line)


def _attack(base: Any, strategies: list[str], share: float, strategy: str,
            recognition: float, target_place: int, ids: int, seeds: int,
            as_json: bool) -> None:
    """``arena simulate --attack-share``: one attack over the seeds, both boards read."""
    from dataclasses import replace

    from arena.cli.common import print_json
    from metrics.attack import AttackConfig
    from metrics.manipulation import attack_row
    from metrics.simulate import SimulationConfig

    attack = AttackConfig(share=share, strategy=strategy,  # type: ignore[arg-type]
                          recognition=recognition, target_place=target_place, ids=ids)
    config: SimulationConfig = replace(base, strategy=strategies[-1], attack=attack)
    row = attack_row(config, range(seeds), _bar(f"{strategy} {share:.0%}"))
    if as_json:
        print_json({"config": config.describe(), **row})
        return

    def share_text(value: float | None) -> str:
        return "n/a" if value is None else f"{100 * value:.1f}%"

    typer.echo(f"{config.checkpoints} checkpoints, {config.voters} voters, {config.max_votes} "
               f"votes, {config.strategy} matchmaking, {seeds} seeds; {strategy} attacker with "
               f"{share:.0%} of the votes over {ids} ids, target truly {target_place}th")
    typer.echo(f"median places gained: plain Bradley-Terry {row['gain_plain']:+.1f}, "
               f"robust {row['gain_robust']:+.1f}")
    typer.echo(f"attacker votes discounted by the robust board: "
               f"{share_text(row['discounted_share'])}; attacker ids flagged: "
               f"{share_text(row['attacker_ids_flagged_share'])}; honest voters flagged: "
               f"{share_text(row['honest_flagged_share'])}")
