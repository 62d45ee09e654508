"""The leaderboard tab of the Gradio UI: board and system selectors, the table (with its CSV
download), the plotly figures and the tables of what tracks the rating.

Everything shown comes from one :class:`arena.leaderboard.view.BoardView`, read in a read-only
session, so opening the tab never waits for a vote's write lock. Views are computed in the
server's leaderboard worker process (:mod:`arena.leaderboard.worker`), never in the
interpreter that records votes; it starts each board from its stored aggregate and reads
only the votes after it. A render is shared for up to ``RENDER_SECONDS`` and views are paced
to ``VIEWS_PER_SECOND``. Nothing is sent to a page until its tab is opened, so a freshly
loaded page names no checkpoint.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import gradio as gr
import pandas as pd
from gradio.components.plot import PlotData

from arena.db import Database
from arena.errors import InputError
from arena.leaderboard.figures import FIGURES
from arena.leaderboard.render import RENDER_SECONDS, Rendered, status_text
from arena.leaderboard.view import KNOBS, TABLE_COLUMNS, board_choices
from arena.leaderboard.worker import worker_for
from arena.registry import describe_config, get_config
from arena.settings import Settings
from metrics.boards import OVERALL
from metrics.rating_systems import DEFAULT_SYSTEM, SYSTEMS

__all__ = [
    "VIEWS_PER_SECOND",
    "build_leaderboard_tab",
    "serve_view",
    "status_text",
    "view",
]


def view(db: Database, settings: Settings, board: str, system: str,
         knob: str = "checkpoint_step", max_age: float = RENDER_SECONDS) -> Rendered:
    """:func:`arena.leaderboard.render.render` in the leaderboard worker process
    (:mod:`arena.leaderboard.worker`): this process only waits for it."""
    return worker_for(db, settings).view(board, system, knob, max_age)


# Views are served one at a time, at most VIEWS_PER_SECOND a second per process, so a client
# refreshing in a loop cannot keep the leaderboard worker (and its CPU) busy.
VIEWS_PER_SECOND = 10.0
_PACE = threading.Lock()
_last_view = [0.0]


def serve_view(db: Database, settings: Settings, board: str, system: str,
               knob: str = "checkpoint_step") -> Rendered:
    """:func:`view` as the tab serves it: paced to ``VIEWS_PER_SECOND``."""
    with _PACE:
        wait = _last_view[0] + 1.0 / VIEWS_PER_SECOND - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        _last_view[0] = time.monotonic()
        return view(db, settings, board, system, knob)


def build_leaderboard_tab(db: Database, settings: Settings, tab: gr.Tab) -> None:
    """Selectors, status, table, CSV download, figures, knob and agreement tables, config."""
    worker_for(db, settings).start_background()
    with gr.Row():
        board = gr.Dropdown(choices=[OVERALL], value=OVERALL, label="Board", scale=2,
                            elem_id="leaderboard-board")
        system = gr.Radio(choices=[(s.label, key) for key, s in SYSTEMS.items()],
                          value=DEFAULT_SYSTEM, label="Rating system", scale=3,
                          elem_id="leaderboard-system")
        refresh = gr.Button("Refresh", scale=1)
    status = gr.Markdown("", elem_id="leaderboard-status")
    # Checkpoint names often share a long prefix (run name + version): give the name column
    # room so that rows stay tell-apart before the ellipsis.
    table = gr.Dataframe(headers=list(TABLE_COLUMNS), interactive=False, label="Leaderboard",
                         wrap=False, elem_id="leaderboard-table",
                         column_widths=[60, 240, 170])
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
        try:
            shown = serve_view(db, settings, board_name, system_name, knob_name)
        except InputError as exc:
            with db.session(readonly=True) as session:
                choices = board_choices(session)
            return {board: gr.update(choices=choices), status: f"⚠️ {exc}",
                    table: pd.DataFrame(columns=list(TABLE_COLUMNS)), download: None}
        return {
            board: gr.update(choices=shown.boards),
            status: shown.status,
            table: shown.table,
            download: shown.csv,
            knobs: shown.knobs,
            agreement: shown.agreement,
            position: shown.position,
            **{plots[key]: PlotData(type="plotly", plot=plot)
               for key, plot in shown.plots.items()},
        }

    def show_config(frame: pd.DataFrame, event: gr.SelectData) -> Any:
        row = event.index[0] if isinstance(event.index, list | tuple) else event.index
        if frame is None or row is None or row >= len(frame):
            return gr.skip()
        with db.session(readonly=True) as session:
            try:
                return describe_config(get_config(session, str(frame.iloc[row]["Training config"])))
            except InputError as exc:
                return {"error": str(exc)}

    outputs = [board, status, table, download, knobs, agreement, position, *plots.values()]
    inputs = [board, system, knob]
    for trigger in (tab.select, board.change, system.change, knob.change):
        trigger(show, inputs=inputs, outputs=outputs, api_visibility="private")
    refresh.click(show, inputs=inputs, outputs=outputs, api_name="leaderboard")
    table.select(show_config, inputs=[table], outputs=[config], api_visibility="private")
