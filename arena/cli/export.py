"""`arena export` (votes, leaderboard) and `arena import votes`."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from arena.cli.common import new_app, open_database, print_json
from metrics.boards import OVERALL, board_help
from metrics.rating_systems import REPORT_SYSTEM, system_help

export_app = new_app("Export the vote log or a leaderboard.")
import_app = new_app("Import votes exported by another arena.")


@export_app.command("votes")
def export_votes_command(
    fmt: str = typer.Option("jsonl", "--format", "-f", help="jsonl, csv, parquet or fastchat."),
    out: Path = typer.Option(..., "--out", "-o", help="The file to write."),
) -> None:
    """Every vote with match kind, prompt, images, checkpoints, configs, positions, outcome,
    time; fastchat writes pairwise battle records (model_a, model_b, winner, tstamp)."""
    from arena.export import export_votes

    count = export_votes(open_database(), fmt, out)
    typer.echo(f"wrote {count} votes to {out} ({fmt})")


@export_app.command("leaderboard")
def export_leaderboard_command(
    fmt: str = typer.Option("csv", "--format", "-f", help="csv or json."),
    board: str = typer.Option(OVERALL, "--board", "-b", help=board_help()),
    system: str = typer.Option(REPORT_SYSTEM, "--system", "-s", help=system_help()),
    out: Path | None = typer.Option(None, "--out", "-o", help="File to write; default stdout."),
) -> None:
    """The leaderboard table as the dashboard shows it (csv), or its rows with provenance
    (json)."""
    from arena.errors import UserError
    from arena.leaderboard.view import load_view, table_frame
    from arena.ratings import rating_parameters
    from arena.settings import get_settings

    if fmt not in ("csv", "json"):
        raise UserError(f"format: expected csv or json, got {fmt!r}")
    settings = get_settings()
    db = open_database()
    with db.session(readonly=True) as session:
        view = load_view(session, board, system, settings, wait=True)
    if fmt == "csv":
        from arena.csv_cells import inert_frame

        text = inert_frame(table_frame(view)).to_csv(index=False)
    else:
        text = json.dumps({
            "board": board, "system": system, "notices": view.notices,
            "matchmaking_strategy": view.strategy,
            "parameters": rating_parameters(system, settings), "rows": view.rows,
            "robust": view.robust,
        }, indent=2, default=str) + "\n"
    if out is None:
        typer.echo(text, nl=False)
    else:
        out.write_text(text, encoding="utf-8")
        typer.echo(f"wrote {len(view.rows)} rows to {out}")


@import_app.command("votes")
def import_votes_command(
    file: Path = typer.Argument(..., help="A jsonl file from `arena export votes`."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Import votes (checkpoints matched by name and hash, duplicates skipped, all or
    nothing); ratings are updated as the votes go in."""
    from arena.export import import_votes
    from arena.settings import get_settings

    report = import_votes(open_database(), file, get_settings(), progress=not as_json)
    if as_json:
        print_json(report.as_dict())
    else:
        typer.echo(f"imported {report.imported} votes, skipped {report.duplicates} duplicates")
