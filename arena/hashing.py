"""Content hashes as the arena shows them: progress bars over :mod:`metrics.file_hash`."""

from __future__ import annotations

import hashlib
from pathlib import Path

from tqdm import tqdm

from metrics import file_hash

PROGRESS_FROM_BYTES = 256 << 20  # a progress bar only for files worth waiting on


def sha256_bytes(data: bytes) -> str:
    """Hex sha256 of a byte string."""
    return hashlib.sha256(data).hexdigest()


def _total_bytes(path: Path) -> int:
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size


def sha256_path(path: Path, progress: bool = True) -> str:
    """Hex sha256 of a file or a folder (:func:`metrics.file_hash.sha256_path`), with a
    progress bar when it is large."""
    size = _total_bytes(path)
    show = progress and size >= PROGRESS_FROM_BYTES
    with tqdm(
        total=size, unit="B", unit_scale=True, desc=f"sha256 {path.name}", disable=not show
    ) as bar:
        return file_hash.sha256_path(path, bar.update)


def short_hash(sha256: str) -> str:
    """The short model hash community tools show: the first 10 hex digits of the sha256."""
    return sha256[:10]
