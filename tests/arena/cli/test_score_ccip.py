"""CCIP scoring against the database: the feature cache, stored scores, `arena score ccip`.

Runs on both databases (fixture ``db``). The CCIP model is a CCIP-shaped stand-in exported to
ONNX (:mod:`tests.support.ccip_stand_in`) and loaded through the same code path as published files.
"""

from __future__ import annotations

import csv
import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from sqlalchemy import func, select
from typer.testing import CliRunner

from arena.cli.main import app
from arena.db import Database
from arena.features import DatabaseFeatureCache
from arena.image_store import original_path
from arena.models import CachedFeature, Checkpoint, MetricScore
from arena.scores import pool_images
from metrics.ccip import FeatureKey, differences, extract_features
from metrics.ccip_model import load_ccip_model
from tests.support.ccip_stand_in import cached_ccip_stand_in
from tests.support.pool import CHARACTERS, build_pool

runner = CliRunner()


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return cached_ccip_stand_in(tmp_path_factory.getbasetemp(), threshold=0.15)


def solid(path: Path, rgb: tuple[int, int, int], size: tuple[int, int] = (48, 64)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, rgb).save(path)
    return path


@pytest.fixture
def folders(tmp_path: Path) -> dict[str, Path]:
    """References (red-ish) and generated images: two red, one blue, one corrupt file."""
    refs, gens = tmp_path / "refs", tmp_path / "gens"
    solid(refs / "r1.png", (230, 20, 20))
    solid(refs / "r2.png", (225, 25, 22), (50, 50))
    solid(gens / "a_red.png", (228, 22, 21), (64, 40))
    solid(gens / "b_blue.png", (20, 30, 220))
    solid(gens / "sub" / "c_red.png", (230, 20, 20), (33, 77))
    (gens / "d_corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\nbroken")
    (gens / "notes.txt").write_text("not an image, not listed")
    return {"refs": refs, "gens": gens}


def invoke(*args: str):  # type: ignore[no-untyped-def]
    return runner.invoke(app, ["score", "ccip", *args])


def count(db: Database, table) -> int:  # type: ignore[no-untyped-def]
    with db.session() as s:
        return s.scalar(select(func.count()).select_from(table)) or 0


def test_feature_cache_round_trip(db: Database) -> None:
    cache = DatabaseFeatureCache(db)
    rng = np.random.default_rng(0)
    vectors = {
        FeatureKey(f"{i:064x}", "ccip@abc"): rng.normal(size=768).astype(np.float32)
        for i in range(450)
    }
    cache.put_many(vectors)
    asked = [*vectors, FeatureKey("f" * 64, "ccip@abc"), FeatureKey(f"{1:064x}", "other@1")]
    found = cache.get_many(asked)
    assert found.keys() == vectors.keys()
    for key, value in vectors.items():
        assert found[key].dtype == np.float32
        np.testing.assert_array_equal(found[key], value)
    # A second writer of the same key neither fails nor replaces the stored vector.
    first = FeatureKey(f"{0:064x}", "ccip@abc")
    cache.put_many({first: np.zeros(768, np.float32)})
    np.testing.assert_array_equal(cache.get_many([first])[first], vectors[first])
    assert count(db, CachedFeature) == 450


def test_cli_scores_a_folder_skips_the_corrupt_file_and_reuses_the_cache(
    arena_env: Database, folders: dict[str, Path], model_dir: Path
) -> None:
    args = [
        "--references",
        str(folders["refs"]),
        "--images",
        str(folders["gens"]),
        "--model-dir",
        str(model_dir),
        "--character",
        "red_girl",
    ]
    first = invoke(*args)
    assert first.exit_code == 0, first.output
    assert "skipped d_corrupt.png: not an image file Pillow can read" in first.output
    header = first.stdout.splitlines()[0].split()
    assert header[:2] == ["checkpoint", "character"] and "ccip" in header
    assert count(arena_env, CachedFeature) == 5  # 2 references + 3 readable images

    second = invoke(*args, "--json")
    assert second.exit_code == 0, second.output
    data = json.loads(second.stdout)
    (row,) = data["scores"]
    assert row["embedded"] == 0 and row["cache_hits"] == 5
    assert row["images"] == 3 and row["references"] == 2
    assert [u["name"] for u in row["unreadable"]] == ["d_corrupt.png"]
    assert row["checkpoint"] is None and row["character"] == "red_girl"
    # Two red images of three are the same character as both references, blue as neither.
    assert row["ccip"] == pytest.approx(2 / 3)
    assert count(arena_env, CachedFeature) == 5

    with arena_env.session() as s:
        stored = s.get(MetricScore, row["score_id"])
        assert stored is not None
        assert stored.metric == "ccip" and stored.value == pytest.approx(2 / 3)
        assert stored.checkpoint_id is None and stored.character == "red_girl"
        assert stored.parameters["threshold"] == 0.15
        assert stored.parameters["feat_sha256"] == data["model"]["feat_sha256"]
        digests = sorted(
            hashlib.sha256(p.read_bytes()).hexdigest() for p in folders["gens"].rglob("*_red.png")
        )
        assert sorted(stored.images_used) != [] and set(digests) <= set(stored.images_used)
        assert stored.details["unreadable"][0][0] == "d_corrupt.png"
        assert len(stored.details["reference_sha256"]) == 2


def test_cli_exits_2_when_nothing_can_be_scored(
    arena_env: Database, folders: dict[str, Path], model_dir: Path, tmp_path: Path
) -> None:
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "x.png").write_bytes(b"nope")
    result = invoke(
        "--references", str(folders["refs"]), "--images", str(broken), "--model-dir", str(model_dir)
    )
    assert result.exit_code == 2
    assert "skipped x.png: not an image file Pillow can read" in result.output
    assert "error: nothing could be scored" in result.output
    assert count(arena_env, MetricScore) == 0


def test_cli_scores_checkpoints_per_character_from_the_pool(
    arena_env: Database, arena_home: Path, model_dir: Path, tmp_path: Path
) -> None:
    pool = build_pool(arena_env, arena_home, tmp_path / "pool")
    first, second = pool.checkpoints[0].name, pool.checkpoints[1].name
    refs = tmp_path / "refs"
    with arena_env.session() as s:
        groups = pool_images(s, arena_home, first)
        assert sorted(groups) == sorted(CHARACTERS)
        # References: the first checkpoint's own images of each character.
        for character, rows in groups.items():
            (refs / character).mkdir(parents=True)
            for row in rows:
                shutil.copyfile(row.path, refs / character / f"{row.sha256[:8]}.png")
        second_images = pool_images(s, arena_home, second)
    lost = second_images[CHARACTERS[0]][0]
    original_path(arena_home, lost.sha256).unlink()  # a store file gone missing

    result = invoke("--references", str(refs), "--checkpoint", first, "--checkpoint", second,
                    "--model-dir", str(model_dir), "--json")
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)["scores"]
    assert [(r["checkpoint"], r["character"]) for r in rows] == [
        (first, c) for c in sorted(CHARACTERS)
    ] + [(second, c) for c in sorted(CHARACTERS)]
    for row in rows[:2]:  # every image is one of its own references
        assert row["ccip"] == 1.0 and row["images"] == 2
    lost_row = next(r for r in rows[2:] if r["character"] == CHARACTERS[0])
    assert lost_row["images"] == 1
    assert lost_row["unreadable"][0]["name"] == lost.sha256
    assert lost_row["unreadable"][0]["reason"].startswith("FileNotFoundError")

    with arena_env.session() as s:
        stored = s.scalars(select(MetricScore).order_by(MetricScore.id)).all()
        assert len(stored) == 4
        checkpoint = s.scalars(select(Checkpoint).where(Checkpoint.name == first)).one()
        assert {m.checkpoint_id for m in stored[:2]} == {checkpoint.id}
        assert stored[0].checkpoint.config.name == pool.checkpoints[0].config
        assert sorted(stored[0].images_used) == sorted(
            r.sha256 for r in groups[stored[0].character]
        )

    # One character, references directly in the folder, CSV output.
    flat = tmp_path / "flat"
    shutil.copytree(refs / CHARACTERS[1], flat)
    table = tmp_path / "out.csv"
    result = invoke("--references", str(flat), "--checkpoint", first, "--character",
                    CHARACTERS[1], "--model-dir", str(model_dir), "--csv", str(table))
    assert result.exit_code == 0, result.output
    (line,) = list(csv.DictReader(table.open()))
    assert line["checkpoint"] == first and line["character"] == CHARACTERS[1]
    assert float(line["ccip"]) == 1.0 and line["unreadable"] == "0"


def test_cli_reports_characters_without_references(
    arena_env: Database, arena_home: Path, model_dir: Path, tmp_path: Path
) -> None:
    pool = build_pool(arena_env, arena_home, tmp_path / "pool")
    refs = tmp_path / "refs"
    solid(refs / CHARACTERS[0] / "r.png", (10, 200, 200))
    result = invoke("--references", str(refs), "--checkpoint", pool.checkpoints[0].name,
                    "--model-dir", str(model_dir))
    assert result.exit_code == 0, result.output
    assert f"not scored: no reference images in {refs}/{CHARACTERS[1]}/" in result.output


def test_cli_pairs_prints_one_difference(folders: dict[str, Path], model_dir: Path) -> None:
    a, b = folders["gens"] / "a_red.png", folders["gens"] / "b_blue.png"
    result = invoke("--pairs", str(a), str(b), "--model-dir", str(model_dir), "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    model = load_ccip_model(model_dir, threads=1)
    feats = extract_features(model, [a, b]).features
    assert data["difference"] == pytest.approx(
        float(differences(model, feats[:1], feats[1:])[0, 0]), abs=1e-6
    )
    assert data["same_character"] is False and data["threshold"] == 0.15
    plain = invoke("--pairs", str(a), str(a), "--model-dir", str(model_dir))
    assert plain.exit_code == 0 and "same character at threshold 0.150000" in plain.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--images", "x", "--references", "y"], "--model-dir: expected a CCIP model folder"),
        (["--images", "x", "--model-dir", "{model}"], "expected --references DIR and either"),
        (
            ["--images", "x", "--checkpoint", "c", "--references", "y", "--model-dir", "{model}"],
            "expected --references DIR and either",
        ),
        (["--pairs", "a", "b", "--images", "x", "--model-dir", "{model}"], "--pairs: use it alone"),
        (["--pairs", "a", "b", "--model-dir", "{tmp}"], "missing model_feat.onnx"),
        (["--json", "--csv", "o.csv", "--model-dir", "{model}"], "--json and --csv: choose one"),
    ],
)
def test_user_errors_are_one_line(
    args: list[str], message: str, model_dir: Path, tmp_path: Path
) -> None:
    result = invoke(*[a.format(model=model_dir, tmp=tmp_path) for a in args])
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert "Traceback" not in result.output


def test_unknown_checkpoint_is_a_user_error(
    arena_env: Database, folders: dict[str, Path], model_dir: Path
) -> None:
    result = invoke(
        "--references", str(folders["refs"]), "--checkpoint", "nope", "--model-dir", str(model_dir)
    )
    assert result.exit_code == 2
    assert "nope" in result.output and "Traceback" not in result.output
