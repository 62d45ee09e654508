"""A small real arena for UI and API tests, and a live server to put it behind.

``build_pool`` registers the four published Illustrious configs with one checkpoint each (a
real ``.safetensors`` file; it need not load), writes real PNGs that carry an A1111
``parameters`` text naming their checkpoint and its hash, and imports them through
:func:`arena.pool.import_records`: fixed-character prompts (two characters, two seeds shared
by every checkpoint), free prompts and a four-way prompt. ``PoolFixture.secrets`` lists every
string that would tell a voter which checkpoint made an image, for the anonymity checks.

``serve`` runs an ASGI app with uvicorn in a background thread on a free loopback port;
``Recorder`` wraps an app and keeps every response byte it sends, so a test can scan all that
reached a client (pages, JSON, server-sent events, images) for those secrets.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import uvicorn
from PIL import Image, ImageDraw

from arena.db import Database
from arena.pool import import_records
from arena.registry import add_checkpoint, add_config, get_checkpoint
from generation.parameters import ImageParameters, png_bytes
from training.presets import PRESET_NAMES, load_preset

CHARACTERS = ("hatsune_miku", "hakurei_reimu")
FIXED_PROMPTS = {
    "hatsune_miku": "1girl, hatsune miku, twintails, aqua hair, stage, masterpiece",
    "hakurei_reimu": "1girl, hakurei reimu, red bow, shrine, autumn leaves, masterpiece",
}
FREE_PROMPTS = (
    "a cat sleeping on a pile of books, warm light, watercolor",
    "city street at night, neon signs, rain reflections, wide shot",
)
FFA_PROMPTS = ("1boy, knight in silver armor, dragon in the background, dramatic lighting",)
FIXED_SEEDS = (1234, 98765)
OTHER_SEED = 42
SIZE = 64


@dataclass(frozen=True)
class PoolCheckpoint:
    """A registered checkpoint of the fixture and what identifies it."""

    name: str
    config: str
    sha256: str
    short_hash: str


@dataclass(frozen=True)
class PoolFixture:
    """What ``build_pool`` put in the arena."""

    checkpoints: tuple[PoolCheckpoint, ...]
    image_count: int

    @property
    def secrets(self) -> tuple[str, ...]:
        """Strings that name a checkpoint: none may reach a voter before the vote."""
        return tuple(
            s
            for c in self.checkpoints
            for s in (c.name, c.config, c.sha256, c.short_hash)
        )

    def names(self) -> set[str]:
        """The checkpoint names."""
        return {c.name for c in self.checkpoints}


def _picture(colour: tuple[int, int, int], mark: int) -> Image.Image:
    """A flat colour with a small stripe pattern, so every image has distinct pixels."""
    image = Image.new("RGB", (SIZE, SIZE), colour)
    draw = ImageDraw.Draw(image)
    for i in range(mark % 7 + 1):
        draw.rectangle((4 + 7 * i, 4, 8 + 7 * i, SIZE - 5), fill=(255 - colour[0], 90, 200))
    return image


def _register(db: Database, folder: Path) -> tuple[PoolCheckpoint, ...]:
    checkpoints = []
    with db.session() as session:
        for index, preset in enumerate(PRESET_NAMES):
            config = add_config(session, load_preset(preset)).name
            version = preset.removeprefix("illustrious-")
            path = folder / f"arena-fixture-{index}-{version}.safetensors"
            # A safetensors header with no tensors, then bytes unique to this checkpoint.
            path.write_bytes(b"\x02\x00\x00\x00\x00\x00\x00\x00{}" + bytes([index]) * 4096)
            registered = add_checkpoint(session, path, config)
            row = get_checkpoint(session, registered.name)
            checkpoints.append(PoolCheckpoint(row.name, config, row.sha256, row.short_hash))
    return tuple(checkpoints)


def build_pool(db: Database, home: Path, folder: Path) -> PoolFixture:
    """Register four checkpoints and import a pool of small PNGs for them into ``db``."""
    folder.mkdir(parents=True, exist_ok=True)
    checkpoints = _register(db, folder)
    jobs: list[tuple[str, str, str | None, int]] = [
        ("fixed", FIXED_PROMPTS[c], c, seed) for c in CHARACTERS for seed in FIXED_SEEDS
    ]
    jobs += [("free", p, None, OTHER_SEED) for p in FREE_PROMPTS]
    jobs += [("ffa", p, None, OTHER_SEED) for p in FFA_PROMPTS]
    records: list[dict[str, Any]] = []
    for c_index, checkpoint in enumerate(checkpoints):
        for j_index, (kind, prompt, character, seed) in enumerate(jobs):
            colour = (40 + 50 * c_index, 30 + 25 * j_index, 200 - 40 * c_index)
            params = ImageParameters(
                prompt=prompt, negative_prompt="lowres, bad anatomy", steps=28,
                sampler="Euler a", cfg=7.0, seed=seed, width=SIZE, height=SIZE,
                model_hash=checkpoint.short_hash, model_name=checkpoint.name,
            )
            path = folder / f"{checkpoint.name}-{j_index}.png"
            path.write_bytes(png_bytes(_picture(colour, j_index + c_index), params))
            record: dict[str, Any] = {"file": str(path), "checkpoint": checkpoint.name,
                                      "kind": kind, "seed": seed}
            if character:
                record["character"] = character
            records.append(record)
    report = import_records(db, records, home, progress=False)
    if report.skipped or len(report.imported) != len(records):
        raise RuntimeError(f"the fixture pool did not import cleanly: {report.as_dict()}")
    return PoolFixture(checkpoints, len(records))


class Recorder:
    """An ASGI wrapper that keeps every HTTP response body byte the wrapped app sends."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self._chunks: list[bytes] = []
        self._lock = threading.Lock()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def recording_send(message: Any) -> None:
            if message["type"] == "http.response.body":
                with self._lock:
                    self._chunks.append(message.get("body", b""))
            await send(message)

        await self.app(scope, receive, recording_send)

    def take(self) -> bytes:
        """Everything sent since the last call."""
        with self._lock:
            data, self._chunks = b"".join(self._chunks), []
        return data


def leaked(data: bytes | str, secrets: tuple[str, ...]) -> list[str]:
    """The secrets found in ``data`` (case-insensitive)."""
    text = (data if isinstance(data, bytes) else data.encode()).lower()
    return [s for s in secrets if s.lower().encode() in text]


@contextmanager
def serve_on(app: Any, sock: socket.socket) -> Iterator[str]:
    """Run ``app`` with uvicorn in a thread on ``sock`` (bound, not yet listening: until this
    starts, connections to it are refused); yield its base URL."""
    port = sock.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(app, log_level="warning", ws="none", timeout_graceful_shutdown=1)
    )
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the test server did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=15)
        sock.close()


@contextmanager
def serve(app: Any) -> Iterator[str]:
    """Run ``app`` with uvicorn on a free loopback port in a thread; yield its base URL."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    with serve_on(app, sock) as url:
        yield url
