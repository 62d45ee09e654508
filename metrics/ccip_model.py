"""Loading a CCIP model folder as published by deepghs, with validation and model identity.

A published CCIP model (deepghs/ccip_onnx on the Hugging Face hub, used by dghs-imgutils) is a
folder holding:

- ``model_feat.onnx``: input ``input`` float32 ``[N, 3, 384, 384]`` -> output ``output``
  ``[N, 768]`` (one feature vector per image, dynamic batch);
- ``model_metrics.onnx``: input ``input`` float32 ``[N, 768]`` -> output ``output`` ``[N, N]``,
  the pairwise difference matrix with values in [0, 1];
- ``metrics.json``: at least ``{"threshold": <float>}``; a difference at or below the threshold
  means "same character".

Sessions are opened once per :class:`CCIPModel`; CUDA is used when onnxruntime offers it.
"""

from __future__ import annotations

import json
import math
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from metrics.ccip_preprocess import CCIP_INPUT_SIZE
from metrics.errors import InputError
from metrics.file_hash import sha256_file

__all__ = [
    "FEATURE_DIM",
    "CCIPModel",
    "CCIPModelError",
    "load_ccip_model",
]

FEATURE_DIM = 768
FEAT_FILE = "model_feat.onnx"
METRICS_FILE = "model_metrics.onnx"
THRESHOLD_FILE = "metrics.json"


class CCIPModelError(InputError):
    """A CCIP model folder does not hold what the published format requires."""


def _describe(shape: list[Any]) -> str:
    return "[" + ", ".join("N" if not isinstance(d, int) else str(d) for d in shape) + "]"


def _check_io(
    path: Path, session: Any, expected_in: list[int | None], expected_out: list[int | None]
) -> None:
    """Refuse a session whose single input/output are not named ``input``/``output`` with the
    expected float32 shapes (``None`` marks a dynamic axis)."""
    want = (
        f"input 'input' float32 {_describe(expected_in)}"
        f" -> output 'output' {_describe(expected_out)}"
    )
    inputs, outputs = session.get_inputs(), session.get_outputs()
    if len(inputs) != 1 or len(outputs) != 1:
        raise CCIPModelError(
            f"{path}: expected one input and one output ({want}), "
            f"found inputs {[i.name for i in inputs]} and outputs {[o.name for o in outputs]}"
        )
    for kind, arg, expected in (
        ("input", inputs[0], expected_in),
        ("output", outputs[0], expected_out),
    ):
        shape = list(arg.shape)
        ok = (
            arg.name == kind
            and arg.type == "tensor(float)"
            and len(shape) == len(expected)
            and all(
                (want_dim is None and not isinstance(dim, int))
                or (want_dim is not None and dim == want_dim)
                for dim, want_dim in zip(shape, expected, strict=True)
            )
        )
        if not ok:
            raise CCIPModelError(
                f"{path}: expected {want}, found {kind} {arg.name!r} {arg.type} {_describe(shape)}"
            )


def _read_threshold(path: Path) -> float:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise CCIPModelError(
            f"{path}: expected a JSON object with a 'threshold' number ({exc})"
        ) from exc
    threshold = data.get("threshold") if isinstance(data, dict) else None
    if (
        isinstance(threshold, bool)
        or not isinstance(threshold, int | float)
        or not (math.isfinite(threshold) and 0.0 <= threshold <= 1.0)
    ):
        raise CCIPModelError(
            f"{path}: expected a 'threshold' number in [0, 1], found {threshold!r}"
        )
    return float(threshold)


def _providers(device: str) -> list[str]:
    import onnxruntime as ort

    available = ort.get_available_providers()
    if device == "cpu":
        return ["CPUExecutionProvider"]
    if device == "cuda":
        if "CUDAExecutionProvider" not in available:
            raise CCIPModelError(
                f"device 'cuda' requested but onnxruntime offers only {available}"
                " (install onnxruntime-gpu)"
            )
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    if device == "auto":
        cuda = ["CUDAExecutionProvider"] if "CUDAExecutionProvider" in available else []
        return [*cuda, "CPUExecutionProvider"]
    raise CCIPModelError(f"device: expected 'auto', 'cpu' or 'cuda', got {device!r}")


@dataclass
class CCIPModel:
    """An opened CCIP model: two onnxruntime sessions, the threshold and the model's identity.

    ``key`` (name + sha256 of the feature model) identifies the features this model produces,
    so it keys the feature cache; ``feat_sha256`` / ``metrics_sha256`` go into provenance.
    """

    name: str
    directory: Path
    threshold: float
    feat_sha256: str
    metrics_sha256: str
    providers: list[str]
    _feat: Any = field(repr=False)
    _metrics: Any = field(repr=False)
    feature_calls: int = 0
    metric_calls: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def key(self) -> str:
        """Feature-cache key: features depend only on the name and the feature model file."""
        return f"{self.name}@{self.feat_sha256[:16]}"

    def run_features(self, batch: np.ndarray) -> np.ndarray:
        """Run the feature model on a float32 ``[n, 3, 384, 384]`` batch -> ``[n, 768]``."""
        with self._lock:
            self.feature_calls += 1
        (out,) = self._feat.run(["output"], {"input": np.ascontiguousarray(batch, np.float32)})
        return np.asarray(out, dtype=np.float32)

    def run_metrics(self, features: np.ndarray) -> np.ndarray:
        """Run the metrics model on float32 ``[n, 768]`` features -> ``[n, n]`` differences."""
        with self._lock:
            self.metric_calls += 1
        (out,) = self._metrics.run(
            ["output"], {"input": np.ascontiguousarray(features, np.float32)}
        )
        return np.asarray(out, dtype=np.float32)


def load_ccip_model(
    directory: str | Path,
    *,
    name: str | None = None,
    device: str = "auto",
    threads: int = 0,
) -> CCIPModel:
    """Open and validate a CCIP model folder (see the module docstring for the layout).

    ``name`` defaults to the folder's name; ``device`` is ``auto`` (CUDA when onnxruntime
    offers it, else CPU), ``cpu`` or ``cuda``; ``threads`` caps onnxruntime's intra-op threads
    (0 lets onnxruntime choose).
    """
    import onnxruntime as ort

    folder = Path(directory)
    if not folder.is_dir():
        raise CCIPModelError(
            f"{folder}: expected a CCIP model folder with {FEAT_FILE}, {METRICS_FILE}"
            f" and {THRESHOLD_FILE}"
        )
    missing = [f for f in (FEAT_FILE, METRICS_FILE, THRESHOLD_FILE) if not (folder / f).is_file()]
    if missing:
        raise CCIPModelError(
            f"{folder}: missing {', '.join(missing)}; expected {FEAT_FILE}, {METRICS_FILE}"
            f" and {THRESHOLD_FILE}"
        )
    threshold = _read_threshold(folder / THRESHOLD_FILE)
    providers = _providers(device)
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    # Idle intra-op threads sleep instead of spinning: feature calls overlap the decoding of the
    # next chunk, and spinning threads would take those cores from the decoder threads.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.log_severity_level = 3
    sessions = []
    for filename in (FEAT_FILE, METRICS_FILE):
        try:
            sessions.append(
                ort.InferenceSession(str(folder / filename), options, providers=providers)
            )
        except Exception as exc:  # onnxruntime raises its own exception types for bad files
            raise CCIPModelError(
                f"{folder / filename}: not a loadable ONNX model ({str(exc).splitlines()[0]})"
            ) from exc
    feat, metrics = sessions
    size = CCIP_INPUT_SIZE
    _check_io(folder / FEAT_FILE, feat, [None, 3, size, size], [None, FEATURE_DIM])
    _check_io(folder / METRICS_FILE, metrics, [None, FEATURE_DIM], [None, None])
    return CCIPModel(
        name=name or folder.resolve().name,
        directory=folder,
        threshold=threshold,
        feat_sha256=sha256_file(folder / FEAT_FILE),
        metrics_sha256=sha256_file(folder / METRICS_FILE),
        providers=list(feat.get_providers()),
        _feat=feat,
        _metrics=metrics,
    )
