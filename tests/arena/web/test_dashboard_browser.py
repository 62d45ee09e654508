"""The leaderboard dashboard and the HTML report in real headless Chromium (Debian's).

The tab loads with plotly figures; switching board and system updates the table and the
figures; the CSV download equals the table shown; the report file opens with no network.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from playwright.sync_api import expect

from arena.db import Database
from arena.demo.voters import simulate_votes
from arena.leaderboard.report import write_report
from arena.leaderboard.view import load_view, table_frame
from arena.settings import Settings
from arena.web.app import create_app
from tests.support.pool import build_pool, serve

pytestmark = pytest.mark.browser

TIMEOUT_MS = 30_000
expect.set_options(timeout=TIMEOUT_MS)  # a loaded 2-core machine renders figures slowly


def shown_table(page: Any) -> list[list[str]]:
    """The cells of the leaderboard table as the browser shows them."""
    return page.locator("#leaderboard-table").evaluate(
        """t => Array.from(t.querySelectorAll('[role=row][data-index]')).map(
               r => Array.from(r.querySelectorAll('[role=gridcell]')).map(
                   c => c.innerText.trim()))"""
    )


def same_cell(shown: str, value: Any) -> bool:
    if pd.isna(value):
        return shown in ("", "—", "nan", "NaN", "None", "<NA>")
    try:
        return float(shown.replace(",", "")) == pytest.approx(float(value))
    except ValueError:
        return shown == str(value)


def header_lines(page: Any) -> dict[str, int]:
    """Each table header's text and how many lines it takes (a word broken in two: 2)."""
    return page.locator("#leaderboard-table").evaluate(
        """t => Object.fromEntries(Array.from(t.querySelectorAll('th')).map(th => {
               const tops = new Set();
               const walk = document.createTreeWalker(th, NodeFilter.SHOW_TEXT);
               for (let node = walk.nextNode(); node; node = walk.nextNode()) {
                   if (!node.textContent.trim() || !node.parentElement.offsetParent) continue;
                   const range = document.createRange();
                   range.selectNodeContents(node);
                   for (const r of range.getClientRects()) {
                       if (r.width > 0 && r.height > 0) tops.add(Math.round(r.top));
                   }
               }
               return [th.innerText.trim(), tops.size];
           }).filter(([text]) => text))"""
    )


def figure_title(page: Any, key: str) -> str:
    return page.locator(f"#figure-{key} .gtitle").first.text_content() or ""


def choose(page: Any, label: str, option: str) -> None:
    box = page.locator("#tab-leaderboard").get_by_label(label, exact=True)
    box.click()
    options = page.locator("#" + box.get_attribute("aria-controls"))
    options.get_by_role("option", name=option, exact=True).click()


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_dashboard_switches_downloads_and_reports_offline(
    arena_env: Database, arena_home: Path, tmp_path: Path, browser: Any
) -> None:
    db = arena_env
    settings = Settings(home=arena_home, database_url=db.url, votes_per_minute=0,
                        bootstrap_rounds=20)
    pool = build_pool(db, arena_home, tmp_path / "pool-src")
    simulate_votes(db, settings, 40, seed=2)
    context = browser.new_context(viewport={"width": 1400, "height": 1200},
                                  accept_downloads=True)
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    with serve(create_app(settings, db)) as url:
        page.goto(url + "/")
        page.get_by_role("tab", name="Leaderboard").click()
        # The tab opens on Bradley-Terry, saying what it is and the vote its rows cover.
        status = page.locator("#leaderboard-status")
        expect(status).to_contain_text("overall · Bradley-Terry")
        expect(status).to_contain_text("Bradley-Terry: a fit of every vote")
        expect(status).to_contain_text("every row covers this board's votes up to #")
        expect(status).to_contain_text(f"matchmaking: {settings.matchmaking_strategy} (")
        expect(page.locator("#figure-ratings .js-plotly-plot")).to_have_count(1)
        for key in ("elo_history", "trueskill", "win_rate", "games", "knob", "position"):
            expect(page.locator(f"#figure-{key} .js-plotly-plot")).to_have_count(1)
        assert "Bradley-Terry" in figure_title(page, "ratings")

        def check_table(board: str, system: str) -> pd.DataFrame:
            with db.session(readonly=True) as s:
                frame = table_frame(load_view(s, board, system, settings))
            expect(page.locator("#leaderboard-table")).to_contain_text(frame.iloc[0, 1])
            cells = shown_table(page)
            assert len(cells) == len(frame)
            for row, (_, expected) in zip(cells, frame.iterrows(), strict=True):
                assert all(same_cell(c, v) for c, v in zip(row, expected, strict=True)), (
                    row, list(expected))
            return frame

        bt = check_table("overall", "bt")
        assert (bt["95% lower"] != "—").all()
        # No header breaks inside a word: every header cell is one line (at 1400 px here;
        # the phone width below).
        lines = header_lines(page)
        assert "Rank" in lines and "CCIP score" in lines
        assert set(lines.values()) == {1}, lines

        # System: Elo is one click away, says what it is, and has no interval ("—").
        page.locator("#leaderboard-system").get_by_label("Elo", exact=True).check()
        expect(status).to_contain_text("overall · Elo")
        expect(status).to_contain_text("Elo: updated online after each vote")
        expect(page.locator("#figure-ratings .gtitle")).to_contain_text("Elo")
        elo = check_table("overall", "elo")
        assert set(elo["95% lower"]) == {"—"}
        page.set_viewport_size({"width": 390, "height": 844})
        lines = header_lines(page)
        assert set(lines.values()) == {1}, lines
        page.set_viewport_size({"width": 1400, "height": 1200})

        # Board: the fixed-character board of one character, time-weighted Elo.
        character = "hatsune_miku"
        choose(page, "Board", f"fixed/{character}")
        expect(status).to_contain_text(f"fixed/{character} · Elo")
        page.locator("#leaderboard-system").get_by_label("Time-weighted Elo").check()
        expect(status).to_contain_text(f"fixed/{character} · Time-weighted Elo")
        expect(page.locator("#figure-ratings .gtitle")).to_contain_text(
            f"fixed/{character} · Time-weighted Elo")
        tw = check_table(f"fixed/{character}", "tw_elo")
        assert list(tw["Rating"]) == sorted(tw["Rating"], reverse=True)

        # The CSV download is exactly the table shown.
        with page.expect_download() as download:
            page.locator("#leaderboard-csv").click()
        data = Path(download.value.path()).read_bytes()
        assert pd.read_csv(io.BytesIO(data)).equals(
            pd.read_csv(io.StringIO(tw.to_csv(index=False))))
        assert all(name in data.decode() for name in tw["Checkpoint"])
    context.close()

    # The report opens with every request outside the file refused.
    out = tmp_path / "report.html"
    write_report(db, settings, out)
    offline = browser.new_context(offline=True)
    requests: list[str] = []
    offline.route("**/*", lambda route: (requests.append(route.request.url),
                                         route.continue_() if route.request.url.startswith(
                                             "file:") else route.abort()))
    report = offline.new_page()
    report.goto(out.as_uri())
    expect(report.locator(".js-plotly-plot")).to_have_count(4 * 9)
    assert report.evaluate("typeof window.Plotly") == "object"
    assert [u for u in requests if not u.startswith("file:")] == []
    assert pool.checkpoints[0].name in report.locator("table.leaderboard").first.inner_text()
    offline.close()
