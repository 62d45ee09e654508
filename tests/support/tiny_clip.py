"""A tiny randomly initialised open_clip model written to local files, for CLIP-score tests.

The config follows ../shared/TESTING.md; the model is loaded through the same path as a
user's config + weights (``open_clip.add_model_config``, ``pretrained=<file>``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

TINY = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 64, "layers": 2, "width": 64, "patch_size": 16, "head_width": 32},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2},
}


def write_tiny_clip(root: Path, name: str, seed: int = 0) -> tuple[Path, Path, dict[str, Any]]:
    """Write ``<name>.json`` and ``<name>.pt`` (random weights) into ``root``; return their
    paths and the state dict, so tests can derive other weight files from it."""
    import open_clip
    import torch

    config = root / f"{name}.json"
    config.write_text(json.dumps(TINY))
    open_clip.add_model_config(config)
    torch.manual_seed(seed)
    state = open_clip.create_model(name, pretrained=None).state_dict()
    weights = root / f"{name}.pt"
    torch.save(state, weights)
    return config, weights, state
