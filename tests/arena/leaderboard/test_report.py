"""`arena report`: one self-contained HTML file with the boards' tables and figures."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from arena.cli.main import app
from arena.db import Database
from arena.demo.voters import simulate_votes
from arena.leaderboard.rows import leaderboard
from arena.settings import Settings, get_settings
from tests.support.pool import build_pool


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_report_is_self_contained(arena_env: Database, tmp_path: Path,
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    db = arena_env
    build_pool(db, tmp_path / "pool-home", tmp_path / "pool")
    simulate_votes(db, Settings(votes_per_minute=0), 40, seed=4)
    monkeypatch.setenv("ARENA_BOOTSTRAP_ROUNDS", "20")
    get_settings.cache_clear()
    out = tmp_path / "report.html"
    result = CliRunner().invoke(app, ["report", "--out", str(out), "--board", "overall",
                                      "--board", "fixed"])
    assert result.exit_code == 0, result.output
    html = out.read_text()
    # plotly.js is inlined once; nothing is fetched from anywhere.
    assert html.count("window.PlotlyConfig") == 1
    assert not re.search(r"<script[^>]+src=", html)
    assert not re.search(r"<link[^>]+href=\"https?:", html)
    # Both boards, each with its table in the leaderboard's order and nine figures.
    assert 'id="board-overall"' in html and 'id="board-fixed"' in html
    with db.session(readonly=True) as s:
        order = [r["checkpoint"] for r in leaderboard(s, "overall", "bt", get_settings())]
    overall = html[html.index('id="board-overall"'):html.index('id="board-fixed"')]
    table = overall[overall.index('class="dataframe leaderboard"'):]
    positions = [table.index(f"<td>{name}</td>") for name in order]
    assert positions == sorted(positions)
    assert overall.count("Plotly.newPlot") == 9
    # The ratings figure carries the table's ratings.
    figure = overall[overall.index("Plotly.newPlot"):]
    data, _ = json.JSONDecoder().raw_decode(figure, figure.index("["))
    with db.session(readonly=True) as s:
        ratings = {r["checkpoint"]: r["rating"] for r in
                   leaderboard(s, "overall", "bt", get_settings())}
    assert dict(zip(data[0]["y"], data[0]["x"], strict=True)) == pytest.approx(ratings)
    bad = CliRunner().invoke(app, ["report", "--out", str(tmp_path / "no" / "r.html")])
    assert bad.exit_code == 2 and "does not exist" in bad.output
    get_settings.cache_clear()
