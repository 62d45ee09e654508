"""One row builder and one rank rule: every surface shows the same rows and ranks.

A real pool gets simulated votes through the real match and vote path on both databases; the
API, ``arena ratings --json``, the trainer hooks, the dashboard's table, ``arena export
leaderboard`` (csv and json) and ``arena report`` are then read for every board and rating
system and compared with :func:`arena.leaderboard.rows.board_rows`, whose ranks are checked
against the rule recomputed here from the rows' intervals.
"""

from __future__ import annotations

import io
import json
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from typer.testing import CliRunner

from arena.cli.main import app
from arena.db import Database
from arena.demo.voters import simulate_votes
from arena.errors import InputError
from arena.leaderboard.report import write_report
from arena.leaderboard.rows import board_rows, rank_rows
from arena.leaderboard.view import board_choices, load_view, table_frame
from arena.settings import Settings, get_settings
from metrics.rating_systems import SYSTEMS
from tests.support.api_client import make_client
from training import hooks

ROUNDS = 20


def expected_ranks(rows: list[dict[str, Any]], has_intervals: bool) -> list[int]:
    """The rank rule written out independently: interval overlap, else higher ratings."""
    if has_intervals:
        return [1 + sum(o["lower"] > r["upper"] for o in rows) for r in rows]
    return [1 + sum(o["rating"] > r["rating"] for o in rows) for r in rows]


def shown(rows: list[dict[str, Any]]) -> list[tuple[int, str, float]]:
    """What a formatted table shows: rank, checkpoint, rating to one decimal."""
    return [(int(r["rank"]), r["checkpoint"], round(float(r["rating"]), 1)) for r in rows]


def frame_shown(frame: pd.DataFrame) -> list[tuple[int, str, float]]:
    return [(int(rank), str(name), round(float(rating), 1))
            for rank, name, rating in zip(frame["Rank"], frame["Checkpoint"], frame["Rating"],
                                          strict=True)]


class _Tables(HTMLParser):
    """The cells of each ``leaderboard`` table of the report, per board section."""

    def __init__(self) -> None:
        super().__init__()
        self.board: str | None = None
        self.tables: dict[str, list[list[str]]] = {}
        self.inside = False
        self.cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if tag == "section":
            self.board = (found.get("id") or "").removeprefix("board-")
        elif tag == "table" and "leaderboard" in (found.get("class") or ""):
            self.inside = True
            self.tables[self.board or ""] = []
        elif self.inside and tag == "tr":
            self.tables[self.board or ""].append([])
        elif self.inside and tag in ("td", "th"):
            self.cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag == "table":
            self.inside = False
        elif self.inside and tag in ("td", "th") and self.cell is not None:
            self.tables[self.board or ""][-1].append("".join(self.cell).strip())
            self.cell = None

    def handle_data(self, data: str) -> None:
        if self.cell is not None:
            self.cell.append(data)


@pytest.fixture
def voted(arena_env: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Database:
    """Four checkpoints with 80 simulated votes; every surface uses 20 bootstrap rounds."""
    from tests.support.pool import build_pool

    build_pool(arena_env, tmp_path / "pool-home", tmp_path / "pool")
    assert simulate_votes(arena_env, Settings(votes_per_minute=0), 80, seed=3) == 80
    monkeypatch.setenv("ARENA_BOOTSTRAP_ROUNDS", str(ROUNDS))
    get_settings.cache_clear()
    return arena_env


def test_every_surface_shows_the_same_rows_and_ranks(voted: Database, tmp_path: Path) -> None:
    db = voted
    settings = get_settings()
    assert settings.bootstrap_rounds == ROUNDS
    runner = CliRunner()
    client = make_client(db, tmp_path / "api-home", bootstrap_rounds=ROUNDS)
    with db.session(readonly=True) as s:
        boards = board_choices(s)
    assert len(boards) > 4, "the pool has character boards"
    shared_rank_seen = False
    for system, entry in SYSTEMS.items():
        report_html = tmp_path / f"report-{system}.html"
        write_report(db, settings, report_html, boards, system)
        parser = _Tables()
        parser.feed(report_html.read_text(encoding="utf-8"))
        for board in boards:
            where = f"{board} / {system}"
            with db.session(readonly=True) as s:
                rows = board_rows(s, board, system, settings).rows
                dashboard = frame_shown(table_frame(load_view(s, board, system, settings,
                                                               wait=True)))
            assert rows, where
            assert [r["rank"] for r in rows] == expected_ranks(rows, entry.has_intervals), where
            assert [r["rating"] for r in rows] == sorted((r["rating"] for r in rows),
                                                         reverse=True), where
            if entry.has_intervals and len(set(r["rank"] for r in rows)) < len(rows):
                shared_rank_seen = True
            reference = json.loads(json.dumps(rows))

            api = client.get("/api/v1/leaderboard", params={"board": board, "system": system})
            assert api.status_code == 200, api.text
            assert api.json()["rows"] == reference, where

            cli = runner.invoke(app, ["ratings", "--board", board, "--system", system, "--json"])
            assert cli.exit_code == 0, cli.output
            assert json.loads(cli.output)["rows"] == reference, where

            assert json.loads(json.dumps(hooks.leaderboard(board, system, arena=db.url))) \
                == reference, where

            exported = runner.invoke(app, ["export", "leaderboard", "-f", "json", "-b", board,
                                           "-s", system])
            assert exported.exit_code == 0, exported.output
            assert json.loads(exported.output)["rows"] == reference, where

            csv = runner.invoke(app, ["export", "leaderboard", "-f", "csv", "-b", board,
                                      "-s", system])
            assert csv.exit_code == 0, csv.output
            assert frame_shown(pd.read_csv(io.StringIO(csv.output))) == shown(rows), where
            assert dashboard == shown(rows), where

            cells = parser.tables[board]
            header, body = cells[0], cells[1:]
            report = [(int(c[header.index("Rank")]), c[header.index("Checkpoint")],
                       round(float(c[header.index("Rating")]), 1)) for c in body]
            assert report == shown(rows), where
    # Without a shared rank the test could not tell the interval rule from position ranks.
    assert shared_rank_seen


def test_rank_rule_shares_ranks_only_where_intervals_overlap() -> None:
    rows = [
        {"checkpoint": "c", "rating": 900.0, "lower": 880.0, "upper": 920.0},
        {"checkpoint": "a", "rating": 1100.0, "lower": 1050.0, "upper": 1150.0},
        {"checkpoint": "b", "rating": 1090.0, "lower": 1040.0, "upper": 1140.0},
    ]
    rank_rows(rows, has_intervals=True)
    assert [(r["checkpoint"], r["rank"]) for r in rows] == [("a", 1), ("b", 1), ("c", 3)]
    plain = [{"checkpoint": n, "rating": v, "lower": None, "upper": None}
             for n, v in (("x", 1000.0), ("y", 1010.0), ("z", 1000.0))]
    rank_rows(plain, has_intervals=False)
    assert [(r["checkpoint"], r["rank"]) for r in plain] == [("y", 1), ("x", 2), ("z", 2)]


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_unknown_system_or_board_lists_the_valid_ones(voted: Database, tmp_path: Path) -> None:
    with voted.session(readonly=True) as s, pytest.raises(InputError) as error:
        board_rows(s, "overall", "glicko")
    assert str(error.value) == (
        "system: expected one of elo, tw_elo, trueskill, bt, robust, got 'glicko'")
    client = make_client(voted, tmp_path / "api-home")
    answer = client.get("/api/v1/leaderboard", params={"system": "glicko"})
    assert answer.status_code == 422
    assert all(f"'{name}'" in answer.json()["error"] for name in SYSTEMS)
    cli = CliRunner().invoke(app, ["ratings", "--board", "duel"])
    assert cli.exit_code != 0
    assert "expected overall, fixed, free, ffa or fixed/<character>, got 'duel'" in cli.output
