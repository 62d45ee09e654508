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


def test_refused_registration_is_logged_not_kept(db: Database, tmp_path: Path,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    box = tmp_path / "outbox.jsonl"
    with caplog.at_level(logging.WARNING, logger="illustrious_arena.hooks"):
        answer = hooks.register_checkpoint(_file(tmp_path), "no-such-config", arena=db.url,
                                           outbox=box)
    assert answer is None and not box.exists()
    assert "unknown config 'no-such-config'" in caplog.records[0].getMessage()
    with db.session(readonly=True) as session:
        assert session.scalars(select(Job)).all() == []
