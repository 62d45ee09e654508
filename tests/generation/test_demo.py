"""Demo checkpoints: distinct tiny models that load offline and fill a pool."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from generation.demo import demo_prompt_set, render_demo_pool, write_demo_checkpoints
from generation.errors import GenerationError
from generation.manifest import read_manifest_rows


def test_demo_checkpoints_render_different_pools(tmp_path: Path) -> None:
    checkpoints = write_demo_checkpoints(tmp_path / "models", ["alpha", "beta"])
    assert [c.path.name for c in checkpoints] == ["alpha.safetensors", "beta.safetensors"]
    stamp = checkpoints[0].path.stat().st_mtime_ns
    assert write_demo_checkpoints(tmp_path / "models", ["alpha", "beta"]) == checkpoints
    assert checkpoints[0].path.stat().st_mtime_ns == stamp  # kept, not rewritten

    full = demo_prompt_set()
    assert (full.settings.width, full.settings.height, full.settings.steps) == (64, 64, 3)
    small = replace(full, entries=full.entries[:2])
    reports = render_demo_pool(checkpoints, tmp_path / "pool", small, progress=False)
    assert [len(r.generated) for r in reports] == [2, 2]
    rows = read_manifest_rows(tmp_path / "pool" / "manifest.jsonl")
    by_checkpoint = {
        name: [
            np.asarray(Image.open(tmp_path / "pool" / r["file"]))
            for r in rows
            if r["checkpoint"] == name
        ]
        for name in ("alpha", "beta")
    }
    assert not np.array_equal(by_checkpoint["alpha"][0], by_checkpoint["beta"][0])


def test_demo_names_are_checked(tmp_path: Path) -> None:
    with pytest.raises(GenerationError, match="expected distinct names"):
        write_demo_checkpoints(tmp_path, ["a", "a"])
    with pytest.raises(GenerationError, match="expected a plain file name"):
        write_demo_checkpoints(tmp_path, ["../x"])
