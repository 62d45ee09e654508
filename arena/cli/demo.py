"""`arena demo`: prepare the offline demo arena and serve it, with a worker for typed prompts."""

from __future__ import annotations

import os
import shlex
import threading

import typer

# How often the demo's own worker looks for typed prompts to render (seconds).
DEMO_POLL_SECONDS = 0.5


def demo(
    port: int = typer.Option(7860, "--port", help="Port to serve on."),
    host: str = typer.Option("127.0.0.1", "--host", help="Interface to listen on."),
    no_serve: bool = typer.Option(False, "--no-serve", help="Only prepare the demo arena."),
    votes: int = typer.Option(
        300, "--votes", min=0,
        help="Fill the demo with simulated votes up to this many (preferences follow the "
             "published configs' order).",
    ),
) -> None:
    """Build a demo arena under ./arena-demo (or ARENA_HOME) offline, then serve it."""
    from arena.cli.serve import STOP_SECONDS, check_port, run_server
    from arena.demo.prepare import DEMO_NOTE, demo_settings, prepare_demo

    if not no_serve:
        check_port(host, port)
    summary = prepare_demo(demo_settings(), votes=votes)
    settings = demo_settings()  # now with the demo's marker (its prompt set) in force
    typer.echo(
        f"demo arena ready in {summary.home}: {len(summary.checkpoints)} demo checkpoints "
        f"({', '.join(summary.checkpoints)}), {summary.images} images "
        f"({summary.imported} new), {summary.votes_total} votes "
        f"({summary.votes_cast} new from simulated voters)"
    )
    typer.echo(DEMO_NOTE)
    home = shlex.quote(str(summary.home))
    typer.echo(f"use it from the CLI with: export ARENA_HOME={home}  (then e.g. arena ratings)")
    if no_serve:
        typer.echo(f"serve it with: ARENA_HOME={home} arena serve")
        return
    from arena.db import Database
    from arena.jobs.worker import run_worker
    from arena.web.app import create_app

    os.environ["ARENA_HOME"] = str(settings.home)
    db = Database(settings.url)
    stop = threading.Event()
    # Typed prompts become generate jobs; the demo renders them itself, within seconds.
    worker = threading.Thread(
        target=run_worker, name="demo-worker", daemon=True,
        args=(db, settings.model_copy(update={"worker_poll_seconds": DEMO_POLL_SECONDS})),
        kwargs={"kinds": ["generate"], "device": "cpu", "stop": stop,
                "echo": lambda line: typer.echo(f"demo worker: {line}")},
    )
    worker.start()
    typer.echo(f"Illustrious Arena demo on http://{host}:{port}  (typed prompts rendered here)")
    try:
        # Client addresses (rate-limit keys) come from the connection, not X-Forwarded-For.
        run_server(create_app(settings, db), host=host, port=port, log_level="warning",
                   proxy_headers=False, timeout_graceful_shutdown=STOP_SECONDS)
    finally:
        stop.set()
        worker.join(timeout=5)
        db.dispose()
