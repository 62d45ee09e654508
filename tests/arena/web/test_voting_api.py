"""The JSON API against a real pool on both databases: matches, votes, refusals, anonymity."""

from __future__ import annotations

import threading
from datetime import timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select, update

from arena.db import Database
from arena.models import Match, RatingSnapshot, Vote, utcnow
from arena.settings import Settings
from arena.web.app import create_app
from tests.support.api_client import new_voter as signed
from tests.support.pool import PoolFixture, build_pool


@pytest.fixture
def pool(arena_env: Database, arena_home: Path, tmp_path: Path) -> PoolFixture:
    return build_pool(arena_env, arena_home, tmp_path / "pool-src")


@pytest.fixture
def client(arena_env: Database, arena_home: Path, pool: PoolFixture) -> TestClient:
    settings = Settings(home=arena_home, database_url=arena_env.url, votes_per_minute=0,
                        admin_token="admin-secret")
    client = TestClient(create_app(settings, arena_env, ui=False))
    client.voter, client.other = signed(client), signed(client)  # type: ignore[attr-defined]
    return client


def votes(db: Database) -> int:
    with db.session() as s:
        return s.scalar(select(func.count(Vote.id))) or 0


def snapshots(db: Database) -> list[tuple]:
    with db.session() as s:
        rows = s.execute(select(RatingSnapshot.board, RatingSnapshot.system,
                                RatingSnapshot.checkpoint_id, RatingSnapshot.rating,
                                RatingSnapshot.games).order_by(RatingSnapshot.id)).all()
    return [tuple(r) for r in rows]


def new_match(client: TestClient, mode: str, headers=None, **extra) -> dict:  # type: ignore[no-untyped-def]
    response = client.post("/api/v1/matches", json={"mode": mode, **extra},
                           headers=headers or client.voter)
    assert response.status_code == 200, response.text
    return response.json()


@pytest.mark.parametrize(("mode", "n"), [("fixed", 2), ("free", 2), ("ffa", 4)])
def test_match_vote_reveal(client: TestClient, arena_env: Database, pool: PoolFixture,
                           mode: str, n: int) -> None:
    match = new_match(client, mode)
    assert match["mode"] == mode and [i["position"] for i in match["images"]] == list(range(n))
    reveal = client.post("/api/v1/votes", json={"token": match["token"], "winner": 0},
                         headers=client.voter)
    assert reveal.status_code == 200, reveal.text
    body = reveal.json()
    assert {i["checkpoint"] for i in body["images"]} <= pool.names()
    assert len({i["checkpoint"] for i in body["images"]}) == n
    assert body["votes_cast"] == 1
    assert votes(arena_env) == 1
    # The vote updated Elo and TrueSkill on its boards in the same transaction.
    boards = {(b, s) for b, s, *_ in snapshots(arena_env)}
    assert {(mode, "elo"), ("overall", "elo"), (mode, "trueskill")} <= boards


def test_fixed_duel_uses_the_same_seed(client: TestClient, arena_env: Database) -> None:
    match = new_match(client, "fixed")
    with arena_env.session() as s:
        row = s.scalar(select(Match).where(Match.token == match["token"]))
        assert row is not None
        seeds = {mi.image.seed for mi in row.images}
    assert len(seeds) == 1


def test_nothing_identifying_before_the_vote(client: TestClient, pool: PoolFixture) -> None:
    for mode in ("fixed", "free", "ffa"):
        match = new_match(client, mode)
        blobs = [client.post("/api/v1/matches", json={"mode": mode}, headers=client.voter).content]
        for image in match["images"]:
            got = client.get(image["url"], headers=client.voter)
            assert got.status_code == 200 and got.headers["content-type"] == "image/png"
            assert b"tEXt" not in got.content and b"iTXt" not in got.content
            blobs += [got.content, image["url"].encode()]
        blobs.append(repr(match).encode())
        for secret in pool.secrets:
            for blob in blobs:
                assert secret.encode() not in blob, (secret, mode)


@pytest.mark.parametrize(
    ("payload", "status", "message"),
    [
        ({"token": "forged-token", "winner": 0}, 404, "unknown match token"),
        ({"winner": 5}, 400, "unknown position"),
        ({"winner": "tie", "mode": "ffa"}, 400, "not allowed in a four-way"),
        ({"winner": "tie", "mode": "free"}, 400, "no draw"),
        ({"ranking": [0, 1]}, 400, "a full ranking is only allowed"),
        ({"ranking": [0, 0, 1, 2], "mode": "ffa"}, 400, "repeat"),
        ({"ranking": [0, 1, 2], "mode": "ffa"}, 400, "expected all 4 positions"),
        ({"winner": 0, "ranking": [0, 1]}, 400, "exactly one"),
    ],
)
def test_bad_votes_are_refused_and_change_nothing(
    client: TestClient, arena_env: Database, payload: dict, status: int, message: str
) -> None:
    payload = dict(payload)  # parametrized values are shared between the two backends
    mode = payload.pop("mode", "fixed")
    match = new_match(client, mode)
    body = {"token": match["token"], **payload}
    before = snapshots(arena_env)
    response = client.post("/api/v1/votes", json=body, headers=client.voter)
    assert response.status_code == status, response.text
    assert message in response.json()["error"]
    assert votes(arena_env) == 0 and snapshots(arena_env) == before


def test_replayed_foreign_and_expired_tokens(client: TestClient, arena_env: Database) -> None:
    match = new_match(client, "fixed")
    foreign = client.post("/api/v1/votes", json={"token": match["token"], "winner": 0},
                          headers=client.other)
    assert foreign.status_code == 403 and "another voter" in foreign.json()["error"]
    ok = client.post("/api/v1/votes", json={"token": match["token"], "winner": 1},
                     headers=client.voter)
    assert ok.status_code == 200
    after_first = snapshots(arena_env)
    replay = client.post("/api/v1/votes", json={"token": match["token"], "winner": 0},
                         headers=client.voter)
    assert replay.status_code == 409 and "already been voted" in replay.json()["error"]

    stale = new_match(client, "fixed")
    with arena_env.session() as s:
        s.execute(update(Match).where(Match.token == stale["token"])
                  .values(expires_at=utcnow() - timedelta(seconds=1)))
    expired = client.post("/api/v1/votes", json={"token": stale["token"], "winner": 0},
                          headers=client.voter)
    assert expired.status_code == 410 and "expired" in expired.json()["error"]
    assert votes(arena_env) == 1 and snapshots(arena_env) == after_first


def test_skip_then_vote_is_refused(client: TestClient, arena_env: Database) -> None:
    match = new_match(client, "free")
    assert client.post("/api/v1/skips", json={"token": match["token"]},
                       headers=client.voter).status_code == 204
    again = client.post("/api/v1/votes", json={"token": match["token"], "winner": 0},
                        headers=client.voter)
    assert again.status_code == 409 and "skipped" in again.json()["error"]
    assert votes(arena_env) == 0


def test_two_concurrent_votes_on_one_match_store_one(
    client: TestClient, arena_env: Database
) -> None:
    match = new_match(client, "fixed")
    results: list[int] = []
    barrier = threading.Barrier(4)

    def vote(winner: int) -> None:
        barrier.wait()
        response = client.post("/api/v1/votes", json={"token": match["token"], "winner": winner},
                               headers=client.voter)
        results.append(response.status_code)

    threads = [threading.Thread(target=vote, args=(i % 2,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [200, 409, 409, 409]
    assert votes(arena_env) == 1
    games = [g for b, s, _c, _r, g in snapshots(arena_env) if b == "overall" and s == "elo"]
    assert games == [1, 1]


def test_rate_limit(arena_env: Database, arena_home: Path, pool: PoolFixture) -> None:
    settings = Settings(home=arena_home, database_url=arena_env.url, votes_per_minute=2)
    client = TestClient(create_app(settings, arena_env, ui=False))
    client.voter = signed(client)  # type: ignore[attr-defined]
    codes = []
    for _ in range(3):
        match = new_match(client, "fixed")
        codes.append(client.post("/api/v1/votes", json={"token": match["token"], "winner": 0},
                                 headers=client.voter))
    assert [c.status_code for c in codes] == [200, 200, 429]
    assert "rate limit" in codes[2].json()["error"]
    assert votes(arena_env) == 2


def test_pairs_spread_and_do_not_repeat_for_a_voter(client: TestClient,
                                                    arena_env: Database) -> None:
    seen = []
    for _ in range(6):  # 4 checkpoints -> 6 distinct pairs
        match = new_match(client, "fixed")
        with arena_env.session() as s:
            row = s.scalar(select(Match).where(Match.token == match["token"]))
            assert row is not None
            seen.append(frozenset(mi.checkpoint_id for mi in row.images))
    assert len(set(seen)) == 6


def test_typed_free_prompt(client: TestClient, arena_env: Database) -> None:
    from tests.support.pool import FREE_PROMPTS

    served = new_match(client, "free", prompt=f"  {FREE_PROMPTS[0]} ")
    assert served["prompt"] == FREE_PROMPTS[0] and served["notice"] is None
    queued = new_match(client, "free", prompt="1girl, a prompt nobody rendered yet")
    explicit = client.post("/api/v1/matches", headers=client.voter,
                           json={"mode": "free", "prompt": "1girl, explicit, beach"})
    assert explicit.status_code == 400 and "general" in explicit.json()["error"]
    assert queued["notice"] and "queued" in queued["notice"]
    assert queued["prompt"] in FREE_PROMPTS
    with arena_env.session() as s:
        from arena.models import GenerationRequest

        (request,) = s.scalars(select(GenerationRequest)).all()
        assert request.prompt.text == "1girl, general, a prompt nobody rendered yet"
        assert request.prompt.source == "voter"


def test_cookie_identifies_a_browser_voter(client: TestClient) -> None:
    client.cookies.clear()
    first = client.post("/api/v1/matches", json={"mode": "fixed"})
    assert first.status_code == 200 and "arena_voter" in first.cookies
    token = first.json()["token"]
    vote = client.post("/api/v1/votes", json={"token": token, "winner": 0})
    assert vote.status_code == 200, vote.text


def test_an_api_client_that_names_its_voter_gets_no_cookie(client: TestClient) -> None:
    client.cookies.clear()
    made = client.post("/api/v1/matches", json={"mode": "fixed"}, headers=client.voter)
    assert made.status_code == 200 and "set-cookie" not in made.headers
    voted = client.post("/api/v1/votes", json={"token": made.json()["token"], "winner": 0},
                        headers=client.voter)
    assert voted.status_code == 200 and "set-cookie" not in voted.headers


def test_errors_and_spec(client: TestClient) -> None:
    chess = client.post("/api/v1/matches", json={"mode": "chess"}, headers=client.voter)
    assert chess.status_code == 422 and "mode" in chess.json()["error"]
    bad_voter = client.post("/api/v1/matches", json={"mode": "free"}, headers={"X-Voter-Id": "x"})
    assert bad_voter.status_code == 403 and "voter id" in bad_voter.json()["error"]
    assert client.get("/api/v1/images/" + "0" * 64 + ".png").status_code == 404
    assert client.get("/api/v1/health").json()["status"] == "ok"
    spec = client.get("/openapi.json").json()
    assert {"/api/v1/matches", "/api/v1/votes", "/api/v1/leaderboard",
            "/api/v1/checkpoints", "/api/v1/health"} <= set(spec["paths"])


def test_leaderboard_names_the_matchmaking_strategy(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    body = client.get("/api/v1/leaderboard").json()
    assert body["matchmaking"] == Settings().matchmaking_strategy == "active"


def test_image_responses_carry_the_same_headers_for_every_image(
    client: TestClient, pool: PoolFixture
) -> None:
    """Nothing in an image response but its bytes varies with the image: no ETag (it would
    name the file across matches), no Last-Modified (render time clusters by checkpoint)."""
    header_sets = set()
    for _ in range(6):
        for image in new_match(client, "ffa")["images"]:
            response = client.get(image["url"], headers=client.voter)
            assert response.status_code == 200
            assert response.content.startswith(b"\x89PNG")
            assert "etag" not in response.headers and "last-modified" not in response.headers
            varying = {k: v for k, v in response.headers.items()
                       if k not in ("content-length", "date")}
            header_sets.add(tuple(sorted(varying.items())))
    assert header_sets == {(("cache-control", "private, no-store"),
                            ("content-type", "image/png"),
                            ("x-content-type-options", "nosniff"))}


def test_typed_prompt_jobs_are_queued_in_random_checkpoint_order(
    arena_env: Database, arena_home: Path, pool: PoolFixture
) -> None:
    """Claimed by id, jobs queued in checkpoint-id order would render (and so reveal) the
    lowest-id checkpoints first; queued in a random order, the order says nothing."""
    from arena.jobs.plan import queue_free_prompt
    from arena.models import Checkpoint, Job, Prompt

    settings = Settings(home=arena_home, database_url=arena_env.url,
                        free_prompt_jobs_per_voter=100, free_prompt_jobs_total=1000)
    orders = set()
    with arena_env.session() as s:
        by_name = dict(s.execute(select(Checkpoint.name, Checkpoint.id)).all())
        assert len(by_name) == 4
        for n in range(12):
            prompt = Prompt(text=f"1girl, prompt {n}", text_hash=f"{n:064x}", kind="free",
                            source="voter")
            s.add(prompt)
            s.flush()
            queue_free_prompt(s, settings, prompt.id, prompt.text, voter_id=n)
            names = s.scalars(select(Job.checkpoint_name).where(
                Job.payload["prompt_id"].as_integer() == prompt.id).order_by(Job.id)).all()
            orders.add(tuple(by_name[name] for name in names))
    assert len(orders) > 1  # 12 prompts all in one order of 4: chance 1 in 24**11


def test_unknown_api_paths_and_boards_are_404_in_the_one_error_shape(
    arena_env: Database, arena_home: Path, pool: PoolFixture
) -> None:
    """With the Gradio UI mounted at /, an unknown path under /api/v1 must still answer in
    the API's error shape (Gradio would answer {"detail": "Not Found"})."""
    settings = Settings(home=arena_home, database_url=arena_env.url)
    with TestClient(create_app(settings, arena_env)) as client:
        for method, path in (("GET", "/api/v1/no-such-thing"), ("POST", "/api/v1/x/y"),
                             ("DELETE", "/api/v1/leaderboard/extra")):
            response = client.request(method, path)
            assert response.status_code == 404, (path, response.text)
            assert set(response.json()) == {"error"} and "no API path" in response.json()["error"]
        wrong_method = client.get("/api/v1/votes")
        assert wrong_method.status_code == 405 and set(wrong_method.json()) == {"error"}
        board = client.get("/api/v1/leaderboard", params={"board": "fixed/<nobody>"})
        assert board.status_code == 404 and "unknown board" in board.json()["error"]
        assert client.get("/api/v1/leaderboard", params={"board": "fixed/hatsune_miku"}) \
            .status_code == 200
        assert client.get("/").status_code == 200  # the UI is still served


def test_leaderboard_reads_are_limited_per_address(
    arena_env: Database, arena_home: Path, pool: PoolFixture
) -> None:
    """30 reads a minute: a burst of ten seconds' worth (5), then one every 2 s."""
    import math
    import time

    settings = Settings(home=arena_home, database_url=arena_env.url,
                        address_reads_per_minute=30, trusted_proxy_header="X-Forwarded-For")
    client = TestClient(create_app(settings, arena_env, ui=False))
    first = {"X-Forwarded-For": "192.0.2.10"}
    began = time.monotonic()
    codes = [client.get("/api/v1/leaderboard", headers=first).status_code for _ in range(12)]
    elapsed = time.monotonic() - began
    answered = codes.count(200)
    assert codes[:5] == [200] * 5 and 429 in codes
    assert answered <= 5 + math.ceil(elapsed * 0.5), (codes, elapsed)
    refused = client.get("/api/v1/leaderboard", headers=first)
    if refused.status_code == 429:
        assert "at most 30 leaderboard reads a minute per address" in refused.json()["error"]
    other = client.get("/api/v1/leaderboard", headers={"X-Forwarded-For": "192.0.2.11"})
    assert other.status_code == 200


def test_bradley_terry_is_never_fitted_in_the_voting_process(
    client: TestClient, arena_env: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The API's Bradley-Terry rows come from the leaderboard worker process (the stored fit
    or its own), saying which vote they cover: a fit in this process would fail here."""
    import arena.leaderboard.fits as fits

    for _ in range(6):
        match = new_match(client, "fixed")
        assert client.post("/api/v1/votes", json={"token": match["token"], "winner": 0},
                           headers=client.voter).status_code == 200

    def no_fit_here(*_args, **_kwargs):  # type: ignore[no-untyped-def]
        raise RuntimeError("a Bradley-Terry fit ran in the voting process")

    monkeypatch.setattr(fits, "_store_fit", no_fit_here)
    monkeypatch.setattr(fits, "_refit_later", no_fit_here)
    body = client.get("/api/v1/leaderboard", params={"system": "bt"}).json()
    assert body["rows"] and body["fit_vote_id"] is not None, body
    with arena_env.session() as s:
        newest = s.scalar(select(func.max(Vote.id)))
    assert body["fit_vote_id"] <= newest
    assert {r["fit_vote_id"] for r in body["rows"]} == {body["fit_vote_id"]}
