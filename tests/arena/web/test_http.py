"""The holes found in review, each closed: images recognisable across matches, ratings mixed
across parameter sets, three API error shapes, `arena serve` falling back to the demo."""

from __future__ import annotations

import contextlib
import os
import re
import socket
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select, update
from typer.testing import CliRunner

from arena.cli.main import app as cli
from arena.db import Database
from arena.image_store import served_path
from arena.leaderboard.fits import recompute
from arena.models import Image, Match, MatchImage, RatingSnapshot, Vote, utcnow
from arena.ratings import stale_boards
from arena.settings import Settings, get_settings
from tests.support.api_client import make_client as api_client
from tests.support.api_client import new_voter
from tests.support.pool import PoolFixture, build_pool


@pytest.fixture
def pool(arena_env: Database, arena_home: Path, tmp_path: Path) -> PoolFixture:
    return build_pool(arena_env, arena_home, tmp_path / "pool-src")


def make_client(db: Database, home: Path, **values: object) -> TestClient:
    """A 500 comes back as a response (its shape is under test), not as an exception."""
    return api_client(db, home, raise_server_exceptions=False, **values)


def stored(db: Database) -> tuple[int, list[tuple]]:
    with db.session() as s:
        votes = s.scalar(select(func.count(Vote.id))) or 0
        rows = s.execute(select(RatingSnapshot.board, RatingSnapshot.system,
                                RatingSnapshot.checkpoint_id, RatingSnapshot.rating)
                         .order_by(RatingSnapshot.id)).all()
    return votes, [tuple(r) for r in rows]


# -- 2. No recognisable images ---------------------------------------------------------------

def test_image_urls_are_per_match_and_private(
    arena_env: Database, arena_home: Path, pool: PoolFixture
) -> None:
    client = make_client(arena_env, arena_home)
    voter, other = new_voter(client), new_voter(client)
    with arena_env.session() as s:
        served_hashes = set(s.scalars(select(Image.served_sha256)))
    urls_by_image: dict[int, set[str]] = {}
    tokens = []
    # Four-way matches on the one ffa prompt show the same four images every time.
    for _ in range(3):
        match = client.post("/api/v1/matches", json={"mode": "ffa"}, headers=voter).json()
        tokens.append(match["token"])
        with arena_env.session() as s:
            by_position = dict(s.execute(
                select(MatchImage.position, MatchImage.image_id)
                .join(Match, Match.id == MatchImage.match_id).where(Match.token == match["token"])
            ).all())
        for shown in match["images"]:
            url = shown["url"]
            assert re.fullmatch(r"/api/v1/images/[0-9a-f]{32}\.png", url)
            assert not any(h[:16] in url for h in served_hashes)
            urls_by_image.setdefault(by_position[shown["position"]], set()).add(url)
            got = client.get(url, headers=voter)
            assert got.status_code == 200 and got.headers["cache-control"] == "private, no-store"
            refused = client.get(url, headers=other)
            assert refused.status_code == 403 and "another voter" in refused.json()["error"]
    # The same image had a different URL in each of the three matches.
    assert len(urls_by_image) == 4 and all(len(u) == 3 for u in urls_by_image.values())
    # Names derived from the image (the old content-hash URLs) are not served at all.
    old = client.get(f"/api/v1/images/{next(iter(served_hashes))}.png", headers=voter)
    assert old.status_code == 404 and old.json() == {"error": "unknown image"}
    # Once the match expires (or is skipped), its image names stop working.
    first = urls_by_image[min(urls_by_image)]
    with arena_env.session() as s:
        s.execute(update(Match).where(Match.token.in_(tokens[:2]))
                  .values(expires_at=utcnow() - timedelta(seconds=1)))
    assert client.post("/api/v1/skips", json={"token": tokens[2]}, headers=voter).status_code == 204
    for url in first:
        gone = client.get(url, headers=voter)
        assert gone.status_code == 410 and "no longer served" in gone.json()["error"]


# -- 3. Rating parameters --------------------------------------------------------------------

def test_votes_refused_while_snapshots_have_other_parameters(
    arena_env: Database, arena_home: Path, pool: PoolFixture
) -> None:
    client = make_client(arena_env, arena_home)
    voter = new_voter(client)
    match = client.post("/api/v1/matches", json={"mode": "fixed"}, headers=voter).json()
    assert client.post("/api/v1/votes", json={"token": match["token"], "winner": 0},
                       headers=voter).status_code == 200
    # The operator changes K: the stored snapshots were made with K = 32.
    changed = make_client(arena_env, arena_home, elo_k=16.0)
    before = stored(arena_env)
    for mode in ("fixed", "free"):  # fixed shares boards with the first vote; free shares overall
        match = changed.post("/api/v1/matches", json={"mode": mode}, headers=voter).json()
        refused = changed.post("/api/v1/votes", json={"token": match["token"], "winner": 0},
                               headers=voter)
        assert refused.status_code == 503, refused.text
        assert "other parameters" in refused.json()["error"]
        assert "arena ratings recompute" in refused.json()["error"]
    assert stored(arena_env) == before
    with arena_env.session() as s:
        stale = stale_boards(s, Settings(elo_k=16.0))
        assert len(stale) == 3 and stale[0] == "fixed" and stale[2] == "overall"
        assert stale[1] in ("fixed/hatsune_miku", "fixed/hakurei_reimu")
        assert stale_boards(s, Settings()) == []
    # After the recompute every snapshot carries the new parameters and votes flow again.
    recompute(arena_env, Settings(elo_k=16.0), progress=False)
    again = changed.post("/api/v1/votes", json={"token": match["token"], "winner": 1},
                         headers=voter)
    assert again.status_code == 200, again.text
    with arena_env.session() as s:
        ks = {p["k"] for p in s.scalars(select(RatingSnapshot.parameters)
                                          .where(RatingSnapshot.system == "elo"))}
    assert ks == {16.0}


# -- 4. One error shape ----------------------------------------------------------------------

def test_every_api_error_has_one_shape(
    arena_env: Database, arena_home: Path, pool: PoolFixture
) -> None:
    client = make_client(arena_env, arena_home, admin_token="admin-secret")
    voter = new_voter(client)
    invalid = client.post("/api/v1/votes", json={"token": 5, "winner": [1]}, headers=voter)
    assert invalid.status_code == 422
    body = invalid.json()
    assert set(body) == {"error", "detail"} and "\n" not in body["error"]
    assert body["error"].startswith("invalid token")
    assert all(set(d) == {"loc", "msg", "type"} for d in body["detail"])
    unknown_field = client.post("/api/v1/matches", json={"mode": "free", "x": 1}, headers=voter)
    assert unknown_field.status_code == 422 and "x" in unknown_field.json()["error"]
    not_json = client.post("/api/v1/votes", content=b"{", headers=voter)
    assert not_json.status_code == 422 and set(not_json.json()) == {"error", "detail"}
    for response, status in (
        (client.get("/api/v1/nowhere"), 404),
        (client.put("/api/v1/votes"), 405),
        (client.get("/api/v1/leaderboard", params={"board": "chess"}), 404),
        (client.post("/api/v1/votes", json={"token": "t", "winner": 0}, headers=voter), 404),
    ):
        assert response.status_code == status
        assert list(response.json()) == ["error"] and response.json()["error"]
    # A 500 (here: a served copy deleted behind the server's back) reveals no internals.
    match = client.post("/api/v1/matches", json={"mode": "fixed"}, headers=voter).json()
    with arena_env.session() as s:
        for sha in s.scalars(select(Image.served_sha256)):
            served_path(arena_home, sha).unlink()
    broken = client.get(match["images"][0]["url"], headers=voter)
    assert broken.status_code == 500
    assert broken.json() == {"error": "internal server error"}
    assert str(arena_home) not in broken.text and "Traceback" not in broken.text


def test_openapi_documents_the_error_shape(arena_env: Database, arena_home: Path) -> None:
    client = make_client(arena_env, arena_home)
    spec = client.get("/openapi.json").json()
    assert "/api/v1/voters" in spec["paths"]
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            for code, response in operation["responses"].items():
                if code[0] in "45":
                    ref = response["content"]["application/json"]["schema"]["$ref"]
                    assert ref.endswith("/ErrorOut"), (path, method, code)
            assert "422" in operation["responses"] or method == "get", (path, method)
    assert spec["components"]["schemas"]["ErrorOut"]["required"] == ["error"]


def test_no_assert_for_control_flow_in_the_service() -> None:
    """No module of the service relies on ``assert`` (stripped by ``python -O``) to refuse
    input: every package under arena/ except the CLI and the demo."""
    import ast

    root = Path(__file__).parents[3] / "arena"
    modules = [p for p in root.rglob("*.py") if p.relative_to(root).parts[0] not in ("cli", "demo")]
    assert len(modules) > 30
    for path in modules:
        tree = ast.parse(path.read_text())
        asserts = [n.lineno for n in ast.walk(tree) if isinstance(n, ast.Assert)]
        assert asserts == [], (str(path.relative_to(root)), asserts)


# -- 4. arena serve --------------------------------------------------------------------------

runner = CliRunner()


def test_serve_never_falls_back_to_the_demo(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, bare_folder: Path
) -> None:
    (tmp_path / "arena-demo").mkdir()
    (tmp_path / "arena-demo" / "arena.db").write_bytes(b"")  # a demo exists, but was not asked
    get_settings.cache_clear()
    try:
        result = runner.invoke(cli, ["serve", "--port", "1"])
        assert result.exit_code == 2
        lines = result.output.strip().splitlines()
        assert len(lines) == 1 and "no arena database" in lines[0] and "--demo" in lines[0]
        monkeypatch.setenv("ARENA_HOME", str(tmp_path / "nothing-here"))
        get_settings.cache_clear()
        demo = runner.invoke(cli, ["serve", "--demo", "--port", "1"])
        assert demo.exit_code == 2 and "arena demo --no-serve" in demo.output
    finally:
        get_settings.cache_clear()
    assert not (tmp_path / "arena-data").exists()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_serve_says_what_it_serves(arena_env: Database, arena_home: Path) -> None:
    port = _free_port()
    env = {**os.environ, "ARENA_HOME": str(arena_home), "ARENA_DATABASE_URL": arena_env.url,
           "GRADIO_ANALYTICS_ENABLED": "False", "ARENA_ADDRESS_VOTERS_PER_HOUR": "1"}
    process = subprocess.Popen(
        [sys.executable, "-m", "arena.cli.main", "serve", "--port", str(port)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    base = f"http://127.0.0.1:{port}/api/v1"
    try:
        lines = []
        assert process.stdout is not None
        while len(lines) < 3:
            line = process.stdout.readline()
            if not line:
                break
            lines.append(line.strip())
        for _ in range(600):
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{base}/health").status_code == 200:
                    break
            time.sleep(0.1)
        # uvicorn's own X-Forwarded-For handling is off: a local client cannot pick its address.
        first = httpx.post(f"{base}/voters", headers={"X-Forwarded-For": "198.51.100.1"})
        second = httpx.post(f"{base}/voters", headers={"X-Forwarded-For": "198.51.100.2"})
    finally:
        process.kill()
        process.wait()
    assert first.status_code == 201 and second.status_code == 429
    shown = arena_env.url.split("@")[-1].split(":///")[-1]
    assert lines[0].startswith("database: ") and shown in lines[0]
    assert lines[1].startswith(f"image store: {(arena_home / 'images').resolve()}")
    assert f"http://127.0.0.1:{port}" in lines[2]


# -- The one translation of input errors -----------------------------------------------------

def test_lower_layer_input_errors_answer_400_in_the_one_shape(
    arena_env: Database, arena_home: Path, pool: PoolFixture, tmp_path: Path
) -> None:
    """Every package's input error reaches the client as ``400 {"error": one line}`` through
    the one handler in arena.web.http; the service's own errors keep their status."""
    from generation.errors import GenerationError
    from metrics.ccip_model import CCIPModelError
    from metrics.errors import InputError
    from training.config import ConfigError

    client = make_client(arena_env, arena_home, admin_token="admin-secret")
    # A real route: a ranking with a repeated position is metrics.outcomes.InvalidVote.
    voter = new_voter(client)
    match = client.post("/api/v1/matches", json={"mode": "ffa"}, headers=voter).json()
    refused = client.post("/api/v1/votes", json={"token": match["token"],
                                                 "ranking": [0, 0, 1, 2]}, headers=voter)
    assert refused.status_code == 400
    assert refused.json() == {"error": "ranking: positions repeat in [0, 0, 1, 2]"}
    assert stored(arena_env)[0] == 0
    # A real admin route: config_data that does not validate is training.config.ConfigError.
    checkpoint = tmp_path / "new.safetensors"
    checkpoint.write_bytes(b"\x02\x00\x00\x00\x00\x00\x00\x00{}")
    config = client.post("/api/v1/checkpoints", headers={"Authorization": "Bearer admin-secret"},
                         json={"path": str(checkpoint), "config_data": {"name": "x",
                                                                        "batch_size": -1}})
    assert config.status_code == 400 and list(config.json()) == ["error"]
    assert "batch_size" in config.json()["error"]
    # Every lower package's error type, raised by a route of the same app.
    errors: dict[str, InputError] = {
        "generation": GenerationError("prompt set p.yaml:\nnot valid YAML"),
        "training": ConfigError("config: batch_size\n  expected > 0"),
        "metrics": CCIPModelError("model_dir: missing model_feat.onnx"),
    }

    @client.app.get("/probe/{which}")  # type: ignore[attr-defined]
    def probe(which: str) -> None:
        raise errors[which]

    for which, error in errors.items():
        response = client.get(f"/probe/{which}")
        assert response.status_code == 400, which
        assert response.json() == {"error": " ".join(str(error).split())}
