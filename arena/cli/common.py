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
    )


def print_json(data: Any) -> None:
    """Machine-readable output for ``--json``."""
    sys.stdout.write(json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")


def open_database(settings=None):  # type: ignore[no-untyped-def]
    """The configured database (or ``settings``'), checked reachable and migrated to head."""
    from arena.db import Database
    from arena.migrate import current_revision, head_revision

    db = Database.from_settings(settings)
    db.check()
    if current_revision(db.engine) != head_revision():
        raise UserError(
            f"the database at {db.url.split('@')[-1]} is not at the current schema; "
            "run `arena db upgrade`"
        )
    return db
