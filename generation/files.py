"""Writing content-addressed files: the one helper the pool generator and the image store share."""

from __future__ import annotations

import os
import uuid
from pathlib import Path


def write_once(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (temporary file, then rename); a complete file of
    the same size already there is reused, since content-addressed names fix the content."""
    if path.is_file() and path.stat().st_size == len(data):
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        temporary.write_bytes(data)
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
