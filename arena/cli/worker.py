"""`arena worker`: run queued jobs (hash, generate, score)."""

from __future__ import annotations

import typer

from arena.errors import UserError


def worker(
    once: bool = typer.Option(False, "--once", help="Run the jobs that are ready, then exit."),
    kinds: list[str] | None = typer.Option(
        None, "--kinds", help="Only these job kinds (repeatable): hash, generate, score."
    ),
    device: str | None = typer.Option(
        None, "--device", help="cpu or cuda (cuda:1, ...) for generation and scoring; auto."
    ),
) -> None:
    """Take jobs from the queue and run them, one at a time, printing a line per job.

    Several workers may share a PostgreSQL queue, on one host or many; on SQLite run one.
    """
    from arena.cli.common import open_database
    from arena.jobs.worker import run_worker
    from arena.settings import get_settings

    if device is not None and device != "cpu" and not device.startswith("cuda"):
        raise UserError(f"--device: expected cpu or cuda (cuda:N), got {device!r}")
    db = open_database()
    try:
        stats = run_worker(
            db, get_settings(), once=once, kinds=kinds, device=device, echo=typer.echo
        )
    except KeyboardInterrupt:
        typer.echo("worker: interrupted")
        raise typer.Exit(130) from None
    typer.echo(
        f"worker: {len(stats.done)} done, {len(stats.retried)} queued again, "
        f"{len(stats.failed)} failed"
    )
