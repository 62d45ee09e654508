"""The JSON API as tests reach it: an app over a test database, and voters it signed."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient

from arena.db import Database
from arena.settings import Settings
from arena.web.app import create_app


def make_client(db: Database, home: Path, *, raise_server_exceptions: bool = True,
                **values: object) -> TestClient:
    """A client of the API alone (no UI) over ``db``; no vote or leaderboard-read rate limit
    unless given (a test reading every board and system would meet the read limit's burst)."""
    settings = Settings(home=home, database_url=db.url,
                        **{"votes_per_minute": 0, "address_reads_per_minute": 0, **values})
    return TestClient(create_app(settings, db, ui=False),
                      raise_server_exceptions=raise_server_exceptions)


def new_voter(client: TestClient, **headers: str) -> dict[str, str]:
    """Headers of a new voter: an id the server issued and signed."""
    response = client.post("/api/v1/voters", headers=headers)
    assert response.status_code == 201, response.text
    return {"X-Voter-Id": response.json()["voter_id"]}
