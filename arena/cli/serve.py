"""`arena serve`: the UI and API on one port."""

from __future__ import annotations

import typer

from arena.cli.common import open_database


def serve(
    host: str = typer.Option("127.0.0.1", "--host", help="Interface to listen on."),
    port: int = typer.Option(7860, "--port", help="Port to listen on."),
) -> None:
    """Serve the voting UI (Gradio) and the JSON API (/api/v1) with uvicorn."""
    import uvicorn

    from arena.app import create_app
    from arena.settings import get_settings

    db = open_database()
    typer.echo(f"Illustrious Arena on http://{host}:{port}  (API: /api/v1, docs: /docs)")
    app = create_app(get_settings(), db)
    uvicorn.run(app, host=host, port=port, log_level="warning")
