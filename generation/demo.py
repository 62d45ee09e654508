"""Demo checkpoints and their pool: tiny offline SDXL models rendered through the real path.

``arena demo`` needs something to vote on without any download. Each demo checkpoint is a
tiny SDXL model (``generation.tiny``) with its own random weights, written as one
original-layout ``.safetensors`` file beside a shared local config folder, so it is loaded
by ``from_single_file`` exactly like a user's Illustrious checkpoint. The demo pool is the
default prompt set at 64x64 and three steps, rendered by ``generate_pool``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

from generation.errors import GenerationError
from generation.pipeline import CheckpointSpec, Runtime
from generation.pool import PoolReport, generate_pool
from generation.prompt_sets import PromptSet, default_prompt_set
from generation.tiny import write_tiny_checkpoint

__all__ = [
    "DEMO_SIZE",
    "DEMO_STEPS",
    "DemoCheckpoint",
    "demo_prompt_set",
    "render_demo_pool",
    "write_demo_checkpoints",
]

DEMO_SIZE = 64
DEMO_STEPS = 3
CONFIG_FOLDER = "sdxl-tiny-config"


@dataclass(frozen=True)
class DemoCheckpoint:
    """One demo checkpoint on disk."""

    name: str
    path: Path
    config_dir: Path
    seed: int

    @property
    def spec(self) -> CheckpointSpec:
        """How ``generate_pool`` loads it (offline, with the shared config folder)."""
        return CheckpointSpec(self.path, name=self.name, config_dir=self.config_dir)


def write_demo_checkpoints(
    folder: Path, names: Sequence[str], *, base_seed: int = 0
) -> list[DemoCheckpoint]:
    """Write one tiny checkpoint per name into ``folder`` (seeds ``base_seed``, +1, ...).

    A checkpoint file already there is kept, so rerunning the demo rewrites nothing.
    """
    if len(set(names)) != len(names) or not names:
        raise GenerationError(f"demo checkpoint names: expected distinct names, got {list(names)}")
    config_dir = folder / CONFIG_FOLDER
    out = []
    for offset, name in enumerate(names):
        if not name or "/" in name or name.startswith("."):
            raise GenerationError(f"demo checkpoint name {name!r}: expected a plain file name")
        seed = base_seed + offset
        path = folder / f"{name}.safetensors"
        if not (path.is_file() and (config_dir / "model_index.json").is_file()):
            write_tiny_checkpoint(path, seed=seed, config_dir=config_dir)
        out.append(DemoCheckpoint(name, path, config_dir, seed))
    return out


def demo_prompt_set(seeds: Sequence[int] = (0,)) -> PromptSet:
    """The default prompt set, rendered small and fast: 64x64, three steps."""
    full = default_prompt_set()
    settings = replace(full.settings, width=DEMO_SIZE, height=DEMO_SIZE, steps=DEMO_STEPS)
    return replace(full, name=f"{full.name}-demo", seeds=tuple(seeds), settings=settings)


def render_demo_pool(
    checkpoints: Sequence[DemoCheckpoint],
    out_dir: Path,
    prompt_set: PromptSet | None = None,
    *,
    progress: bool = True,
) -> list[PoolReport]:
    """Render the demo prompt set for every checkpoint into ``out_dir`` (one manifest).

    Runs torch on the CPU with one thread per process: the tiny models are too small to
    gain from more, and it keeps a demo from crowding the machine.
    """
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        ps = prompt_set or demo_prompt_set()
        with _quiet_libraries():
            return [
                generate_pool(c.spec, ps, out_dir, runtime=Runtime(device="cpu"),
                              progress=progress)
                for c in checkpoints
            ]
    finally:
        torch.set_num_threads(threads)


@contextmanager
def _quiet_libraries() -> Iterator[None]:
    """Silence what diffusers and transformers print that is harmless for the demo: their
    component-loading bars, "modules that should be kept in float32" (the tiny models run in
    float32 anyway) and "token indices sequence length is longer than 77" (prompts are
    truncated to CLIP's 77 tokens, as in every SDXL pipeline). Restored afterwards."""
    import diffusers.utils.logging as diffusers_logging
    import transformers.utils.logging as transformers_logging

    saved = [(lib, lib.get_verbosity(), lib.is_progress_bar_enabled())
             for lib in (diffusers_logging, transformers_logging)]
    for lib, _, _ in saved:
        lib.set_verbosity_error()
        lib.disable_progress_bar()
    try:
        yield
    finally:
        for lib, verbosity, bars in saved:
            lib.set_verbosity(verbosity)
            if bars:
                lib.enable_progress_bar()
