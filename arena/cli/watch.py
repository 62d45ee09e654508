"""`arena watch DIR --config NAME`: register new checkpoints a trainer writes into DIR."""

from __future__ import annotations

import time
from pathlib import Path

import typer

from arena.errors import UserError


def watch(
    folder: Path = typer.Argument(..., help="Folder the trainer saves .safetensors files into."),
    config: str = typer.Option(..., "--config", help="Registered training config name."),
    arena: str | None = typer.Option(
        None, "--arena", help="Arena URL (http(s), with --token) or database URL; default "
        "ARENA_URL, else this machine's database (ARENA_DATABASE_URL / ARENA_HOME).",
    ),
    token: str | None = typer.Option(
        None, "--token", help="Admin bearer token for an http(s) arena (default "
        "ARENA_ADMIN_TOKEN).", envvar="ARENA_ADMIN_TOKEN", show_envvar=False,
    ),
    interval: float = typer.Option(10.0, "--interval", min=0.1, help="Seconds between looks."),
    once: bool = typer.Option(
        False, "--once", help="Look twice, --interval apart (a file must hold still), then exit."
    ),
    outbox: Path | None = typer.Option(
        None, "--outbox", help="Outbox file (default ARENA_OUTBOX or ~/.cache/...)."
    ),
) -> None:
    """Register each new .safetensors in DIR once, after it is completely written.

    The training metadata in its header (ss_* keys) goes into the registry with it; the
    outbox of undelivered registrations is delivered on every look.
    """
    import logging
    import os

    from arena.settings import get_settings
    from training.watch import Watcher

    if not folder.is_dir():
        raise UserError(f"{folder}: expected a folder to watch")
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    target = arena or os.environ.get("ARENA_URL") or get_settings().url
    watcher = Watcher(folder, config, target, token, outbox)
    looks = 0
    while True:
        for entry in watcher.poll():
            state = ("registered" if entry["delivered"] else
                     "skipped: unreadable header" if entry.get("unreadable") else
                     "not delivered (see the warning)")
            typer.echo(f"{entry['file']}: {state}" + (
                f" as {entry['checkpoint']}" if entry["checkpoint"] else ""))
        looks += 1
        if once and looks >= 2:
            return
        time.sleep(interval)
