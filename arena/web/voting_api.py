"""The voters' JSON API under /api/v1: voter ids, matches, votes, skips, match images, the
leaderboard and health. Shared plumbing (errors, dependencies, writer threads) is in
:mod:`arena.web.http`.
"""

from __future__ import annotations

import json
import time
from typing import Any, Literal

from fastapi import APIRouter, Request, Response
from fastapi.encoders import jsonable_encoder
from pydantic import BaseModel, ConfigDict, Field, StrictInt

from arena.errors import Unavailable, UserError
from arena.identity import issue_voter_id
from arena.matches import issue_match, register_voter, served_image_for, skip_match
from arena.votes import record_vote
from arena.web.http import (
    ADDRESS,
    CALLER,
    DB,
    ERROR_RESPONSES,
    SETTINGS,
    Caller,
    json_response,
)
from metrics.boards import OVERALL
from metrics.match_kinds import MatchKind
from metrics.rating_systems import DEFAULT_SYSTEM, SYSTEMS

router = APIRouter(prefix="/api/v1", responses=ERROR_RESPONSES)
# The accepted ``system`` values are the registry's (an unknown one: 422 listing them).
SystemName = Literal[tuple(SYSTEMS)]  # type: ignore[valid-type]


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


@router.post("/voters", response_model=VoterOut, status_code=201)
async def create_voter(request: Request, db: DB, settings: SETTINGS,
                       address: ADDRESS) -> Response:
    """A new voter id signed by this server (limited per client address)."""
    voter = issue_voter_id(settings)
    await request.app.state.writer.run(register_voter, db, voter, settings, address)
    return json_response(VoterOut(voter_id=voter), status_code=201)


async def issue(body: MatchRequest, caller: Caller) -> bytes:
    """The answer to POST /matches, as JSON bytes (for :func:`create_match` and the hot path,
    :mod:`arena.web.hot_path`)."""
    issued = await caller.writer.run(issue_match, caller.db, caller.settings, caller.voter,
                                     body.mode, body.prompt, address=caller.address)
    return MatchOut(
        token=issued.token,
        mode=issued.mode,
        prompt=issued.prompt,
        images=[ShownImageOut(position=i.position, url=image_url(i.name)) for i in issued.images],
        notice=issued.notice,
    ).model_dump_json().encode()


async def vote(body: VoteRequest, caller: Caller) -> bytes:
    """The answer to POST /votes, as JSON bytes (for :func:`create_vote` and the hot path)."""
    reveal = await caller.writer.run(record_vote, caller.db, caller.settings, body.token,
                                     caller.voter, winner=body.winner, ranking=body.ranking,
                                     address=caller.address)
    return RevealOut.model_validate(reveal.as_dict()).model_dump_json().encode()


# The two requests of every vote, answered by the hot path (arena.web.hot_path) without
# FastAPI's per-request machinery; the routes below answer what it hands on (a body that does
# not validate, a forged voter id, another content type) and document both.
HOT_ROUTES = {"/api/v1/matches": (MatchRequest, issue), "/api/v1/votes": (VoteRequest, vote)}


@router.post("/matches", response_model=MatchOut)
async def create_match(body: MatchRequest, caller: CALLER) -> Response:
    """Issue a match of the given mode; the response names no checkpoint."""
    return Response(await issue(body, caller), media_type="application/json")


@router.post("/votes", response_model=RevealOut)
async def create_vote(body: VoteRequest, caller: CALLER) -> Response:
    """Vote on a match (a winner position, 'tie', 'both_bad', or a full ranking); reveals it."""
    return Response(await vote(body, caller), media_type="application/json")


@router.post("/skips", status_code=204)
async def create_skip(body: SkipRequest, caller: CALLER) -> Response:
    """Pass on a match without voting."""
    await caller.writer.run(skip_match, caller.db, caller.settings, body.token, caller.voter,
                            caller.address)
    return Response(status_code=204)


# One answer per board and system serves every reader for this long: 1 s for the systems
# updated by every vote, 5 s for the fitted ones (Bradley-Terry, robust), whose fits change at
# most every 10 s (arena.leaderboard.fits.BT_REFIT_SECONDS) and say which vote they cover.
SHARED_READ_SECONDS = 1.0
SHARED_FIT_SECONDS = 5.0


class SharedAnswers:
    """The serialised answer of GET /leaderboard per (board, system), shared by every reader
    while it is fresh; read by the route and by the hot path (:mod:`arena.web.hot_path`), which
    answers a fresh one without FastAPI's per-request work."""

    def __init__(self) -> None:
        self._answers: dict[tuple[str, str], tuple[float, bytes]] = {}

    def fresh(self, board: str, system: str) -> bytes | None:
        """The shared answer of ``board`` and ``system`` while it is fresh, else None (also for
        a board or system no answer was kept for, valid or not)."""
        hit = self._answers.get((board, system))
        if hit is None:
            return None
        shared_for = SHARED_READ_SECONDS if SYSTEMS[system].online else SHARED_FIT_SECONDS
        return hit[1] if time.monotonic() - hit[0] < shared_for else None

    def keep(self, board: str, system: str, body: bytes, since: float) -> None:
        """Share ``body`` as the answer computed from ``since`` (``time.monotonic()``)."""
        self._answers[(board, system)] = (since, body)


@router.get("/leaderboard")
async def get_leaderboard(
    request: Request,
    db: DB,
    settings: SETTINGS,
    address: ADDRESS,
    board: str = OVERALL,
    system: SystemName = DEFAULT_SYSTEM,  # type: ignore[valid-type]
) -> Response:
    """Ratings on one board in one system (:func:`arena.leaderboard.rows.board_rows`), with
    intervals, ranks, games and linked configs, and the matchmaking strategy that chose the
    matches; ``system=robust`` adds ``robust``: the voters and votes it discounted and its
    fitted position terms. An unknown board is a 404; reads are limited per client address.

    The rows are computed in the leaderboard worker process, never in this one: Bradley-Terry
    is the fit at hand (stored, or the worker's newest; a refit starts there when newer votes
    exist), and ``fit_vote_id`` says the newest vote it covers. One answer, serialised once,
    serves every reader of the same board and system for ``SHARED_READ_SECONDS`` (a fitted
    system: ``SHARED_FIT_SECONDS``); the handler runs on the event loop (no thread
    hand-off) and awaits the worker."""
    from arena.errors import StaleRatings
    from arena.leaderboard.worker import worker_for

    request.app.state.read_limiter.charge(address)
    shared: SharedAnswers = request.app.state.board_reads
    hit = shared.fresh(board, system)
    if hit is not None:
        return Response(hit, media_type="application/json")
    began = time.monotonic()
    found = await worker_for(db, settings).rows(board, system)
    if found.stale is not None:
        raise StaleRatings(found.stale)
    covers = {row["fit_vote_id"] for row in found.rows if row.get("fit_vote_id") is not None}
    answer = {
        "board": board,
        "system": system,
        "matchmaking": settings.matchmaking_strategy,
        "fit_vote_id": max(covers) if covers else None,
        "rows": found.rows,
    }
    if found.robust is not None:
        answer["robust"] = found.robust
    body = json.dumps(jsonable_encoder(answer), ensure_ascii=False, allow_nan=False,
                      separators=(",", ":")).encode()
    shared.keep(board, system, body, began)
    return Response(body, media_type="application/json")


IMAGE_HEADERS = {"Cache-Control": "private, no-store", "X-Content-Type-Options": "nosniff"}


@router.get(
    "/images/{name}.png",
    response_class=Response,
    responses={200: {"content": {"image/png": {}}, "description": "The image, no metadata"}},
)
def get_image(name: str, caller: CALLER) -> Response:
    """One image of a match, for its voter, until the match expires: metadata-free bytes
    under a name that is random for this match (never cached, never reused).

    The bytes are sent as a plain response, not a file response: a file response adds an
    ``ETag`` (from the file's time and size, the same for the image in every match) and a
    ``Last-Modified`` (its render time, which clusters by checkpoint). Every image gets the
    same header set; only ``Content-Length`` follows the bytes.
    """
    data = served_image_for(caller.db, caller.settings, name, caller.voter)
    return Response(data, media_type="image/png", headers=IMAGE_HEADERS)


@router.get("/health")
def health(db: DB) -> dict[str, Any]:
    """Liveness and schema revision."""
    from arena.migrate import current_revision, head_revision

    try:
        db.check()
    except UserError as exc:
        raise Unavailable(str(exc)) from None
    return {"status": "ok", "schema": current_revision(db.engine), "head": head_revision()}


