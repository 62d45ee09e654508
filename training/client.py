"""Talking to an arena from a training job: over HTTP (the admin API) or a database URL.

Imports neither torch nor any ML stack. ``Arena("http://host:7860", token)`` uses the JSON
API with the admin bearer token; ``Arena("postgresql+psycopg://...")`` or ``sqlite:///...``
works on the arena's database directly (then the arena package must be importable, and the
prompt sets queued are the ones this process's ``ARENA_PROMPT_SETS`` names).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from metrics.boards import OVERALL
from metrics.rating_systems import DEFAULT_SYSTEM

__all__ = ["RETRYABLE_STATUSES", "Arena", "ArenaRefused", "ArenaUnreachable"]

TIMEOUT_SECONDS = 10.0
CONNECT_SECONDS = 3.0  # a hook must not hold a training step long on an unreachable arena


class ArenaUnreachable(Exception):
    """The arena could not be reached (network, server error, database down): try later."""


# Refusals that may pass later: a token the server does not have yet (401/403), a config or
# checkpoint registered later (404), a name being registered meanwhile (409).
RETRYABLE_STATUSES = frozenset({401, 403, 404, 409})


class ArenaRefused(Exception):
    """The arena answered and refused the request (bad token, unknown config, bad path);
    ``status`` is its HTTP status (the matching one for a database target), if any."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status

    @property
    def may_pass_later(self) -> bool:
        """Whether sending the same request again later may succeed (see
        ``RETRYABLE_STATUSES``); a malformed request (400, 422) never will."""
        return self.status is not None and (
            self.status in RETRYABLE_STATUSES or self.status >= 500)


def _is_http(target: str) -> bool:
    return target.startswith(("http://", "https://"))


@dataclass(frozen=True)
class Arena:
    """Where the arena is (``target``: an http(s) URL or a database URL) and the admin token."""

    target: str
    token: str | None = None
    timeout: float = TIMEOUT_SECONDS

    @classmethod
    def resolve(cls, arena: str | None = None, token: str | None = None) -> Arena:
        """``arena`` or ``$ARENA_URL`` or ``$ARENA_DATABASE_URL``; ``token`` or
        ``$ARENA_ADMIN_TOKEN``."""
        target = arena or os.environ.get("ARENA_URL") or os.environ.get("ARENA_DATABASE_URL")
        if not target:
            raise ArenaRefused(
                "no arena given: pass arena=URL (http(s) or a database URL) or set ARENA_URL"
            )
        return cls(target.rstrip("/"), token or os.environ.get("ARENA_ADMIN_TOKEN"))

    @property
    def shown(self) -> str:
        """The target without a password, for log lines."""
        if _is_http(self.target):
            return self.target
        from sqlalchemy.engine import make_url

        return make_url(self.target).render_as_string(hide_password=True)

    # -- HTTP -------------------------------------------------------------------------------
    def _http(self, method: str, path: str, **kwargs: Any) -> Any:
        import httpx

        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        try:
            response = httpx.request(
                method, f"{self.target}/api/v1{path}", headers=headers,
                timeout=httpx.Timeout(self.timeout, connect=CONNECT_SECONDS), **kwargs,
            )
        except httpx.HTTPError as exc:
            raise ArenaUnreachable(f"{self.shown}: {type(exc).__name__}: {exc}") from exc
        if response.status_code >= 500:
            raise ArenaUnreachable(f"{self.shown}: server error {response.status_code}")
        if response.status_code >= 400:
            try:
                message = response.json().get("error") or response.json().get("detail")
            except ValueError:
                message = response.text[:200]
            raise ArenaRefused(f"{self.shown}: {response.status_code}: {message}",
                               response.status_code)
        return response.json()

    # -- database ---------------------------------------------------------------------------
    def _db_call(self, work: Any) -> Any:
        from sqlalchemy.exc import OperationalError

        from arena.db import Database
        from arena.errors import InputError, status_code
        from arena.settings import Settings

        settings = Settings(database_url=self.target)
        db = Database(self._bounded_url())
        try:
            db.check()
            return work(db, settings)
        except InputError as exc:
            if isinstance(exc.__cause__, OperationalError):
                raise ArenaUnreachable(str(exc)) from exc
            raise ArenaRefused(str(exc), status_code(exc)) from exc
        except OperationalError as exc:
            raise ArenaUnreachable(f"{self.shown}: {str(exc).splitlines()[0]}") from exc
        finally:
            db.dispose()

    def _bounded_url(self) -> str:
        """The database URL with a connect timeout on PostgreSQL (libpq waits for ever)."""
        from sqlalchemy.engine import make_url

        url = make_url(self.target)
        if url.get_backend_name() == "postgresql" and "connect_timeout" not in url.query:
            url = url.update_query_dict({"connect_timeout": str(int(CONNECT_SECONDS))})
        return url.render_as_string(hide_password=False)

    # -- what the hooks use -----------------------------------------------------------------
    def register(self, payload: dict[str, Any]) -> dict[str, Any]:
        """Register a checkpoint (see ``POST /api/v1/checkpoints``); its jobs are queued."""
        if _is_http(self.target):
            return self._http("POST", "/checkpoints", json=payload)

        def work(db: Any, settings: Any) -> dict[str, Any]:
            from arena.jobs.plan import CheckpointRequest, queue_checkpoint
            from arena.jobs.queue import describe_job

            with db.session() as session:
                queued = queue_checkpoint(session, settings, CheckpointRequest(**payload))
                return {
                    "checkpoint": queued.name,
                    "config": queued.config,
                    "created": queued.created,
                    "jobs": [describe_job(j) for j in queued.jobs],
                }

        return self._db_call(work)

    def checkpoint(self, name: str) -> dict[str, Any]:
        """A checkpoint's config, jobs, pool size, scores and ratings."""
        if _is_http(self.target):
            from urllib.parse import quote

            return self._http("GET", f"/checkpoints/{quote(name, safe='')}")

        def work(db: Any, settings: Any) -> dict[str, Any]:
            from arena.registry import checkpoint_status

            with db.session(readonly=True) as session:
                return checkpoint_status(session, settings, name)

        return self._db_call(work)

    def leaderboard(self, board: str = OVERALL,
                    system: str = DEFAULT_SYSTEM) -> list[dict[str, Any]]:
        """Leaderboard rows (:mod:`arena.leaderboard.rows`: rank, rating, interval, games,
        checkpoint, config)."""
        if _is_http(self.target):
            return self._http("GET", "/leaderboard", params={"board": board, "system": system})[
                "rows"
            ]

        def work(db: Any, settings: Any) -> list[dict[str, Any]]:
            from arena.leaderboard.rows import leaderboard

            with db.session(readonly=True) as session:
                return leaderboard(session, board, system, settings)

        return self._db_call(work)
