"""Content hashes: streamed sha256 of files and folders, and the short hash tools show."""

from __future__ import annotations

import hashlib
from pathlib import Path

from tqdm import tqdm

CHUNK = 1 << 22
PROGRESS_FROM_BYTES = 256 << 20  # a progress bar only for files worth waiting on


def sha256_bytes(data: bytes) -> str:
    """Hex sha256 of a byte string."""
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path, progress: bool = True) -> str:
    """Hex sha256 of a file, streamed in 4 MiB chunks; a progress bar for large files."""
    digest = hashlib.sha256()
    size = path.stat().st_size
    show = progress and size >= PROGRESS_FROM_BYTES
    with (
        path.open("rb") as handle,
        tqdm(total=size, unit="B", unit_scale=True, desc=f"sha256 {path.name}", disable=not show)
        as bar,
    ):
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
            bar.update(len(chunk))
    return digest.hexdigest()


def sha256_tree(folder: Path, progress: bool = True) -> str:
    """sha256 over a folder: each file's relative path and content hash, in sorted order."""
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        relative = path.relative_to(folder).as_posix()
        digest.update(f"{relative}\0{sha256_file(path, progress)}\n".encode())
    return digest.hexdigest()


def short_hash(sha256: str) -> str:
    """The short model hash community tools show: the first 10 hex digits of the sha256."""
    return sha256[:10]
