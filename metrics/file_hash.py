"""The one content hash of bytes, files and folders: streamed sha256, and the short model hash.

Every package hashes content through here (``metrics`` is the bottom layer: ``generation``,
``training`` and ``arena`` import it, it imports none of them): the registry's checkpoint hash
and its 10-digit short form, the A1111 model hash of generated images, the pool's image hashes,
and the model-file hashes recorded with CCIP and CLIP scores.
A folder's hash is the sha256 of a listing of its files (each relative path and content hash,
in sorted order), so it does not depend on how the file system orders a directory.
Keyed digests (the voter identity's HMAC) are not content hashes and stay with their secret.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

__all__ = [
    "CHUNK_BYTES",
    "PROGRESS_FROM_BYTES",
    "SHORT_HASH_DIGITS",
    "sha256_bytes",
    "sha256_file",
    "sha256_path",
    "sha256_tree",
    "short_hash",
]

CHUNK_BYTES = 1 << 22
PROGRESS_FROM_BYTES = 256 << 20  # a progress bar only for files worth waiting on
SHORT_HASH_DIGITS = 10  # the A1111 web UI's model hash length

Progress = Callable[[int], None]


def sha256_bytes(data: bytes) -> str:
    """Hex sha256 of a byte string."""
    return hashlib.sha256(data).hexdigest()


def short_hash(sha256: str) -> str:
    """The short model hash community tools show: the first 10 hex digits of the sha256,
    lower case (an A1111 ``Model hash`` read from a PNG may be upper case)."""
    return sha256[:SHORT_HASH_DIGITS].lower()


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


def _total_bytes(path: Path) -> int:
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size


def sha256_path(
    path: Path, on_bytes: Progress | None = None, *, progress: bool = False
) -> str:
    """:func:`sha256_file` for a file, :func:`sha256_tree` for a folder; with ``progress``, a
    tqdm bar on stderr when the content is large (:data:`PROGRESS_FROM_BYTES`)."""
    path = Path(path)
    if progress and on_bytes is None:
        size = _total_bytes(path)
        if size >= PROGRESS_FROM_BYTES:
            from tqdm import tqdm  # only a command waiting on a large file needs it

            with tqdm(total=size, unit="B", unit_scale=True, desc=f"sha256 {path.name}") as bar:
                return sha256_path(path, bar.update)
    return sha256_tree(path, on_bytes) if path.is_dir() else sha256_file(path, on_bytes)
