"""`arena registry`: training configs and checkpoints."""

from __future__ import annotations

from pathlib import Path

import typer

from arena.cli.common import new_app, open_database, print_json

app = new_app("Register training configs and the checkpoints they produced.")


@app.command("add-config")
def add_config(
    file: Path = typer.Argument(..., help="Config file (.yaml, .yml or .json)."),
) -> None:
    """Validate a training config and store it (the same content twice is one row)."""
    from arena.registry import add_config as store
    from training.config import load_config

    config = load_config(file)
    db = open_database()
    with db.session() as session:
        result = store(session, config)
    verb = "registered" if result.created else "already registered as"
    typer.echo(f"{verb} config {result.name}")


@app.command("add-preset")
def add_preset(
    name: list[str] = typer.Argument(None, help="Preset names; all four when omitted."),
) -> None:
    """Register the shipped presets of the published Illustrious runs."""
    from arena.errors import UserError
    from arena.registry import add_config as store
    from training.presets import PRESET_NAMES, load_preset

    names = name or list(PRESET_NAMES)
    unknown = [n for n in names if n not in PRESET_NAMES]
    if unknown:
        raise UserError(f"unknown preset {unknown[0]!r}; expected one of {', '.join(PRESET_NAMES)}")
    configs = [load_preset(n) for n in names]
    db = open_database()
    with db.session() as session:
        for config in configs:
            result = store(session, config)
            typer.echo(f"{'registered' if result.created else 'already registered'} {result.name}")


@app.command("add-checkpoint")
def add_checkpoint(
    path: Path = typer.Argument(..., help="A .safetensors file or a diffusers folder."),
    config: str = typer.Option(..., "--config", help="Name of the registered training config."),
    name: str | None = typer.Option(None, "--name", help="Checkpoint name (default: file stem)."),
    step: int | None = typer.Option(None, "--step", help="Training step of this checkpoint."),
    queue: bool = typer.Option(
        False, "--queue", help="Also queue its rendering and scoring for `arena worker`."
    ),
) -> None:
    """Record a checkpoint with its sha256, linked to the config that produced it."""
    from arena.registry import add_checkpoint as store

    db = open_database()
    with db.session() as session:
        result = store(session, path, config, name=name, step=step)
        jobs = []
        if queue:
            from arena.jobs.plan import queue_checkpoint_work
            from arena.settings import get_settings

            jobs = queue_checkpoint_work(session, get_settings(), result.name)
        job_ids = [job.id for job in jobs]
    verb = "registered" if result.created else "already registered"
    typer.echo(f"{verb} checkpoint {result.name}")
    if job_ids:
        typer.echo(f"queued jobs {', '.join(map(str, job_ids))} for `arena worker`")


@app.command("list")
def list_(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """List configs and checkpoints with their links."""
    from arena.registry import list_registry

    db = open_database()
    with db.session() as session:
        data = list_registry(session)
    if as_json:
        print_json(data)
        return
    for config in data["configs"]:
        typer.echo(f"config {config['name']}  [{config['content_hash'][:12]}]")
        for checkpoint in config["checkpoints"]:
            typer.echo(f"  checkpoint {checkpoint}")
    if not data["configs"]:
        typer.echo("(registry is empty)")


@app.command()
def show(
    name: str = typer.Argument(..., help="A config or checkpoint name."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Show one config or checkpoint in full."""
    from sqlalchemy import select

    from arena.errors import NotFound
    from arena.models import Checkpoint, TrainingConfigRecord
    from arena.registry import describe_checkpoint, describe_config

    db = open_database()
    with db.session() as session:
        config = session.scalar(
            select(TrainingConfigRecord).where(TrainingConfigRecord.name == name)
        )
        checkpoint = session.scalar(select(Checkpoint).where(Checkpoint.name == name))
        if config is None and checkpoint is None:
            raise NotFound(f"no config or checkpoint named {name!r}; see `arena registry list`")
        data = describe_config(config) if config else describe_checkpoint(checkpoint)
    if as_json:
        print_json(data)
        return
    for key, value in data.items():
        typer.echo(f"{key}: {value}")
