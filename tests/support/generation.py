"""Shared types and helpers of the generation tests."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL.Image import Image

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
