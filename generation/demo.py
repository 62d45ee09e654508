"""Demo checkpoints and their pool: procedural painters rendered through the real path.

``arena demo`` needs something worth voting on without any download. Each demo checkpoint
is a painter (:mod:`generation.painter`): a small ``.safetensors`` file holding its drawing
quality, loaded by :func:`generation.pipeline.load_pipeline` and rendered by
``generate_pool`` like any checkpoint. Its pictures depend on the prompt (characters,
colours, scene) and the seed; later published configs get cleaner painters, so votes can
recover the configs' order. The demo pool is the default prompt set at demo size.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from generation.errors import GenerationError
from generation.painter import is_painter_file, write_painter
from generation.pipeline import CheckpointSpec, Runtime
from generation.pool import PoolReport, generate_pool
from generation.prompt_sets import PromptSet, default_prompt_set

__all__ = [
    "DEMO_SIZE",
    "DEMO_STEPS",
    "DemoCheckpoint",
    "demo_prompt_set",
    "render_demo_pool",
    "write_demo_checkpoints",
]

DEMO_SIZE = (320, 480)  # width, height: the report's 832x1216 bucket's shape, small
DEMO_STEPS = 1  # recorded with each image; a painter draws in one pass


@dataclass(frozen=True)
class DemoCheckpoint:
    """One demo checkpoint on disk."""

    name: str
    path: Path
    quality: float

    @property
    def spec(self) -> CheckpointSpec:
        """How ``generate_pool`` loads it."""
        return CheckpointSpec(self.path, name=self.name)


def write_demo_checkpoints(folder: Path, names: Sequence[str]) -> list[DemoCheckpoint]:
    """Write one painter per name into ``folder``, qualities rising evenly from 0 (the first
    name) to 1 (the last). A painter file already there is kept, so a rerun rewrites
    nothing."""
    if len(set(names)) != len(names) or not names:
        raise GenerationError(f"demo checkpoint names: expected distinct names, got {list(names)}")
    out = []
    for index, name in enumerate(names):
        if not name or "/" in name or name.startswith("."):
            raise GenerationError(f"demo checkpoint name {name!r}: expected a plain file name")
        quality = index / (len(names) - 1) if len(names) > 1 else 1.0
        path = folder / f"{name}.safetensors"
        if not is_painter_file(path):
            write_painter(path, quality)
        out.append(DemoCheckpoint(name, path, quality))
    return out


def demo_prompt_set(seeds: Sequence[int] = (0,)) -> PromptSet:
    """The default prompt set at demo size (:data:`DEMO_SIZE`)."""
    full = default_prompt_set()
    settings = replace(full.settings, width=DEMO_SIZE[0], height=DEMO_SIZE[1], steps=DEMO_STEPS)
    return replace(full, name=f"{full.name}-demo", seeds=tuple(seeds), settings=settings)


def render_demo_pool(
    checkpoints: Sequence[DemoCheckpoint],
    out_dir: Path,
    prompt_set: PromptSet | None = None,
    *,
    progress: bool = True,
) -> list[PoolReport]:
    """Render the demo prompt set for every checkpoint into ``out_dir`` (one manifest)."""
    ps = prompt_set or demo_prompt_set()
    return [
        generate_pool(c.spec, ps, out_dir, runtime=Runtime(device="cpu"), progress=progress)
        for c in checkpoints
    ]
