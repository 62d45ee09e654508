"""`arena report`: one self-contained HTML file with the dashboard's tables and figures.

The file embeds plotly.js once and every figure's data, so it opens offline in any browser
(no server, no network) and can be shared as a single attachment. It renders the same
:class:`arena.leaderboard.view.BoardView` objects as the dashboard, board by board.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path

from arena.db import Database
from arena.leaderboard.figures import (
    FIGURES,
    agreement_frame,
    all_figures,
    knob_frame,
    position_frame,
    to_plotly,
)
from arena.leaderboard.render import status_text
from arena.leaderboard.view import BoardView, load_view, table_frame
from arena.settings import Settings
from metrics.boards import kind_boards
from metrics.rating_systems import REPORT_SYSTEM, SYSTEMS

__all__ = ["DEFAULT_BOARDS", "render_report", "write_report"]

DEFAULT_BOARDS = kind_boards()
_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1200px; color: #222; }
table { border-collapse: collapse; font-size: 0.9em; margin: 0.5em 0 1.5em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.5em; text-align: right; }
th { background: #f3f3f3; }
.notice { color: #8a5300; }
section { border-top: 2px solid #ddd; margin-top: 2em; }
"""


def _markdown_line(text: str) -> str:
    """The dashboard's status lines (bold markers aside) as HTML paragraphs."""
    out = []
    for line in text.split("\n\n"):
        escaped = html.escape(line).replace("**", "")
        cls = ' class="notice"' if line.startswith("⚠️") else ""
        out.append(f"<p{cls}>{escaped}</p>")
    return "\n".join(out)


def _section(view: BoardView, knob: str, first: bool, robust: BoardView | None = None) -> str:
    parts = [f'<section id="board-{html.escape(view.board)}">',
             f"<h2>{html.escape(view.label)}</h2>", _markdown_line(status_text(view)),
             table_frame(view).to_html(index=False, na_rep="—", classes="leaderboard")]
    for key, figure in all_figures(view, knob).items():
        parts.append(f"<h3>{html.escape(FIGURES[key])}</h3>")
        parts.append(to_plotly(figure).to_html(full_html=False, include_plotlyjs=first,
                                               default_width="100%"))
        first = False
        if key == "knob":
            parts.append(knob_frame(view).to_html(index=False, na_rep="—"))
        if key == "characters" and view.agreement:
            parts.append(agreement_frame(view).to_html(index=False, na_rep="—"))
        if key == "position" and view.position:
            parts.append(position_frame(view).to_html(index=False, na_rep="—"))
    if robust is not None:  # beside plain Bradley-Terry: the board without what it discounts
        parts += [f"<h3>{html.escape(robust.label)}</h3>", _markdown_line(status_text(robust)),
                  table_frame(robust).to_html(index=False, na_rep="—", classes="robust")]
    parts.append("</section>")
    return "\n".join(parts)


def render_report(views: Sequence[BoardView], knob: str = "checkpoint_step",
                  robust: Mapping[str, BoardView] | None = None) -> str:
    """The whole HTML document for ``views`` (plotly.js inlined once, before the first plot);
    ``robust``: per board, its robust board, shown after the board's table and figures."""
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    body = [_section(view, knob, i == 0, (robust or {}).get(view.board))
            for i, view in enumerate(views)]
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        "<title>Illustrious Arena report</title>"
        f"<style>{_STYLE}</style></head><body>"
        f"<h1>Illustrious Arena report</h1><p>Generated {when}. Systems: "
        f"{html.escape(', '.join(s.label for s in SYSTEMS.values()))}. Opens offline: "
        "everything is in this file.</p>" + "\n".join(body) + "</body></html>\n"
    )


def write_report(db: Database, settings: Settings, out: Path,
                 boards: Sequence[str] = DEFAULT_BOARDS, system: str = REPORT_SYSTEM,
                 knob: str = "checkpoint_step") -> list[BoardView]:
    """Read every board (read-only) and write the report to ``out``; returns the views. With
    plain Bradley-Terry, each board is followed by its robust board (what it discounted and
    where the two disagree in its notices)."""
    from arena.errors import UserError

    if not out.parent.is_dir():
        raise UserError(f"--out {out}: the folder {out.parent} does not exist")
    with db.session(readonly=True) as session:
        views = [load_view(session, board, system, settings, wait=True) for board in boards]
        robust = ({board: load_view(session, board, "robust", settings, wait=True)
                   for board in boards} if system == "bt" else {})
    out.write_text(render_report(views, knob, robust), encoding="utf-8")
    return views
