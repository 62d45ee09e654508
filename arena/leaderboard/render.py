"""One leaderboard view rendered as plain data: what the tab shows, computed in the leaderboard
worker process (:mod:`arena.leaderboard.worker`) and sent to the server as is.

No Gradio here: the worker imports only what a render needs.
"""

from __future__ import annotations

import json
import os
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from arena.csv_cells import inert_frame
from arena.db import Database
from arena.leaderboard.figures import agreement_frame, all_figures, knob_frame, position_frame
from arena.leaderboard.view import BoardView, board_choices, load_view, table_frame
from arena.settings import Settings
from metrics.pairing import STRATEGY_NOTES
from metrics.rating_systems import SYSTEMS

__all__ = ["RENDER_SECONDS", "Rendered", "render", "status_text"]


def status_text(view: BoardView) -> str:
    """The line above the table: what is shown, how matches are chosen, and any warning."""
    games = sum(r["games"] for r in view.rows)
    lines = [
        f"**{view.label}** · every row covers this board's votes up to #{view.covers} · "
        f"matchmaking: {view.strategy} "
        f"({STRATEGY_NOTES.get(view.strategy, 'see metrics/pairing.py')})",
        SYSTEMS[view.system].note,
    ]
    if not view.log.votes:
        lines.append("No votes on this board yet.")
    elif not games and not view.notices:
        lines.append("No rated games on this board yet.")
    lines += [f"⚠️ {notice}" for notice in view.notices]
    return "\n\n".join(lines)


@dataclass(frozen=True)
class Rendered:
    """One view, rendered (plain data, sent from the leaderboard worker to the server): the
    status line, the table and its CSV file, every figure as the JSON Gradio sends, the
    small tables, the board choices, and when."""

    status: str
    table: pd.DataFrame
    csv: str
    plots: dict[str, str]
    knobs: pd.DataFrame
    agreement: pd.DataFrame
    position: pd.DataFrame
    boards: list[str]
    rendered_at: float


# Rendered views are shared for up to RENDER_SECONDS: however many people keep the tab open,
# each view is computed at most once a second. The status line names the newest vote each
# view includes.
RENDER_SECONDS = 1.0
_RENDERED: dict[tuple[Any, ...], Rendered] = {}
_RENDERED_SIZE = 64
_GUARD = threading.Lock()


def render(db: Database, settings: Settings, board: str, system: str,
           knob: str = "checkpoint_step", max_age: float = RENDER_SECONDS) -> Rendered:
    """The view of ``board`` in ``system`` computed here (read in a read-only session),
    reusing a render of the same view made less than ``max_age`` seconds ago. The server
    calls it through its leaderboard worker (:func:`view`)."""
    key = (db.url, board, system, knob)
    with _GUARD:
        cached = _RENDERED.get(key)
    if cached is not None and time.monotonic() - cached.rendered_at < max_age:
        return cached
    with db.session(readonly=True) as session:
        shown = load_view(session, board, system, settings)
        boards = board_choices(session)
    table = table_frame(shown)
    # Serialised once per render: a shared render costs a viewer no plotly work at all.
    plots = {key: json.dumps(figure) for key, figure in all_figures(shown, knob).items()}
    rendered = Rendered(status_text(shown), table, _csv(table, shown), plots, knob_frame(shown),
                        agreement_frame(shown), position_frame(shown), boards,
                        time.monotonic())
    with _GUARD:
        _RENDERED.pop(key, None)
        _RENDERED[key] = rendered
        while len(_RENDERED) > _RENDERED_SIZE:
            _RENDERED.pop(next(iter(_RENDERED)))
    return rendered


_CSV_FOLDER: list[Path] = []


def _csv(frame: pd.DataFrame, shown: BoardView) -> str:
    """The table as a CSV file, one per view in this process's folder, replaced atomically
    by the next render (Gradio copies it when it sends the view)."""
    with _GUARD:
        if not _CSV_FOLDER:
            _CSV_FOLDER.append(Path(tempfile.mkdtemp(prefix="arena-board-")))
    path = _CSV_FOLDER[0] / f"leaderboard-{shown.board.replace('/', '_')}-{shown.system}.csv"
    partial = path.with_name(f"{path.name}.{threading.get_ident()}.part")
    inert_frame(frame).to_csv(partial, index=False)
    os.replace(partial, path)
    return str(path)
