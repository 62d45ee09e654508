"""Tiny offline SDXL checkpoints, built once per test session and written to disk.

``tiny`` holds one set of random weights in both forms a user brings: an original-layout
single ``.safetensors`` file (with its local config folder) and a diffusers folder. ``other``
is a second single file with different weights. Torch runs on one thread here: the tiny
models are too small to gain from more, and the machine is shared.
"""

from __future__ import annotations

from dataclasses import replace

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")

from generation.pipeline import LoadedPipeline, RenderSettings  # noqa: E402
from generation.prompt_sets import PromptSet  # noqa: E402
from tests.support.generation import CPU, TinyFiles  # noqa: E402


@pytest.fixture(autouse=True)
def _torch_on_one_thread(one_torch_thread: None) -> None:
    """Every generation test runs torch on one thread (the root conftest's fixture)."""


@pytest.fixture(scope="session")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> TinyFiles:
    """Checkpoint files of two tiny SDXL models (seeds 1 and 2); seed 1 also as a folder."""
    from tests.support.tiny_sdxl import build_tiny_pipeline, write_tiny_checkpoint

    root = tmp_path_factory.mktemp("tiny-sdxl")
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        config = root / "config"
        first = write_tiny_checkpoint(root / "tiny-a.safetensors", seed=1, config_dir=config)
        other = write_tiny_checkpoint(root / "tiny-b.safetensors", seed=2, config_dir=config)
        folder = root / "tiny-a-diffusers"
        build_tiny_pipeline(1, tokenizer_dir=root / "tok").save_pretrained(str(folder))
    finally:
        torch.set_num_threads(before)
    return TinyFiles(first.checkpoint, config, folder, other.checkpoint)


@pytest.fixture(scope="session")
def tiny_settings() -> RenderSettings:
    """Render settings small enough for a CPU: 64x64, two steps, the report's Euler a."""
    return RenderSettings(negative_prompt="worst quality", steps=2, cfg=6.0, width=64, height=64)


@pytest.fixture(scope="session")
def loaded(tiny: TinyFiles) -> LoadedPipeline:
    """The tiny single-file checkpoint, loaded once (fp32 on the CPU)."""
    from generation.pipeline import CheckpointSpec, load_pipeline

    return load_pipeline(CheckpointSpec(tiny.single_file, config_dir=tiny.config_dir), CPU)


@pytest.fixture(scope="session")
def tiny_set(tiny_settings: RenderSettings) -> PromptSet:
    """Four prompts of the default set (two fixed, one free, one ffa), two seeds, 64x64."""
    from generation.prompt_sets import default_prompt_set

    full = default_prompt_set()
    by_kind = {
        kind: [e for e in full.entries if e.kind == kind] for kind in ("fixed", "free", "ffa")
    }
    entries = (*by_kind["fixed"][:2], by_kind["free"][0], by_kind["ffa"][0])
    return replace(full, entries=entries, seeds=(0, 1), settings=tiny_settings)
