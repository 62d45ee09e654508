"""Demo checkpoints: painters that load through ``load_pipeline`` and fill a pool with
pictures that follow the prompt and seed, drawn more cleanly by the better painters."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from generation.demo import DEMO_SIZE, demo_prompt_set, render_demo_pool, write_demo_checkpoints
from generation.errors import GenerationError
from generation.manifest import read_manifest_rows
from generation.painter import Painter, paint
from generation.pipeline import CheckpointSpec, load_pipeline


def roughness(image: Image.Image) -> float:
    """Mean absolute Laplacian of the grey image: grain and jagged edges raise it."""
    grey = np.asarray(image.convert("L"), dtype=np.float64)
    lap = 4 * grey[1:-1, 1:-1] - grey[:-2, 1:-1] - grey[2:, 1:-1] - grey[1:-1, :-2] - grey[1:-1, 2:]
    return float(np.abs(lap).mean())


def test_demo_painters_render_pools_through_the_generation_path(tmp_path: Path) -> None:
    checkpoints = write_demo_checkpoints(tmp_path / "models", ["alpha", "beta", "gamma"])
    assert [c.path.name for c in checkpoints] == [
        "alpha.safetensors", "beta.safetensors", "gamma.safetensors"]
    assert [c.quality for c in checkpoints] == [0.0, 0.5, 1.0]
    stamp = checkpoints[0].path.stat().st_mtime_ns
    assert write_demo_checkpoints(tmp_path / "models", ["alpha", "beta", "gamma"]) == checkpoints
    assert checkpoints[0].path.stat().st_mtime_ns == stamp  # kept, not rewritten
    loaded = load_pipeline(CheckpointSpec(checkpoints[1].path))  # no SDXL config needed
    assert isinstance(loaded, Painter) and loaded.quality == 0.5

    full = demo_prompt_set((0, 1))
    assert (full.settings.width, full.settings.height) == DEMO_SIZE
    small = replace(full, entries=full.entries[:3])
    reports = render_demo_pool(checkpoints, tmp_path / "pool", small, progress=False)
    assert [len(r.generated) for r in reports] == [6, 6, 6]
    rows = read_manifest_rows(tmp_path / "pool" / "manifest.jsonl")
    pictures = {
        (r["checkpoint"], r["prompt"], r["seed"]): Image.open(tmp_path / "pool" / r["file"])
        for r in rows
    }
    assert {p.size for p in pictures.values()} == {DEMO_SIZE}
    arrays = {k: np.asarray(v.convert("RGB"), dtype=np.int16) for k, v in pictures.items()}
    prompts = [e.prompt for e in small.entries]
    for name in ("alpha", "gamma"):
        # Every prompt and seed is its own picture: a checkpoint is not one image.
        assert len({arrays[(name, p, s)].tobytes() for p in prompts for s in (0, 1)}) == 6
    # The better painter draws cleaner pictures of every prompt and seed.
    for p in prompts:
        for s in (0, 1):
            rough = [roughness(pictures[(n, p, s)]) for n in ("alpha", "beta", "gamma")]
            assert rough[0] > rough[1] > rough[2], (p, s, rough)


def test_pictures_follow_the_prompts_characters() -> None:
    miku = np.asarray(paint("1girl, hatsune miku, general", 0, 1.0, DEMO_SIZE))
    marisa = np.asarray(paint("1girl, kirisame marisa, general", 0, 1.0, DEMO_SIZE))
    teal = np.array([57, 197, 187])

    def share(pixels: np.ndarray) -> float:
        return float((np.abs(pixels.astype(int) - teal).sum(axis=2) < 30).mean())

    assert share(miku) > 0.03 > share(marisa)
    # The same prompt and seed give the same composition to every painter, drawn differently.
    worst = np.asarray(paint("1girl, hatsune miku, general", 0, 0.0, DEMO_SIZE))
    assert not np.array_equal(worst, miku)


def test_demo_names_are_checked(tmp_path: Path) -> None:
    with pytest.raises(GenerationError, match="expected distinct names"):
        write_demo_checkpoints(tmp_path, ["a", "a"])
    with pytest.raises(GenerationError, match="expected a plain file name"):
        write_demo_checkpoints(tmp_path, ["../x"])
