"""Shared types and helpers of the generation tests."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL.Image import Image

from generation.parameters import ImageParameters
from generation.pipeline import Runtime

# The tests run on the CPU in fp32 everywhere, also on a machine with a GPU.
CPU = Runtime(device="cpu")


@dataclass(frozen=True)
class TinyFiles:
    """A tiny checkpoint as a single file (with its config folder) and as a folder."""

    single_file: Path
    config_dir: Path
    folder: Path
    other: Path  # a second single file with other weights


def pixels(images: Sequence[Image]) -> np.ndarray:
    """The images as one uint8 array (count, height, width, channels)."""
    return np.stack([np.asarray(im) for im in images])


def render_bare(pipe: Any, params: ImageParameters) -> np.ndarray:
    """The image ``params`` (read from a PNG) describe, rendered by a plain diffusers call: a
    batch of one with its own CPU generator, on ``pipe`` with the scheduler the caller set.
    As an int array, ready to subtract."""
    import torch

    image = pipe(
        prompt=params.prompt,
        negative_prompt=params.negative_prompt or None,
        num_inference_steps=params.steps,
        guidance_scale=params.cfg,
        width=params.width,
        height=params.height,
        generator=torch.Generator("cpu").manual_seed(params.seed),
    ).images[0]
    return np.asarray(image).astype(int)
