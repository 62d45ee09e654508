"""The web application: the JSON API and the Gradio UI in one FastAPI process."""

from __future__ import annotations

import os

from fastapi import FastAPI

from arena.db import Database
from arena.settings import Settings, get_settings
from arena.web import admin_api, http, voting_api
from arena.web.hot_path import HotPathMiddleware

UI_QUEUE_POLL_SECONDS = 0.01


def create_app(
    settings: Settings | None = None, db: Database | None = None, ui: bool = True
) -> FastAPI:
    """FastAPI app with /api/v1 and, unless ``ui=False``, the Gradio arena mounted at /."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    settings = settings or get_settings()
    db = db or Database(settings.url)
    app = FastAPI(
        title="Illustrious Arena",
        version="1",
        description="Human-preference arena for anime text-to-image checkpoints.",
    )
    app.state.settings = settings
    app.state.db = db
    app.state.board_reads = voting_api.SharedAnswers()
    # Added before http.install's voter-cookie middleware, so it runs inside it.
    app.add_middleware(HotPathMiddleware, routes=voting_api.HOT_ROUTES, state=app.state)
    http.install(app)
    app.include_router(voting_api.router)
    app.include_router(admin_api.router)
    http.close_api(app)
    if ui:
        import gradio as gr

        from arena.web.voting_ui import PAGE_CSS, PAGE_HEAD, SHORTCUTS_JS, build_ui

        blocks = build_ui(db, settings)
        # Gradio's queue looks for new UI events every millisecond while idle: a wake-up of
        # the event loop between every two API requests (an idle server: 56 ms of CPU per
        # second, 22-28 ms with 10 ms). A UI event now waits at most 10 ms to start.
        blocks._queue.sleep_when_free = UI_QUEUE_POLL_SECONDS
        # No allowed_paths: images reach the page only through the API's per-match names,
        # never through Gradio's file route (which names a file by its path).
        app = gr.mount_gradio_app(
            app,
            blocks,
            path="/",
            # No browser-side run history (Gradio would offer to upload it to a hub), and
            # unexpected exceptions stay in the server log: users see the service's messages.
            run_history=False,
            show_error=False,
            ssr_mode=False,
            css=PAGE_CSS,
            js=SHORTCUTS_JS,
            head=PAGE_HEAD,
        )
    return app
