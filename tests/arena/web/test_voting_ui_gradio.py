"""The Gradio app driven by the real ``gradio_client`` over HTTP, on both databases."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from gradio_client import Client
from sqlalchemy import select

from arena.db import Database
from arena.models import Image, Match, Vote, Voter, utcnow
from arena.settings import Settings
from arena.web.app import create_app
from metrics.file_hash import sha256_bytes
from tests.support.pool import FIXED_PROMPTS, FREE_PROMPTS, PoolFixture, build_pool, serve


@pytest.fixture
def pool(arena_env: Database, arena_home: Path, tmp_path: Path) -> PoolFixture:
    return build_pool(arena_env, arena_home, tmp_path / "pool-src")


@pytest.fixture
def server(arena_env: Database, arena_home: Path, pool: PoolFixture) -> Iterator[str]:
    # One vote a minute: the second vote of a test meets the rate limit.
    settings = Settings(home=arena_home, database_url=arena_env.url, votes_per_minute=1)
    with serve(create_app(settings, arena_env)) as url:
        yield url


def value(output: Any) -> Any:
    """An output's value: gradio_client hands back ``gr.update(...)`` outputs as dicts."""
    return output.get("value") if isinstance(output, dict) else output


@pytest.fixture
def connect(server: str, tmp_path: Path) -> Iterator[Callable[..., Client]]:
    """Open gradio_client connections to the live app; closed after the test."""
    clients: list[Client] = []

    def open_client(cookies: dict[str, str] | None = None) -> Client:
        client = Client(
            server + "/",
            verbose=False,
            analytics_enabled=False,
            download_files=str(tmp_path / "downloads"),
            httpx_kwargs={"cookies": cookies} if cookies else None,
        )
        clients.append(client)
        return client

    yield open_client
    for client in clients:
        client.close()


def test_one_vote_through_gradio_client(
    connect: Callable[..., Client], arena_env: Database, pool: PoolFixture, server: str
) -> None:
    client = connect()
    shown = client.predict(api_name="/fixed_next")
    prompt, image_a, image_b, status = (value(x) for x in shown[:4])
    assert prompt in FIXED_PROMPTS.values()
    assert status == "Which image is better?"
    with arena_env.session() as s:
        served = set(s.scalars(select(Image.served_sha256)))
    for html in (image_a, image_b):
        # The image is an <img> with this match's random name, nothing derived from the image.
        (src,) = re.findall(r'src="([^"]+)"', html)
        assert re.fullmatch(r"/api/v1/images/[0-9a-f]{32}\.png", src)
        assert not any(h[:16] in src for h in served)
        data = httpx.get(server + src, cookies=client.cookies).content
        assert data.startswith(b"\x89PNG") and sha256_bytes(data) in served
        assert not [x for x in pool.secrets if x.lower().encode() in data.lower()]
        # Another client (another voter) cannot fetch it.
        assert httpx.get(server + src).status_code == 403
    assert not [x for x in pool.secrets if x.lower() in repr(shown).lower()]

    answer = client.predict(api_name="/fixed_vote_a")
    reveal = answer[3]
    assert "Revealed" in reveal and "You have cast **1** vote." in reveal
    with arena_env.session() as s:
        (vote,) = s.scalars(select(Vote)).all()
        match = s.get(Match, vote.match_id)
        voter = s.get(Voter, vote.voter_id)
        assert match is not None and voter is not None
        winner = next(mi for mi in match.images if mi.position == 0).checkpoint.name
        assert vote.outcome == "win" and vote.winner_position == 0
    # The client keeps the voter cookie the app set: the UI and the JSON API share a voter.
    assert voter.external_id == client.cookies["arena_voter"]
    assert f"| A ✔ your pick | {winner} |" in reveal

    # Voting again on the revealed match changes nothing.
    again = client.predict(api_name="/fixed_vote_b")
    assert "no open match" in again[3]
    # A new match, then the rate limit (1 vote a minute) is shown as a message.
    client.predict(api_name="/fixed_next")
    limited = client.predict(api_name="/fixed_vote_tie")
    assert limited[3].startswith("⚠️ rate limit")
    with arena_env.session() as s:
        assert len(s.scalars(select(Vote)).all()) == 1


def test_session_voter_free_prompt_notice_and_ranking_check(
    connect: Callable[..., Client], arena_env: Database, pool: PoolFixture
) -> None:
    # A forged voter cookie is refused with a message; nothing is issued to it.
    forged = connect(cookies={"arena_voter": "bad!"})
    refused = forged.predict("an entirely new prompt, not in the pool", api_name="/free_prompt")
    assert "voter cookie is not valid" in refused[3]
    with arena_env.session() as s:
        assert s.scalars(select(Match)).all() == []
    client = connect()
    shown = client.predict("an entirely new prompt, not in the pool", api_name="/free_prompt")
    assert "queued for generation" in shown[3]
    answer = client.predict(api_name="/free_vote_both_bad")
    assert "Revealed" in answer[3]
    with arena_env.session() as s:
        (vote,) = s.scalars(select(Vote)).all()
        assert vote.outcome == "both_bad"
        voter = s.get(Voter, vote.voter_id)
        assert voter is not None and voter.external_id == client.cookies["arena_voter"]
    # A prompt the pool holds from two or more checkpoints is served as typed.
    served = client.predict(f"  {FREE_PROMPTS[1]} ", api_name="/free_prompt")
    assert value(served[0]) == FREE_PROMPTS[1] and value(served[3]) == "Which image is better?"

    # A four-way match takes a full ranking; an incomplete one is refused with a message.
    client.predict(api_name="/ffa_next")
    refused = client.predict("2", "2", "1", "3", api_name="/ffa_rank")
    assert "each of the four images exactly one place" in refused[5]
    # An expired match is refused with a message and changes nothing.
    with arena_env.session() as s:
        match = s.scalars(select(Match).order_by(Match.id.desc())).first()
        assert match is not None and match.kind == "ffa"
        match.expires_at = utcnow() - timedelta(seconds=1)
    expired = client.predict(api_name="/ffa_vote_1")
    assert value(expired[5]).startswith("⚠️ this match has expired")
    with arena_env.session() as s:
        assert len(s.scalars(select(Vote)).all()) == 1
