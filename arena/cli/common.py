"""What every CLI module shares: the Typer group that turns input errors into one line."""

from __future__ import annotations

import json
import sys
from typing import Any

import click
import typer
from typer.core import TyperGroup

from arena.errors import InputError, UserError, one_line


class ArenaGroup(TyperGroup):
    """Prints a user's mistake (any :class:`metrics.errors.InputError`: the service's
    ``UserError`` family and every lower package's input error) as ``error: <message>`` on
    one line and exits with status 2. The one place the CLI translates errors."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except InputError as exc:
            typer.echo(f"error: {one_line(exc)}", err=True)
            raise typer.Exit(2) from None


def new_app(help_text: str) -> typer.Typer:
    """A command group with the project's error handling and no locals in tracebacks."""
    return typer.Typer(
        cls=ArenaGroup,
        help=help_text,
        no_args_is_help=True,
        pretty_exceptions_show_locals=False,
        add_completion=False,
        # Plain help: Typer's rich panels print a type such as "<bool>" beside every flag.
        rich_markup_mode=None,
    )


def print_json(data: Any) -> None:
    """Machine-readable output for ``--json``."""
    sys.stdout.write(json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")


def print_exclusion(subject: str, decision: Any, replayed: int, as_json: bool) -> None:
    """What `arena voters|prompts exclude|include` say: the decision recorded (an
    :class:`arena.decisions.Decision`) and how many votes the replay read."""
    if as_json:
        print_json({"decision": decision.as_dict(), "votes_replayed": replayed})
        return
    counted = "no longer count" if decision.action == "exclude" else "count again"
    typer.echo(f"{subject} {decision.subject_id}: its votes {counted} on every board (decision "
               f"{decision.id}, {decision.created_at.isoformat()}: {decision.reason}); "
               f"replayed {replayed} votes")


def require_existing(url: str) -> None:
    """A SQLite database file that does not exist is an error naming where arenas are (a
    connection would create an empty file there); other backends pass."""
    from pathlib import Path

    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        parsed = make_url(url)
    except ArgumentError:  # not a URL at all: the connection says so in one line
        return
    if parsed.get_backend_name() != "sqlite" or not parsed.database:
        return
    path = Path(parsed.database)
    if path.is_file():
        return
    raise UserError(
        f"no arena database at {path}: run this inside an arena folder (one holding arena.db, "
        "or ./arena-data or ./arena-demo), set ARENA_HOME to one, create one with "
        "`arena db upgrade`, or build the demo with `arena demo`"
    )


def open_database(settings=None):  # type: ignore[no-untyped-def]
    """The configured database (or ``settings``'), checked to exist (never created here),
    reachable and migrated to head."""
    from arena.db import Database
    from arena.migrate import current_revision, head_revision
    from arena.settings import Settings, get_settings

    resolved = settings if isinstance(settings, Settings) else get_settings()
    require_existing(resolved.url)
    db = Database(resolved.url)
    db.check()
    if current_revision(db.engine) != head_revision():
        raise UserError(
            f"the database at {db.url.split('@')[-1]} is not at the current schema; "
            "run `arena db upgrade`"
        )
    return db
