"""`arena db`: create and migrate the schema."""

from __future__ import annotations

import typer

from arena.cli.common import new_app

app = new_app("Create or migrate the database schema (Alembic).")


@app.command()
def upgrade(revision: str = typer.Argument("head", help="Target revision.")) -> None:
    """Migrate the configured database to the newest schema (creates it when empty)."""
    from arena.db import Database
    from arena.migrate import current_revision
    from arena.migrate import upgrade as run_upgrade

    db = Database.from_settings()
    db.check()
    run_upgrade(db.url, revision)
    typer.echo(f"database at revision {current_revision(db.engine)}")


@app.command()
def current() -> None:
    """Print the schema revision of the configured database."""
    from arena.cli.common import require_existing
    from arena.db import Database
    from arena.migrate import current_revision, head_revision
    from arena.settings import get_settings

    require_existing(get_settings().url)
    db = Database.from_settings()
    db.check()
    typer.echo(f"current: {current_revision(db.engine) or '(empty)'}  head: {head_revision()}")
