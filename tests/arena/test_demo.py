"""`arena demo --no-serve` builds a complete offline arena; `arena serve` then finds it."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from typer.testing import CliRunner

from arena.app import create_app
from arena.cli.main import app
from arena.cli.serve import _settings_to_serve
from arena.db import Database
from arena.errors import UserError
from arena.models import Checkpoint, Image, Prompt
from arena.settings import get_settings

runner = CliRunner()


@pytest.mark.slow
def test_demo_then_serve(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("ARENA_HOME", raising=False)
    monkeypatch.delenv("ARENA_DATABASE_URL", raising=False)
    get_settings.cache_clear()
    result = runner.invoke(app, ["demo", "--no-serve"])
    assert result.exit_code == 0, result.output
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

    again = runner.invoke(app, ["demo", "--no-serve"])
    assert again.exit_code == 0 and "(0 new)" in again.output
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
