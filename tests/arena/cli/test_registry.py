"""`arena registry` end to end through the real CLI on both databases."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner

from arena.cli.main import app
from arena.db import Database
from arena.models import Checkpoint, TrainingConfigRecord
from training.presets import preset_path

runner = CliRunner()


def invoke(*args: str):  # type: ignore[no-untyped-def]
    return runner.invoke(app, list(args))


def counts(db: Database) -> tuple[int, int]:
    with db.session() as s:
        return (
            s.scalar(select(func.count()).select_from(TrainingConfigRecord)) or 0,
            s.scalar(select(func.count()).select_from(Checkpoint)) or 0,
        )


@pytest.fixture
def checkpoint_file(tmp_path: Path) -> Path:
    path = tmp_path / "my-model.safetensors"
    path.write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}      " + bytes(range(256)) * 64)
    return path


def test_presets_and_checkpoint_are_linked(arena_env: Database, checkpoint_file: Path) -> None:
    for name in ("illustrious-v0.1", "illustrious-v1.0", "illustrious-v1.1", "illustrious-v2.0"):
        result = invoke("registry", "add-config", preset_path(name))
        assert result.exit_code == 0, result.output
    again = invoke("registry", "add-config", preset_path("illustrious-v1.0"))
    assert again.exit_code == 0 and "already registered" in again.output
    result = invoke("registry", "add-checkpoint", str(checkpoint_file),
                    "--config", "illustrious-v2.0", "--step", "78125")
    assert result.exit_code == 0, result.output

    listing = invoke("registry", "list", "--json")
    assert listing.exit_code == 0, listing.output
    data = json.loads(listing.stdout)
    assert [c["name"] for c in data["configs"]] == [
        "illustrious-v0.1", "illustrious-v1.0", "illustrious-v1.1", "illustrious-v2.0"]
    (ckpt,) = data["checkpoints"]
    digest = hashlib.sha256(checkpoint_file.read_bytes()).hexdigest()
    assert ckpt["name"] == "my-model" and ckpt["config"] == "illustrious-v2.0"
    assert ckpt["sha256"] == digest and ckpt["short_hash"] == digest[:10]
    assert ckpt["step"] == 78125 and ckpt["format"] == "safetensors"
    v2 = next(c for c in data["configs"] if c["name"] == "illustrious-v2.0")
    assert v2["checkpoints"] == ["my-model"] and v2["config"]["batch_size"] == 512

    shown = invoke("registry", "show", "my-model", "--json")
    assert json.loads(shown.stdout)["config_hash"] == v2["content_hash"]


def test_diffusers_folder_is_hashed_as_a_tree(arena_env: Database, tmp_path: Path) -> None:
    folder = tmp_path / "pipe"
    (folder / "unet").mkdir(parents=True)
    (folder / "model_index.json").write_text("{}")
    (folder / "unet" / "config.json").write_text('{"a": 1}')
    assert invoke("registry", "add-config", preset_path("illustrious-v0.1")).exit_code == 0
    result = invoke("registry", "add-checkpoint", str(folder), "--config", "illustrious-v0.1")
    assert result.exit_code == 0, result.output
    first = json.loads(invoke("registry", "show", "pipe", "--json").stdout)["sha256"]
    (folder / "unet" / "config.json").write_text('{"a": 2}')
    clash = invoke("registry", "add-checkpoint", str(folder), "--config", "illustrious-v0.1")
    assert clash.exit_code == 2 and "already registered for another file" in clash.output
    assert first == json.loads(invoke("registry", "show", "pipe", "--json").stdout)["sha256"]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("name: x\nbatch_size: lots\n", "field 'batch_size'"),
        ("name: [oops", "not valid YAML"),
        ("name: x\nunet_lr: 5\n", "field 'unet_lr'"),
    ],
)
def test_bad_config_gives_one_line_and_changes_nothing(
    arena_env: Database, tmp_path: Path, content: str, message: str
) -> None:
    invoke("registry", "add-config", preset_path("illustrious-v0.1"))
    before = counts(arena_env)
    path = tmp_path / "bad.yaml"
    path.write_text(content)
    result = invoke("registry", "add-config", str(path))
    assert result.exit_code == 2
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert counts(arena_env) == before


def test_unknown_config_and_missing_file(arena_env: Database, checkpoint_file: Path) -> None:
    result = invoke("registry", "add-checkpoint", str(checkpoint_file), "--config", "nope")
    assert result.exit_code == 2 and "unknown config 'nope'" in result.stderr
    result = invoke("registry", "add-checkpoint", "/no/such.safetensors", "--config", "nope")
    assert result.exit_code == 2 and "does not exist" in result.stderr
    result = invoke("registry", "add-config", "/no/such.yaml")
    assert result.exit_code == 2 and "does not exist" in result.stderr
    assert counts(arena_env) == (0, 0)


def test_unreachable_database_is_one_line(
    arena_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from arena.settings import get_settings

    monkeypatch.setenv("ARENA_DATABASE_URL", "postgresql+psycopg://nobody@127.0.0.1:1/none")
    get_settings.cache_clear()
    result = invoke("registry", "list")
    assert result.exit_code == 2 and "cannot reach the database" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_unmigrated_database_asks_for_upgrade(arena_home: Path) -> None:
    result = invoke("registry", "list")
    assert result.exit_code == 2 and "arena db upgrade" in result.stderr
    assert invoke("db", "upgrade").exit_code == 0
    assert invoke("registry", "list").exit_code == 0


def test_config_masks_secrets(arena_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from arena.settings import get_settings

    monkeypatch.setenv("ARENA_ADMIN_TOKEN", "s3cret-token")
    monkeypatch.setenv("ARENA_DATABASE_URL", "postgresql+psycopg://u:hunter2@db/x")
    get_settings.cache_clear()
    result = invoke("config", "--json")
    assert result.exit_code == 0
    assert "s3cret-token" not in result.stdout and "hunter2" not in result.stdout
    assert json.loads(result.stdout)["admin_token"] == "********"


def test_add_preset_registers_the_published_runs_once(arena_env: Database) -> None:
    first = invoke("registry", "add-preset")
    assert first.exit_code == 0 and first.output.count("registered illustrious-") == 4
    again = invoke("registry", "add-preset", "illustrious-v1.1")
    assert again.exit_code == 0 and "already registered illustrious-v1.1" in again.output
    assert counts(arena_env) == (4, 0)
    unknown = invoke("registry", "add-preset", "illustrious-v9")
    assert unknown.exit_code == 2 and "unknown preset" in unknown.stderr


def test_add_checkpoint_with_queue_queues_rendering_and_scoring(
    arena_env: Database, checkpoint_file: Path
) -> None:
    from arena.models import Job

    assert invoke("registry", "add-preset").exit_code == 0
    result = invoke("registry", "add-checkpoint", str(checkpoint_file),
                    "--config", "illustrious-v0.1", "--queue")
    assert result.exit_code == 0, result.output
    assert "queued jobs" in result.output
    with arena_env.session(readonly=True) as session:
        kinds = sorted(session.scalars(select(Job.kind)).all())
    assert kinds[-1] == "score" and "generate" in kinds
