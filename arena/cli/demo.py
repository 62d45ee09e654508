"""`arena demo`: prepare the offline demo arena and serve it."""

from __future__ import annotations

import os

import typer


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
    from arena.demo.prepare import demo_settings, prepare_demo
    from arena.registry import DEMO_NOTE

    settings = demo_settings()
    summary = prepare_demo(settings, votes=votes)
    typer.echo(
        f"demo arena ready in {summary.home}: {len(summary.checkpoints)} demo checkpoints "
        f"({', '.join(summary.checkpoints)}), {summary.images} images "
        f"({summary.imported} new), {summary.votes_total} votes "
        f"({summary.votes_cast} new from simulated voters)"
    )
    typer.echo(DEMO_NOTE)
    if no_serve:
        typer.echo(f"serve it with: arena serve --demo  (or ARENA_HOME={summary.home} arena serve)")
        return
    import uvicorn

    from arena.web.app import create_app

    os.environ["ARENA_HOME"] = str(settings.home)
    typer.echo(f"Illustrious Arena demo on http://{host}:{port}")
    # Client addresses (rate-limit keys) come from the connection, not X-Forwarded-For.
    uvicorn.run(create_app(settings), host=host, port=port, log_level="warning",
                proxy_headers=False)
