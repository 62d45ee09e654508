"""The CLI's one error translation (:class:`arena.cli.common.ArenaGroup`): every input error,
the service's and every lower package's, is one ``error:`` line on stderr and exit status 2."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from arena.cli.common import new_app
from arena.cli.main import app
from arena.db import Database
from generation.errors import GenerationError
from metrics.errors import InputError
from metrics.outcomes import InvalidVote
from tests.support.ccip_stand_in import cached_ccip_stand_in
from tests.support.pool import build_pool
from training.config import ConfigError

runner = CliRunner()


def _one_error_line(result) -> str:  # type: ignore[no-untyped-def]
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


def test_lower_layer_errors_of_real_commands_are_one_line(
    arena_env: Database, arena_home: Path, tmp_path: Path
) -> None:
    pool = build_pool(arena_env, arena_home, tmp_path / "pool")
    bad_yaml = tmp_path / "bad.yaml"
    bad_yaml.write_text("entries: [\n")
    # generation: a prompt set that is not YAML (GenerationError)
    line = _one_error_line(runner.invoke(app, [
        "generate", "--checkpoint", pool.checkpoints[0].name, "--prompts", str(bad_yaml)]))
    assert f"prompt set {bad_yaml} is not valid YAML" in line
    # training: a config file that is not YAML (ConfigError)
    line = _one_error_line(runner.invoke(app, ["registry", "add-config", str(bad_yaml)]))
    assert f"config file {bad_yaml} is not valid YAML" in line
    # metrics: a CCIP folder whose metrics.json is broken (CCIPModelError)
    broken = tmp_path / "ccip"
    shutil.copytree(cached_ccip_stand_in(tmp_path / "stand-in", threshold=0.15), broken)
    (broken / "metrics.json").write_text("[]")
    line = _one_error_line(runner.invoke(app, [
        "score", "ccip", "--pairs", str(bad_yaml), str(bad_yaml), "--model-dir", str(broken)]))
    assert "metrics.json: expected a 'threshold' number" in line


@pytest.mark.parametrize(
    "error",
    [
        InvalidVote("ranking: positions repeat\nin [0, 0, 1, 2]"),
        GenerationError("prompt set x.yaml:\n  not valid"),
        ConfigError("config: batch_size\nexpected > 0"),
        InputError("a plain input error"),
    ],
)
def test_any_input_error_under_the_group_is_one_folded_line(error: InputError) -> None:
    group = new_app("probe")

    @group.command("fail")
    def fail() -> None:
        raise error

    @group.command("other")
    def other() -> None:  # two commands make "fail" a subcommand, as in `arena`
        typer.echo("ok")

    line = _one_error_line(runner.invoke(group, ["fail"]))
    assert line == "error: " + " ".join(str(error).split())


def test_a_programming_error_is_not_dressed_up_as_input() -> None:
    group = new_app("probe")

    @group.command("fail")
    def fail() -> None:
        raise KeyError("bug")

    @group.command("other")
    def other() -> None:
        typer.echo("ok")

    result = runner.invoke(group, ["fail"])
    assert result.exit_code == 1 and isinstance(result.exception, KeyError)
    assert "error:" not in result.stderr
