"""`arena demo`: a complete arena from nothing, offline — configs, checkpoints, pool.

The four published Illustrious configs are registered, each with one demo checkpoint: a tiny
SDXL model with its own random weights (clearly named ``demo-...``), written as a single
``.safetensors`` file and loaded through the same ``from_single_file`` path as a user's
checkpoint. The pool is rendered by the real generation path (64x64, three steps) and
imported like any other pool. Rerunning the demo reuses everything already there.

Simulated voters (:mod:`arena.demo.voters`) then vote through the real match and vote
path until the demo holds the number of votes asked for, so a newcomer's first leaderboard
and figures are populated, with the published configs' order as the hidden truth.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select

from arena.db import Database
from arena.errors import UserError
from arena.migrate import upgrade
from arena.registry import add_checkpoint, add_config
from arena.settings import Settings
from training.presets import PRESET_NAMES, load_preset

DEFAULT_DEMO_HOME = Path("./arena-demo")
DEMO_SEEDS = (0, 1)
DEFAULT_DEMO_VOTES = 300
@dataclass(frozen=True)
class DemoSummary:
    """What the demo prepared."""

    home: Path
    database_url: str
    checkpoints: tuple[str, ...]
    images: int
    imported: int
    votes_cast: int = 0
    votes_total: int = 0


def demo_settings(home: Path | None = None) -> Settings:
    """Settings of the demo arena: ``home`` or ARENA_HOME or ./arena-demo, SQLite inside it."""
    if home is None:
        home = Path(os.environ["ARENA_HOME"]) if os.environ.get("ARENA_HOME") else DEFAULT_DEMO_HOME
    home = home.expanduser().resolve()
    return Settings(home=home, database_url=f"sqlite:///{home / 'arena.db'}")


def prepare_demo(settings: Settings, progress: bool = True,
                 votes: int = DEFAULT_DEMO_VOTES) -> DemoSummary:
    """Build (or refresh) the demo arena described by ``settings``, with at least ``votes``
    votes from simulated voters."""
    if votes < 0:
        raise UserError(f"--votes must be >= 0, got {votes}")
    try:
        from generation.demo import demo_prompt_set, render_demo_pool, write_demo_checkpoints
    except ImportError as exc:
        raise UserError(
            f"the demo renders its pool with torch and diffusers ({exc.name} is missing); "
            'install them with: pip install -e ".[generate]"'
        ) from None
    settings.home.mkdir(parents=True, exist_ok=True)
    upgrade(settings.url)
    db = Database(settings.url)
    try:
        presets = [load_preset(name) for name in PRESET_NAMES]
        names = [f"demo-{p.name}" for p in presets]  # DEMO_NAMES, in preset order
        checkpoints = write_demo_checkpoints(settings.home / "checkpoints", names)
        with db.session() as session:
            for preset, checkpoint in zip(presets, checkpoints, strict=True):
                add_config(session, preset)
                add_checkpoint(session, checkpoint.path, preset.name, name=checkpoint.name,
                               step=preset.steps)
        folder = settings.home / "demo-pool"
        reports = render_demo_pool(
            checkpoints, folder, demo_prompt_set(DEMO_SEEDS), progress=progress
        )
        rows = [row for report in reports for row in report.rows]
        from arena.pool import import_records

        imported = import_records(db, rows, settings, base=folder, progress=progress)
        if imported.skipped:
            first = imported.skipped[0]
            raise UserError(f"demo pool import skipped {first.file}: {first.reason}")
        cast, total = _top_up_votes(db, settings, votes, progress)
        return DemoSummary(
            home=settings.home,
            database_url=settings.url,
            checkpoints=tuple(names),
            images=len(rows),
            imported=len(imported.imported),
            votes_cast=cast,
            votes_total=total,
        )
    finally:
        db.dispose()


def _top_up_votes(db: Database, settings: Settings, votes: int,
                  progress: bool) -> tuple[int, int]:
    """Simulated votes until the demo holds ``votes``; returns (cast now, total)."""
    from sqlalchemy import func
    from tqdm import tqdm

    from arena.demo.voters import simulate_votes
    from arena.models import Vote

    with db.session(readonly=True) as session:
        existing = session.scalar(select(func.count(Vote.id))) or 0
    missing = max(0, votes - existing)
    if not missing:
        return 0, existing
    bar = tqdm(total=missing, desc="simulated voters", unit="vote",
               disable=None if progress else True)
    cast = simulate_votes(db, settings, missing, seed=existing, on_vote=bar.update)
    bar.close()
    return cast, existing + cast
