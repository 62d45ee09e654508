"""Voting on any screen, in real headless Chromium at desktop (1280 px) and phone (390 px) size.

On load each voting tab shows the voter's vote count and its keyboard shortcuts; every tab is
reachable without an overflow menu; the header takes at most a fifth of the first screen; on
a phone the duel images fill the width. Votes by keyboard are stored as clicks would be; a
four-way match is ranked by clicking images in order (undoable, shown on the buttons), and
the reveal lists the full ranking given. Keys and clicks that come faster than the server
answers are applied one after another, in order.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect
from sqlalchemy import select

from arena.db import Database
from arena.models import Match, Vote
from arena.settings import Settings
from arena.web.app import create_app
from arena.web.voting_ui import MatchPanel
from tests.support.pool import build_pool, serve

pytestmark = pytest.mark.browser

SIZES = {"desktop": (1280, 900), "phone": (390, 844)}


@pytest.fixture(params=list(SIZES))
def sized_page(request: pytest.FixtureRequest, browser: Any) -> Iterator[Any]:
    width, height = SIZES[request.param]
    context = browser.new_context(viewport={"width": width, "height": height})
    context.set_default_timeout(30_000)
    yield context.new_page()
    context.close()


def votes(db: Database) -> list[tuple[str, str, int | None, list[int] | None]]:
    with db.session() as s:
        rows = s.execute(select(Match.kind, Vote.outcome, Vote.winner_position, Vote.ranking)
                         .join(Match, Match.id == Vote.match_id).order_by(Vote.id)).all()
    return [tuple(row) for row in rows]


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_vote_by_keyboard_and_rank_by_clicking(
    arena_env: Database, arena_home: Path, tmp_path: Path, sized_page: Any
) -> None:
    page, db = sized_page, arena_env
    build_pool(db, arena_home, tmp_path / "pool")
    settings = Settings(home=arena_home, database_url=db.url)
    width, height = page.viewport_size["width"], page.viewport_size["height"]
    with serve(create_app(settings, db)) as url:
        page.goto(url + "/")
        fixed = page.locator("#tab-fixed")
        expect(fixed.locator(".arena-status").first).to_contain_text("You have cast 0 votes.")
        expect(fixed).to_contain_text("Keys: A / ← A is better")
        # Every tab is reachable: no tab hides behind an overflow menu.
        tabs = page.get_by_role("tab")
        expect(tabs).to_have_count(4)
        for index in range(4):
            expect(tabs.nth(index)).to_be_visible()
        header = page.locator("div.block.arena-header").bounding_box()
        assert header is not None and header["y"] + header["height"] <= height / 5
        first = page.locator("#fixed-image-0 img").bounding_box()
        second = page.locator("#fixed-image-1 img").bounding_box()
        assert first and second and abs(first["y"] - second["y"]) < 1  # side by side
        if width < 500:  # on a phone the two images fill the width
            assert first["width"] + second["width"] >= 0.9 * width
        page.screenshot(path=tmp_path / f"fixed-{width}.png")

        # Keyboard: B votes "B is better", N brings the next match, D a draw.
        page.wait_for_function("window.arenaShortcuts === true")  # the page's script ran
        page.keyboard.press("b")
        fixed.get_by_text("Revealed").wait_for()
        expect(fixed).to_contain_text("You have cast 1 vote.")
        page.keyboard.press("n")
        expect(fixed.locator(".arena-status").first).to_contain_text(
            "Which image is better? You have cast 1 vote.")
        page.keyboard.press("d")
        fixed.get_by_text("Revealed").wait_for()
        assert votes(db) == [("fixed", "win", 1, None), ("fixed", "tie", None, None)]

        # The free duel says why it has no draw; its keys are shown too.
        page.get_by_role("tab", name="Free prompt").click()
        free = page.locator("#tab-free")
        expect(free).to_contain_text("No draw here")
        expect(free).to_contain_text("Keys: A / ← A is better")
        expect(free.locator(".arena-status").first).to_contain_text("You have cast 2 votes.")

        # Four-way: click images best first, undo one, finish with keys; the fourth is implied.
        page.get_by_role("tab", name="Four-way").click()
        ffa = page.locator("#tab-ffa")
        expect(ffa.locator(".arena-status").first).to_contain_text("Pick the best image.")
        page.screenshot(path=tmp_path / f"ffa-{width}.png", full_page=True)
        page.locator("#ffa-image-2").click()
        page.locator("#ffa-image-0").click()
        expect(page.locator("#ffa-pick-2")).to_have_text("1st: 3")
        expect(page.locator("#ffa-pick-0")).to_have_text("2nd: 1")
        page.keyboard.press("Backspace")  # undo the last click
        expect(page.locator("#ffa-pick-0")).to_have_text("Choose image 1")
        page.keyboard.press("4")
        page.keyboard.press("2")
        expect(page.locator("#ffa-pick-0")).to_have_text("4th: 1")
        expect(page.locator("#ffa-submit")).to_have_text("Submit ranking 3 > 4 > 2 > 1")
        page.keyboard.press("Enter")
        ffa.get_by_text("Revealed").wait_for()
        reveal = ffa.locator(".arena-status").first.inner_text()
        places = [line.split("\t")[:2] for line in reveal.splitlines() if "\t" in line][1:]
        assert places == [["3", "1st"], ["4", "2nd"], ["2", "3rd"], ["1", "4th"]], reveal
        assert votes(db)[-1] == ("ffa", "ranking", None, [2, 3, 1, 0])
        page.screenshot(path=tmp_path / f"ffa-reveal-{width}.png", full_page=True)


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_keys_typed_faster_than_the_server_answers_all_count_in_order(
    arena_env: Database, arena_home: Path, tmp_path: Path, browser: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Every four-way control answers 0.3 s late; keys and clicks come in faster than that. Each
    # waits for the previous one's answer: none is dropped, none works on stale picks.
    slow = MatchPanel._ranking

    def late(self: MatchPanel, picks: list[int], voting: bool = True) -> dict[Any, Any]:
        time.sleep(0.3)
        return slow(self, picks, voting)

    monkeypatch.setattr(MatchPanel, "_ranking", late)
    db = arena_env
    build_pool(db, arena_home, tmp_path / "pool")
    settings = Settings(home=arena_home, database_url=db.url)
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(30_000)
    page = context.new_page()
    try:
        with serve(create_app(settings, db)) as url:
            page.goto(url + "/")
            page.wait_for_function("window.arenaShortcuts === true")
            page.get_by_role("tab", name="Four-way").click()
            ffa = page.locator("#tab-ffa")
            expect(ffa.locator(".arena-status").first).to_contain_text("Pick the best image.")
            page.locator("#ffa-image-1").click()
            page.locator("#ffa-image-3").click()
            for key in ("Backspace", "4", "3", "Enter"):
                page.keyboard.press(key)
            ffa.get_by_text("Revealed").wait_for()
            assert votes(db)[-1] == ("ffa", "ranking", None, [1, 3, 2, 0])
    finally:
        context.close()
