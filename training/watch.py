"""Watch a folder for new ``.safetensors`` checkpoints and register each once, when whole.

For trainers without callbacks (kohya-style scripts). A file counts as completely written
when its safetensors header parses, the file is exactly as long as the header says (8 bytes,
the header, then every tensor's data), and its size and modification time did not change
between two looks. The training metadata kohya's scripts write into the header
(``__metadata__``: ``ss_steps``, ``ss_epoch``, ``ss_sd_model_name``, ``ss_learning_rate``,
``ss_unet_lr``, ``ss_text_encoder_lr``, ``ss_batch_size_per_device``, ``ss_resolution``, ...)
is copied into the registry with the checkpoint; ``ss_steps`` gives its step. Files already
registered are listed in ``<DIR>/.arena-watch.json``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from training.hooks import deliver_outbox, register_checkpoint
from training.safetensors_header import HeaderError, tensor_data_end

__all__ = ["HeaderError", "Watcher", "read_header", "training_metadata"]

STATE_FILE = ".arena-watch.json"
log = logging.getLogger("illustrious_arena.watch")
MAX_HEADER_BYTES = 100 << 20


def read_header(path: Path) -> dict[str, Any] | None:
    """The safetensors header of a completely written file; None while the file looks torn
    (shorter than its header says: still being written); :class:`HeaderError` for a header
    that can never be read (not JSON, not a mapping, offsets that are not whole numbers)."""
    try:
        size = path.stat().st_size
        with path.open("rb") as handle:
            prefix = handle.read(8)
            if len(prefix) < 8:
                return None
            (length,) = struct.unpack("<Q", prefix)
            if length > MAX_HEADER_BYTES:
                raise HeaderError(f"a header of {length} bytes (at most {MAX_HEADER_BYTES})")
            if length > size - 8:
                return None
            raw = handle.read(length)
    except OSError:
        return None
    try:
        header = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise HeaderError(f"the header is not JSON ({exc})") from None
    if not isinstance(header, dict):
        raise HeaderError(f"the header is a JSON {type(header).__name__}, not an object")
    return header if size == 8 + length + tensor_data_end(header) else None


def training_metadata(header: dict[str, Any]) -> tuple[dict[str, Any], int | None]:
    """The header's ``ss_*`` training keys (numbers parsed where they are numbers) and step."""
    raw = header.get("__metadata__") or {}
    found: dict[str, Any] = {}
    for key, value in raw.items():
        if not key.startswith("ss_"):
            continue
        if isinstance(value, str):
            with contextlib.suppress(ValueError):
                parsed = json.loads(value)
                # "Infinity" / "NaN" parse as floats no JSON body may carry: keep the text
                if not (isinstance(parsed, float) and not math.isfinite(parsed)):
                    value = parsed
        elif isinstance(value, float) and not math.isfinite(value):
            value = str(value)
        found[key] = value
    step = found.get("ss_steps")
    usable = isinstance(step, int | float) and not isinstance(step, bool) and math.isfinite(
        step) and 0 <= step < 2**31
    return found, int(step) if usable else None


@dataclass
class Watcher:
    """Registers every new, completely written ``.safetensors`` in ``folder``."""

    folder: Path
    config: str
    arena: str | None = None
    token: str | None = None
    outbox: Path | None = None
    _sizes: dict[str, tuple[int, int]] = field(default_factory=dict)

    @property
    def state_path(self) -> Path:
        return self.folder / STATE_FILE

    def registered(self) -> dict[str, Any]:
        """File name -> what was registered for it."""
        try:
            return json.loads(self.state_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}

    def _remember(self, name: str, entry: dict[str, Any]) -> None:
        state = self.registered()
        state[name] = entry
        tmp = self.state_path.with_name(STATE_FILE + ".tmp")
        tmp.write_text(json.dumps(state, indent=1), encoding="utf-8")
        tmp.replace(self.state_path)

    def poll(self) -> list[dict[str, Any]]:
        """One look: deliver the outbox, then register files that are whole and settled.

        Returns what was registered or kept in the outbox on this look.
        """
        deliver_outbox(self.arena, self.token, self.outbox)
        done = self.registered()
        out = []
        for path in sorted(self.folder.glob("*.safetensors")):
            try:
                stat = path.stat()
            except OSError:
                continue
            now = (stat.st_size, stat.st_mtime_ns)
            known = done.get(path.name)
            if known is not None and not (isinstance(known, dict) and "unreadable" in known
                                          and known.get("stat") != list(now)):
                continue  # registered, or skipped as unreadable and not rewritten since
            before, self._sizes[path.name] = self._sizes.get(path.name), now
            if before != now:
                continue  # first sight, or still growing: look again next time
            try:
                header = read_header(path)
            except HeaderError as exc:
                log.warning("arena watch: skipping %s: unreadable safetensors header: %s",
                            path, exc)
                self._remember(path.name, {"unreadable": str(exc), "stat": list(now)})
                out.append({"file": path.name, "step": None, "delivered": False,
                            "checkpoint": None, "unreadable": str(exc)})
                continue
            if header is None:
                continue
            metadata, step = training_metadata(header)
            answer = register_checkpoint(
                path, self.config, step=step, arena=self.arena, token=self.token,
                metadata=metadata, outbox=self.outbox,
            )
            entry = {"step": step, "delivered": answer is not None,
                     "checkpoint": (answer or {}).get("checkpoint")}
            self._remember(path.name, entry)
            out.append({"file": path.name, **entry})
        return out
