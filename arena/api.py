"""The JSON API under /api/v1 (FastAPI); the Gradio UI is mounted beside it in arena.app.

Every error, 4xx or 5xx, has one shape, :class:`ErrorOut`: ``{"error": "one line"}``, plus
``"detail"`` (the invalid fields) for a body that does not validate. A 500 says nothing about
the server's internals; the traceback goes to the server log.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import secrets
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Annotated, Any, Literal, TypeVar

from fastapi import APIRouter, Depends, FastAPI, Header, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from pydantic import BaseModel, ConfigDict, Field, StrictInt
from sqlalchemy.exc import OperationalError
from starlette.datastructures import MutableHeaders
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import cookie_parser
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from arena.db import Database
from arena.errors import Forbidden, Unavailable, UserError
from arena.identity import client_address, issue_voter_id, verify_voter_id
from arena.matches import issue_match, register_voter, served_image_for, skip_match
from arena.settings import Settings
from arena.votes import record_vote
from metrics.match_kinds import MatchKind

VOTER_COOKIE = "arena_voter"
VOTER_HEADER = "X-Voter-Id"
log = logging.getLogger("arena.api")


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

router = APIRouter(prefix="/api/v1", responses=ERROR_RESPONSES)


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class MatchRequest(_Body):
    mode: MatchKind
    prompt: str | None = Field(default=None, max_length=2000)


class ShownImageOut(BaseModel):
    position: int
    url: str


class MatchOut(BaseModel):
    token: str
    mode: str
    prompt: str
    images: list[ShownImageOut]
    notice: str | None = None


TOKEN = Field(max_length=100, pattern=r"^[A-Za-z0-9_\-]+$", description="A match token.")


class VoteRequest(_Body):
    token: str = TOKEN
    winner: StrictInt | Literal["tie", "both_bad"] | None = None
    ranking: list[StrictInt] | None = Field(default=None, max_length=4)


class SkipRequest(_Body):
    token: str = TOKEN


class VoterOut(BaseModel):
    voter_id: str = Field(description="Send it back as the X-Voter-Id header.")


class RevealedOut(BaseModel):
    position: int
    checkpoint: str
    config: str


class RevealOut(BaseModel):
    token: str
    mode: str
    vote_id: int
    votes_cast: int
    images: list[RevealedOut]


def image_url(name: str) -> str:
    """Where a voter fetches one image of a match: a random name for this match only."""
    return f"/api/v1/images/{name}.png"


T = TypeVar("T")


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
    if x_voter_id is not None:
        voter = verify_voter_id(state.settings, x_voter_id)
    else:
        voter = request.state.voter_id
    return Caller(state.db, state.settings, voter, request.state.client_address)


# The dependencies above are ``async def`` although they never wait: FastAPI runs a plain
# ``def`` dependency in the thread pool, a thread hand-off per dependency per request.
DB = Annotated[Database, Depends(get_db)]
SETTINGS = Annotated[Settings, Depends(get_settings_dep)]
ADDRESS = Annotated[str, Depends(get_address)]
CALLER = Annotated[Caller, Depends(get_caller)]


def writer_threads(db: Database) -> ThreadPoolExecutor:
    """The threads that run the voting endpoints' transactions: one on SQLite, whose writers
    queue behind one lock anyway (one thread spares the GIL hand-offs of many), four on
    PostgreSQL, where transactions overlap while they wait on the network. More threads cost
    more than they overlap: every statement releases the GIL, and each waiting thread takes
    it (vote_load, 8 clients: 4.2-4.6 ms of server CPU per cycle with 16, 3.4 ms with 4)."""
    workers = 1 if db.dialect == "sqlite" else 4
    return ThreadPoolExecutor(max_workers=workers, thread_name_prefix="arena-writer")


async def in_writer(request: Request, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
    """Run ``fn`` on the app's writer threads and wait for it without blocking the event loop.

    The voting endpoints are ``async def`` and hand their work over here: cheaper than
    FastAPI's thread pool for a plain ``def`` endpoint (anyio's capacity limiter, cancel
    scopes and worker bookkeeping on every request). A request whose client goes away still
    finishes its transaction; only the answer is dropped.
    """
    loop = asyncio.get_running_loop()
    call = functools.partial(fn, *args, **kwargs)
    return await loop.run_in_executor(request.app.state.writer, call)


def json_response(model: BaseModel, status_code: int = 200) -> Response:
    """``model`` as a JSON response, serialised once by pydantic: FastAPI would validate a
    returned model against the route's ``response_model`` again (which still documents it)."""
    return Response(model.model_dump_json(), status_code=status_code,
                    media_type="application/json")


@router.post("/voters", response_model=VoterOut, status_code=201)
async def create_voter(request: Request, db: DB, settings: SETTINGS,
                       address: ADDRESS) -> Response:
    """A new voter id signed by this server (limited per client address)."""
    voter = issue_voter_id(settings)
    await in_writer(request, register_voter, db, voter, settings, address)
    return json_response(VoterOut(voter_id=voter), status_code=201)


@router.post("/matches", response_model=MatchOut)
async def create_match(body: MatchRequest, request: Request, caller: CALLER) -> Response:
    """Issue a match of the given mode; the response names no checkpoint."""
    issued = await in_writer(request, issue_match, caller.db, caller.settings, caller.voter,
                             body.mode, body.prompt, address=caller.address)
    return json_response(MatchOut(
        token=issued.token,
        mode=issued.mode,
        prompt=issued.prompt,
        images=[ShownImageOut(position=i.position, url=image_url(i.name)) for i in issued.images],
        notice=issued.notice,
    ))


@router.post("/votes", response_model=RevealOut)
async def create_vote(body: VoteRequest, request: Request, caller: CALLER) -> Response:
    """Vote on a match (a winner position, 'tie', 'both_bad', or a full ranking); reveals it."""
    reveal = await in_writer(request, record_vote, caller.db, caller.settings, body.token,
                             caller.voter, winner=body.winner, ranking=body.ranking,
                             address=caller.address)
    return json_response(RevealOut.model_validate(reveal.as_dict()))


@router.post("/skips", status_code=204)
async def create_skip(body: SkipRequest, request: Request, caller: CALLER) -> Response:
    """Pass on a match without voting."""
    await in_writer(request, skip_match, caller.db, caller.settings, body.token, caller.voter,
                    caller.address)
    return Response(status_code=204)


@router.get("/leaderboard")
def get_leaderboard(
    db: DB,
    settings: SETTINGS,
    board: str = "overall",
    system: Literal["elo", "trueskill", "bt"] = "elo",
) -> dict[str, Any]:
    """Ratings on one board in one system, with intervals, games and linked configs, and the
    matchmaking strategy that chose the matches."""
    from arena.ratings import leaderboard

    with db.session(readonly=True) as session:
        rows = leaderboard(session, board, system, settings)
    return {
        "board": board,
        "system": system,
        "matchmaking": settings.matchmaking_strategy,
        "rows": rows,
    }


@router.get(
    "/images/{name}.png",
    response_class=FileResponse,
    responses={200: {"content": {"image/png": {}}, "description": "The image, no metadata"}},
)
def get_image(name: str, caller: CALLER) -> FileResponse:
    """One image of a match, for its voter, until the match expires: metadata-free bytes
    under a name that is random for this match (never cached, never reused)."""
    path = served_image_for(caller.db, caller.settings, name, caller.voter)
    return FileResponse(path, media_type="image/png",
                        headers={"Cache-Control": "private, no-store"})


def require_admin(
    settings: SETTINGS, authorization: Annotated[str | None, Header()] = None
) -> None:
    token = settings.admin_token.get_secret_value() if settings.admin_token else ""
    if not token:
        raise Forbidden("the admin API is disabled: set ARENA_ADMIN_TOKEN on the server")
    given = (authorization or "").removeprefix("Bearer ").strip()
    if not secrets.compare_digest(given.encode(), token.encode()):
        raise Forbidden("a valid admin bearer token is required")


@router.get("/health")
def health(db: DB) -> dict[str, Any]:
    """Liveness and schema revision."""
    from arena.migrate import current_revision, head_revision

    try:
        db.check()
    except UserError as exc:
        raise Unavailable(str(exc)) from None
    return {"status": "ok", "schema": current_revision(db.engine), "head": head_revision()}


def _one_line(text: str) -> str:
    return " ".join(str(text).split())[:300]


def install(app: FastAPI) -> None:
    """Add the API routes, the voter cookie, the error handlers (one error shape) and the
    writer threads to ``app``; ``app.state.settings`` and ``app.state.db`` must be set."""
    from arena.web.checkpoints import router as checkpoints_router

    app.include_router(router)
    app.include_router(checkpoints_router)

    @app.exception_handler(UserError)
    async def _user_error(_request: Request, exc: UserError) -> JSONResponse:
        return JSONResponse({"error": _one_line(str(exc))}, status_code=exc.status_code)

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
        log.error("database error: %s", _one_line(str(exc.orig or exc)))
        return JSONResponse({"error": "the database is unavailable; try again shortly"},
                            status_code=503)

    @app.exception_handler(Exception)
    async def _internal(request: Request, exc: Exception) -> JSONResponse:
        log.error("internal error on %s %s", request.method, request.url.path, exc_info=exc)
        return JSONResponse({"error": "internal server error"}, status_code=500)

    app.state.writer = writer_threads(app.state.db)
    app.add_middleware(VoterCookieMiddleware, settings=app.state.settings)


class VoterCookieMiddleware:
    """Gives every HTTP request a voter id (``request.state.voter_id``) and a client address
    (``request.state.client_address``): the voter is the ``arena_voter`` cookie when this
    server signed it, else a new signed id that the response sets as the cookie. A request
    that names its voter in the X-Voter-Id header (an API client) is not given a cookie.

    A plain ASGI middleware that reads the raw headers once: Starlette's
    ``BaseHTTPMiddleware`` would add a task group and a response stream to every request of
    the vote path.
    """

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.settings = settings
        self.proxy_header = (settings.trusted_proxy_header or "").lower().encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        cookies = proxied = None
        by_header = False
        for name, value in scope["headers"]:
            if name == b"cookie" and cookies is None:
                cookies = value.decode("latin-1")
            elif name == b"x-voter-id":
                by_header = True
            elif name == self.proxy_header:
                proxied = value.decode("latin-1")
        existing = cookie_parser(cookies).get(VOTER_COOKIE) if cookies else None
        try:
            voter = verify_voter_id(self.settings, existing) if existing else None
        except UserError:
            voter = None
        state = scope.setdefault("state", {})
        peer = scope.get("client")
        headers = {self.proxy_header.decode(): proxied} if proxied is not None else {}
        state["client_address"] = client_address(self.settings, peer[0] if peer else None,
                                                 headers)
        if voter is not None or by_header:
            state["voter_id"] = voter
            await self.app(scope, receive, send)
            return
        state["voter_id"] = issue_voter_id(self.settings)
        cookie = (
            f"{VOTER_COOKIE}={state['voter_id']}; Max-Age={3600 * 24 * 365}; Path=/; "
            "HttpOnly; SameSite=lax"
        )

        async def send_with_cookie(message: Message) -> None:
            if message["type"] == "http.response.start":
                MutableHeaders(scope=message).append("set-cookie", cookie)
            await send(message)

        await self.app(scope, receive, send_with_cookie)
