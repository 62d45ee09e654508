"""Voter identity and limits: server-signed voter ids, forged ids refused, per-voter and
per-address limits counted in the database, client addresses from a trusted header only."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import func, select

from arena.db import Database
from arena.errors import Forbidden
from arena.identity import SECRET_FILE, VoterIds, issue_voter_id, verify_voter_id
from arena.models import LimitEvent, Match, Vote, Voter
from arena.settings import Settings
from tests.support.api_client import make_client, new_voter
from tests.support.pool import PoolFixture, build_pool


@pytest.fixture
def pool(arena_env: Database, arena_home: Path, tmp_path: Path) -> PoolFixture:
    return build_pool(arena_env, arena_home, tmp_path / "pool-src")


def counts(db: Database) -> tuple[int, int, int]:
    with db.session() as s:
        return (
            s.scalar(select(func.count(Voter.id))) or 0,
            s.scalar(select(func.count(Match.id))) or 0,
            s.scalar(select(func.count(Vote.id))) or 0,
        )


def test_ids_are_signed_by_the_server_secret(arena_home: Path) -> None:
    settings = Settings(home=arena_home)
    voter = issue_voter_id(settings)
    assert verify_voter_id(settings, voter) == voter
    # Another process on the same ARENA_HOME reads the same key file.
    secret = (arena_home / SECRET_FILE).read_text()
    assert verify_voter_id(Settings(home=arena_home), voter) == voter
    assert (arena_home / SECRET_FILE).read_text() == secret
    assert (arena_home / SECRET_FILE).stat().st_mode & 0o077 == 0
    nonce, _, signature = voter.partition(".")
    # The last character changed to another one (a fixed "A" equals it one id in 64).
    altered = signature[:-1] + ("B" if signature[-1] == "A" else "A")
    for forged in (nonce, f"{nonce}.{altered}", f"x{nonce}.{signature}", "voter-0001",
                   "", voter + "."):
        with pytest.raises(Forbidden, match="not issued by this server"):
            verify_voter_id(settings, forged)
    # A configured secret (shared by several hosts) replaces the file's key.
    key = "a-secret-for-every-host-of-this-arena"
    shared = Settings(home=arena_home, voter_secret=key)
    other_home = Settings(home=arena_home / "elsewhere", voter_secret=key)
    assert verify_voter_id(other_home, issue_voter_id(shared))
    with pytest.raises(Forbidden):
        verify_voter_id(shared, voter)


def test_remembered_voter_ids_are_the_verified_ones_only(arena_home: Path) -> None:
    settings = Settings(home=arena_home)
    ids = VoterIds(settings)
    voter = issue_voter_id(settings)
    nonce, _, signature = voter.partition(".")
    forged = f"{nonce}.{signature[:-1]}{'B' if signature[-1] == 'A' else 'A'}"
    for _ in range(2):  # the second time from memory, the forged one refused again
        assert ids.verify(voter) == voter
        with pytest.raises(Forbidden, match="not issued by this server"):
            ids.verify(forged)
    # Another server's id (another key) is refused though this one remembers its own.
    other = issue_voter_id(Settings(home=arena_home, voter_secret="k" * 40))
    with pytest.raises(Forbidden):
        ids.verify(other)
    # Past the bound the memory starts over; ids are still verified.
    ids.MAX_REMEMBERED = 2
    fresh = [issue_voter_id(settings) for _ in range(3)]
    assert [ids.verify(v) for v in fresh] == fresh
    assert len(ids._accepted) <= 2


def test_forged_and_unsigned_voter_ids_are_refused(
    arena_env: Database, arena_home: Path, pool: PoolFixture
) -> None:
    client = make_client(arena_env, arena_home)
    owner = new_voter(client)
    match = client.post("/api/v1/matches", json={"mode": "fixed"}, headers=owner).json()
    before = counts(arena_env)
    nonce = owner["X-Voter-Id"].partition(".")[0]
    for forged in ("voter-aaaa-0001", nonce, nonce + "." + "A" * 43):
        headers = {"X-Voter-Id": forged}
        made = client.post("/api/v1/matches", json={"mode": "fixed"}, headers=headers)
        assert made.status_code == 403 and "voter id" in made.json()["error"]
        voted = client.post("/api/v1/votes", json={"token": match["token"], "winner": 0},
                            headers=headers)
        assert voted.status_code == 403
    assert counts(arena_env) == before
    # A forged cookie does not make the client that voter: it gets a fresh id instead.
    client.cookies.clear()
    forged_cookie = {"Cookie": "arena_voter=" + owner["X-Voter-Id"][:-2] + "xx"}
    foreign = client.post("/api/v1/votes", json={"token": match["token"], "winner": 0},
                          headers=forged_cookie)
    assert foreign.status_code == 403 and "another voter" in foreign.json()["error"]
    fresh = foreign.cookies["arena_voter"]
    assert fresh != owner["X-Voter-Id"] and verify_voter_id(Settings(home=arena_home), fresh)
    ok = client.post("/api/v1/votes", json={"token": match["token"], "winner": 0}, headers=owner)
    assert ok.status_code == 200, ok.text


def test_limits_per_voter(arena_env: Database, arena_home: Path, pool: PoolFixture) -> None:
    client = make_client(arena_env, arena_home, matches_per_minute=3, skips_per_minute=1,
                         prompts_per_hour=1)
    voter = new_voter(client)
    tokens = []
    for _ in range(3):
        made = client.post("/api/v1/matches", json={"mode": "free"}, headers=voter)
        assert made.status_code == 200, made.text
        tokens.append(made.json()["token"])
    over = client.post("/api/v1/matches", json={"mode": "free"}, headers=voter)
    assert over.status_code == 429
    assert over.json()["error"].startswith("rate limit: at most 3 matches a minute per voter")
    # Another voter is not affected by this voter's count.
    other = new_voter(client)
    assert client.post("/api/v1/matches", json={"mode": "free"}, headers=other).status_code == 200
    typed = client.post("/api/v1/matches", json={"mode": "free", "prompt": "1girl, a lake"},
                        headers=other)
    assert typed.status_code == 200, typed.text
    again = client.post("/api/v1/matches", json={"mode": "free", "prompt": "1girl, a hill"},
                        headers=other)
    assert again.status_code == 429 and "typed prompts an hour" in again.json()["error"]
    assert client.post("/api/v1/skips", json={"token": tokens[0]}, headers=voter).status_code == 204
    skip = client.post("/api/v1/skips", json={"token": tokens[1]}, headers=voter)
    assert skip.status_code == 429 and "skips a minute" in skip.json()["error"]
    with arena_env.session() as s:
        assert s.scalar(select(Match.skipped_at).where(Match.token == tokens[1])) is None
        from arena.models import GenerationRequest

        assert s.scalar(select(func.count(GenerationRequest.id))) == 1


def test_limits_per_address_hold_across_server_processes(
    arena_env: Database, arena_home: Path, pool: PoolFixture
) -> None:
    # Two apps (as two server processes would) on one database share one count per address.
    first = make_client(arena_env, arena_home, address_voters_per_hour=2,
                        address_matches_per_minute=3)
    second = make_client(arena_env, arena_home, address_voters_per_hour=2,
                         address_matches_per_minute=3)
    a = new_voter(first)
    b = new_voter(second)
    third = second.post("/api/v1/voters")
    assert third.status_code == 429
    assert "at most 2 new voter ids an hour per address" in third.json()["error"]
    # A cookie-minted id is a new voter too when first used.
    second.cookies.clear()
    cookie_match = second.post("/api/v1/matches", json={"mode": "fixed"})
    assert cookie_match.status_code == 429 and "new voter ids" in cookie_match.json()["error"]
    codes = [c.post("/api/v1/matches", json={"mode": "fixed"}, headers=h).status_code
             for c, h in ((first, a), (second, b), (first, b), (second, a))]
    assert codes == [200, 200, 200, 429]
    assert counts(arena_env) == (2, 3, 0)


def test_client_address_only_from_the_trusted_header(
    arena_env: Database, arena_home: Path, pool: PoolFixture
) -> None:
    # Without a configured header, X-Forwarded-For is the client's word and is ignored.
    direct = make_client(arena_env, arena_home, address_voters_per_hour=1)
    new_voter(direct, **{"X-Forwarded-For": "203.0.113.1"})
    refused = direct.post("/api/v1/voters", headers={"X-Forwarded-For": "203.0.113.2"})
    assert refused.status_code == 429
    # Behind a proxy that sets X-Real-IP, each client address has its own count; a header the
    # client sent itself (X-Forwarded-For) still changes nothing.
    proxied = make_client(arena_env, arena_home, address_voters_per_hour=1,
                          trusted_proxy_header="X-Real-IP")
    new_voter(proxied, **{"X-Real-IP": "198.51.100.7"})
    new_voter(proxied, **{"X-Real-IP": "198.51.100.8", "X-Forwarded-For": "198.51.100.7"})
    again = proxied.post("/api/v1/voters", headers={"X-Real-IP": "198.51.100.7"})
    assert again.status_code == 429
    # A list header: the rightmost entry is the one the proxy added.
    chained = make_client(arena_env, arena_home, address_voters_per_hour=1,
                          trusted_proxy_header="X-Forwarded-For")
    new_voter(chained, **{"X-Forwarded-For": "10.9.9.9, 192.0.2.50"})
    spoof = chained.post("/api/v1/voters", headers={"X-Forwarded-For": "10.1.1.1, 192.0.2.50"})
    assert spoof.status_code == 429
    # The database keeps keyed addresses, never the addresses themselves.
    with arena_env.session() as s:
        stored = " ".join(s.scalars(select(LimitEvent.address)))
    assert "198.51.100" not in stored and "192.0.2" not in stored and "testclient" not in stored


def test_in_process_callers_answer_to_per_voter_limits_only(
    arena_env: Database, arena_home: Path, pool: PoolFixture
) -> None:
    from arena.errors import RateLimited
    from arena.matches import issue_match

    settings = Settings(home=arena_home, database_url=arena_env.url, address_voters_per_hour=1,
                        matches_per_minute=2)
    # A simulation or script (no client address) may create many voters ...
    for n in range(3):
        issue_match(arena_env, settings, f"simulated-voter-{n:04d}", "fixed")
    # ... an HTTP client address may not,
    issue_match(arena_env, settings, "client-voter-0001", "fixed", address="203.0.113.9")
    with pytest.raises(RateLimited, match="new voter ids"):
        issue_match(arena_env, settings, "client-voter-0002", "fixed", address="203.0.113.9")
    # and the per-voter limits hold for both.
    issue_match(arena_env, settings, "simulated-voter-0000", "fixed")
    with pytest.raises(RateLimited, match="2 matches a minute per voter"):
        issue_match(arena_env, settings, "simulated-voter-0000", "fixed")
    assert counts(arena_env) == (4, 5, 0)


@pytest.mark.parametrize("content", ["", "ab12", "00" * 16])
def test_a_short_voter_secret_is_refused_at_start(tmp_path: Path, content: str) -> None:
    """An empty or truncated key file (or a short configured secret) would sign voter ids
    with a key anyone can guess: the app refuses to start, naming the file."""
    from arena.errors import UserError
    from arena.web.app import create_app

    home = tmp_path / "home"
    home.mkdir()
    (home / SECRET_FILE).write_text(content)
    settings = Settings(home=home, database_url=f"sqlite:///{tmp_path / 'a.db'}")
    with pytest.raises(UserError, match=r"voter-secret holds a \d+-byte key; at least 32"):
        create_app(settings, ui=False)
    short = Settings(home=tmp_path / "other", voter_secret="x" * 31)
    with pytest.raises(UserError, match="ARENA_VOTER_SECRET is 31 bytes; at least 32"):
        issue_voter_id(short)


def test_ipv6_clients_are_limited_per_network(
    arena_env: Database, arena_home: Path, pool: PoolFixture
) -> None:
    """A host picks any address of its /64 at will: the per-address limit counts the /64."""
    client = make_client(arena_env, arena_home, address_voters_per_hour=1,
                         trusted_proxy_header="X-Forwarded-For")
    new_voter(client, **{"X-Forwarded-For": "2001:db8:1:2::1"})
    same_net = client.post("/api/v1/voters", headers={"X-Forwarded-For": "2001:db8:1:2:ffff::9"})
    assert same_net.status_code == 429, same_net.text
    new_voter(client, **{"X-Forwarded-For": "2001:db8:1:3::1"})  # another /64
    # An IPv4-mapped address is the IPv4 client it maps.
    new_voter(client, **{"X-Forwarded-For": "192.0.2.77"})
    mapped = client.post("/api/v1/voters", headers={"X-Forwarded-For": "::ffff:192.0.2.77"})
    assert mapped.status_code == 429
    wider = make_client(arena_env, arena_home, address_voters_per_hour=1, ipv6_prefix=128,
                        trusted_proxy_header="X-Forwarded-For")
    new_voter(wider, **{"X-Forwarded-For": "2001:db8:9::1"})
    new_voter(wider, **{"X-Forwarded-For": "2001:db8:9::2"})  # /128: each address its own


def test_the_page_and_the_api_resolve_one_client_address(arena_home: Path) -> None:
    """Two lines of the proxy header read as one list: the rightmost entry (the proxy's own)
    wins for the JSON API and for the Gradio page alike, never a line the client wrote."""
    import gradio as gr
    from starlette.requests import Request

    from arena.identity import client_address
    from arena.web.http import VOTER_COOKIE
    from arena.web.voting_ui import requester

    settings = Settings(home=arena_home, trusted_proxy_header="X-Forwarded-For")
    voter = issue_voter_id(settings)
    lines = [(b"x-forwarded-for", b"198.51.100.1"), (b"x-forwarded-for", b"203.0.113.5, 192.0.2.9"),
             (b"cookie", f"{VOTER_COOKIE}={voter}".encode())]
    scope = {"type": "http", "headers": lines, "client": ("10.0.0.1", 5000), "method": "POST",
             "path": "/gradio_api/queue/join", "query_string": b""}
    page = requester(settings, gr.Request(request=Request(scope)))
    assert page == (voter, "192.0.2.9")
    assert client_address(settings, "10.0.0.1", ["198.51.100.1", "203.0.113.5, 192.0.2.9"]) \
        == "192.0.2.9"
    # Pickled for Gradio's queue, the request keeps the address the middleware resolved.
    scope["state"] = {"client_address": "192.0.2.9"}
    import pickle

    restored = pickle.loads(pickle.dumps(gr.Request(request=Request(scope))))
    assert requester(settings, restored) == (voter, "192.0.2.9")


def test_the_cookie_is_secure_behind_an_https_public_url(
    arena_env: Database, arena_home: Path, pool: PoolFixture
) -> None:
    plain = make_client(arena_env, arena_home)
    assert "secure" not in plain.post("/api/v1/matches", json={"mode": "fixed"}).headers[
        "set-cookie"].lower()
    https = make_client(arena_env, arena_home, public_url="https://arena.example.org")
    cookie = https.post("/api/v1/matches", json={"mode": "fixed"}).headers["set-cookie"]
    assert "; Secure" in cookie and "HttpOnly" in cookie
