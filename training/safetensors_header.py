"""What a readable safetensors header is: the checks ``arena watch`` and the registry share.

A safetensors file is a little-endian u64 length, that many bytes of JSON object header, then
the tensors' data; each tensor entry names its ``data_offsets`` into that data. No imports
from the rest of the project: the registry and the trainer-side watcher both use it.
"""

from __future__ import annotations

from typing import Any

__all__ = ["HeaderError", "tensor_data_end"]


class HeaderError(ValueError):
    """A whole file whose safetensors header cannot be read (not JSON, bad offsets)."""


def tensor_data_end(header: dict[str, Any]) -> int:
    """Where the last tensor's data ends, after checking every tensor entry's
    ``data_offsets`` (two whole numbers in order) and ``__metadata__`` (an object); else
    :class:`HeaderError`."""
    end = 0
    for key, value in header.items():
        if key == "__metadata__":
            if not isinstance(value, dict):
                raise HeaderError("__metadata__ is not an object")
            continue
        offsets = value.get("data_offsets") if isinstance(value, dict) else None
        if not (isinstance(offsets, list) and len(offsets) == 2 and all(
                type(o) is int and o >= 0 for o in offsets) and offsets[0] <= offsets[1]):
            raise HeaderError(f"tensor {key[:80]!r}: data_offsets {offsets!r} are not two "
                              "whole numbers in order")
        end = max(end, offsets[1])
    return end
