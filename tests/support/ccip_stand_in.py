"""A CCIP-shaped stand-in model folder, exported from a small torch module (tests, benchmarks).

Real CCIP weights cannot be fetched where this project is built and tested, so tests and
``benchmarks/ccip_batch.py`` build a folder with exactly the published layout (see
:mod:`metrics.ccip_model`) and load it through the same code path as the real files:

- feature model: average-pool the ``[N, 3, 384, 384]`` input to ``pool x pool``, then a
  two-layer MLP (GELU) to 768 features; ``pool=32, hidden=1024`` has about 4 million
  parameters, whose weight reads make one-image session calls memory-bound the way large
  linear layers in the real CAFormer are;
- metrics model: L2-normalise the features and return ``(1 - cos) / 2`` for every pair, a
  difference in [0, 1] that is 0 for identical images;
- ``metrics.json`` with the given threshold.

torch and onnx are imported inside :func:`build_ccip_stand_in` only.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from pathlib import Path

from metrics.ccip_model import FEAT_FILE, FEATURE_DIM, METRICS_FILE, THRESHOLD_FILE
from metrics.ccip_preprocess import CCIP_INPUT_SIZE

__all__ = ["build_ccip_stand_in", "cached_ccip_stand_in"]


def build_ccip_stand_in(
    folder: str | Path,
    *,
    threshold: float = 0.15,
    pool: int = 4,
    hidden: int = 64,
    feature_dim: int = FEATURE_DIM,
    input_size: int = CCIP_INPUT_SIZE,
    seed: int = 0,
) -> Path:
    """Write ``model_feat.onnx``, ``model_metrics.onnx`` and ``metrics.json`` into ``folder``.

    ``feature_dim`` and ``input_size`` exist so tests can build deliberately wrong models; keep
    the defaults for a valid folder.  Returns the folder.
    """
    import torch
    from torch import nn

    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)

    class Features(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.pool = nn.AdaptiveAvgPool2d(pool)
            self.mlp = nn.Sequential(
                nn.Flatten(),
                nn.Linear(3 * pool * pool, hidden),
                nn.GELU(),
                nn.Linear(hidden, feature_dim),
            )

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.mlp(self.pool(x))

    class Differences(nn.Module):
        def forward(self, f: torch.Tensor) -> torch.Tensor:
            unit = f / f.norm(dim=1, keepdim=True).clamp_min(1e-12)
            return ((1.0 - unit @ unit.T) / 2.0).clamp(0.0, 1.0)

    # The TorchScript exporter (dynamo=False) takes a fraction of a second where the
    # torch.export one takes seconds; its deprecation warning is expected here.
    axes = {"input": {0: "batch"}, "output": {0: "batch"}}
    exports = (
        (Features(), torch.zeros(2, 3, input_size, input_size), FEAT_FILE, axes),
        (
            Differences(),
            torch.randn(3, feature_dim),
            METRICS_FILE,
            {**axes, "output": {0: "batch", 1: "batch"}},
        ),
    )
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        for module, example, filename, dynamic_axes in exports:
            torch.onnx.export(
                module.eval(),
                (example,),
                str(out / filename),
                input_names=["input"],
                output_names=["output"],
                dynamic_axes=dynamic_axes,
                dynamo=False,
            )
    (out / THRESHOLD_FILE).write_text(json.dumps({"threshold": threshold}), encoding="utf-8")
    return out


def cached_ccip_stand_in(root: str | Path, **params: float | int) -> Path:
    """Build a stand-in folder under ``root`` once per set of ``params`` and reuse it after.

    The folder is named by a hash of the parameters; ``metrics.json`` is written last, so a
    folder that has it is complete.  Lets several test modules (or benchmark runs) share one
    export, which takes seconds.
    """
    tag = hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()[:12]
    folder = Path(root) / f"ccip-stand-in-{tag}"
    if not (folder / THRESHOLD_FILE).is_file():
        build_ccip_stand_in(folder, **params)  # type: ignore[arg-type]
    return folder
