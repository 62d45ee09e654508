"""`arena voters`: who looks like a vote rigger on a board, and the operator's exclusions."""

from __future__ import annotations

import typer

from arena.cli.common import new_app, open_database, print_exclusion, print_json

app = new_app("Voter reliability and signals of vote rigging; exclude or include a voter.")


@app.command("suspicious")
def suspicious_command(
    board: str = typer.Option(
        "overall", "--board", "-b", help="overall, fixed, free, ffa or fixed/<character>."),
    every: bool = typer.Option(False, "--all", help="List every voter, not only flagged ones."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """List the voters the robust board flags, with reliability, signals and why."""
    from arena.leaderboard.voters import suspicious
    from arena.settings import get_settings

    db = open_database()
    with db.session() as session:  # stores the fit with its parameters for the next reader
        report = suspicious(session, board, get_settings(), every=every, store=True)
    if as_json:
        print_json(report)
        return
    typer.echo(f"board {board}: {report['votes']} votes from {report['voters']} voters; flagged "
               f"{report['flagged_voters']} voters ({report['flagged_votes']} votes); the robust "
               f"board discounts {report['discounted_voters']} voters "
               f"({report['discounted_votes']} votes)")
    for name, p in report["selective_checkpoints"].items():
        typer.echo(f"voters vote selectively when {name} is shown (p = {p:.1e})")
    if not report["rows"]:
        typer.echo("no voter flagged" if not every else "no voters yet")
    for row in report["rows"]:
        reliability = ("-" if row["reliability"] is None else f"{row['reliability']:.2f}")
        seconds = ("-" if row["median_seconds"] is None else f"{row['median_seconds']:.1f} s")
        mark = "FLAGGED" if row["flagged"] else "ok"
        typer.echo(f"{row['voter_id']:>6}  {row['voter']}  {mark:7s}  votes {row['votes']:>4}  "
                   f"skips {row['skips']:>4}  reliability {reliability}  "
                   f"answer {seconds}  most shown {row['focus_checkpoint']}")
        for reason in row["reasons"]:
            typer.echo(f"        - {reason}")
    for row in report["excluded"]:
        typer.echo(f"excluded: voter {row['voter_id']} ({row['voter']}) since "
                   f"{row['created_at']}: {row['reason']}")


def _decide(action: str, voter: str, reason: str, as_json: bool) -> None:
    from arena.leaderboard.voters import exclude_voter, include_voter

    db = open_database()
    decide = exclude_voter if action == "exclude" else include_voter
    decision, replayed = decide(db, voter, reason)
    print_exclusion("voter", decision, replayed, as_json)


@app.command("exclude")
def exclude_command(
    voter: str = typer.Argument(..., help="Voter row id or pseudonym (see `suspicious`)."),
    reason: str = typer.Option(..., "--reason", help="Why (recorded with the decision)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Exclude a voter's votes from every board (they stay in the log); replays the log."""
    _decide("exclude", voter, reason, as_json)


@app.command("include")
def include_command(
    voter: str = typer.Argument(..., help="Voter row id or pseudonym."),
    reason: str = typer.Option(
        "included again by an operator", "--reason", help="Why (recorded with the decision)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Count an excluded voter's votes again on every board; replays the log."""
    _decide("include", voter, reason, as_json)
