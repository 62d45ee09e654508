"""The core paths (CLI, server) never import the heavy ML stacks."""

from __future__ import annotations

import subprocess
import sys

HEAVY = ("torch", "diffusers", "onnxruntime", "open_clip", "transformers")


def _imported_modules(code: str) -> set[str]:
    out = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", code],
        capture_output=True, text=True, check=True,
    )
    return {line.split("|")[-1].strip().split(".")[0] for line in out.stderr.splitlines()
            if line.startswith("import time:")}


def test_cli_import_pulls_no_ml_stack() -> None:
    modules = _imported_modules("import arena.cli.main")
    assert "arena" in modules  # the probe sees our own imports
    assert not modules & set(HEAVY), modules & set(HEAVY)


def test_help_runs_without_ml_stack() -> None:
    code = (
        "import sys; from arena.cli.main import app\n"
        "try:\n    app(['--help'])\nexcept SystemExit:\n    pass\n"
        f"bad = [m for m in {HEAVY!r} if m in sys.modules]\n"
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)


def test_serving_app_pulls_no_ml_stack(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """What `arena serve` builds (API + Gradio UI) imports none of the heavy stacks."""
    code = (
        "import sys\nfrom arena.web.app import create_app\nfrom arena.settings import Settings\n"
        f"create_app(Settings(home={str(tmp_path)!r}))\n"
        f"bad = [m for m in {HEAVY!r} if m in sys.modules]\n"
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)
