"""Plumbing every router of the JSON API shares: the one error shape and its handlers, the
request dependencies (database, settings, caller, admin token), the vote path's writer
(:mod:`arena.web.writer`), and the middleware that gives each request a voter id and a client
address.

Every error, 4xx or 5xx, has one shape, :class:`ErrorOut`: ``{"error": "one line"}``, plus
``"detail"`` (the invalid fields) for a body that does not validate. A 500 says nothing about
the server's internals; the traceback goes to the server log. Routers import this module and
never each other.
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Header, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from sqlalchemy.exc import OperationalError
from starlette.datastructures import MutableHeaders
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import cookie_parser
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from arena.db import Database
from arena.errors import Forbidden, InputError, UserError, one_line, status_code
from arena.identity import VoterIds, client_address, issue_voter_id, voter_secret
from arena.limits import ReadLimiter
from arena.settings import Settings
from arena.web.writer import Writer

VOTER_COOKIE = "arena_voter"
VOTER_HEADER = "X-Voter-Id"
log = logging.getLogger("arena.web.http")


class ErrorOut(BaseModel):
    """The one shape of every API error."""

    error: str = Field(description="What went wrong, in one line.")
    detail: list[dict[str, Any]] | None = Field(
        default=None, description="For an invalid body: each invalid field and why."
    )


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorOut, "description": text}
    for code, text in (
        (400, "Invalid input"),
        (403, "Forged voter id, another voter's match, or a missing admin token"),
        (404, "Unknown match, image or name"),
        (409, "Already voted on or skipped"),
        (410, "Expired match"),
        (422, "A body that does not validate"),
        (429, "Over a per-voter or per-address rate limit"),
        (500, "Internal error (details only in the server log)"),
        (503, "Database unavailable, or ratings that need `arena ratings recompute`"),
    )
}

async def get_db(request: Request) -> Database:
    return request.app.state.db


async def get_settings_dep(request: Request) -> Settings:
    return request.app.state.settings


async def get_address(request: Request) -> str:
    """The client's address, as the middleware resolved it."""
    return request.state.client_address


@dataclass(frozen=True, slots=True)
class Caller:
    """Who is asking and what serves them: what every voter endpoint needs."""

    db: Database
    settings: Settings
    voter: str
    address: str
    writer: Writer  # where its transactions run


async def get_caller(
    request: Request,
    x_voter_id: Annotated[
        str | None, Header(description="A voter id from POST /api/v1/voters.")
    ] = None,
) -> Caller:
    """The voter: the X-Voter-Id header (refused unless this server signed it), else the
    cookie the middleware guarantees. One dependency, not one per value: FastAPI's
    dependency resolution costs about as much as a database statement per dependency."""
    state = request.app.state
    voter = request.state.voter_id if x_voter_id is None else state.voter_ids.verify(x_voter_id)
    return Caller(state.db, state.settings, voter, request.state.client_address, state.writer)


# The dependencies above are ``async def`` although they never wait: FastAPI runs a plain
# ``def`` dependency in the thread pool, a thread hand-off per dependency per request.
DB = Annotated[Database, Depends(get_db)]
SETTINGS = Annotated[Settings, Depends(get_settings_dep)]
ADDRESS = Annotated[str, Depends(get_address)]
CALLER = Annotated[Caller, Depends(get_caller)]


def json_response(model: BaseModel, status_code: int = 200) -> Response:
    """``model`` as a JSON response, serialised once by pydantic: FastAPI would validate a
    returned model against the route's ``response_model`` again (which still documents it)."""
    return Response(model.model_dump_json(), status_code=status_code,
                    media_type="application/json")


def require_admin(
    settings: SETTINGS, authorization: Annotated[str | None, Header()] = None
) -> None:
    token = settings.admin_token.get_secret_value() if settings.admin_token else ""
    if not token:
        raise Forbidden("the admin API is disabled: set ARENA_ADMIN_TOKEN on the server")
    given = (authorization or "").removeprefix("Bearer ").strip()
    if not secrets.compare_digest(given.encode(), token.encode()):
        raise Forbidden("a valid admin bearer token is required")


API_PREFIX = "/api/v1"


def close_api(app: FastAPI) -> None:
    """Answer every other path under /api/v1 here, in the one error shape: 404 for an unknown
    path, 405 for a known path asked with another method (else the UI mounted at / would
    answer it in its own shape). Call after every API router is included."""
    from starlette.routing import Match

    api_routes = list(app.router.routes)

    async def unknown(request: Request) -> JSONResponse:
        if any(route.matches(request.scope)[0] is Match.PARTIAL for route in api_routes):
            return JSONResponse({"error": f"method {request.method} is not allowed here"},
                                status_code=405)
        return JSONResponse({"error": f"no API path {_one_line(request.url.path)[:120]}; see "
                                      "/openapi.json"}, status_code=404)

    app.add_api_route(f"{API_PREFIX}/{{rest:path}}", unknown, include_in_schema=False,
                      methods=["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"])


def _one_line(text: str) -> str:
    return one_line(text)[:300]


def input_error_response(exc: InputError) -> JSONResponse:
    """The answer to an error of the service's input-error family."""
    return JSONResponse({"error": _one_line(str(exc))}, status_code=status_code(exc))


def database_down_response(exc: OperationalError) -> JSONResponse:
    """The answer when the database fails (the cause goes to the log only)."""
    log.error("database error: %s", _one_line(str(exc.orig or exc)))
    return JSONResponse({"error": "the database is unavailable; try again shortly"},
                        status_code=503)


def install(app: FastAPI) -> None:
    """Add the voter cookie, the error handlers (one error shape) and the vote path's writer to
    ``app``; ``app.state.settings`` and ``app.state.db`` must be set."""

    @app.exception_handler(InputError)  # the service's UserError family and the lower layers'
    async def _input_error(_request: Request, exc: InputError) -> JSONResponse:
        return input_error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        detail = [
            {"loc": [str(part) for part in e.get("loc", ())], "msg": _one_line(e.get("msg", "")),
             "type": e.get("type", "")}
            for e in exc.errors()
        ]
        first = detail[0] if detail else {"loc": [], "msg": "invalid request"}
        where = ".".join(p for p in first["loc"] if p != "body") or "request"
        return JSONResponse(
            {"error": _one_line(f"invalid {where}: {first['msg']}"), "detail": detail},
            status_code=422,
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse({"error": _one_line(str(exc.detail))}, status_code=exc.status_code,
                            headers=getattr(exc, "headers", None))

    @app.exception_handler(OperationalError)
    async def _database_down(_request: Request, exc: OperationalError) -> JSONResponse:
        return database_down_response(exc)

    @app.exception_handler(Exception)
    async def _internal(request: Request, exc: Exception) -> JSONResponse:
        log.error("internal error on %s %s", request.method, request.url.path, exc_info=exc)
        return JSONResponse({"error": "internal server error"}, status_code=500)

    voter_secret(app.state.settings)  # a missing or short key is refused at start
    app.state.voter_ids = VoterIds(app.state.settings)
    app.state.writer = Writer(app.state.db)
    app.state.read_limiter = ReadLimiter(app.state.settings)
    app.add_middleware(VoterCookieMiddleware, settings=app.state.settings,
                       voter_ids=app.state.voter_ids)


class VoterCookieMiddleware:
    """Gives every HTTP request a voter id (``request.state.voter_id``) and a client address
    (``request.state.client_address``): the voter is the ``arena_voter`` cookie when this
    server signed it, else a new signed id that the response sets as the cookie. A request
    that names its voter in the X-Voter-Id header (an API client) is not given a cookie.

    A plain ASGI middleware that reads the raw headers once: Starlette's
    ``BaseHTTPMiddleware`` would add a task group and a response stream to every request of
    the vote path.
    """

    def __init__(self, app: ASGIApp, settings: Settings, voter_ids: VoterIds) -> None:
        self.app = app
        self.settings = settings
        self.voter_ids = voter_ids
        self.proxy_header = (settings.trusted_proxy_header or "").lower().encode() or None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        cookies = None
        proxied: list[str] = []
        by_header = False
        for name, value in scope["headers"]:
            if name == b"cookie" and cookies is None:
                cookies = value.decode("latin-1")
            elif name == b"x-voter-id":
                by_header = True
            elif name == self.proxy_header:
                proxied.append(value.decode("latin-1"))
        existing = cookie_parser(cookies).get(VOTER_COOKIE) if cookies else None
        try:
            voter = self.voter_ids.verify(existing) if existing else None
        except UserError:
            voter = None
        state = scope.setdefault("state", {})
        peer = scope.get("client")
        state["client_address"] = client_address(self.settings, peer[0] if peer else None,
                                                 proxied)
        if voter is not None or by_header:
            state["voter_id"] = voter
            await self.app(scope, receive, send)
            return
        state["voter_id"] = issue_voter_id(self.settings)
        cookie = (
            f"{VOTER_COOKIE}={state['voter_id']}; Max-Age={3600 * 24 * 365}; Path=/; "
            "HttpOnly; SameSite=lax" + ("; Secure" if self.settings.secure_cookies else "")
        )

        async def send_with_cookie(message: Message) -> None:
            if message["type"] == "http.response.start":
                MutableHeaders(scope=message).append("set-cookie", cookie)
            await send(message)

        await self.app(scope, receive, send_with_cookie)
