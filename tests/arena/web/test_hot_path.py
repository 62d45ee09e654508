"""The hot path (arena.web.hot_path) answers POST /matches and /votes exactly as the FastAPI
routes do: a request with another JSON content type goes to the routes, and both answers
are compared field by field, refusals included."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from arena.db import Database
from tests.support.api_client import make_client, new_voter
from tests.support.pool import build_pool

HOT = {"content-type": "application/json"}
ROUTES = {"content-type": "application/json; charset=utf-8"}  # not taken by the hot path


@pytest.fixture
def client(arena_env: Database, arena_home: Path, tmp_path: Path) -> TestClient:
    build_pool(arena_env, arena_home, tmp_path / "pool-src")
    return make_client(arena_env, arena_home)


def _post(client: TestClient, path: str, body: str, voter: dict[str, str],
          kind: dict[str, str]) -> tuple[int, dict[str, str], dict]:
    response = client.post(f"/api/v1/{path}", content=body.encode(), headers={**voter, **kind})
    headers = {k: v for k, v in response.headers.items() if k != "content-length"}
    return response.status_code, headers, response.json()


def _shape(value: object) -> object:
    """The structure of a JSON answer with its random values (token, prompt, image names)
    blanked."""
    if isinstance(value, dict):
        return {k: _shape(v) if k not in ("token", "prompt", "url") else "*"
                for k, v in value.items()}
    if isinstance(value, list):
        return [_shape(v) for v in value]
    return value


def test_matches_and_votes_answer_as_the_routes_do(client: TestClient) -> None:
    voter = new_voter(client)
    answers = {}
    for name, kind in (("hot", HOT), ("routes", ROUTES)):
        status, headers, match = _post(client, "matches", '{"mode": "fixed"}', voter, kind)
        vote = _post(client, "votes", f'{{"token": "{match["token"]}", "winner": 1}}', voter,
                     kind)
        answers[name] = (status, headers, _shape(match), vote[0], vote[1],
                         {k: v for k, v in vote[2].items() if k not in ("token", "images")})
        assert status == 200 and vote[0] == 200
    answers["routes"][5]["vote_id"] = answers["hot"][5]["vote_id"]  # one vote later
    answers["routes"][5]["votes_cast"] = answers["hot"][5]["votes_cast"]
    assert answers["hot"] == answers["routes"]


@pytest.mark.parametrize(("path", "body"), [
    ("matches", '{"mode": "chess"}'),  # does not validate: 422 with the invalid fields
    ("matches", '{"mode": "fixed", "extra": 1}'),
    ("matches", '{"mode": '),  # not JSON
    ("matches", '["fixed"]'),
    ("votes", '{"token": "no such token", "winner": 0}'),
    ("votes", '{"token": "unknowntoken", "winner": 0}'),  # 404 from the service
    ("votes", '{"token": "unknowntoken"}'),  # 400: neither a winner nor a ranking
    ("votes", '{"token": "unknowntoken", "winner": true}'),
])
def test_refusals_answer_as_the_routes_do(client: TestClient, path: str, body: str) -> None:
    voter = new_voter(client)
    hot = _post(client, path, body, voter, HOT)
    assert hot == _post(client, path, body, voter, ROUTES)
    assert hot[0] >= 400 and isinstance(hot[2]["error"], str)


def test_a_forged_voter_id_is_refused_as_by_the_routes(client: TestClient) -> None:
    forged = {"X-Voter-Id": "forged.c2lnbmF0dXJl"}
    hot = _post(client, "matches", '{"mode": "fixed"}', forged, HOT)
    assert hot == _post(client, "matches", '{"mode": "fixed"}', forged, ROUTES)
    assert hot[0] == 403 and "voter id" in hot[2]["error"]


def test_a_fresh_shared_leaderboard_answer_is_served_without_the_route(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A read that the shared answer serves is answered by the hot path (no FastAPI route
    runs) with the route's status, headers and body; the read limit is charged as by the
    route; a read with no fresh answer goes on to the routes."""
    params = {"board": "overall", "system": "bt"}
    first = client.get("/api/v1/leaderboard", params=params)
    assert first.status_code == 200
    headers = {k: v for k, v in first.headers.items() if k != "set-cookie"}  # a new voter's
    router = type(client.app.router)

    async def no_route(*_args: object) -> None:
        raise AssertionError("a FastAPI route answered")

    with monkeypatch.context() as patched:
        patched.setattr(router, "__call__", no_route)
        repeated = "board=fixed&board=overall&system=bt"  # the last of a repeated one counts
        for query in ("board=overall&system=bt", repeated):
            again = client.get(f"/api/v1/leaderboard?{query}")
            assert (again.status_code, dict(again.headers), again.content) == (
                200, headers, first.content)
        with pytest.raises(AssertionError, match="a FastAPI route answered"):
            client.get("/api/v1/leaderboard", params={"board": "overall", "system": "elo"})
    client.app.state.settings.address_reads_per_minute = 6  # a burst of one read, then none
    limited = [client.get("/api/v1/leaderboard", params=params) for _ in range(3)]
    refused = [r for r in limited if r.status_code == 429]
    assert refused and set(refused[0].json()) == {"error"}
    assert "leaderboard reads a minute" in refused[0].json()["error"]
