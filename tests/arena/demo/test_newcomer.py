"""A newcomer judging the demo's pictures by eye recovers the published configs' order.

The simulated newcomer sees only what a voter sees (the served PNG bytes of each match, over
the JSON API) and prefers the picture that looks cleaner: less grain and fewer jagged edges
(the mean absolute Laplacian of the grey image), with Plackett-Luce noise and an occasional
careless click. No checkpoint or config name reaches the judge. After 200 votes, the default
board (overall, Bradley-Terry) orders the four demo checkpoints as the published configs.
"""

from __future__ import annotations

import io
import math
import random
from pathlib import Path

import numpy as np
import pytest
from PIL import Image as PILImage
from scipy.stats import kendalltau

from arena.db import Database
from arena.demo.prepare import demo_settings, prepare_demo
from arena.leaderboard.rows import leaderboard
from tests.support.api_client import make_client, new_voter
from training.presets import PRESET_NAMES

pytestmark = pytest.mark.slow

VOTES = 200
MODES = (("fixed", 0.6), ("free", 0.2), ("ffa", 0.2))
SHARPNESS = 4.0  # how strongly a clear difference in cleanness decides the pick
CARELESS = 0.1  # share of picks made without looking


def roughness(png: bytes) -> float:
    """Mean absolute Laplacian of the grey picture: grain, banding and jaggies raise it."""
    grey = np.asarray(PILImage.open(io.BytesIO(png)).convert("L"), dtype=np.float64)
    lap = (4 * grey[1:-1, 1:-1] - grey[:-2, 1:-1] - grey[2:, 1:-1]
           - grey[1:-1, :-2] - grey[1:-1, 2:])
    return float(np.abs(lap).mean())


def preference(rough: list[float], rng: random.Random) -> list[int]:
    """Positions best first, drawn by Plackett-Luce on -roughness / SHARPNESS."""
    if rng.random() < CARELESS:
        order = list(range(len(rough)))
        rng.shuffle(order)
        return order
    left, order = list(range(len(rough))), []
    while left:
        weights = [math.exp(-rough[i] / SHARPNESS) for i in left]
        pick = rng.choices(left, weights=weights)[0]
        order.append(pick)
        left.remove(pick)
    return order


def test_a_newcomer_recovers_the_published_order(tmp_path: Path) -> None:
    settings = demo_settings(tmp_path / "arena-demo")
    prepare_demo(settings, progress=False, votes=0)
    db = Database(settings.url)
    client = make_client(db, settings.home, matches_per_minute=0, address_matches_per_minute=0,
                         address_votes_per_minute=0)
    voter = new_voter(client)
    rng = random.Random(7)
    modes, weights = zip(*MODES, strict=True)
    for _ in range(VOTES):
        mode = rng.choices(modes, weights=weights)[0]
        match = client.post("/api/v1/matches", json={"mode": mode}, headers=voter)
        assert match.status_code == 200, match.text
        shown = sorted(match.json()["images"], key=lambda image: image["position"])
        rough = []
        for image in shown:
            served = client.get(image["url"], headers=voter)
            assert served.status_code == 200
            rough.append(roughness(served.content))
        order = [shown[i]["position"] for i in preference(rough, rng)]
        body = ({"ranking": order} if mode == "ffa" and rng.random() < 0.5
                else {"winner": order[0]})
        vote = client.post("/api/v1/votes", json={"token": match.json()["token"], **body},
                           headers=voter)
        assert vote.status_code == 200, vote.text
    with db.session(readonly=True) as session:
        rows = leaderboard(session, "overall", "bt", settings)
    found = [row["config"] for row in sorted(rows, key=lambda r: -r["rating"])]
    truth = list(reversed(PRESET_NAMES))  # the newest config first
    tau = kendalltau([truth.index(c) for c in found], range(len(found))).statistic
    assert tau >= 0.8, (found, tau)
    client.close()
    db.dispose()
