"""Golden ratings for a fixed vote log: defaults and formulas have not drifted.

``golden/ratings.json`` was written by ``golden/make_golden.py``; after a deliberate change,
rerun that script and review the diff.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from metrics.boards import boards_for
from metrics.bradley_terry import bradley_terry
from metrics.outcomes import VoteRecord, trueskill_games
from metrics.rating_book import RatingBook, RatingConfig
from metrics.trueskill_fast import TrueSkillModel

GOLDEN = json.loads((Path(__file__).parent / "golden" / "ratings.json").read_text())
T0 = 1_700_000_000.0


def _log() -> list[tuple[str, str | None, VoteRecord]]:
    out = []
    for v in GOLDEN["votes"]:
        t = T0 + 60.0 * v["minutes"]
        if isinstance(v["outcome"], list):
            vote = VoteRecord(tuple(v["shown"]), ranking=tuple(v["outcome"]), time=t)
        else:
            vote = VoteRecord(tuple(v["shown"]), winner=v["outcome"], time=t)
        out.append((v["kind"], v["character"], vote))
    return out


def _by_board() -> dict[str, list[VoteRecord]]:
    boards: dict[str, list[VoteRecord]] = {}
    for kind, character, vote in _log():
        for board in boards_for(kind, character):
            boards.setdefault(board, []).append(vote)
    return boards


def test_defaults_have_not_drifted() -> None:
    config, p = RatingConfig(), GOLDEN["parameters"]
    assert p["elo"] == {"k": config.elo.k, "scale": config.elo.scale, "base": config.elo.base,
                        "initial": config.elo.initial}
    t = config.trueskill
    assert p["trueskill"] == {"mu": t.mu, "sigma": t.sigma, "beta": t.beta, "tau": t.tau,
                              "draw_probability": t.draw_probability}
    assert p["both_bad_as_draw"] is config.both_bad_as_draw


@pytest.mark.parametrize("board", sorted(GOLDEN["boards"]))
def test_elo_and_trueskill(board: str) -> None:
    votes, want = _by_board()[board], GOLDEN["boards"][board]
    book = RatingBook()
    for vote in votes:
        book.apply(vote)
    now = max(v.time for v in votes)
    assert sorted(str(c) for c in book.states) == sorted(want["elo"])
    for c, s in book.states.items():
        elo, ts = want["elo"][str(c)], want["trueskill"][str(c)]
        assert s.elo == pytest.approx(elo["rating"], abs=1e-9)
        assert s.time_weighted_elo(now) == pytest.approx(elo["time_weighted"], abs=1e-9)
        assert s.mu == pytest.approx(ts["mu"], abs=1e-9)
        assert s.sigma == pytest.approx(ts["sigma"], abs=1e-9)
        assert s.conservative == pytest.approx(ts["conservative"], abs=1e-9)
        assert [s.games, s.wins, s.draws, s.losses] == want["counts"][str(c)]


@pytest.mark.parametrize("board", sorted(GOLDEN["boards"]))
def test_bradley_terry(board: str) -> None:
    params = GOLDEN["parameters"]["bt"]
    result = bradley_terry(_by_board()[board], rounds=params["rounds"], seed=params["seed"])
    want = GOLDEN["boards"][board]["bt"]
    assert [str(r.checkpoint_id) for r in result.ratings] == list(want)
    for r in result.ratings:
        w = want[str(r.checkpoint_id)]
        # Newton stops within 1e-9 in log-strength; unbeaten checkpoints sit where the tiny
        # ridge puts them, so allow 1e-4 Elo points for other BLAS builds.
        assert r.rating == pytest.approx(w["rating"], abs=1e-4)
        assert r.lower == pytest.approx(w["lower"], abs=1e-4)
        assert r.upper == pytest.approx(w["upper"], abs=1e-4)
        assert r.rank == w["rank"]


def test_golden_trueskill_is_the_packages() -> None:
    """The golden TrueSkill numbers are what the trueskill package gives on the same games."""
    package = TrueSkillModel(engine="package")
    ratings: dict[int, tuple[float, float]] = {}
    for vote in _by_board()["overall"]:
        pre = {c: ratings.get(c, (25.0, 25.0 / 3)) for c in vote.participants}
        ratings.update(package.rate_games(pre, trueskill_games(vote)))
    for c, (mu, sigma) in ratings.items():
        want = GOLDEN["boards"]["overall"]["trueskill"][str(c)]
        assert abs(mu - want["mu"]) < 1e-6 and abs(sigma - want["sigma"]) < 1e-6


def test_elo_by_hand_for_the_first_votes() -> None:
    """The first two votes of the log, worked by hand with K = 32."""
    book = RatingBook()
    log = _by_board()["overall"]
    book.apply(log[0])  # 1 beats 2 from 1000/1000
    assert (book.states[1].elo, book.states[2].elo) == (1016.0, 984.0)
    book.apply(log[1])  # 3 beats 2 (984)
    e = 1 / (1 + 10 ** ((984.0 - 1000.0) / 400))
    assert book.states[3].elo == pytest.approx(1000.0 + 32 * (1 - e))
