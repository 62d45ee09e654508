"""The voting UI in real headless Chromium (Debian's), driven by Playwright.

One page load votes in each of the three match tabs, checks the reveal and the "next match"
flow without a reload, and finds the votes on the leaderboard tab; before each first vote,
everything the server has sent (page, events, image bytes) is scanned for the checkpoints'
names, configs and hashes. A second page load checks that an empty pool is a readable message.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image as PILImage
from playwright.sync_api import expect
from sqlalchemy import func, select

from arena.db import Database
from arena.image_store import original_path, served_path
from arena.models import GenerationRequest, Image, Match, Vote, Voter
from arena.pool import import_records
from arena.settings import Settings
from arena.web.app import create_app
from generation.parameters import ImageParameters, png_bytes
from metrics.file_hash import sha256_bytes
from tests.support.pool import PoolFixture, Recorder, build_pool, leaked, serve

pytestmark = pytest.mark.browser

TIMEOUT_MS = 30_000
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1280, "height": 1000})
    context.set_default_timeout(TIMEOUT_MS)
    yield context.new_page()
    context.close()


def png_chunk_types(data: bytes) -> list[str]:
    """The chunk types of a PNG file, in order."""
    assert data.startswith(PNG_SIGNATURE)
    position, types = len(PNG_SIGNATURE), []
    while position < len(data):
        length = int.from_bytes(data[position : position + 4], "big")
        types.append(data[position + 4 : position + 8].decode("ascii"))
        position += 12 + length
    return types


def latest_match(db: Database, kind: str) -> tuple[Match, list[str]]:
    """The newest match of ``kind`` and its checkpoints' names by shown position."""
    with db.session() as s:
        match = s.scalars(select(Match).where(Match.kind == kind).order_by(Match.id.desc())).first()
        assert match is not None
        return match, [mi.checkpoint.name for mi in match.images]


def check_anonymous(
    page: Any, panel: Any, recorder: Recorder, db: Database, pool: PoolFixture, shown: int = 2
) -> list[str]:
    """Nothing sent so far names a checkpoint; the panel's ``shown`` images are bare served
    copies."""
    assert leaked(recorder.take(), pool.secrets) == []
    assert leaked(panel.inner_text(), pool.secrets) == []
    with db.session() as s:
        served = set(s.scalars(select(Image.served_sha256)))
    sources = [
        src
        for src in panel.locator("img").evaluate_all("els => els.map(e => e.src)")
        if "/api/v1/images/" in src
    ]
    assert len(sources) == shown
    for src in sources:
        assert leaked(src, pool.secrets) == []
        # A random name for this match only: nothing derived from the image.
        name = src.rsplit("/", 1)[1].removesuffix(".png")
        assert len(name) == 32 and not any(h[:16] in src for h in served)
        response = page.request.get(src)
        assert response.headers["cache-control"] == "private, no-store"
        data = response.body()
        assert sha256_bytes(data) in served
        assert png_chunk_types(data) == ["IHDR", "IDAT", "IEND"]
        assert b"Model hash" not in data and leaked(data, pool.secrets) == []
    recorder.take()  # the image bytes just fetched were checked above
    return sources


HOSTILE_PROMPT = '1girl, <img src=x onerror="window.__xss=1"><script>window.__xss=2</script>'


def add_free_prompt(db: Database, home: Path, folder: Path, pool: PoolFixture,
                    prompt: str) -> None:
    """Two checkpoints' images for one more free prompt, imported like any pool."""
    folder.mkdir(parents=True)
    records = []
    for index, checkpoint in enumerate(pool.checkpoints[:2]):
        params = ImageParameters(prompt=prompt, negative_prompt="", steps=20, sampler="Euler a",
                                 cfg=6.0, seed=7, width=64, height=64,
                                 model_hash=checkpoint.short_hash, model_name=checkpoint.name)
        path = folder / f"html-{index}.png"
        path.write_bytes(png_bytes(PILImage.new("RGB", (64, 64), (90 * index, 20, 40)), params))
        records.append({"file": str(path), "checkpoint": checkpoint.name, "kind": "free"})
    report = import_records(db, records, home, progress=False)
    assert len(report.imported) == 2, report.as_dict()


def open_tab(page: Any, name: str, element_id: str) -> Any:
    page.get_by_role("tab", name=name).click()
    return page.locator(f"#{element_id}")


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_vote_in_every_tab_and_see_the_leaderboard(
    arena_env: Database, arena_home: Path, tmp_path: Path, page: Any
) -> None:
    db = arena_env
    pool = build_pool(db, arena_home, tmp_path / "pool-src")
    add_free_prompt(db, arena_home, tmp_path / "pool-html", pool, HOSTILE_PROMPT)
    settings = Settings(home=arena_home, database_url=db.url)
    recorder = Recorder(create_app(settings, db))
    shots = tmp_path / "screenshots"
    with serve(recorder) as url:
        page.goto(url + "/")

        # Fixed character: anonymous until the vote, revealed after it.
        fixed = page.locator("#tab-fixed")
        fixed.get_by_text("Which image is better?").wait_for()
        assert leaked(page.content(), pool.secrets) == []
        first_sources = check_anonymous(page, fixed, recorder, db, pool)
        with db.session() as s:
            image = s.scalars(select(Image)).first()
            original = original_path(arena_home, image.sha256)
            copy = served_path(arena_home, image.served_sha256)
        # Neither the originals (with their parameters text) nor the served copies (named by
        # their hash) are reachable through Gradio's file route.
        assert page.request.get(f"{url}/gradio_api/file={original}").status == 403
        assert page.request.get(f"{url}/gradio_api/file={copy}").status == 403
        recorder.take()
        page.screenshot(path=shots / "fixed.png", full_page=True)
        page.evaluate("window.__arenaMarker = 'no reload'")
        match, names = latest_match(db, "fixed")
        fixed.get_by_role("button", name="A is better").click()
        fixed.get_by_text("Revealed").wait_for()
        recorder.take()  # from here on the page may name this match's checkpoints
        text = fixed.inner_text()
        assert names[0] in text and names[1] in text
        assert "You have cast 1 vote." in text
        assert "A · ✔ your pick: " + names[0] in text  # image labels name their checkpoints

        fixed.get_by_role("button", name="Next match").click()
        fixed.get_by_text("Which image is better?").wait_for()
        assert "Revealed" not in fixed.inner_text()
        assert latest_match(db, "fixed")[0].id != match.id
        assert page.evaluate("window.__arenaMarker") == "no reload"
        assert check_anonymous(page, fixed, recorder, db, pool) != first_sources

        # Free prompt: an unknown prompt is queued and a pool prompt is served meanwhile.
        free = open_tab(page, "Free prompt", "tab-free")
        free.get_by_text("Which image is better?").wait_for()
        free.get_by_label("Your own prompt (optional)").fill("a lighthouse on a cliff, storm")
        free.get_by_role("button", name="Match my prompt").click()
        free.get_by_text("queued for generation").wait_for()
        check_anonymous(page, free, recorder, db, pool)
        page.screenshot(path=shots / "free.png", full_page=True)
        _, names = latest_match(db, "free")
        free.get_by_role("button", name="B is better").click()
        free.get_by_text("Revealed").wait_for()
        recorder.take()
        assert names[1] in free.inner_text() and "You have cast 2 votes." in free.inner_text()

        # A prompt with HTML and script, typed by some voter and now in the pool, reaches
        # this voter as inert text.
        free.get_by_role("button", name="Next match").click()
        free.get_by_text("Which image is better?").wait_for()
        free.get_by_label("Your own prompt (optional)").fill(HOSTILE_PROMPT)
        free.get_by_role("button", name="Match my prompt").click()
        expect(free.get_by_label("Prompt", exact=True)).to_have_value(HOSTILE_PROMPT)
        assert page.evaluate("window.__xss") is None
        assert page.locator("img[src='x'], img[src$='/x']").count() == 0
        free.get_by_role("button", name="Skip").click()
        free.get_by_text("Which image is better?").wait_for()
        recorder.take()

        # Four-way: skip one, rank all four of the next by clicking, then submit a best.
        ffa = open_tab(page, "Four-way", "tab-ffa")
        ffa.get_by_text("Pick the best image.").wait_for()
        skipped, _ = latest_match(db, "ffa")
        page.locator("#ffa-image-0").click()
        expect(page.locator("#ffa-pick-0")).to_have_text("1st: 1")
        ffa.get_by_role("button", name="Skip").click()
        expect(page.locator("#ffa-pick-0")).to_have_text("Choose image 1")  # new match: no ranking
        assert latest_match(db, "ffa")[0].id != skipped.id
        check_anonymous(page, ffa, recorder, db, pool, shown=4)
        page.screenshot(path=shots / "ffa.png", full_page=True)
        for shown in "314":
            page.locator(f"#ffa-image-{int(shown) - 1}").click()
        expect(page.locator("#ffa-pick-1")).to_have_text("4th: 2")  # the last one is implied
        ffa.get_by_role("button", name="Submit ranking 3 > 1 > 4 > 2").click()
        ffa.get_by_text("Revealed").wait_for()
        assert "You have cast 3 votes." in ffa.inner_text()
        ffa.get_by_role("button", name="Next match").click()
        ffa.get_by_text("Pick the best image.").wait_for()
        _, names = latest_match(db, "ffa")
        page.locator("#ffa-pick-1").click()
        ffa.get_by_role("button", name="Submit 2 as the best").click()
        ffa.get_by_text("Revealed").wait_for()
        assert "✔ your pick" in ffa.inner_text() and names[1] in ffa.inner_text()

        # Leaderboard: the voted checkpoints with their games and configs.
        board = open_tab(page, "Leaderboard", "tab-leaderboard")
        expect(board.locator("#leaderboard-status")).to_contain_text("overall · Bradley-Terry")
        # Elo (online: every vote is in already) is one click away.
        board.get_by_label("Elo", exact=True).check()
        expect(board.locator("#leaderboard-status")).to_contain_text("overall · Elo")
        table = page.locator("#leaderboard-table")
        expect(table).to_contain_text(pool.checkpoints[0].name)
        page.screenshot(path=shots / "leaderboard.png", full_page=True)
        from arena.leaderboard.rows import leaderboard

        with db.session() as s:
            rows = leaderboard(s, "overall", "elo", settings)
        table_text = table.inner_text()
        for row in rows:
            assert row["checkpoint"] in table_text and row["config"] in table_text
        assert sum(int(r["games"]) for r in rows) > 0
        expect(board.locator("#figure-ratings .js-plotly-plot")).to_have_count(1)  # plotly

        # Bradley-Terry has bootstrap intervals; a selected row shows its training config.
        board.get_by_label("Bradley-Terry", exact=True).check()
        expect(board.locator("#leaderboard-status")).to_contain_text("overall · Bradley-Terry")
        # The Bradley-Terry fit may predate the last votes (refits run in the background), so
        # the row to select is read from the table shown, not from the Elo rows.
        expect(table.locator("tbody tr")).not_to_have_count(0)
        shown = table.inner_text()
        shown_config = next((c for c in sorted({r["config"] for r in rows}) if c in shown), None)
        assert shown_config is not None, shown
        table.get_by_text(shown_config, exact=True).last.click()
        expect(board.locator("#leaderboard-config")).to_contain_text(shown_config)
        expect(board.locator("#leaderboard-config")).to_contain_text("unet_lr")

    cookie = next(c["value"] for c in page.context.cookies() if c["name"] == "arena_voter")
    with db.session() as s:
        votes = s.scalars(select(Vote).order_by(Vote.id)).all()
        assert [(v.outcome, v.winner_position, v.ranking) for v in votes] == [
            ("win", 0, None),
            ("win", 1, None),
            ("ranking", None, [2, 0, 3, 1]),
            ("win", 1, None),
        ]
        assert s.get(Match, skipped.id).skipped_at is not None
        assert s.scalar(select(func.count()).select_from(GenerationRequest)) == 1
        # The page's voter cookie (set by the API middleware) is the voter of every vote.
        assert {v.voter_id for v in votes} == {
            s.scalar(select(Voter.id).where(Voter.external_id == cookie))
        }


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_empty_pool_is_a_readable_message(arena_env: Database, arena_home: Path, page: Any) -> None:
    settings = Settings(home=arena_home, database_url=arena_env.url)
    with serve(create_app(settings, arena_env)) as url:
        page.goto(url + "/")
        fixed = page.locator("#tab-fixed")
        fixed.get_by_text("the pool has no fixed prompt").wait_for()
        expect(fixed.get_by_role("button", name="A is better")).to_be_disabled()
        free = open_tab(page, "Free prompt", "tab-free")
        free.get_by_text("the pool has no free prompt").wait_for()
        html = page.content()
        assert "Traceback" not in html and "OperationalError" not in html
