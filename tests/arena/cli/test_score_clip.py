"""`arena score clip` on both databases with a tiny random open_clip model from local files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image
from sqlalchemy import select
from typer.testing import CliRunner

from arena.cli.main import app
from arena.db import Database
from arena.models import MetricScore
from arena.scores import pool_images
from generation.parameters import ImageParameters, png_bytes
from metrics.clip_score import clip_score, load_clip_model
from tests.support.pool import build_pool
from tests.support.tiny_clip import write_tiny_clip

runner = CliRunner()
@pytest.fixture(scope="module")
def clip_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    config, weights, _ = write_tiny_clip(tmp_path_factory.mktemp("clip-model"), "tiny")
    return {"config": config, "weights": weights}


def model_args(files: dict[str, Path]) -> list[str]:
    return [
        "--model",
        "tiny-cli-clip",
        "--weights",
        str(files["weights"]),
        "--config",
        str(files["config"]),
        "--device",
        "cpu",
    ]


def test_folder_prompts_come_from_parameters_text(
    arena_env: Database, clip_files: dict[str, Path], tmp_path: Path
) -> None:
    folder = tmp_path / "gens"
    folder.mkdir()
    for k, prompt in enumerate(["1girl, red hair", "blue sky, sea"]):
        params = ImageParameters(
            prompt=prompt,
            negative_prompt="",
            steps=20,
            sampler="Euler",
            cfg=5.0,
            seed=k,
            width=40,
            height=40,
            model_hash="0123456789",
            model_name="some-checkpoint",
        )
        image = Image.new("RGB", (40, 40), (200, 20 + 100 * k, 20))
        (folder / f"{k}.png").write_bytes(png_bytes(image, params))
    Image.new("RGB", (40, 40), (1, 2, 3)).save(folder / "plain.png")
    (folder / "zz_corrupt.png").write_bytes(b"garbage")

    result = runner.invoke(
        app, ["score", "clip", "--images", str(folder), *model_args(clip_files), "--json"]
    )
    assert result.exit_code == 0, result.output
    (row,) = json.loads(result.stdout)["scores"]
    assert row["images"] == 2
    reasons = {u["name"]: u["reason"] for u in row["unreadable"]}
    assert reasons.keys() == {"plain.png", "zz_corrupt.png"}
    assert reasons["plain.png"].startswith("no prompt:") and "--prompt" in reasons["plain.png"]

    model = load_clip_model(
        "tiny-cli-clip", clip_files["weights"], config=clip_files["config"], device="cpu"
    )
    want = clip_score(
        model, [folder / "0.png", folder / "1.png"], ["1girl, red hair", "blue sky, sea"]
    )
    assert row["clip_score"] == pytest.approx(want.score, abs=1e-5)
    with arena_env.session() as s:
        stored = s.get(MetricScore, row["score_id"])
        assert stored is not None and stored.metric == "clip_score"
        assert stored.parameters["w"] == 2.5
        assert stored.parameters["weights_sha256"] == want.weights_sha256
        assert sorted(stored.images_used) == sorted(want.image_sha256)

    # --prompt applies one prompt to every file; only the corrupt one is left out.
    result = runner.invoke(
        app,
        [
            "score",
            "clip",
            "--images",
            str(folder),
            "--prompt",
            "a cat",
            *model_args(clip_files),
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    (row,) = json.loads(result.stdout)["scores"]
    assert row["images"] == 3 and [u["name"] for u in row["unreadable"]] == ["zz_corrupt.png"]


def test_checkpoint_prompts_come_from_the_pool(
    arena_env: Database, arena_home: Path, clip_files: dict[str, Path], tmp_path: Path
) -> None:
    pool = build_pool(arena_env, arena_home, tmp_path / "pool")
    name = pool.checkpoints[2].name
    result = runner.invoke(app, ["score", "clip", "--checkpoint", name, *model_args(clip_files)])
    assert result.exit_code == 0, result.output
    with arena_env.session() as s:
        (images,) = pool_images(s, arena_home, name, fixed_only=False).values()
        stored = s.scalars(select(MetricScore)).one()
        assert stored.checkpoint is not None and stored.checkpoint.name == name
        assert stored.character is None
    model = load_clip_model(
        "tiny-cli-clip", clip_files["weights"], config=clip_files["config"], device="cpu"
    )
    want = clip_score(model, [i.path for i in images], [i.prompt for i in images])
    assert stored.value == pytest.approx(want.score, abs=1e-5)
    assert stored.details["count"] == len(images) == 7  # 4 fixed, 2 free, 1 four-way
    assert f"{want.score:.4f}" in result.stdout


def test_clip_user_errors(clip_files: dict[str, Path], tmp_path: Path) -> None:
    result = runner.invoke(app, ["score", "clip", "--images", str(tmp_path)])
    assert result.exit_code == 2 and "--model and --weights" in result.output
    result = runner.invoke(app, ["score", "clip", *model_args(clip_files)])
    assert (
        result.exit_code == 2
        and "expected either --images DIR or --checkpoint NAME" in result.output
    )
