"""The pool manifest's fields: one list, written by the pool generator, read by the import.

A pool folder lists its images in ``manifest.jsonl``, one JSON object per image with the
fields below (in this order when the generator writes them). Only ``file`` and ``kind`` are
required on import; the rest may come from the PNG's ``parameters`` text.

- ``file``: the image's path, relative to the folder; ``sha256``: the hash of its bytes.
- ``checkpoint``, ``prompt``, ``negative_prompt``, ``kind``, ``character``, ``seed``,
  ``sampler``, ``steps``, ``cfg``, ``width``, ``height``: how it was made, and for what.
- ``batch``, ``batch_size``, ``batch_pos``: the render call it came from (an id shared by
  every image of that call), how many images the call rendered, and this image's place in
  it. The generator needs them to render a lost image again bit for bit (see
  :mod:`generation.pool`); the import accepts them and keeps them through the PNG's
  ``parameters`` text (``Batch size``, ``Batch pos``).

This module imports nothing beyond the standard library, so the voting server can use it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

__all__ = ["BATCH_FIELDS", "MANIFEST_FIELDS", "MANIFEST_NAME", "read_manifest_rows"]

MANIFEST_NAME = "manifest.jsonl"
BATCH_FIELDS = ("batch", "batch_size", "batch_pos")
MANIFEST_FIELDS = (
    "file",
    "sha256",
    "checkpoint",
    "prompt",
    "negative_prompt",
    "kind",
    "character",
    "seed",
    "sampler",
    "steps",
    "cfg",
    "width",
    "height",
    *BATCH_FIELDS,
)


def read_manifest_rows(path: Path) -> list[dict[str, Any]]:
    """The rows of a ``manifest.jsonl`` (a missing file has none; a torn last line is skipped)."""
    if not path.is_file():
        return []
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue  # an interrupted append; the image is rendered again
        if isinstance(row, dict):
            rows.append(row)
    return rows
