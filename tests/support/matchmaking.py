"""Pool rows for matchmaking tests and the matchmaking benchmark, written straight to SQL.

Matchmaking reads only rows (prompts, images by checkpoint, matches, snapshots), so these
pools need no image files: every image gets unique made-up content hashes.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from sqlalchemy import insert

from arena.db import Database
from arena.models import Checkpoint, Image, Prompt, TrainingConfigRecord


def _digest(*parts: object) -> str:
    return hashlib.sha256(":".join(map(str, parts)).encode()).hexdigest()


def make_pool(
    db: Database,
    checkpoints: int,
    prompts: dict[str, int],
    seeds: Sequence[int] = (1,),
) -> list[int]:
    """Register ``checkpoints`` checkpoints and, for each kind, ``prompts[kind]`` prompts with
    one image per checkpoint and seed; returns the checkpoint ids."""
    with db.session() as session:
        config = TrainingConfigRecord(
            name="mm-config", content_hash=_digest("config"), base_model=None, data={}
        )
        session.add(config)
        session.flush()
        rows = [
            {"name": f"mm-{i:04d}", "path": f"/models/mm-{i:04d}.safetensors",
             "format": "safetensors", "sha256": _digest("ckpt", i), "short_hash": f"{i:010d}",
             "size_bytes": 1, "step": None, "config_id": config.id}
            for i in range(checkpoints)
        ]
        session.execute(insert(Checkpoint), rows)
        ids = sorted(c.id for c in session.query(Checkpoint).all())
        prompt_rows = [
            {"text": f"{kind} prompt {j}", "text_hash": _digest("prompt", kind, j), "kind": kind,
             "character": f"char{j}" if kind == "fixed" else None, "source": "bank",
             "negative_prompt": ""}
            for kind, count in prompts.items() for j in range(count)
        ]
        session.execute(insert(Prompt), prompt_rows)
        prompt_ids = sorted(p.id for p in session.query(Prompt).all())
        images = [
            {"sha256": _digest("img", p, c, s), "served_sha256": _digest("served", p, c, s),
             "checkpoint_id": c, "prompt_id": p, "seed": s, "width": 64, "height": 64,
             "parameters": "", "hidden": False}
            for p in prompt_ids for c in ids for s in seeds
        ]
        for start in range(0, len(images), 5000):
            session.execute(insert(Image), images[start:start + 5000])
    return ids
