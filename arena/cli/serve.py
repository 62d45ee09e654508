"""`arena serve`: the UI and API on one port."""

from __future__ import annotations

import os

import typer

from arena.cli.common import open_database


def _settings_to_serve():  # type: ignore[no-untyped-def]
    """The configured arena; with nothing configured and no arena yet, the demo's if built."""
    from arena.demo import DEFAULT_DEMO_HOME, demo_settings
    from arena.settings import get_settings

    settings = get_settings()
    configured = os.environ.get("ARENA_HOME") or os.environ.get("ARENA_DATABASE_URL")
    if (
        not configured
        and not (settings.home / "arena.db").exists()
        and (DEFAULT_DEMO_HOME / "arena.db").exists()
    ):
        settings = demo_settings(DEFAULT_DEMO_HOME)
        typer.echo(f"no arena in {get_settings().home}; serving the demo arena in {settings.home}")
    return settings


def serve(
    host: str = typer.Option("127.0.0.1", "--host", help="Interface to listen on."),
    port: int = typer.Option(7860, "--port", help="Port to listen on."),
    workers: int = typer.Option(
        1, "--workers", min=1, help="Server processes; more than one suits PostgreSQL."
    ),
) -> None:
    """Serve the voting UI (Gradio) and the JSON API (/api/v1) with uvicorn."""
    import uvicorn

    from arena.app import create_app

    settings = _settings_to_serve()
    db = open_database(settings)
    typer.echo(f"Illustrious Arena on http://{host}:{port}  (API: /api/v1, docs: /docs)")
    if workers == 1:
        uvicorn.run(create_app(settings, db), host=host, port=port, log_level="warning")
        return
    db.dispose()
    # Worker processes build the app from the environment: pin it to what was chosen here.
    os.environ["ARENA_HOME"] = str(settings.home)
    os.environ["ARENA_DATABASE_URL"] = settings.url
    uvicorn.run(
        "arena.app:create_app", factory=True, host=host, port=port, workers=workers,
        log_level="warning",
    )
