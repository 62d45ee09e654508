"""`arena pool`: import images with their manifest, and see what the pool holds."""

from __future__ import annotations

from pathlib import Path

import typer

from arena.cli.common import new_app, open_database, print_json
from arena.image_store import MAX_PIXELS

app = new_app("The image pool: import generated images and count what it holds.")


@app.command("import")
def import_(
    directory: Path = typer.Argument(
        ..., help="Folder with the images and a manifest.jsonl or manifest.csv."
    ),
    max_pixels: int = typer.Option(
        MAX_PIXELS, "--max-pixels", min=1, help="Refuse larger images (decompression bombs)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Import images; exits 2 when none of them is in the pool afterwards."""
    from arena.pool import import_dir
    from arena.settings import get_settings

    db = open_database()
    report = import_dir(db, directory, get_settings(), max_pixels=max_pixels, progress=not as_json)
    if as_json:
        print_json(report.as_dict())
    else:
        typer.echo(
            f"imported {len(report.imported)}, already present {len(report.already_present)}, "
            f"skipped {len(report.skipped)}"
        )
        for skipped in report.skipped:
            typer.echo(f"skipped {skipped.file}: {skipped.reason}")
    if not report.ok:
        typer.echo(f"error: nothing from {directory} could be imported", err=True)
        raise typer.Exit(2)


@app.command("stats")
def stats(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Images per checkpoint and match kind, and prompts per kind."""
    from arena.models import MATCH_KINDS
    from arena.pool import pool_stats

    db = open_database()
    with db.session(readonly=True) as session:
        data = pool_stats(session)
    if as_json:
        print_json(data)
        return
    if not data["images"]:
        typer.echo("(the pool is empty; see `arena pool import`)")
        return
    width = max(len("checkpoint"), *(len(name) for name in data["images"]))
    typer.echo("checkpoint".ljust(width) + "".join(f"{kind:>8}" for kind in MATCH_KINDS))
    for name, kinds in data["images"].items():
        typer.echo(name.ljust(width) + "".join(f"{kinds[kind]:>8}" for kind in MATCH_KINDS))
    prompts = ", ".join(f"{kind} {data['prompts'][kind]}" for kind in MATCH_KINDS)
    typer.echo(f"prompts: {prompts}; images: {data['total_images']}")
