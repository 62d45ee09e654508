"""Hooks in database mode: an unreachable database keeps the registration in the outbox, a
refusal is logged and dropped, and delivery from the outbox reaches the arena later."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from sqlalchemy import select

from arena.db import Database
from arena.models import Job
from training import hooks
from training.outbox import Outbox


def _file(tmp_path: Path) -> Path:
    path = tmp_path / "step7.safetensors"
    path.write_bytes(b"\x02\x00\x00\x00\x00\x00\x00\x00{}")
    return path


def test_unreachable_database_keeps_then_delivers(db: Database, tmp_path: Path,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    box = tmp_path / "outbox.jsonl"
    down = "postgresql+psycopg://postgres@127.0.0.1:1/arena"  # nothing listens on port 1
    with caplog.at_level(logging.WARNING, logger="illustrious_arena.hooks"):
        kept = hooks.register_checkpoint(_file(tmp_path), {"name": "run"}, step=7, arena=down,
                                         outbox=box)
    assert kept is None and len(caplog.records) == 1
    assert "unreachable" in caplog.records[0].getMessage()
    (entry,) = Outbox(box).pending()
    assert entry["arena"] == down and entry["payload"]["step"] == 7
    # the arena "comes back" at another address: deliver the kept entry there
    entry_payload = entry["payload"]
    box.unlink()
    Outbox(box).add(db.url, entry_payload)
    assert hooks.deliver_outbox(arena=db.url, outbox=box) == 1
    assert Outbox(box).pending() == []
    with db.session(readonly=True) as session:
        assert session.scalars(select(Job.checkpoint_name).where(Job.kind == "hash")).all() == [
            "step7"
        ]


def test_a_refusal_that_may_pass_later_is_kept_a_malformed_one_dropped(
    db: Database, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """An unknown config (404) may be registered later: the registration stays in the outbox
    and is delivered once it is. A negative step (400) never passes: it is dropped, and the
    log says what was dropped."""
    from arena.registry import add_config
    from training.config import parse_config

    box = tmp_path / "outbox.jsonl"
    with caplog.at_level(logging.WARNING, logger="illustrious_arena.hooks"):
        answer = hooks.register_checkpoint(_file(tmp_path), "later-config", arena=db.url,
                                           outbox=box)
    assert answer is None
    assert "unknown config 'later-config'" in caplog.records[0].getMessage()
    (entry,) = Outbox(box).pending()
    assert entry["payload"]["config"] == "later-config"
    assert hooks.deliver_outbox(arena=db.url, outbox=box) == 0  # still unknown: kept
    assert len(Outbox(box).pending()) == 1
    with db.session() as session:
        add_config(session, parse_config({"name": "later-config"}, source="test"))
    assert hooks.deliver_outbox(arena=db.url, outbox=box) == 1
    assert Outbox(box).pending() == []

    caplog.clear()
    Outbox(box).add(db.url, {"path": str(_file(tmp_path)), "config": "later-config",
                             "step": -5, "name": "bad-step"})
    with caplog.at_level(logging.WARNING, logger="illustrious_arena.hooks"):
        assert hooks.deliver_outbox(arena=db.url, outbox=box) == 0
    assert Outbox(box).pending() == []
    (dropped,) = [r.getMessage() for r in caplog.records]
    assert "dropped it from the outbox" in dropped and "step must be >= 0" in dropped
    assert '"name": "bad-step"' in dropped
    with db.session(readonly=True) as session:
        names = session.scalars(select(Job.checkpoint_name).where(Job.kind == "hash")).all()
    assert names == ["step7"]


def test_entries_go_only_to_their_own_arena_with_its_token(
    arena_home: Path, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """Over HTTP: an arena running briefly without its admin token refuses (403) and the
    entry stays; an entry kept for another arena is never sent (its token is not known here),
    so it is neither refused nor dropped."""
    from arena.migrate import upgrade
    from arena.settings import Settings
    from arena.web.app import create_app
    from tests.support.pool import serve

    url = f"sqlite:///{tmp_path / 'arena.db'}"
    upgrade(url)
    db = Database(url)
    box = tmp_path / "outbox.jsonl"
    settings = Settings(home=arena_home, database_url=url)
    other = "http://127.0.0.1:9/elsewhere"
    Outbox(box).add(other, {"path": "/models/x.safetensors", "config": "c"})
    with serve(create_app(settings, db, ui=False)) as base:
        kept = hooks.register_checkpoint(_file(tmp_path), {"name": "run"}, step=7, arena=base,
                                         token="trainer-secret", outbox=box)
        assert kept is None  # the server has no token yet: 403, kept
        assert {e["arena"] for e in Outbox(box).pending()} == {other, base}
    with_token = Settings(home=arena_home, database_url=url, admin_token="trainer-secret")
    with serve(create_app(with_token, db, ui=False)) as again:
        entries = [e for e in Outbox(box).pending() if e["arena"] == base]
        box.unlink()  # the server came back on another port: re-address the kept entry
        Outbox(box).add(other, {"path": "/models/x.safetensors", "config": "c"})
        Outbox(box).add(again, entries[0]["payload"])
        assert hooks.deliver_outbox(arena=again, token="trainer-secret", outbox=box) == 1
    (left,) = Outbox(box).pending()
    assert left["arena"] == other
    with db.session(readonly=True) as session:
        assert session.scalars(select(Job.checkpoint_name).where(Job.kind == "hash")).all() \
            == ["step7"]
    db.dispose()
