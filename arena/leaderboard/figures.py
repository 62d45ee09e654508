"""The dashboard's plotly figures and small tables, each built from a :class:`BoardView`.

Nothing here reads the database: the same figures go to the Gradio tab and to the
self-contained HTML report (:mod:`arena.leaderboard.report`).
"""

from __future__ import annotations

from typing import Any

import pandas as pd
import plotly.graph_objects as go

from arena.leaderboard.view import KNOBS, BoardView
from metrics.rating_systems import SYSTEMS

__all__ = [
    "FIGURES",
    "Figure",
    "agreement_frame",
    "all_figures",
    "ccip_figure",
    "character_figure",
    "elo_history_figure",
    "games_figure",
    "knob_figure",
    "knob_frame",
    "position_figure",
    "position_frame",
    "rating_figure",
    "to_plotly",
    "trueskill_figure",
    "win_rate_figure",
]

# Figure keys and titles, in the order the dashboard and the report show them.
FIGURES = {
    "ratings": "Ratings with 95% intervals",
    "elo_history": "Elo over time (dashed: time-weighted average)",
    "trueskill": "TrueSkill μ ± 3σ",
    "win_rate": "Pairwise win rate (row beats column)",
    "games": "Games between each pair",
    "ccip": "CCIP score per checkpoint and character",
    "characters": "Character-fidelity board: time-weighted Elo per character",
    "knob": "Rating against a training knob",
    "position": "Wins by shown position",
}
# A light template written out here: plotly's named templates are deep-copied into every
# figure, which (with plotly's validation) cost more than everything else in a view.
_TEMPLATE = {"layout": {
    "paper_bgcolor": "white", "plot_bgcolor": "white", "font": {"family": "sans-serif"},
    "xaxis": {"gridcolor": "#ebebeb", "zerolinecolor": "#d0d0d0", "automargin": True},
    "yaxis": {"gridcolor": "#ebebeb", "zerolinecolor": "#d0d0d0", "automargin": True},
    "colorway": ["#4c72b0", "#dd8452", "#55a868", "#c44e52", "#8172b3", "#937860",
                 "#da8bc3", "#8c8c8c", "#ccb974", "#64b5cd"],
}}
_MARGIN = {"l": 10, "r": 10, "t": 50, "b": 10}


Figure = dict[str, Any]


def _figure(data: list[dict[str, Any]], title: str, **layout: Any) -> Figure:
    """A plotly figure as its JSON-ready dict (``data`` and ``layout``): the tab sends it as
    is, and :func:`to_plotly` makes a ``plotly.graph_objects.Figure`` of it for HTML."""
    return {"data": data, "layout": {"title": {"text": title}, "template": _TEMPLATE,
                                     "margin": _MARGIN, **layout}}


def to_plotly(figure: Figure) -> go.Figure:
    """A plotly Figure object (without plotly's per-property validation: the dicts here are
    fixed by construction, and the tests render them in a browser)."""
    return go.Figure(figure, _validate=False)


def _empty(title: str, message: str) -> Figure:
    return _figure([], title, xaxis={"visible": False}, yaxis={"visible": False},
                   annotations=[{"text": message, "showarrow": False, "x": 0.5, "y": 0.5,
                                 "xref": "paper", "yref": "paper"}])


def _names(view: BoardView, ids: list[int]) -> list[str]:
    return [view.checkpoints[c].name for c in ids]


def rating_figure(view: BoardView) -> Figure:
    """Each checkpoint's rating, best on top, with its 95% interval where the system has one."""
    title = f"{FIGURES['ratings']} · {view.label}"
    if not view.rows:
        return _empty(title, "No ratings on this board yet.")
    rows = view.rows[::-1]
    trace: dict[str, Any] = {
        "type": "scatter", "mode": "markers", "marker": {"size": 10},
        "x": [r["rating"] for r in rows], "y": [r["checkpoint"] for r in rows],
        "name": SYSTEMS[view.system].label, "customdata": [r["config"] for r in rows],
        "hovertemplate": "%{y} (%{customdata}): %{x:.1f}<extra></extra>",
    }
    if all(r["lower"] is not None for r in rows):
        trace["error_x"] = {
            "type": "data", "symmetric": False,
            "array": [r["upper"] - r["rating"] for r in rows],
            "arrayminus": [r["rating"] - r["lower"] for r in rows],
        }
    axis = f"{SYSTEMS[view.system].label} rating"
    return _figure([trace], title, xaxis={"title": {"text": axis}},
                   height=160 + 40 * len(rows))


def elo_history_figure(view: BoardView) -> Figure:
    """Elo of each checkpoint after each (sampled) vote, with its time-weighted average."""
    title = f"{FIGURES['elo_history']} · {view.board}"
    history = view.log.elo_history()
    if not history:
        return _empty(title, "No votes on this board yet.")
    traces = []
    colours = _TEMPLATE["layout"]["colorway"]
    for n, c in enumerate(sorted({c for point in history for c in point.elo})):
        points = [p for p in history if c in p.elo]
        name = view.checkpoints[c].name
        colour = colours[n % len(colours)]
        x = [p.vote_id for p in points]
        traces.append({"type": "scatter", "mode": "lines", "x": x, "name": name,
                       "y": [p.elo[c] for p in points], "legendgroup": name,
                       "line": {"color": colour}})
        traces.append({"type": "scatter", "mode": "lines", "x": x,
                       "y": [p.time_weighted[c] for p in points], "legendgroup": name,
                       "name": f"{name} (time-weighted)", "showlegend": False,
                       "line": {"color": colour, "dash": "dash"}})
    return _figure(traces, title, xaxis={"title": {"text": "vote id"}},
                   yaxis={"title": {"text": "Elo"}})


def trueskill_figure(view: BoardView) -> Figure:
    """TrueSkill mu with mu +- 3 sigma bars; the left end is the conservative rating."""
    title = f"{FIGURES['trueskill']} · {view.board}"
    rows = [r for r in view.rows if r["mu"] is not None][::-1]
    if not rows:
        return _empty(title, "No TrueSkill ratings on this board.")
    trace = {"type": "scatter", "mode": "markers", "marker": {"size": 10}, "name": "μ ± 3σ",
             "x": [r["mu"] for r in rows], "y": [r["checkpoint"] for r in rows],
             "error_x": {"type": "data", "array": [3 * r["sigma"] for r in rows]}}
    return _figure([trace], title, xaxis={"title": {"text": "TrueSkill μ"}},
                   height=160 + 40 * len(rows))


def _pair_figure(view: BoardView, key: str) -> Figure:
    title = f"{FIGURES[key]} · {view.board}"
    ids, wins, games = view.log.pair_matrix()
    if not ids:
        return _empty(title, "No votes on this board yet.")
    names = _names(view, ids)
    trace: dict[str, Any] = {"type": "heatmap", "x": names, "y": names,
                             "texttemplate": "%{text}"}
    if key == "games":
        trace.update(z=[[float(g) for g in row] for row in games], colorscale="Blues",
                     text=[[str(g) if g else "" for g in row] for row in games])
    else:
        z = [[w / g if g else None for w, g in zip(wr, gr, strict=True)]
             for wr, gr in zip(wins, games, strict=True)]
        trace.update(z=z, colorscale="RdBu", zmin=0, zmax=1,
                     text=[["" if v is None else f"{v:.0%}" for v in row] for row in z])
    return _figure([trace], title, yaxis={"autorange": "reversed"})


def win_rate_figure(view: BoardView) -> Figure:
    """Share of games the row checkpoint won against the column one (draws half)."""
    return _pair_figure(view, "win_rate")


def games_figure(view: BoardView) -> Figure:
    """How many games each pair played."""
    return _pair_figure(view, "games")


def ccip_figure(view: BoardView) -> Figure:
    """Stored CCIP score per checkpoint (rows) and character (columns)."""
    title = FIGURES["ccip"]
    if not view.ccip:
        return _empty(title, "No CCIP scores yet (see `arena score ccip`).")
    ids = sorted({c for c, _ in view.ccip})
    characters = sorted({char for _, char in view.ccip})
    z = [[view.ccip.get((c, char)) for char in characters] for c in ids]
    trace = {"type": "heatmap", "z": z, "x": characters, "y": _names(view, ids), "zmin": 0,
             "zmax": 1, "colorscale": "Viridis", "texttemplate": "%{text}",
             "text": [["" if v is None else f"{v:.2f}" for v in row] for row in z]}
    return _figure([trace], title)


def character_figure(view: BoardView) -> Figure:
    """The report's Fixed-Characteristics board: time-weighted Elo per character."""
    title = FIGURES["characters"]
    if not view.character_board:
        return _empty(title, "No fixed-character votes yet.")
    ids = sorted({c for ratings in view.character_board.values() for c in ratings})
    characters = list(view.character_board)
    traces = [{"type": "bar", "x": characters, "name": view.checkpoints[c].name,
               "y": [view.character_board[ch].get(c) for ch in characters]} for c in ids]
    return _figure(traces, title, barmode="group",
                   yaxis={"title": {"text": "time-weighted Elo"}})


def knob_figure(view: BoardView, knob: str = "checkpoint_step") -> Figure:
    """The rating of each checkpoint against one training knob, labelled with its config."""
    label = KNOBS.get(knob, knob)
    title = f"{SYSTEMS[view.system].label} rating against {label.lower()} · {view.board}"
    points = [(view.checkpoints[r["checkpoint_id"]].knobs[knob], r)
              for r in view.rows if knob in view.checkpoints[r["checkpoint_id"]].knobs]
    if not points:
        return _empty(title, f"No rated checkpoint has a {label.lower()} in its config.")
    trace = {"type": "scatter", "mode": "markers+text", "marker": {"size": 11},
             "x": [x for x, _ in points], "y": [r["rating"] for _, r in points],
             "text": [r["config"] for _, r in points], "textposition": "top center",
             "customdata": [r["checkpoint"] for _, r in points],
             "hovertemplate": "%{customdata} (%{text}): %{y:.1f} at %{x}<extra></extra>"}
    log_axis = knob in ("dataset_size", "unet_lr", "text_encoder_lr", "steps",
                        "checkpoint_step") and all(x > 0 for x, _ in points)
    xaxis: dict[str, Any] = {"title": {"text": label}}
    if log_axis:
        xaxis["type"] = "log"
    return _figure([trace], title, xaxis=xaxis, yaxis={"title": {"text": "rating"}})


def position_figure(view: BoardView) -> Figure:
    """Share of wins by shown position per match kind, with 95% Wilson intervals."""
    title = f"{FIGURES['position']} · {view.board}"
    if not view.position:
        return _empty(title, "No decisive votes on this board yet.")
    traces = []
    for kind, bias in view.position.items():
        labels = ["A", "B"] if len(bias.wins) == 2 else [str(i + 1) for i in range(len(bias.wins))]
        traces.append({
            "type": "bar", "name": kind, "x": [f"{kind} {label}" for label in labels],
            "y": list(bias.shares),
            "error_y": {"type": "data", "symmetric": False,
                        "array": [hi - s for s, (_, hi) in zip(bias.shares, bias.intervals,
                                                                strict=True)],
                        "arrayminus": [s - lo for s, (lo, _) in zip(bias.shares,
                                                                     bias.intervals,
                                                                     strict=True)]},
        })
    return _figure(traces, title, yaxis={"title": {"text": "share of wins"}, "range": [0, 1]})


def _interval(lower: float | None, upper: float | None) -> str:
    return "—" if lower is None or upper is None else f"{lower:+.2f} – {upper:+.2f}"


def knob_frame(view: BoardView) -> pd.DataFrame:
    """How strongly each knob tracks the rating across checkpoints."""
    return pd.DataFrame(
        [(k.label, None if k.correlation.rho is None else round(k.correlation.rho, 3),
          _interval(k.correlation.lower, k.correlation.upper), k.correlation.n)
         for k in view.knobs],
        columns=["Training knob", "Spearman rho", "95% interval", "Checkpoints"],
    )


def agreement_frame(view: BoardView) -> pd.DataFrame:
    """Per character: does the CCIP score order checkpoints as the human board does?"""
    return pd.DataFrame(
        [(character, None if c.rho is None else round(c.rho, 3), _interval(c.lower, c.upper),
          c.n) for character, c in view.agreement.items()],
        columns=["Character", "Spearman rho (CCIP vs time-weighted Elo)", "95% interval",
                 "Checkpoints"],
    )


def position_frame(view: BoardView) -> pd.DataFrame:
    """Wins by shown position per match kind, the shares' intervals and the test's p-value."""
    rows = []
    for kind, bias in view.position.items():
        for i, (wins, share, (lo, hi)) in enumerate(zip(bias.wins, bias.shares, bias.intervals,
                                                         strict=True)):
            label = "AB"[i] if len(bias.wins) == 2 else str(i + 1)
            rows.append((kind, label, wins, round(share, 3), f"{lo:.2f} – {hi:.2f}",
                         None if bias.p_value is None else float(f"{bias.p_value:.3g}")))
    return pd.DataFrame(rows, columns=["Match kind", "Position", "Wins", "Share",
                                       "95% interval", "p (no bias)"])


def all_figures(view: BoardView, knob: str = "checkpoint_step") -> dict[str, Figure]:
    """Every figure of the view, keyed as in :data:`FIGURES`."""
    return {
        "ratings": rating_figure(view),
        "elo_history": elo_history_figure(view),
        "trueskill": trueskill_figure(view),
        "win_rate": win_rate_figure(view),
        "games": games_figure(view),
        "ccip": ccip_figure(view),
        "characters": character_figure(view),
        "knob": knob_figure(view, knob),
        "position": position_figure(view),
    }
