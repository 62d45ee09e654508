"""`arena serve`: the UI and API on one port, for the configured arena (or the demo's, when
asked with ``--demo``)."""

from __future__ import annotations

import os
import signal
import socket
from pathlib import Path
from typing import Any

import typer

from arena.cli.common import open_database
from arena.errors import UserError


def _settings_to_serve(demo: bool):  # type: ignore[no-untyped-def]
    """The configured arena, or with ``demo`` the demo arena (which must have been built)."""
    from sqlalchemy.engine import make_url

    from arena.demo.prepare import demo_settings
    from arena.settings import get_settings

    settings = demo_settings() if demo else get_settings()
    found_demo = (Path.cwd() / "arena-demo").resolve()
    if not demo and not os.environ.get("ARENA_HOME") and not os.environ.get(
            "ARENA_DATABASE_URL") and settings.home.resolve() == found_demo:
        # Other commands read the demo found here; serving it is asked for explicitly.
        raise UserError(
            f"no arena database at {Path('arena-data', 'arena.db')}: the arena found here is "
            f"the demo ({found_demo}); serve it with `arena serve --demo`, or set ARENA_HOME"
        )
    url = make_url(settings.url)
    if url.get_backend_name() == "sqlite" and not os.path.exists(url.database or ""):
        if demo:
            raise UserError(
                f"no demo arena in {settings.home}; build it with `arena demo --no-serve`"
            )
        raise UserError(
            f"no arena database at {url.database}: set ARENA_HOME or ARENA_DATABASE_URL, or "
            "create one with `arena db upgrade`; for the demo use `arena serve --demo`"
        )
    return settings


STOP_SECONDS = 2


def _terminated(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)


def run_server(app: Any, **options: Any) -> None:
    """``uvicorn.run``, then stop every helper process the server started. uvicorn re-raises
    a SIGTERM once it has shut down; with the default handler that would end this process
    on the spot, skipping ``atexit``, so here a SIGTERM ends it like Ctrl-C does."""
    import uvicorn

    from arena.leaderboard.worker import close_workers

    previous = signal.signal(signal.SIGTERM, _terminated)
    try:
        uvicorn.run(app, **options)
    finally:
        close_workers()
        signal.signal(signal.SIGTERM, previous)


def check_port(host: str, port: int) -> None:
    """Refuse, before any banner, a port this host cannot listen on (one already in use)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise UserError(f"--host {host!r}: cannot resolve it ({exc.strerror})") from None
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does
        try:
            probe.bind(address)
        except OSError as exc:
            raise UserError(
                f"cannot listen on {host}:{port} ({exc.strerror}): another server may be "
                "running there; choose another with --port"
            ) from None


def serve(
    host: str = typer.Option("127.0.0.1", "--host", help="Interface to listen on."),
    port: int = typer.Option(7860, "--port", help="Port to listen on."),
    workers: int = typer.Option(
        1, "--workers", min=1, help="Server processes; more than one suits PostgreSQL."
    ),
    demo: bool = typer.Option(
        False, "--demo", help="Serve the demo arena (./arena-demo or ARENA_HOME), built by "
        "`arena demo`."
    ),
) -> None:
    """Serve the voting UI (Gradio) and the JSON API (/api/v1) with uvicorn."""
    from sqlalchemy.engine import make_url

    from arena.web.app import create_app

    settings = _settings_to_serve(demo)
    check_port(host, port)
    db = open_database(settings)
    shown = make_url(settings.url).render_as_string(hide_password=True)
    typer.echo(f"database: {shown}")
    typer.echo(f"image store: {(settings.home / 'images').resolve()} "
               f"(served copies: {(settings.home / 'served').resolve()})")
    from arena.ratings import stale_boards

    with db.session(readonly=True) as session:
        stale = stale_boards(session, settings)
    if stale:
        typer.echo(f"warning: ratings on {', '.join(stale)} were computed with other rating "
                   "parameters; votes on them are refused until `arena ratings recompute`")
    typer.echo(f"Illustrious Arena on http://{host}:{port}  (API: /api/v1, docs: /docs)")
    # Client addresses come from the connection, or from ARENA_TRUSTED_PROXY_HEADER alone:
    # uvicorn's own X-Forwarded-For handling would let a local client pick its address.
    # Open browser pages keep event streams open: a stop waits for them at most
    # STOP_SECONDS, so every process the server started has ended within 5 s of a SIGTERM.
    # No access log: the warning level drops it anyway, after uvicorn has formatted each
    # request's path for it.
    options = {"host": host, "port": port, "log_level": "warning", "proxy_headers": False,
               "access_log": False, "timeout_graceful_shutdown": STOP_SECONDS}
    if workers == 1:
        run_server(create_app(settings, db), **options)
        return
    db.dispose()
    # Worker processes build the app from the environment: pin it to what was chosen here.
    os.environ["ARENA_HOME"] = str(settings.home)
    os.environ["ARENA_DATABASE_URL"] = settings.url
    os.environ[SUPERVISOR_ENV] = str(os.getpid())
    run_server("arena.cli.serve:worker_app", factory=True, workers=workers, **options)


SUPERVISOR_ENV = "ARENA_SUPERVISOR_PID"


def worker_app() -> Any:
    """The app of one of uvicorn's worker processes (``--workers`` > 1). A worker ends with
    the supervisor that started it, even when that one is killed (uvicorn's workers would
    otherwise live on, reparented, still serving the port); its own helper processes follow
    it (:mod:`arena.lifeline`)."""
    from arena.lifeline import exit_with_parent
    from arena.web.app import create_app

    exit_with_parent(int(os.environ[SUPERVISOR_ENV]))
    return create_app()
