"""A local outbox of registrations the arena could not take yet, delivered later.

One JSON object per line (the arena target and the registration); the admin token is never
written. Appends and deliveries hold an exclusive lock on the file, so a trainer and
``arena watch`` can share one outbox.
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

__all__ = ["Outbox", "default_outbox_path"]


def default_outbox_path() -> Path:
    """``$ARENA_OUTBOX``, else ``~/.cache/illustrious-arena/outbox.jsonl``."""
    given = os.environ.get("ARENA_OUTBOX")
    if given:
        return Path(given).expanduser()
    return Path.home() / ".cache" / "illustrious-arena" / "outbox.jsonl"


class Outbox:
    """Registrations waiting for their arena, in a JSONL file at ``path``."""

    def __init__(self, path: Path | str | None = None) -> None:
        self.path = Path(path).expanduser() if path is not None else default_outbox_path()

    @contextmanager
    def _locked(self) -> Iterator[None]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        lock = self.path.with_name(self.path.name + ".lock")
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def _read(self) -> list[dict[str, Any]]:
        if not self.path.is_file():
            return []
        entries = []
        for line in self.path.read_text(encoding="utf-8").splitlines():
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:
                continue  # a torn line from a crash mid-write; its registration is lost
            if isinstance(entry, dict) and "payload" in entry and "arena" in entry:
                entries.append(entry)
        return entries

    def _write(self, entries: list[dict[str, Any]]) -> None:
        if not entries:
            self.path.unlink(missing_ok=True)
            return
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text("".join(json.dumps(e) + "\n" for e in entries), encoding="utf-8")
        os.replace(tmp, self.path)

    def add(self, arena: str, payload: dict[str, Any]) -> None:
        """Keep a registration for later delivery to ``arena``."""
        entry = {"arena": arena, "payload": payload, "kept_at": datetime.now(UTC).isoformat()}
        with self._locked():
            entries = self._read()
            if entry["payload"] not in [e["payload"] for e in entries]:
                entries.append(entry)
            self._write(entries)

    def pending(self) -> list[dict[str, Any]]:
        """The registrations still waiting."""
        with self._locked():
            return self._read()

    def deliver(
        self, target: str, send: Callable[[dict[str, Any]], Any]
    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
        """Try ``send(payload)`` for each registration waiting for ``target``, oldest first;
        entries for other arenas are left alone (only the caller of that arena holds its
        token, and no token is ever written here).

        An entry leaves the outbox when ``send`` returns, or raises an ``ArenaRefused`` that
        cannot pass later (a malformed registration: it is returned as dropped, with its
        ``error``). It stays on a refusal that may pass later (401, 403, 404, 409: returned as
        kept) and, with every later entry, when the arena is unreachable. Returns
        (delivered, dropped, kept).
        """
        from training.client import ArenaRefused, ArenaUnreachable

        delivered: list[dict[str, Any]] = []
        dropped: list[dict[str, Any]] = []
        kept: list[dict[str, Any]] = []
        with self._locked():
            entries = self._read()
            left = list(entries)
            for entry in entries:
                if entry["arena"] != target:
                    continue
                try:
                    send(entry["payload"])
                except ArenaUnreachable:
                    break
                except ArenaRefused as exc:
                    if exc.may_pass_later:
                        kept.append({**entry, "error": str(exc)})
                        continue
                    dropped.append({**entry, "error": str(exc)})
                else:
                    delivered.append(entry)
                left.remove(entry)
            self._write(left)
        return delivered, dropped, kept
