"""`arena demo --no-serve` builds a complete offline arena; the CLI run in its folder finds it,
and a prompt a voter types is rendered at demo size by a worker with nothing configured."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image as PILImage
from sqlalchemy import func, select
from typer.testing import CliRunner

from arena.cli.main import app
from arena.cli.serve import _settings_to_serve
from arena.db import Database
from arena.demo.prepare import DEMO_NOTE
from arena.errors import UserError
from arena.image_store import original_path
from arena.jobs.worker import run_worker
from arena.matches import issue_match
from arena.models import Checkpoint, Image, Prompt
from arena.settings import Settings, get_settings
from generation.demo import DEMO_SIZE

runner = CliRunner()


@pytest.mark.slow
def test_demo_then_the_cli_and_a_typed_prompt(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, bare_folder: Path
) -> None:
    result = runner.invoke(app, ["demo", "--no-serve", "--votes", "24"])
    assert result.exit_code == 0, result.output
    home = (tmp_path / "arena-demo").resolve()
    assert "24 votes (24 new from simulated voters)" in result.output
    assert DEMO_NOTE in result.output
    assert f"export ARENA_HOME={home}" in result.output
    db = Database(f"sqlite:///{home / 'arena.db'}")
    with db.session() as s:
        checkpoints = s.scalars(select(Checkpoint).order_by(Checkpoint.id)).all()
        assert [(c.name, c.config.name) for c in checkpoints] == [
            (f"demo-illustrious-{v}", f"illustrious-{v}") for v in ("v0.1", "v1.0", "v1.1", "v2.0")
        ]
        assert checkpoints[-1].step == 78_125
        images = s.scalar(select(func.count(Image.id)))
        kinds = set(s.scalars(select(Prompt.kind)))
        rows = s.execute(select(Image.checkpoint_id, Image.prompt_id, Image.seed,
                                Image.served_sha256)).all()
    assert images and images % 4 == 0 and kinds == {"fixed", "free", "ffa"}
    # Four checkpoints draw each (prompt, seed) differently, and no checkpoint draws the same
    # picture twice: one reveal does not make a checkpoint recognisable by its picture.
    by_prompt: dict[tuple[int, int], set[str]] = {}
    by_checkpoint: dict[int, list[str]] = {}
    for checkpoint_id, prompt_id, seed, served in rows:
        by_prompt.setdefault((prompt_id, seed), set()).add(served)
        by_checkpoint.setdefault(checkpoint_id, []).append(served)
    assert all(len(v) == 4 for v in by_prompt.values())
    assert all(len(set(v)) == len(v) for v in by_checkpoint.values())

    again = runner.invoke(app, ["demo", "--no-serve", "--votes", "24"])
    assert again.exit_code == 0 and "(0 new)" in again.output
    assert "24 votes (0 new" in again.output
    with db.session() as s:
        assert s.scalar(select(func.count(Image.id))) == images

    # Run in the folder that holds the demo, the CLI finds it without ARENA_HOME ...
    get_settings.cache_clear()
    ratings = runner.invoke(app, ["ratings", "--json"])
    assert ratings.exit_code == 0, ratings.output
    assert len(json.loads(ratings.output)["rows"]) == 4
    assert not (tmp_path / "arena-data").exists()
    # ... while `arena serve` serves the demo only when asked (--demo).
    with pytest.raises(UserError, match="arena serve --demo"):
        _settings_to_serve(demo=False)
    assert _settings_to_serve(demo=True).home == home

    # A typed prompt is queued, and a worker renders it at demo size with nothing set:
    # the demo's prompt set comes from its marker, its painters need no SDXL config.
    settings = get_settings()
    assert settings.home == home and settings.demo_note == DEMO_NOTE
    typed = "1girl, hatsune miku, cat ears, smile"
    first = issue_match(db, settings, "typing-voter", "free", typed)
    assert first.notice and "queued" in first.notice
    stats = run_worker(db, settings, once=True, kinds=["generate"], echo=lambda _: None)
    assert len(stats.done) == 4 and not stats.failed
    second = issue_match(db, settings, "typing-voter", "free", typed)
    assert second.notice is None and "cat ears" in second.prompt
    with db.session() as s:
        prompt = s.scalar(select(Prompt).where(Prompt.text.contains("cat ears")))
        rendered = s.scalars(select(Image).where(Image.prompt_id == prompt.id)).all()
    assert len(rendered) == 4 * 3  # every checkpoint, every seed of the demo's prompt set
    with PILImage.open(original_path(settings, rendered[0].sha256)) as picture:
        assert picture.size == DEMO_SIZE
    db.dispose()


def test_cli_commands_outside_an_arena_say_where_arenas_are(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, bare_folder: Path
) -> None:
    """A read-only command creates no database; serve checks its port before any banner."""
    for command in (["ratings"], ["registry", "list"], ["db", "current"], ["jobs", "list"]):
        result = runner.invoke(app, command)
        assert result.exit_code == 2, (command, result.output)
        assert "no arena database at" in result.output and "arena demo" in result.output
    assert list(tmp_path.iterdir()) == []
    help_text = runner.invoke(app, ["ratings", "--help"]).output
    assert "--json" in help_text and "<bool>" not in help_text


def test_serve_refuses_a_busy_port_before_its_banner(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import socket

    monkeypatch.setenv("ARENA_HOME", str(tmp_path))
    get_settings.cache_clear()
    assert runner.invoke(app, ["db", "upgrade"]).exit_code == 0
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = runner.invoke(app, ["serve", "--port", str(port)])
    assert result.exit_code == 2
    assert f"cannot listen on 127.0.0.1:{port}" in result.output
    assert "Illustrious Arena on" not in result.output and "database:" not in result.output
    get_settings.cache_clear()


def test_an_unknown_character_board_lists_the_valid_ones(
    arena_env: Database, arena_home: Path, tmp_path: Path
) -> None:
    from tests.support.pool import build_pool

    build_pool(arena_env, arena_home, tmp_path / "pool")
    result = runner.invoke(app, ["ratings", "--board", "fixed/miku"])
    assert result.exit_code == 2
    assert "unknown board 'fixed/miku'" in result.output
    assert "overall, fixed, free, ffa" in result.output


def test_the_demo_notice_comes_from_the_demo_marker(tmp_path: Path) -> None:
    from arena.demo.prepare import _write_marker
    from arena.web.voting_ui import demo_note_update
    from generation.demo import demo_prompt_set

    settings = Settings(home=tmp_path)
    assert settings.demo_note is None
    assert demo_note_update(settings)["visible"] is False
    _write_marker(tmp_path, demo_prompt_set((0, 1, 2)))
    settings = Settings(home=tmp_path)
    update = demo_note_update(settings)
    assert update["visible"] is True and DEMO_NOTE in update["value"]
    assert settings.prompt_set_names == [str((tmp_path / "demo-prompts.yaml").resolve())]
    assert Settings(home=tmp_path, prompt_sets="default").prompt_set_names == ["default"]
