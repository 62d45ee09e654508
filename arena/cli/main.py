"""The `arena` command line. Heavy imports (torch, onnxruntime) stay inside the commands."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

import typer

from arena.cli import (
    db,
    demo,
    export,
    generate,
    pool,
    ratings,
    registry,
    report,
    score,
    serve,
    simulate,
    voters,
)
from arena.cli import jobs as jobs_cli
from arena.cli import prompts as prompts_cli
from arena.cli import watch as watch_cli
from arena.cli import worker as worker_cli
from arena.cli.common import new_app, print_json

app = new_app("Illustrious Arena: human-preference evaluation of anime text-to-image checkpoints.")
app.add_typer(db.app, name="db")
app.add_typer(registry.app, name="registry")
app.add_typer(pool.app, name="pool")
app.add_typer(ratings.app, name="ratings")
app.add_typer(voters.app, name="voters")
app.add_typer(score.app, name="score")
app.command("serve")(serve.serve)
app.command("generate")(generate.generate)
app.command("demo")(demo.demo)
app.command("simulate")(simulate.simulate)
app.add_typer(jobs_cli.app, name="jobs")
app.add_typer(prompts_cli.app, name="prompts")
app.command("worker")(worker_cli.worker)
app.command("watch")(watch_cli.watch)
app.add_typer(export.export_app, name="export")
app.add_typer(export.import_app, name="import")
app.command("report")(report.report)


def _version() -> str:
    try:
        return version("illustrious-arena")
    except PackageNotFoundError:
        return "0+unknown"


def _show_version(value: bool) -> None:
    if value:
        typer.echo(f"arena {_version()}")
        raise typer.Exit()


@app.callback()
def main(
    _version_flag: bool = typer.Option(
        False, "--version", callback=_show_version, is_eager=True, help="Print the version."
    ),
) -> None:
    """Illustrious Arena."""


@app.command("config")
def show_config(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Print the settings in force (secrets masked)."""
    from arena.settings import get_settings

    data = get_settings().masked()
    if as_json:
        print_json(data)
        return
    for key, value in data.items():
        typer.echo(f"{key} = {value}")


if __name__ == "__main__":
    app()
