"""`arena watch`: each new .safetensors is registered once, only when completely written, with
the kohya ss_* training metadata from its header copied into the registry."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from arena.cli.main import app
from arena.db import Database
from arena.jobs.worker import run_worker
from arena.models import Checkpoint, Job
from arena.registry import add_config
from arena.settings import Settings
from training.config import parse_config
from training.watch import HeaderError, Watcher, read_header

KOHYA = {
    "ss_steps": "1200",
    "ss_epoch": "3",
    "ss_sd_model_name": "illustrious-xl-v0.1.safetensors",
    "ss_learning_rate": "1e-05",
    "ss_unet_lr": "1e-05",
    "ss_text_encoder_lr": "5e-06",
    "ss_batch_size_per_device": "4",
    "ss_resolution": "(1024, 1024)",
    "modelspec.title": "not a training key",
}


def kohya_file(path: Path, whole: bool = True) -> Path:
    """A safetensors file as kohya's scripts write it: one tensor and __metadata__."""
    header = json.dumps({
        "__metadata__": KOHYA,
        "w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]},
    }).encode()
    data = struct.pack("<Q", len(header)) + header + b"\x00" * 16
    path.write_bytes(data if whole else data[:-8])
    return path


@pytest.fixture
def configured(db: Database, monkeypatch: pytest.MonkeyPatch) -> Database:
    monkeypatch.setenv("ARENA_PROMPT_SETS", "default")
    with db.session() as session:
        add_config(session, parse_config({"name": "kohya-run"}, source="test"))
    return db


def _hash_jobs(db: Database) -> list[Job]:
    with db.session(readonly=True) as session:
        return list(session.scalars(select(Job).where(Job.kind == "hash").order_by(Job.id)))


def test_header_check_tells_whole_from_torn(tmp_path: Path) -> None:
    assert read_header(kohya_file(tmp_path / "a.safetensors")) is not None
    assert read_header(kohya_file(tmp_path / "b.safetensors", whole=False)) is None
    (tmp_path / "c.safetensors").write_bytes(b"\xff" * 20)
    with pytest.raises(HeaderError, match="a header of"):
        read_header(tmp_path / "c.safetensors")


def test_new_files_registered_once_when_whole(configured: Database, tmp_path: Path) -> None:
    folder = tmp_path / "out"
    folder.mkdir()
    kohya_file(folder / "run-000001.safetensors")
    kohya_file(folder / "run-000002.safetensors", whole=False)  # still being written
    watcher = Watcher(folder, "kohya-run", configured.url, outbox=tmp_path / "outbox.jsonl")
    assert watcher.poll() == []  # first sight: a file must hold still between two looks
    found = watcher.poll()
    assert [(f["file"], f["step"], f["delivered"]) for f in found] == [
        ("run-000001.safetensors", 1200, True)
    ]
    assert watcher.poll() == []
    kohya_file(folder / "run-000002.safetensors")  # now complete
    assert watcher.poll() == []
    assert [f["file"] for f in watcher.poll()] == ["run-000002.safetensors"]
    assert Watcher(folder, "kohya-run", configured.url).poll() == []  # remembered on disk
    jobs = _hash_jobs(configured)
    assert [j.checkpoint_name for j in jobs] == ["run-000001", "run-000002"]
    settings = Settings(home=tmp_path / "home", database_url=configured.url)
    run_worker(configured, settings, once=True, kinds=["hash"], echo=lambda _: None)
    with configured.session(readonly=True) as session:
        row = session.scalar(select(Checkpoint).where(Checkpoint.name == "run-000001"))
        assert row is not None and row.step == 1200
        meta = row.training_metadata or {}
        assert meta["ss_epoch"] == 3 and meta["ss_learning_rate"] == 1e-05
        assert meta["ss_batch_size_per_device"] == 4 and meta["ss_resolution"] == "(1024, 1024)"
        assert meta["ss_sd_model_name"] == "illustrious-xl-v0.1.safetensors"
        assert "modelspec.title" not in meta


def test_watch_cli_once(configured: Database, arena_home: Path, tmp_path: Path,
                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ARENA_DATABASE_URL", configured.url)
    monkeypatch.setenv("ARENA_OUTBOX", str(tmp_path / "outbox.jsonl"))
    monkeypatch.delenv("ARENA_URL", raising=False)
    from arena.settings import get_settings

    get_settings.cache_clear()
    folder = tmp_path / "out"
    folder.mkdir()
    kohya_file(folder / "last.safetensors")
    result = CliRunner().invoke(app, ["watch", str(folder), "--config", "kohya-run", "--once",
                                      "--interval", "0.2"])
    assert result.exit_code == 0, result.output
    assert "last.safetensors: registered as last" in result.output
    assert [j.checkpoint_name for j in _hash_jobs(configured)] == ["last"]
    missing = CliRunner().invoke(app, ["watch", str(tmp_path / "nope"), "--config", "x"])
    assert missing.exit_code == 2 and "expected a folder" in missing.output
    get_settings.cache_clear()


def _raw(path: Path, header: str, data: int = 16) -> Path:
    raw = header.encode()
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + b"\x00" * data)
    return path


def test_an_unreadable_header_is_skipped_with_one_warning(
    configured: Database, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """One malformed file (a null or infinite offset, a header that is not JSON) must not stop
    the watcher on every look, nor on every restart; "Infinity" in an ss_* value is kept as
    text (no JSON body may carry an infinite number)."""
    import logging

    folder = tmp_path / "out"
    folder.mkdir()
    _raw(folder / "a-null.safetensors", '{"w": {"dtype": "F32", "data_offsets": [0, null]}}')
    _raw(folder / "b-inf.safetensors", '{"w": {"dtype": "F32", "data_offsets": [0, Infinity]}}')
    _raw(folder / "c-junk.safetensors", '{"w": ', data=0)
    _raw(folder / "d-meta.safetensors", json.dumps({
        "__metadata__": {"ss_steps": "Infinity", "ss_learning_rate": "NaN", "ss_epoch": "2"},
        "w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}))
    watcher = Watcher(folder, "kohya-run", configured.url, outbox=tmp_path / "outbox.jsonl")
    with caplog.at_level(logging.WARNING, logger="illustrious_arena.watch"):
        assert watcher.poll() == []
        found = watcher.poll()
        assert watcher.poll() == []
        again = Watcher(folder, "kohya-run", configured.url).poll()  # a restart
    assert again == []
    assert sorted(f["file"] for f in found if f.get("unreadable")) == [
        "a-null.safetensors", "b-inf.safetensors", "c-junk.safetensors"]
    assert [(f["file"], f["delivered"], f["step"]) for f in found if not f.get("unreadable")] \
        == [("d-meta.safetensors", True, None)]
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 3 and all("unreadable safetensors header" in w for w in warnings)
    (job,) = _hash_jobs(configured)
    assert job.payload["metadata"] == {"ss_steps": "Infinity", "ss_learning_rate": "NaN",
                                       "ss_epoch": 2}
