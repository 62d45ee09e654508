"""The one content hash of files and folders: streamed sha256, no dependencies.

Every package hashes through here (``metrics`` is the bottom layer: ``generation`` and
``arena`` import it, it imports neither): the registry's checkpoint hash, the A1111 model hash
of generated images, and the model-file hashes recorded with CCIP and CLIP scores.
A folder's hash is the sha256 of a listing of its files (each relative path and content hash,
in sorted order), so it does not depend on how the file system orders a directory.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

__all__ = ["CHUNK_BYTES", "sha256_file", "sha256_path", "sha256_tree"]

CHUNK_BYTES = 1 << 22

Progress = Callable[[int], None]


def sha256_file(path: Path, on_bytes: Progress | None = None) -> str:
    """Hex sha256 of a file's bytes, read in 4 MiB chunks; ``on_bytes(n)`` after each chunk."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        while chunk := handle.read(CHUNK_BYTES):
            digest.update(chunk)
            if on_bytes is not None:
                on_bytes(len(chunk))
    return digest.hexdigest()


def sha256_tree(folder: Path, on_bytes: Progress | None = None) -> str:
    """sha256 over a folder: each file's relative path and content hash, in sorted order."""
    folder = Path(folder)
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        relative = path.relative_to(folder).as_posix()
        digest.update(f"{relative}\0{sha256_file(path, on_bytes)}\n".encode())
    return digest.hexdigest()


def sha256_path(path: Path, on_bytes: Progress | None = None) -> str:
    """:func:`sha256_file` for a file, :func:`sha256_tree` for a folder."""
    path = Path(path)
    return sha256_tree(path, on_bytes) if path.is_dir() else sha256_file(path, on_bytes)
