"""The leaderboard tab of the Gradio UI: board and system selectors, the table (with its CSV
download), the plotly figures and the tables of what tracks the rating.

Everything shown comes from one :class:`arena.board_view.BoardView`, read in a read-only
session, so opening the tab never waits for a vote's write lock. The server reads every
board's log once in the background at start (:func:`warm_up`); afterwards a view reads only
the votes cast since. A render is shared for up to ``RENDER_SECONDS`` and views are paced to
``VIEWS_PER_SECOND``, so viewers cannot crowd out the vote path in the same process. Nothing
is sent to a page until its tab is opened, so a freshly loaded page names no checkpoint.
"""

from __future__ import annotations

import json
import logging
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr
import pandas as pd
from gradio.components.plot import PlotData

from arena.board_view import (
    KNOBS,
    SYSTEMS,
    TABLE_COLUMNS,
    BoardView,
    board_choices,
    load_view,
    table_frame,
)
from arena.db import Database
from arena.demo import DEMO_NAMES, DEMO_NOTE
from arena.errors import UserError
from arena.registry import describe_config, get_config
from arena.settings import Settings
from arena.web.figures import (
    FIGURES,
    agreement_frame,
    all_figures,
    knob_frame,
    position_frame,
)
from metrics.pairing import STRATEGY_NOTES
from metrics.rating_book import OVERALL

__all__ = [
    "RENDER_SECONDS",
    "VIEWS_PER_SECOND",
    "Rendered",
    "build_leaderboard_tab",
    "render",
    "serve_view",
    "status_text",
]

def status_text(view: BoardView) -> str:
    """The line above the table: what is shown, how matches are chosen, and any warning."""
    games = sum(r["games"] for r in view.rows)
    lines = [
        f"**{view.label}** · {view.log.votes} votes on this board (up to vote "
        f"#{view.log.last_vote_id}) · matchmaking: {view.strategy} "
        f"({STRATEGY_NOTES.get(view.strategy, 'see metrics/pairing.py')})"
    ]
    if not view.log.votes:
        lines.append("No votes on this board yet.")
    elif not games and not view.notices:
        lines.append("No rated games on this board yet.")
    lines += [f"⚠️ {notice}" for notice in view.notices]
    if DEMO_NAMES & {info.name for info in view.checkpoints.values()}:
        lines.append(DEMO_NOTE)
    return "\n\n".join(lines)


@dataclass(frozen=True)
class Rendered:
    """One view, rendered: the table, the figures and the small tables, and when."""

    view: BoardView
    status: str
    table: pd.DataFrame
    plots: dict[str, PlotData]
    knobs: pd.DataFrame
    agreement: pd.DataFrame
    position: pd.DataFrame
    rendered_at: float


# Rendered views are shared for up to RENDER_SECONDS: however many people keep the tab open,
# each view is computed at most once a second, so the dashboard never crowds out votes. The
# status line names the newest vote each view includes.
RENDER_SECONDS = 1.0
_RENDERED: dict[tuple[Any, ...], Rendered] = {}
_RENDERED_SIZE = 64
_GUARD = threading.Lock()


def render(db: Database, settings: Settings, board: str, system: str,
           knob: str = "checkpoint_step", max_age: float = RENDER_SECONDS) -> Rendered:
    """The view of ``board`` in ``system`` (read in a read-only session), reusing a render of
    the same view made less than ``max_age`` seconds ago."""
    key = (db.url, board, system, knob)
    with _GUARD:
        cached = _RENDERED.get(key)
    if cached is not None and time.monotonic() - cached.rendered_at < max_age:
        return cached
    with db.session(readonly=True) as session:
        view = load_view(session, board, system, settings)
    # Serialised once per render: a shared render costs a viewer no plotly work at all.
    plots = {key: PlotData(type="plotly", plot=json.dumps(figure))
             for key, figure in all_figures(view, knob).items()}
    rendered = Rendered(view, status_text(view), table_frame(view), plots, knob_frame(view),
                        agreement_frame(view), position_frame(view), time.monotonic())
    with _GUARD:
        _RENDERED.pop(key, None)
        _RENDERED[key] = rendered
        while len(_RENDERED) > _RENDERED_SIZE:
            _RENDERED.pop(next(iter(_RENDERED)))
    return rendered


# Views are served one at a time, at most VIEWS_PER_SECOND a second per process: the tab
# shares the process with the vote path, and a client refreshing in a loop must not take the
# interpreter from the votes (a waiting view sleeps, which frees it).
VIEWS_PER_SECOND = 10.0
_PACE = threading.Lock()
_last_view = [0.0]


def serve_view(db: Database, settings: Settings, board: str, system: str,
               knob: str = "checkpoint_step") -> Rendered:
    """:func:`render` as the tab serves it: paced to ``VIEWS_PER_SECOND``."""
    with _PACE:
        wait = _last_view[0] + 1.0 / VIEWS_PER_SECOND - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        _last_view[0] = time.monotonic()
        return render(db, settings, board, system, knob)


def warm_up(db: Database, settings: Settings) -> None:
    """Read every board's log once and fit its Bradley-Terry board, so that the
    first view after a server start does not replay the whole log; afterwards each view
    reads only the votes cast since. Runs in a background thread; a failure only means the
    first view does the reading itself."""
    from arena.board_log import board_log
    from arena.ratings import bt_rows, rating_config

    try:
        with db.session(readonly=True) as session:
            for board_name in board_choices(session):
                board_log(session, board_name, rating_config(settings))
                bt_rows(session, board_name, settings)
    except Exception:
        logging.getLogger(__name__).debug("leaderboard warm-up failed", exc_info=True)


def _csv(frame: pd.DataFrame, view: BoardView) -> str:
    folder = Path(tempfile.mkdtemp(prefix="arena-board-"))
    name = f"leaderboard-{view.board.replace('/', '_')}-{view.system}.csv"
    path = folder / name
    frame.to_csv(path, index=False)
    return str(path)


def build_leaderboard_tab(db: Database, settings: Settings, tab: gr.Tab) -> None:
    """Selectors, status, table, CSV download, figures, knob and agreement tables, config."""
    threading.Thread(target=warm_up, args=(db, settings), name="leaderboard-warm-up",
                     daemon=True).start()
    with gr.Row():
        board = gr.Dropdown(choices=[OVERALL], value=OVERALL, label="Board", scale=2,
                            elem_id="leaderboard-board")
        system = gr.Radio(choices=[(label, key) for key, label in SYSTEMS.items()],
                          value="elo", label="Rating system", scale=3,
                          elem_id="leaderboard-system")
        refresh = gr.Button("Refresh", scale=1)
    status = gr.Markdown("", elem_id="leaderboard-status")
    table = gr.Dataframe(headers=list(TABLE_COLUMNS), interactive=False, label="Leaderboard",
                         wrap=True, elem_id="leaderboard-table")
    download = gr.DownloadButton("Download CSV", value=None, elem_id="leaderboard-csv")
    gr.Markdown("Select a row to see the training config that produced the checkpoint. "
                "Ranks that share a number have overlapping 95% intervals.")
    config = gr.JSON(label="Training config", value=None, elem_id="leaderboard-config")
    plots = {}
    with gr.Row():
        plots["ratings"] = gr.Plot(label=FIGURES["ratings"], elem_id="figure-ratings")
        plots["trueskill"] = gr.Plot(label=FIGURES["trueskill"], elem_id="figure-trueskill")
    plots["elo_history"] = gr.Plot(label=FIGURES["elo_history"], elem_id="figure-elo_history")
    with gr.Row():
        plots["win_rate"] = gr.Plot(label=FIGURES["win_rate"], elem_id="figure-win_rate")
        plots["games"] = gr.Plot(label=FIGURES["games"], elem_id="figure-games")
    knob = gr.Dropdown(choices=[(label, key) for key, label in KNOBS.items()],
                       value="checkpoint_step", label="Training knob")
    with gr.Row():
        plots["knob"] = gr.Plot(label=FIGURES["knob"], elem_id="figure-knob")
        knobs = gr.Dataframe(interactive=False, label="Which knobs track the rating",
                             elem_id="leaderboard-knobs")
    with gr.Row():
        plots["characters"] = gr.Plot(label=FIGURES["characters"], elem_id="figure-characters")
        plots["ccip"] = gr.Plot(label=FIGURES["ccip"], elem_id="figure-ccip")
    agreement = gr.Dataframe(interactive=False, elem_id="leaderboard-agreement",
                             label="Does CCIP agree with the human fixed-character board?")
    with gr.Row():
        plots["position"] = gr.Plot(label=FIGURES["position"], elem_id="figure-position")
        position = gr.Dataframe(interactive=False, label="Position bias",
                                elem_id="leaderboard-position")

    def show(board_name: str, system_name: str, knob_name: str) -> dict[Any, Any]:
        with db.session(readonly=True) as session:
            choices = board_choices(session)
        try:
            shown = serve_view(db, settings, board_name, system_name, knob_name)
        except UserError as exc:
            return {board: gr.update(choices=choices), status: f"⚠️ {exc}",
                    table: pd.DataFrame(columns=list(TABLE_COLUMNS)), download: None}
        return {
            board: gr.update(choices=choices),
            status: shown.status,
            table: shown.table,
            download: _csv(shown.table, shown.view),
            knobs: shown.knobs,
            agreement: shown.agreement,
            position: shown.position,
            **{plots[key]: plot for key, plot in shown.plots.items()},
        }

    def show_config(frame: pd.DataFrame, event: gr.SelectData) -> Any:
        row = event.index[0] if isinstance(event.index, list | tuple) else event.index
        if frame is None or row is None or row >= len(frame):
            return gr.skip()
        with db.session(readonly=True) as session:
            try:
                return describe_config(get_config(session, str(frame.iloc[row]["Training config"])))
            except UserError as exc:
                return {"error": str(exc)}

    outputs = [board, status, table, download, knobs, agreement, position, *plots.values()]
    inputs = [board, system, knob]
    for trigger in (tab.select, board.change, system.change, knob.change):
        trigger(show, inputs=inputs, outputs=outputs, api_visibility="private")
    refresh.click(show, inputs=inputs, outputs=outputs, api_name="leaderboard")
    table.select(show_config, inputs=[table], outputs=[config], api_visibility="private")
