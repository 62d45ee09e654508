"""`arena report`: a self-contained HTML report of the leaderboards and their figures."""

from __future__ import annotations

from pathlib import Path

import typer

from arena.cli.common import open_database
from metrics.boards import kind_boards
from metrics.rating_systems import REPORT_SYSTEM, system_help


def report(
    out: Path = typer.Option(..., "--out", "-o", help="The HTML file to write."),
    board: list[str] = typer.Option(
        None, "--board", "-b",
        help=f"Board to include (repeatable); default {', '.join(kind_boards())}.",
    ),
    system: str = typer.Option(REPORT_SYSTEM, "--system", "-s", help=system_help()),
    knob: str = typer.Option("checkpoint_step", "--knob",
                             help="Training knob of the rating-against-knob figure."),
) -> None:
    """Write one HTML file with the tables and plotly figures; it opens offline."""
    from arena.leaderboard.report import DEFAULT_BOARDS, write_report
    from arena.settings import get_settings

    db = open_database()
    views = write_report(db, get_settings(), out, board or DEFAULT_BOARDS, system, knob)
    typer.echo(f"wrote {out} ({len(views)} boards, {out.stat().st_size // 1024} KiB)")
