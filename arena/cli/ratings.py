"""`arena ratings`: leaderboards per board and rating system, and the replay of the vote log."""

from __future__ import annotations

from typing import Any

import typer

from arena.cli.common import new_app, open_database, print_json
from metrics.boards import OVERALL, board_help
from metrics.rating_systems import DEFAULT_SYSTEM, system_help

app = new_app("Leaderboards (Elo, TrueSkill, Bradley-Terry, robust); the replay of the vote log.")
# `arena ratings` alone prints the overall Elo board instead of the help.
app.info.no_args_is_help = False
app.info.invoke_without_command = True


@app.callback()
def show(
    ctx: typer.Context,
    board: str = typer.Option(
        OVERALL, "--board", "-b", help=board_help()
    ),
    system: str = typer.Option(DEFAULT_SYSTEM, "--system", "-s", help=system_help()),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Print one leaderboard (Bradley-Terry is fitted from the log, with bootstrap intervals;
    checkpoints whose 95% intervals overlap share a rank)."""
    if ctx.invoked_subcommand is not None:
        return
    from arena.leaderboard.rows import board_document
    from arena.leaderboard.view import require_board
    from arena.ratings import board_where, rating_parameters
    from arena.settings import get_settings

    settings = get_settings()
    db = open_database()
    with db.session(readonly=True) as session:
        board_where(board)  # a board name that cannot exist: its own error
        require_board(session, board)
        document = board_document(session, board, system, settings)
    rows = document["rows"]
    if as_json:
        print_json({**document, "parameters": rating_parameters(system, settings)})
        return
    if "robust" in document:
        typer.echo(_discounted(document["robust"]))
    if not rows:
        typer.echo(f"(no votes on board {board!r} yet)")
        return
    width = max(len("checkpoint"), *(len(r["checkpoint"]) for r in rows))
    typer.echo(f"{'rank':>4}  {'checkpoint'.ljust(width)}  {'rating':>8}  {'interval':>17}  "
               f"{'games':>6} {'wins':>6} {'draws':>6}  config")
    for r in rows:
        interval = (f"{r['lower']:8.1f}-{r['upper']:<8.1f}" if r["lower"] is not None
                    else "-".center(17))
        typer.echo(f"{r['rank']:>4}  {r['checkpoint'].ljust(width)}  {r['rating']:8.1f}  "
                   f"{interval:>17}  {r['games']:>6} {r['wins']:>6} {r['draws']:>6}  "
                   f"{r['config']}")


def _discounted(summary: dict[str, Any]) -> str:
    """What the robust board left out and discounted, in one line."""
    return (f"robust board: {summary['flagged_voters']} flagged voters left out "
            f"({summary['flagged_votes']} votes); {summary['discounted_voters']} voters "
            f"({summary['discounted_votes']} votes) count less than half a reliable voter "
            f"(see `arena voters suspicious`)")


@app.command("recompute")
def recompute_command(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Replay the whole vote log in order and rewrite every Elo and TrueSkill snapshot."""
    from arena.leaderboard.fits import recompute

    db = open_database()
    replayed = recompute(db, progress=not as_json)
    if as_json:
        print_json({"votes_replayed": replayed})
    else:
        typer.echo(f"replayed {replayed} votes")
