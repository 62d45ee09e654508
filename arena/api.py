"""The JSON API under /api/v1 (FastAPI); the Gradio UI is mounted beside it in arena.app."""

from __future__ import annotations

import secrets
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, FastAPI, Header, Request, Response
from fastapi.responses import FileResponse, JSONResponse
from pydantic import BaseModel, Field
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from arena.db import Database
from arena.errors import Forbidden, NotFound, UserError
from arena.matches import check_voter_id, issue_match, new_voter_id, skip_match
from arena.settings import Settings
from arena.votes import record_vote
from metrics.match_kinds import MatchKind

VOTER_COOKIE = "arena_voter"
SERVED_NAME = r"^[0-9a-f]{64}$"

router = APIRouter(prefix="/api/v1")


class MatchRequest(BaseModel):
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


class VoteRequest(BaseModel):
    token: str = Field(max_length=100)
    winner: int | Literal["tie", "both_bad"] | None = None
    ranking: list[int] | None = Field(default=None, max_length=4)


class SkipRequest(BaseModel):
    token: str = Field(max_length=100)


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


def image_url(served_sha256: str) -> str:
    """Where a voter fetches a served (metadata-free) image: named by its content hash only."""
    return f"/api/v1/images/{served_sha256}.png"


def get_db(request: Request) -> Database:
    return request.app.state.db


def get_settings_dep(request: Request) -> Settings:
    return request.app.state.settings


def voter_id(
    request: Request, x_voter_id: Annotated[str | None, Header()] = None
) -> str:
    """The voter: X-Voter-Id header, else the cookie the middleware guarantees."""
    if x_voter_id is not None:
        return check_voter_id(x_voter_id)
    return request.state.voter_id


DB = Annotated[Database, Depends(get_db)]
SETTINGS = Annotated[Settings, Depends(get_settings_dep)]
VOTER = Annotated[str, Depends(voter_id)]


@router.post("/matches", response_model=MatchOut)
def create_match(body: MatchRequest, db: DB, settings: SETTINGS, voter: VOTER) -> MatchOut:
    """Issue a match of the given mode; the response names no checkpoint."""
    issued = issue_match(db, settings, voter, body.mode, body.prompt)
    return MatchOut(
        token=issued.token,
        mode=issued.mode,
        prompt=issued.prompt,
        images=[ShownImageOut(position=i.position, url=image_url(i.served_sha256))
                for i in issued.images],
        notice=issued.notice,
    )


@router.post("/votes", response_model=RevealOut)
def create_vote(body: VoteRequest, db: DB, settings: SETTINGS, voter: VOTER) -> RevealOut:
    """Vote on a match (a winner position, 'tie', 'both_bad', or a full ranking); reveals it."""
    reveal = record_vote(db, settings, body.token, voter, winner=body.winner, ranking=body.ranking)
    return RevealOut.model_validate(reveal.as_dict())


@router.post("/skips", status_code=204)
def create_skip(body: SkipRequest, db: DB, voter: VOTER) -> Response:
    """Pass on a match without voting."""
    skip_match(db, body.token, voter)
    return Response(status_code=204)


@router.get("/leaderboard")
def get_leaderboard(
    db: DB,
    settings: SETTINGS,
    board: str = "overall",
    system: Literal["elo", "trueskill", "bt"] = "elo",
) -> dict[str, Any]:
    """Ratings on one board in one system, with intervals, games and linked configs."""
    from arena.ratings import leaderboard

    with db.session(readonly=True) as session:
        rows = leaderboard(session, board, system, settings)
    return {"board": board, "system": system, "rows": rows}


@router.get("/images/{name}.png")
def get_image(name: str, request: Request) -> FileResponse:
    """A served image by its content hash: metadata-free bytes, no checkpoint in sight."""
    from arena.images import served_path

    settings: Settings = request.app.state.settings
    if len(name) != 64 or any(c not in "0123456789abcdef" for c in name):
        raise NotFound("unknown image")
    path = served_path(settings.home, name)
    if not path.is_file():
        raise NotFound("unknown image")
    return FileResponse(path, media_type="image/png",
                        headers={"Cache-Control": "public, max-age=31536000, immutable"})


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

    db.check()
    return {"status": "ok", "schema": current_revision(db.engine), "head": head_revision()}


def install(app: FastAPI) -> None:
    """Add the API routes, the voter cookie and the JSON error handler to ``app``."""
    from arena.web.checkpoints import router as checkpoints_router

    app.include_router(router)
    app.include_router(checkpoints_router)

    @app.exception_handler(UserError)
    async def _user_error(_request: Request, exc: UserError) -> JSONResponse:
        return JSONResponse({"error": str(exc)}, status_code=exc.status_code)

    app.add_middleware(VoterCookieMiddleware)


class VoterCookieMiddleware:
    """Gives every HTTP request a voter id (``request.state.voter_id``): the ``arena_voter``
    cookie when it holds a valid id, else a new one that the response sets as the cookie.

    A plain ASGI middleware: Starlette's ``BaseHTTPMiddleware`` would add a task group and a
    response stream to every request of the vote path.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        existing = Request(scope).cookies.get(VOTER_COOKIE)
        try:
            voter = check_voter_id(existing) if existing else None
        except UserError:
            voter = None
        scope.setdefault("state", {})["voter_id"] = voter or new_voter_id()
        if voter is not None:
            await self.app(scope, receive, send)
            return
        cookie = (
            f"{VOTER_COOKIE}={scope['state']['voter_id']}; Max-Age={3600 * 24 * 365}; Path=/; "
            "HttpOnly; SameSite=lax"
        )

        async def send_with_cookie(message: Message) -> None:
            if message["type"] == "http.response.start":
                MutableHeaders(scope=message).append("set-cookie", cookie)
            await send(message)

        await self.app(scope, receive, send_with_cookie)
