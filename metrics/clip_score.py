"""CLIPScore: text-image alignment of generated images with their prompts (open_clip).

Hessel et al. 2021, "CLIPScore: A Reference-free Evaluation Metric for Image Captioning",
eq. 1: ``CLIP-S(c, v) = w * max(cos(E_c, E_v), 0)`` with ``w = 2.5``, where ``E_v`` and ``E_c``
are the CLIP embeddings of the image and of the text.  A set's score is the mean over images.

The model comes from local files only: an open_clip model name (a built-in architecture, or
one described by a local config JSON registered with ``open_clip.add_model_config``) and a
weights file passed as ``pretrained=<local file>``; nothing is fetched from a hub.  torch and
open_clip are imported inside the functions that need them.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from metrics.ccip import NothingToScoreError
from metrics.ccip_preprocess import ImageFailure, load_rgb, unreadable_reason
from metrics.errors import InputError
from metrics.file_hash import sha256_bytes, sha256_file

__all__ = [
    "CLIPSCORE_W",
    "ClipModel",
    "ClipModelError",
    "ClipScore",
    "clip_score",
    "load_clip_model",
]

CLIPSCORE_W = 2.5  # Hessel et al. 2021, eq. 1


class ClipModelError(InputError):
    """The open_clip model name, config or weights given by the user cannot be used."""


@dataclass
class ClipModel:
    """An open_clip model ready for scoring, with what identifies it for provenance."""

    name: str
    weights: Path
    weights_sha256: str
    config_sha256: str | None
    device: str
    _model: Any
    _preprocess: Any
    _tokenizer: Any


def _register_config(name: str, config: Path) -> str:
    """Register ``config`` under ``name`` with open_clip; return the config's sha256."""
    import open_clip

    try:
        data = json.loads(config.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ClipModelError(f"{config}: expected an open_clip model config JSON ({exc})") from exc
    if not isinstance(data, dict) or not {"embed_dim", "vision_cfg", "text_cfg"} <= data.keys():
        raise ClipModelError(
            f"{config}: expected an open_clip model config with embed_dim, vision_cfg and text_cfg"
        )
    # open_clip names a registered config after its file, so register a copy named ``name``.
    with tempfile.TemporaryDirectory() as tmp:
        shutil.copyfile(config, Path(tmp) / f"{name}.json")
        open_clip.add_model_config(tmp)
    return sha256_file(config)


def load_clip_model(
    name: str, weights: str | Path, *, config: str | Path | None = None, device: str = "auto"
) -> ClipModel:
    """Build open_clip model ``name`` with the local ``weights`` (a state-dict ``.pt`` file).

    ``config`` is a local model-config JSON for an architecture open_clip does not ship;
    ``device`` is ``auto`` (CUDA when torch sees one), ``cpu`` or ``cuda``.
    """
    import open_clip
    import torch

    weights_path = Path(weights)
    if not weights_path.is_file():
        # open_clip would read a missing path as a hub tag and try to download it.
        raise ClipModelError(f"weights: expected a local weights file, {weights_path} not found")
    config_sha = _register_config(name, Path(config)) if config is not None else None
    if name not in open_clip.list_models():
        raise ClipModelError(
            f"model name: {name!r} is not an open_clip architecture; pass a config JSON for it"
        )
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device not in ("cpu", "cuda"):
        raise ClipModelError(f"device: expected 'auto', 'cpu' or 'cuda', got {device!r}")
    try:
        model, _, preprocess = open_clip.create_model_and_transforms(
            name, pretrained=str(weights_path), device=device
        )
    except (RuntimeError, KeyError, ValueError, OSError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ClipModelError(
            f"{weights_path}: cannot load as weights for {name!r} ({first})"
        ) from exc
    model.eval()
    return ClipModel(
        name=name,
        weights=weights_path,
        weights_sha256=sha256_file(weights_path),
        config_sha256=config_sha,
        device=device,
        _model=model,
        _preprocess=preprocess,
        _tokenizer=open_clip.get_tokenizer(name),
    )


@dataclass(frozen=True)
class ClipScore:
    """Mean CLIPScore of a set of (image, prompt) pairs, per-image values and provenance."""

    score: float
    count: int
    per_image: tuple[tuple[str, float], ...]
    image_sha256: tuple[str, ...]
    unreadable: tuple[ImageFailure, ...]
    model_name: str
    weights_sha256: str
    config_sha256: str | None
    w: float
    computed_at: datetime

    def provenance(self) -> dict[str, object]:
        """JSON-ready description of how the number was produced."""
        return {
            "metric": "clip_score",
            "model_name": self.model_name,
            "weights_sha256": self.weights_sha256,
            "config_sha256": self.config_sha256,
            "w": self.w,
            "unreadable": [f.name for f in self.unreadable],
            "computed_at": self.computed_at.isoformat(),
        }


def _load(model: ClipModel, path: str) -> tuple[str, Any] | ImageFailure:
    """(sha256 of the file's bytes, model input tensor), or why the file could not be used."""
    try:
        data = Path(path).read_bytes()
        return sha256_bytes(data), model._preprocess(load_rgb(data))
    except Exception as exc:  # Pillow raises many types for corrupt files; report, don't abort
        return ImageFailure(path, unreadable_reason(exc))


def clip_score(
    model: ClipModel,
    images: Sequence[str | Path],
    prompts: Sequence[str],
    *,
    batch_size: int = 32,
    workers: int = 4,
    progress: Callable[[int], None] | None = None,
) -> ClipScore:
    """CLIPScore of each image with its prompt (``images[i]`` with ``prompts[i]``) and the mean.

    Images are read, hashed (sha256, for provenance) and decoded by ``workers`` threads (alpha
    flattened on white, as for CCIP) and embedded ``batch_size`` at a time; unreadable files
    are skipped and listed.
    """
    import torch

    if len(images) != len(prompts):
        raise ValueError(f"prompts: expected one per image ({len(images)}), got {len(prompts)}")
    if batch_size < 1:
        raise ValueError(f"batch_size: expected a positive integer, got {batch_size}")
    names = [str(p) for p in images]
    scored: list[tuple[str, float]] = []
    hashes: list[str] = []
    failures: list[ImageFailure] = []
    with ThreadPoolExecutor(max_workers=workers) as pool, torch.no_grad():
        for start in range(0, len(names), batch_size):
            chunk = range(start, min(start + batch_size, len(names)))
            loaded = list(pool.map(lambda i: _load(model, names[i]), chunk))
            good = [
                (i, t)
                for i, t in zip(chunk, loaded, strict=True)
                if not isinstance(t, ImageFailure)
            ]
            failures.extend(t for t in loaded if isinstance(t, ImageFailure))
            if good:
                pixels = torch.stack([t for _, (_, t) in good]).to(model.device)
                tokens = model._tokenizer([prompts[i] for i, _ in good]).to(model.device)
                image_emb = torch.nn.functional.normalize(
                    model._model.encode_image(pixels).float(), dim=-1
                )
                text_emb = torch.nn.functional.normalize(
                    model._model.encode_text(tokens).float(), dim=-1
                )
                cosine = (image_emb * text_emb).sum(dim=-1).cpu().numpy()
                values = CLIPSCORE_W * np.maximum(cosine, 0.0)
                scored.extend((names[i], float(v)) for (i, _), v in zip(good, values, strict=True))
                hashes.extend(sha for _, (sha, _) in good)
            if progress is not None:
                progress(len(chunk))
    if not scored:
        raise NothingToScoreError("images: no readable image to score", failures)
    return ClipScore(
        score=float(np.mean([v for _, v in scored])),
        count=len(scored),
        per_image=tuple(scored),
        image_sha256=tuple(hashes),
        unreadable=tuple(failures),
        model_name=model.name,
        weights_sha256=model.weights_sha256,
        config_sha256=model.config_sha256,
        w=CLIPSCORE_W,
        computed_at=datetime.now(UTC),
    )
