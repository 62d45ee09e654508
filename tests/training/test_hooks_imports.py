"""The hooks import and work without torch, transformers or lightning installed."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

BLOCKED = ("torch", "transformers", "lightning", "pytorch_lightning", "diffusers",
           "onnxruntime", "open_clip")

PROBE = """
import importlib.abc, json, sys

class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ImportError(f"{name} is not installed (blocked by the test)")
        return None

sys.meta_path.insert(0, Block())
from training import hooks, watch, client, outbox
answer = hooks.register_checkpoint(
    CKPT, "my-run", step=5, arena="http://127.0.0.1:9", outbox=OUTBOX)
try:
    hooks.ArenaTrainerCallback
    callback = "built"
except ImportError as exc:
    callback = str(exc)
print(json.dumps({"answer": answer, "callback": callback,
                  "loaded": sorted(m for m in BLOCKED if m in sys.modules)}))
"""


def test_hooks_import_and_keep_registrations_without_ml_stack(tmp_path: Path) -> None:
    ckpt = tmp_path / "step5.safetensors"
    ckpt.write_bytes(b"\x02\x00\x00\x00\x00\x00\x00\x00{}")
    box = tmp_path / "outbox.jsonl"
    code = (f"BLOCKED = {BLOCKED!r}\nCKPT = {str(ckpt)!r}\nOUTBOX = {str(box)!r}\n" + PROBE)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=120)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["answer"] is None  # port 9 (discard) refuses: kept, not raised
    assert result["loaded"] == []
    assert "transformers is not installed" in result["callback"]
    warned = [line for line in out.stderr.splitlines() if "arena unreachable" in line]
    assert len(warned) == 1 and "kept" in warned[0] and str(box) in warned[0]
    kept = [json.loads(line) for line in box.read_text().splitlines()]
    assert [(k["arena"], k["payload"]["path"], k["payload"]["step"]) for k in kept] == [
        ("http://127.0.0.1:9", str(ckpt), 5)
    ]
