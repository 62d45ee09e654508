"""`arena demo --no-serve` builds a complete offline arena; `arena serve` then finds it."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from typer.testing import CliRunner

from arena.cli.main import app
from arena.cli.serve import _settings_to_serve
from arena.db import Database
from arena.errors import UserError
from arena.models import Checkpoint, Image, Prompt
from arena.settings import get_settings
from arena.web.app import create_app

runner = CliRunner()


@pytest.mark.slow
def test_demo_then_serve(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("ARENA_HOME", raising=False)
    monkeypatch.delenv("ARENA_DATABASE_URL", raising=False)
    get_settings.cache_clear()
    result = runner.invoke(app, ["demo", "--no-serve", "--votes", "24"])
    assert result.exit_code == 0, result.output
    assert "24 votes (24 new from simulated voters)" in result.output
    assert "look like noise" in result.output
    # The project's own lines only: no library notices the demo knows to be harmless.
    for noise in ("float32", "Token indices", "Loading pipeline components"):
        assert noise not in result.output
    home = tmp_path / "arena-demo"
    db = Database(f"sqlite:///{home / 'arena.db'}")
    with db.session() as s:
        checkpoints = s.scalars(select(Checkpoint).order_by(Checkpoint.id)).all()
        assert [(c.name, c.config.name) for c in checkpoints] == [
            (f"demo-illustrious-{v}", f"illustrious-{v}") for v in ("v0.1", "v1.0", "v1.1", "v2.0")
        ]
        assert checkpoints[-1].step == 78_125
        images = s.scalar(select(func.count(Image.id)))
        kinds = set(s.scalars(select(Prompt.kind)))
    assert images and images % 4 == 0 and kinds == {"fixed", "free", "ffa"}
    # The images came from four different models: their pixels differ across checkpoints.
    with db.session() as s:
        by_prompt = s.execute(select(Image.prompt_id, Image.seed, Image.served_sha256)).all()
    groups: dict[tuple, set[str]] = {}
    for prompt_id, seed, served in by_prompt:
        groups.setdefault((prompt_id, seed), set()).add(served)
    assert all(len(v) == 4 for v in groups.values())

    again = runner.invoke(app, ["demo", "--no-serve", "--votes", "24"])
    assert again.exit_code == 0 and "(0 new)" in again.output
    assert "24 votes (0 new" in again.output
    with db.session() as s:
        assert s.scalar(select(func.count(Image.id))) == images
    db.dispose()

    # `arena serve` serves the demo only when asked (--demo); with nothing configured it says so.
    with pytest.raises(UserError, match="arena serve --demo"):
        _settings_to_serve(demo=False)
    settings = _settings_to_serve(demo=True)
    assert settings.home == home.resolve()
    served = Database(settings.url)
    client = TestClient(create_app(settings, served, ui=False))
    match = client.post("/api/v1/matches", json={"mode": "ffa"})
    assert match.status_code == 200, match.text
    assert len(match.json()["images"]) == 4
    served.dispose()


def test_the_voting_page_says_why_demo_images_look_like_noise(
    arena_env: Database, arena_home: Path, tmp_path: Path
) -> None:
    from arena.registry import DEMO_NOTE, add_checkpoint, add_config
    from arena.web.voting_ui import demo_note_update
    from training.presets import PRESET_NAMES, load_preset

    def page() -> str:
        update = demo_note_update(arena_env)
        return update["value"] if update["visible"] else ""

    model = tmp_path / "model.safetensors"
    model.write_bytes(b"\x02\x00\x00\x00\x00\x00\x00\x00{}")
    with arena_env.session() as session:
        config = add_config(session, load_preset(PRESET_NAMES[0])).name
        add_checkpoint(session, model, config, name="a-real-run")
    assert DEMO_NOTE not in page()
    demo = tmp_path / "demo.safetensors"
    demo.write_bytes(b"\x02\x00\x00\x00\x00\x00\x00\x00{}demo")
    with arena_env.session() as session:
        add_checkpoint(session, demo, config, name=f"demo-{PRESET_NAMES[0]}")
    assert DEMO_NOTE in page()
