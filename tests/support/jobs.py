"""What the job, worker and hook tests share: tiny SDXL files, a tiny prompt set, a tiny
CCIP model with reference images, and worker settings pointing at all of them."""

from __future__ import annotations

import shutil
import socket
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image as PILImage

from arena.db import Database
from arena.settings import Settings

CHARACTER = "hatsune miku"
CONFIG = {"name": "tiny-run", "base_model": "tiny-sdxl", "batch_size": 4, "unet_lr": 1e-5}

# Two steps at 64x64, two seeds: one fixed prompt (with CCIP references) and one free prompt.
PROMPT_SET = f"""
name: tiny-jobs
safe: true
negative_prompt: worst quality
seeds: [0, 1]
width: 64
height: 64
steps: 2
cfg: 6
fixed:
  - character: {CHARACTER}
    prompt: 1girl, {CHARACTER}, general, smile, masterpiece
free:
  - 1boy, doctor, general, masterpiece
"""


@dataclass(frozen=True)
class TinyWorld:
    """Tiny checkpoint files, their config folder, the prompt set, CCIP model and references."""

    first: Path
    second: Path
    config_dir: Path
    prompt_set: Path
    ccip_dir: Path
    references: Path


def build_world(root: Path) -> TinyWorld:
    """Write everything once (a session fixture calls this)."""
    import torch

    from tests.support.ccip_stand_in import cached_ccip_stand_in
    from tests.support.tiny_sdxl import write_tiny_checkpoint

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        config_dir = root / "sdxl-config"
        first = write_tiny_checkpoint(root / "tiny-1.safetensors", 1, config_dir).checkpoint
        second = write_tiny_checkpoint(root / "tiny-2.safetensors", 2, config_dir).checkpoint
        ccip = cached_ccip_stand_in(root, threshold=0.15)
    finally:
        torch.set_num_threads(before)
    prompt_set = root / "prompts.yaml"
    prompt_set.write_text(PROMPT_SET, encoding="utf-8")
    refs = root / "references" / CHARACTER
    refs.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(2):
        pixels = rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)
        PILImage.fromarray(pixels).save(refs / f"ref{i}.png")
    return TinyWorld(first, second, config_dir, prompt_set, ccip, root / "references")


def worker_settings(world: TinyWorld, home: Path, db: Database, **extra: object) -> Settings:
    """Settings of a worker that renders the tiny prompt set and scores with tiny CCIP."""
    values: dict[str, object] = {
        "home": home,
        "database_url": db.url,
        "prompt_sets": str(world.prompt_set),
        "sdxl_config_dir": world.config_dir,
        "ccip_model_dir": world.ccip_dir,
        "ccip_references": world.references,
        "job_lease_seconds": 30.0,
        **extra,
    }
    return Settings(**values)  # type: ignore[arg-type]


def save_step(world: TinyWorld, out: Path, step: int) -> Path:
    """What a tiny trainer's save does here: write step ``step``'s SDXL checkpoint file."""
    out.mkdir(parents=True, exist_ok=True)
    source = world.first if step % 2 else world.second
    target = out / f"tiny-step{step}.safetensors"
    shutil.copyfile(source, target)
    return target




def bound_socket() -> socket.socket:
    """A loopback socket on a free port, bound but not listening."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


def tiny_training(world: TinyWorld, out: Path, on_save: Callable[[Path, int], None],
                  steps: int = 2) -> list[float]:
    """A tiny training loop (a linear model standing in for the trainer) whose save step
    writes a tiny SDXL checkpoint and calls ``on_save(path, step)``; returns the losses."""
    import torch

    torch.manual_seed(0)
    model = torch.nn.Linear(4, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    x, y = torch.randn(16, 4), torch.randn(16, 1)
    losses = []
    for step in range(1, steps + 1):
        loss = ((model(x) - y) ** 2).mean()
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(float(loss.detach()))
        on_save(save_step(world, out, step), step)
    return losses
