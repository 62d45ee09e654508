"""The hot path: the two requests of every vote, POST /api/v1/matches and POST /api/v1/votes,
answered by a plain ASGI middleware instead of FastAPI's routing, dependency solving and body
handling (most of the server's CPU per vote before; see benchmarks/vote_load.py); and a
GET /api/v1/leaderboard that a fresh shared answer serves (clients polling a board would
otherwise spend the voting process's CPU, and its interpreter lock, on that machinery).

A leaderboard read it answers only from a fresh shared answer (the route keeps one per valid
board and system), charging the read limit first as the route does; any other read goes on to
the route. It answers a vote request only when it can answer exactly as FastAPI would: a JSON
body (content type
``application/json``) that validates, from a voter the cookie middleware resolved or whose
X-Voter-Id header this server signed. Anything else (an invalid body or JSON, a forged voter
id, another content type) goes on to the FastAPI routes with the body it read, so every
refusal keeps the one shape and the routes' order of checks. Errors of the service are
answered by the same functions as the app's exception handlers; any other exception goes up
to the server-error middleware as from a route.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping
from typing import Any
from urllib.parse import parse_qsl

from pydantic import BaseModel
from sqlalchemy.exc import OperationalError
from starlette.datastructures import State
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from arena.errors import InputError
from arena.web.http import Caller, database_down_response, input_error_response
from metrics.boards import OVERALL
from metrics.rating_systems import DEFAULT_SYSTEM

Handler = Callable[[Any, Caller], Awaitable[bytes]]
HotRoutes = Mapping[str, tuple[type[BaseModel], Handler]]
_JSON_HEADERS = (b"content-type", b"application/json")
LEADERBOARD_PATH = "/api/v1/leaderboard"


class HotPathMiddleware:
    """Answers ``routes`` (path -> body model and handler) for POST; must sit inside the voter
    cookie middleware, whose voter id and client address it reads from the scope."""

    def __init__(self, app: ASGIApp, routes: HotRoutes, state: State) -> None:
        self.app = app
        self.routes = routes
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (scope["type"] == "http" and scope["path"] == LEADERBOARD_PATH
                and scope["method"] == "GET" and await self._shared_read(scope, receive, send)):
            return
        route = self.routes.get(scope["path"]) if scope["type"] == "http" else None
        if route is None or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        content_type = header = None
        for name, value in scope["headers"]:
            if name == b"content-type" and content_type is None:
                content_type = value
            elif name == b"x-voter-id" and header is None:
                header = value.decode("latin-1")  # as Starlette decodes headers
        if content_type != b"application/json":
            await self.app(scope, receive, send)
            return
        body = await _read_body(receive)
        if body is None:  # the client left before sending its body: no one to answer
            return
        model, handler = route
        state = self.state
        try:
            parsed = model.model_validate(json.loads(body))
            voter = scope["state"]["voter_id"] if header is None else state.voter_ids.verify(header)
        except Exception:  # the routes answer it, each case in its own way
            await self.app(scope, _replay(body, receive), send)
            return
        caller = Caller(state.db, state.settings, voter, scope["state"]["client_address"],
                        state.writer)
        try:
            answer = await handler(parsed, caller)
        except InputError as exc:
            await input_error_response(exc)(scope, receive, send)
            return
        except OperationalError as exc:
            await database_down_response(exc)(scope, receive, send)
            return
        await _answer(answer, send)

    async def _shared_read(self, scope: Scope, receive: Receive, send: Send) -> bool:
        """Answer a leaderboard read from the fresh shared answer of its board and system
        (the query read as Starlette reads it: the last of a repeated parameter); False when
        there is none, for the route to answer."""
        query = dict(parse_qsl(scope["query_string"].decode("latin-1"), keep_blank_values=True))
        answer = self.state.board_reads.fresh(query.get("board", OVERALL),
                                              query.get("system", DEFAULT_SYSTEM))
        if answer is None:
            return False
        try:
            self.state.read_limiter.charge(scope["state"]["client_address"])
        except InputError as exc:
            await input_error_response(exc)(scope, receive, send)
            return True
        await _answer(answer, send)
        return True


async def _answer(body: bytes, send: Send) -> None:
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-length", str(len(body)).encode()), _JSON_HEADERS]})
    await send({"type": "http.response.body", "body": body})


async def _read_body(receive: Receive) -> bytes | None:
    chunks = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return None
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    """``receive`` with the body already read handed out again first."""
    pending = [{"type": "http.request", "body": body, "more_body": False}]

    async def replay() -> Message:
        return pending.pop() if pending else await receive()

    return replay
