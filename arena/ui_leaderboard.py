"""The leaderboard tab of the Gradio UI: a board and rating system, a table, a plot, configs.

Rows come from :func:`arena.ratings.leaderboard`; this module only lays them out. Nothing is
read until the tab is opened, so a freshly loaded page names no checkpoint.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import gradio as gr
import pandas as pd
from sqlalchemy import select

from arena.db import Database
from arena.errors import UserError
from arena.matchmaking import strategy_in_force
from arena.models import Prompt
from arena.registry import describe_config, get_config
from arena.settings import Settings
from metrics.match_kinds import MATCH_KINDS
from metrics.rating_book import OVERALL

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = [
    "board_choices",
    "build_leaderboard_tab",
    "interval",
    "leaderboard_frame",
    "rating_figure",
]

BOARDS = (OVERALL, *MATCH_KINDS)
SYSTEMS = {"elo": "Elo", "trueskill": "TrueSkill", "bt": "Bradley-Terry"}
COLUMNS = ("Rank", "Checkpoint", "Training config", "Rating", "Interval", "Games", "Wins",
           "Draws", "Losses")


def board_choices(db: Database) -> list[str]:
    """The overall and per-kind boards, then one fixed-character board per character."""
    with db.session() as session:
        characters = session.scalars(
            select(Prompt.character)
            .where(Prompt.kind == "fixed", Prompt.character.is_not(None))
            .distinct()
            .order_by(Prompt.character)
        ).all()
    return [*BOARDS, *(f"fixed/{c}" for c in characters)]


def interval(row: dict[str, Any]) -> tuple[float, float, float] | None:
    """(centre, lower, upper) of a row's uncertainty, where its system has one.

    Bradley-Terry rows carry bootstrap bounds around the rating; a TrueSkill rating is the
    conservative mu - 3 sigma (Herbrich et al. 2006), so its interval is mu +/- 3 sigma.
    Elo has no interval.
    """
    if row.get("lower") is not None and row.get("upper") is not None:
        return float(row["rating"]), float(row["lower"]), float(row["upper"])
    if row.get("mu") is not None and row.get("sigma") is not None:
        mu, sigma = float(row["mu"]), float(row["sigma"])
        return mu, mu - 3 * sigma, mu + 3 * sigma
    return None


def leaderboard_frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """The table shown: rank, checkpoint, its training config, rating, interval and games."""
    table = []
    for row in rows:
        bounds = interval(row)
        table.append((
            int(row["rank"]),
            row["checkpoint"],
            row["config"],
            round(float(row["rating"]), 2),
            f"{bounds[1]:.2f} – {bounds[2]:.2f}" if bounds else "—",
            int(row["games"]),
            int(row["wins"]),
            int(row["draws"]),
            int(row["losses"]),
        ))
    return pd.DataFrame(table, columns=list(COLUMNS))


def rating_figure(rows: list[dict[str, Any]], system: str) -> Figure | None:
    """Each checkpoint's rating (or interval centre) with its interval, best on top."""
    if not rows:
        return None
    from matplotlib.figure import Figure  # pyplot-free: safe in the server's worker threads

    ordered = rows[::-1]
    names = [r["checkpoint"] for r in ordered]
    figure = Figure(figsize=(7.0, 0.45 * len(rows) + 1.2), layout="constrained")
    axes = figure.add_subplot()
    bounds = [interval(r) for r in ordered]
    if all(b is not None for b in bounds):
        centres = [b[0] for b in bounds if b]
        errors = [[b[0] - b[1] for b in bounds if b], [b[2] - b[0] for b in bounds if b]]
        axes.errorbar(centres, names, xerr=errors, fmt="o", capsize=4, color="#4c72b0")
        label = "TrueSkill μ ± 3σ" if system == "trueskill" else f"{SYSTEMS[system]} rating"
    else:
        axes.plot([float(r["rating"]) for r in ordered], names, "o", color="#4c72b0")
        label = f"{SYSTEMS.get(system, system)} rating"
    axes.set_xlabel(label)
    axes.grid(axis="x", alpha=0.3)
    return figure


def build_leaderboard_tab(db: Database, settings: Settings, tab: gr.Tab) -> None:
    """Board and system selectors, the table, the plot and the selected row's config."""
    with gr.Row():
        board = gr.Dropdown(choices=list(BOARDS), value="overall", label="Board", scale=2)
        system = gr.Radio(
            choices=[(label, key) for key, label in SYSTEMS.items()],
            value="elo",
            label="Rating system",
            scale=3,
        )
        refresh = gr.Button("Refresh", scale=1)
    status = gr.Markdown("")
    table = gr.Dataframe(
        headers=list(COLUMNS), interactive=False, label="Leaderboard", wrap=True,
        elem_id="leaderboard-table",
    )
    plot = gr.Plot(label="Ratings with intervals")
    gr.Markdown("Select a row to see the training config that produced the checkpoint.")
    gr.Markdown(strategy_in_force(), elem_id="leaderboard-matchmaking")
    config = gr.JSON(label="Training config", value=None, elem_id="leaderboard-config")

    def show(board_name: str, system_name: str) -> dict[Any, Any]:
        from arena.ratings import leaderboard

        choices = board_choices(db)
        try:
            with db.session() as session:
                rows = leaderboard(session, board_name, system_name, settings)
        except UserError as exc:
            return {board: gr.update(choices=choices), status: f"⚠️ {exc}",
                    table: leaderboard_frame([]), plot: None}
        games = sum(int(r["games"]) for r in rows)
        note = "No votes on this board yet." if not games else ""
        return {board: gr.update(choices=choices), status: note,
                table: leaderboard_frame(rows), plot: rating_figure(rows, system_name)}

    def show_config(frame: pd.DataFrame, event: gr.SelectData) -> Any:
        row = event.index[0] if isinstance(event.index, list | tuple) else event.index
        if frame is None or row is None or row >= len(frame):
            return gr.skip()
        with db.session() as session:
            try:
                return describe_config(get_config(session, str(frame.iloc[row]["Training config"])))
            except UserError as exc:
                return {"error": str(exc)}

    outputs = [board, status, table, plot]
    for trigger in (tab.select, board.change, system.change):
        trigger(show, inputs=[board, system], outputs=outputs, api_visibility="private")
    refresh.click(show, inputs=[board, system], outputs=outputs, api_name="leaderboard")
    table.select(show_config, inputs=[table], outputs=[config], api_visibility="private")
