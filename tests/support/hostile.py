"""Runs the committed corpus of hostile inputs (hostile_inputs.jsonl) against a real arena.

Each corpus line names a target and the expected outcome:

- ``api``: an HTTP request to the app (method, path, JSON or raw body, headers, query) sent as
  a given voter (``voter``, ``forged``, ``none``); ``expect`` lists the allowed statuses. Every
  refusal must have the one error shape and change nothing stored.
- ``cli``: an ``arena`` command with files written for it (``{dir}`` in the arguments is their
  folder) and environment overrides; it must exit with ``expect_exit`` and one ``error:`` line
  on stderr, no traceback, and change nothing stored.

Placeholders (``$TOKEN``, ``$VOTED``, ``$OTHER_IMAGE``, ...) are filled from a small arena the
runner prepares; ``{"$repeat": [s, n]}`` and ``{"$nest": n}`` build huge values.
"""

from __future__ import annotations

import io
import json
import os
import struct
import zlib
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient
from PIL import Image as PILImage
from sqlalchemy import func, select, update
from typer.testing import CliRunner

from arena.db import Database
from arena.models import Base, Image, Match, utcnow
from arena.settings import Settings, get_settings
from arena.web.app import create_app

CORPUS = Path(__file__).with_name("hostile_inputs.jsonl")
ADMIN = "hostile-admin-token"


def load_corpus() -> list[dict[str, Any]]:
    """The corpus entries, in file order."""
    return [json.loads(line) for line in CORPUS.read_text().splitlines() if line.strip()]


@dataclass
class Arena:
    """A prepared arena: the app client, the placeholders' values, where files go."""

    db: Database
    home: Path
    scratch: Path
    client: TestClient
    values: dict[str, str] = field(default_factory=dict)
    headers: dict[str, dict[str, str]] = field(default_factory=dict)


def prepare(db: Database, home: Path, scratch: Path, checkpoint: str) -> Arena:
    """Matches in every state for a voter and another voter, for the placeholders."""
    settings = Settings(home=home, database_url=db.url, votes_per_minute=0, admin_token=ADMIN)
    client = TestClient(create_app(settings, db, ui=False), raise_server_exceptions=False)
    arena = Arena(db, home, scratch, client)

    def voter() -> dict[str, str]:
        return {"X-Voter-Id": client.post("/api/v1/voters").json()["voter_id"]}

    me, other = voter(), voter()
    nonce = me["X-Voter-Id"].partition(".")[0]
    arena.headers = {"voter": me, "forged": {"X-Voter-Id": f"{nonce}.{'B' * 43}"}, "none": {}}

    def match(mode: str, headers: dict[str, str]) -> dict[str, Any]:
        response = client.post("/api/v1/matches", json={"mode": mode}, headers=headers)
        if response.status_code != 200:
            raise RuntimeError(f"cannot prepare a {mode} match: {response.text}")
        return response.json()

    def name(m: dict[str, Any]) -> str:
        return m["images"][0]["url"].rsplit("/", 1)[1].removesuffix(".png")

    token, ffa, free = match("fixed", me), match("ffa", me), match("free", me)
    voted, skipped, expired = match("fixed", me), match("fixed", me), match("fixed", me)
    foreign = match("fixed", other)
    client.post("/api/v1/votes", json={"token": voted["token"], "winner": 0}, headers=me)
    client.post("/api/v1/skips", json={"token": skipped["token"]}, headers=me)
    with db.session() as s:
        s.execute(update(Match).where(Match.token == expired["token"])
                  .values(expires_at=utcnow() - timedelta(seconds=1)))
        served = s.scalars(select(Image.served_sha256)).first()
    files = scratch / "prepared"
    files.mkdir(parents=True, exist_ok=True)
    good = files / "fresh.safetensors"
    good.write_bytes(b"\x02\x00\x00\x00\x00\x00\x00\x00{}" + os.urandom(64))
    bad = files / "model.ckpt"
    bad.write_bytes(b"\x80\x04\x95" + os.urandom(64))
    arena.values = {
        "$TOKEN": token["token"], "$FFA": ffa["token"], "$FREE": free["token"],
        "$VOTED": voted["token"], "$SKIPPED": skipped["token"], "$EXPIRED": expired["token"],
        "$OTHER": foreign["token"], "$IMAGE_UPPER": name(token).upper(), "$IMAGE": name(token),
        "$OTHER_IMAGE": name(foreign), "$EXPIRED_IMAGE": name(expired),
        "$SERVED_HASH": served or "", "$ADMIN": ADMIN, "$CHECKPOINT": checkpoint,
        "$CHECKPOINT_PATH": str(good), "$NOT_SAFETENSORS": str(bad),
    }
    return arena


def _expand(value: Any, arena: Arena) -> Any:
    if isinstance(value, dict):
        if "$repeat" in value:
            text, count = value["$repeat"]
            return text * count
        if "$nest" in value:
            return "[" * value["$nest"] + "]" * value["$nest"]
        return {k: _expand(v, arena) for k, v in value.items()}
    if isinstance(value, list):
        return [_expand(v, arena) for v in value]
    if isinstance(value, str):
        for key in sorted(arena.values, key=len, reverse=True):
            value = value.replace(key, arena.values[key])
    return value


def fingerprint(db: Database, home: Path) -> tuple[dict[str, int], frozenset[str]]:
    """Rows per table and every file under ARENA_HOME: what "nothing stored" compares."""
    with db.session() as s:
        rows = {
            name: s.scalar(select(func.count()).select_from(table)) or 0
            for name, table in Base.metadata.tables.items()
        }
    files = frozenset(str(p.relative_to(home)) for p in home.rglob("*") if p.is_file())
    return rows, files


# -- files the CLI entries are given ---------------------------------------------------------

def _png(width: int, height: int) -> bytes:
    buffer = io.BytesIO()
    PILImage.new("RGB", (width, height), (200, 40, 90)).save(buffer, format="PNG")
    return buffer.getvalue()


def _chunk(kind: bytes, data: bytes) -> bytes:
    crc = zlib.crc32(kind + data) & 0xFFFFFFFF
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)


def _bomb() -> bytes:
    """A valid PNG header claiming 30000 x 30000 pixels, with a tiny compressed body."""
    header = struct.pack(">IIBBBBB", 30000, 30000, 8, 0, 0, 0, 0)
    body = zlib.compress(b"\x00" * (30001 * 64), 9)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", body) + _chunk(
        b"IEND", b"")


def _onnx(input_shape: list[Any], features: int, metrics: bool = False) -> bytes:
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    if metrics:
        graph = helper.make_graph(
            [helper.make_node("Transpose", ["input"], ["t"], perm=[1, 0]),
             helper.make_node("MatMul", ["input", "t"], ["m"]),
             helper.make_node("Sigmoid", ["m"], ["output"])],
            "metrics",
            [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 768])],
            [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["N", "N"])],
        )
    else:
        weight = numpy_helper.from_array(np.ones((3, features), dtype=np.float32), "w")
        graph = helper.make_graph(
            [helper.make_node("GlobalAveragePool", ["input"], ["p"]),
             helper.make_node("Flatten", ["p"], ["f"]),
             helper.make_node("MatMul", ["f", "w"], ["output"])],
            "feat",
            [helper.make_tensor_value_info("input", TensorProto.FLOAT, input_shape)],
            [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["N", features])],
            [weight],
        )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model.SerializeToString()


def _file_bytes(spec: dict[str, Any], arena: Arena) -> bytes:
    if "text" in spec:
        return spec["text"].encode()
    if "hex" in spec:
        return bytes.fromhex(spec["hex"])
    if "jsonl" in spec:
        return "".join(json.dumps(_expand(row, arena)) + "\n" for row in spec["jsonl"]).encode()
    make = spec["make"]
    if make == "png_ok":
        return _png(16, 16)
    if make == "png_truncated":
        return _png(64, 64)[:-40]
    if make == "png_bad_crc":
        data = bytearray(_png(16, 16))
        data[40] ^= 0xFF
        return bytes(data)
    if make == "png_bomb":
        return _bomb()
    if make == "jpeg":
        buffer = io.BytesIO()
        PILImage.new("RGB", (16, 16)).save(buffer, format="JPEG")
        return buffer.getvalue()
    shapes = {
        "onnx_feat": (["N", 3, 384, 384], 768, False),
        "onnx_wrong_input": (["N", 3, 224, 224], 768, False),
        "onnx_wrong_output": (["N", 3, 384, 384], 512, False),
        "onnx_metrics": ([], 0, True),
    }
    shape, features, metrics = shapes[make]
    return _onnx(shape, features, metrics)


# -- running entries ---------------------------------------------------------------------------

def _run_api(entry: dict[str, Any], arena: Arena) -> str | None:
    headers = {**arena.headers[entry.get("as", "voter")],
               **_expand(entry.get("headers", {}), arena)}
    kwargs: dict[str, Any] = {"headers": headers}
    if "json" in entry:
        kwargs["json"] = _expand(entry["json"], arena)
    if "content" in entry:
        kwargs["content"] = _expand(entry["content"], arena).encode()
        kwargs["headers"] = {**headers, "Content-Type": "application/json"}
    if "params" in entry:
        kwargs["params"] = _expand(entry["params"], arena)
    response = arena.client.request(entry["method"], _expand(entry["path"], arena), **kwargs)
    if response.status_code not in entry["expect"]:
        return f"status {response.status_code}, expected {entry['expect']}: {response.text[:200]}"
    if response.status_code >= 400:
        body = response.json()
        if not isinstance(body.get("error"), str) or "\n" in body["error"] or (
            set(body) - {"error", "detail"}
        ):
            return f"not the one error shape: {response.text[:200]}"
    return None


def _run_cli(entry: dict[str, Any], arena: Arena) -> str | None:
    from arena.cli.main import app

    folder = arena.scratch / entry["id"]
    folder.mkdir(parents=True, exist_ok=True)
    for name, spec in entry.get("files", {}).items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(_file_bytes(spec, arena))
    args = [a.replace("{dir}", str(folder)) for a in entry["args"]]
    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(app, args, env=entry.get("env"))
    finally:
        get_settings.cache_clear()
    errors = [line for line in result.stderr.splitlines() if line.strip()]
    if result.exit_code != entry["expect_exit"]:
        return f"exit {result.exit_code}, expected {entry['expect_exit']}: {result.output[-300:]}"
    if not isinstance(result.exception, SystemExit | None) or "Traceback" in result.output:
        return f"traceback: {result.exception!r}"
    if len(errors) != 1 or not errors[0].startswith("error: "):
        return f"expected one 'error:' line on stderr, got {errors!r}"
    return None


def run_entry(entry: dict[str, Any], arena: Arena) -> str | None:
    """None when the entry met its expected outcome and changed nothing stored (for refusals);
    else what went wrong."""
    before = fingerprint(arena.db, arena.home)
    problem = (_run_api if entry["target"] == "api" else _run_cli)(entry, arena)
    if problem is not None:
        return problem
    refused = entry["target"] == "cli" or min(entry["expect"]) >= 400
    if refused and fingerprint(arena.db, arena.home) != before:
        after = fingerprint(arena.db, arena.home)
        changed = {k for k in before[0] if before[0][k] != after[0][k]} | set(
            before[1] ^ after[1])
        return f"a refusal changed what is stored: {sorted(changed)}"
    return None
