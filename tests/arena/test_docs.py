"""Every setting and every command says what it is for."""

from __future__ import annotations

from typing import Any

import typer
from typer.testing import CliRunner

from arena.cli.main import app
from arena.settings import Settings


def test_every_setting_is_described_and_printed(arena_home) -> None:  # type: ignore[no-untyped-def]
    missing = [n for n, f in Settings.model_fields.items() if not (f.description or "").strip()]
    assert missing == []
    result = CliRunner().invoke(app, ["config"])
    assert result.exit_code == 0, result.output
    printed = {line.split(" = ")[0] for line in result.stdout.splitlines()}
    assert set(Settings.model_fields) <= printed


def _commands(group: Any, prefix: str = "") -> list[tuple[str, Any]]:
    # Typer ships its own copy of click: groups are recognised by their sub-commands.
    found = []
    for name, command in group.commands.items():
        found.append((f"{prefix}{name}", command))
        if hasattr(command, "commands"):
            found += _commands(command, f"{prefix}{name} ")
    return found


def test_every_command_has_help_and_answers_help() -> None:
    root = typer.main.get_command(app)
    commands = _commands(root)
    assert {"serve", "demo", "generate", "db upgrade", "registry add-checkpoint", "pool import",
            "ratings recompute", "score ccip", "score clip"} <= {n for n, _ in commands}
    runner = CliRunner()
    for name, command in commands:
        assert (command.help or "").strip(), f"`arena {name}` has no help text"
        result = runner.invoke(app, [*name.split(), "--help"])
        assert result.exit_code == 0 and "Usage" in result.output, name
