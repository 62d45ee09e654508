"""Reading a pool folder's manifest (``manifest.jsonl`` or ``manifest.csv``) into raw rows.

Rows come out as plain dicts, as written; what each field must hold is checked by
:mod:`arena.pool`, the one place that validates a pool record whatever its source.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from arena.errors import UserError
from generation.manifest import MANIFEST_NAME

__all__ = ["MANIFEST_NAMES", "Manifest", "ManifestRow", "read_manifest"]

MANIFEST_NAMES = (MANIFEST_NAME, "manifest.csv")


@dataclass(frozen=True)
class ManifestRow:
    """One row and where it came from (``manifest.csv line 3``), for messages."""

    where: str
    fields: dict[str, Any]


@dataclass
class Manifest:
    """The rows of a manifest file, and the lines that could not be read as rows."""

    path: Path
    rows: list[ManifestRow] = field(default_factory=list)
    unreadable: list[tuple[str, str]] = field(default_factory=list)


def _read_jsonl(path: Path, text: str, manifest: Manifest) -> None:
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path.name} line {number}"
        try:
            value = json.loads(line)
        except json.JSONDecodeError as exc:
            manifest.unreadable.append((where, f"not valid JSON: {exc.msg}"))
            continue
        if not isinstance(value, dict):
            manifest.unreadable.append((where, "expected a JSON object with the image's fields"))
            continue
        manifest.rows.append(ManifestRow(where, value))


def _read_csv(path: Path, text: str, manifest: Manifest) -> None:
    reader = csv.DictReader(text.splitlines(keepends=True), restkey="\0extra")
    if not reader.fieldnames:
        return
    if any(not (name or "").strip() for name in reader.fieldnames):
        raise UserError(f"{path}: the header row has an empty column name")
    for fields in reader:
        where = f"{path.name} line {reader.line_num}"
        if "\0extra" in fields:
            manifest.unreadable.append((where, "more values than the header has columns"))
            continue
        cleaned = {(key or "").strip(): value for key, value in fields.items()}
        manifest.rows.append(ManifestRow(where, cleaned))


def read_manifest(folder: Path) -> Manifest:
    """The manifest of a pool folder; a missing, doubled or unreadable manifest is a UserError."""
    if not folder.is_dir():
        raise UserError(f"pool folder {folder} does not exist or is not a folder")
    found = [folder / name for name in MANIFEST_NAMES if (folder / name).is_file()]
    if not found:
        raise UserError(f"{folder} has no manifest: expected {' or '.join(MANIFEST_NAMES)}")
    if len(found) > 1:
        raise UserError(f"{folder} has both {' and '.join(MANIFEST_NAMES)}; keep one")
    path = found[0]
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise UserError(f"{path} is not UTF-8 text: {exc.reason}") from exc
    manifest = Manifest(path)
    if path.suffix == ".jsonl":
        _read_jsonl(path, text, manifest)
    else:
        _read_csv(path, text, manifest)
    if not manifest.rows and not manifest.unreadable:
        raise UserError(f"{path} lists no images")
    return manifest
