"""`arena generate` end to end: a registered tiny SDXL checkpoint rendered and imported."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from arena.cli.main import app
from arena.db import Database
from arena.pool import pool_stats
from training.presets import preset_path

pytest.importorskip("torch")
pytest.importorskip("diffusers")
pytestmark = pytest.mark.usefixtures("one_torch_thread")

runner = CliRunner()


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A tiny SDXL single file and its config folder."""
    from tests.support.tiny_sdxl import write_tiny_checkpoint

    root = tmp_path_factory.mktemp("tiny")
    written = write_tiny_checkpoint(root / "tiny-a.safetensors", seed=1, config_dir=root / "config")
    return written.checkpoint, written.config_dir




def prompt_set(tmp_path: Path) -> Path:
    path = tmp_path / "set.yaml"
    data = {
        "seeds": [0],
        "width": 64,
        "height": 64,
        "steps": 2,
        "negative_prompt": "worst quality",
        "fixed": [{"character": "hatsune miku", "prompt": "1girl, hatsune miku, angel"}],
        "free": ["1boy, doctor, looking at viewer, masterpiece"],
        "ffa": ["no humans, scenery, best quality"],
    }
    path.write_text(yaml.safe_dump(data))
    return path


def test_generate_renders_imports_and_resumes(
    arena_env: Database, tiny_checkpoint: tuple[Path, Path], tmp_path: Path
) -> None:
    checkpoint, config_dir = tiny_checkpoint
    assert (
        runner.invoke(
            app, ["registry", "add-config", str(preset_path("illustrious-v0.1"))]
        ).exit_code
        == 0
    )
    added = runner.invoke(
        app, ["registry", "add-checkpoint", str(checkpoint), "--config", "illustrious-v0.1"]
    )
    assert added.exit_code == 0, added.output
    args = ["generate", "--checkpoint", "tiny-a", "--prompts", str(prompt_set(tmp_path))]
    args += ["--config-dir", str(config_dir), "--device", "cpu", "--json"]

    first = runner.invoke(app, args)
    assert first.exit_code == 0, first.output
    data = json.loads(first.stdout)
    assert (data["generated"], data["already_generated"]) == (3, 0)
    assert len(data["import"]["imported"]) == 3 and not data["import"]["skipped"]
    with arena_env.session() as session:
        stats = pool_stats(session)
    assert stats["images"] == {"tiny-a": {"fixed": 1, "free": 1, "ffa": 1}}

    again = runner.invoke(app, args)
    assert again.exit_code == 0, again.output
    data = json.loads(again.stdout)
    assert (data["generated"], data["already_generated"]) == (0, 3)
    assert data["import"]["imported"] == [] and len(data["import"]["already_present"]) == 3


def test_generate_errors_are_one_line(
    arena_env: Database, tiny_checkpoint: tuple[Path, Path], tmp_path: Path
) -> None:
    checkpoint, _ = tiny_checkpoint
    unknown = runner.invoke(app, ["generate", "--checkpoint", "nope"])
    assert unknown.exit_code == 2
    assert "unknown checkpoint 'nope'" in unknown.output
    runner.invoke(app, ["registry", "add-config", str(preset_path("illustrious-v0.1"))])
    runner.invoke(
        app, ["registry", "add-checkpoint", str(checkpoint), "--config", "illustrious-v0.1"]
    )
    no_config = runner.invoke(
        app, ["generate", "--checkpoint", "tiny-a", "--prompts", str(prompt_set(tmp_path))]
    )
    assert no_config.exit_code == 2
    message = no_config.output.strip()
    assert message.startswith("error: checkpoint ") and "config folder" in message
    assert "\n" not in message
    bad_set = tmp_path / "bad.yaml"
    bad_set.write_text("free: ['1girl']\nsampler: Heun\n")
    bad = runner.invoke(app, ["generate", "--checkpoint", "tiny-a", "--prompts", str(bad_set)])
    assert bad.exit_code == 2 and "unknown sampler 'Heun'" in bad.output
