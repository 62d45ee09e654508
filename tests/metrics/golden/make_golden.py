"""Write ``ratings.json``: a small fixed vote log and the ratings each system gives it.

Run from the repository root after a deliberate change of defaults or formulas:

    python tests/metrics/golden/make_golden.py

``tests/metrics/test_golden.py`` recomputes everything and fails on any drift.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[2]))

from metrics.boards import boards_for  # noqa: E402
from metrics.bradley_terry import bradley_terry  # noqa: E402
from metrics.outcomes import VoteRecord  # noqa: E402
from metrics.rating_book import RatingBook, RatingConfig  # noqa: E402

BT_ROUNDS, BT_SEED = 200, 2024
T0 = 1_700_000_000.0

# (minutes after T0, kind, character, shown checkpoint ids, winner or ranking)
LOG = [
    (0, "fixed", "alice", [1, 2], 0),
    (3, "fixed", "alice", [2, 3], 1),
    (4, "fixed", "alice", [3, 1], "tie"),
    (9, "fixed", "bob", [4, 5], 0),
    (10, "fixed", "bob", [5, 1], "both_bad"),
    (12, "free", None, [1, 4], 1),
    (15, "free", None, [2, 5], 0),
    (15.5, "free", None, [3, 4], "both_bad"),
    (20, "ffa", None, [1, 2, 3, 4], 3),
    (21, "ffa", None, [5, 4, 3, 2], [1, 2, 0, 3]),
    (25, "fixed", "alice", [4, 1], 0),
    (26, "fixed", "bob", [2, 4], 1),
    (30, "ffa", None, [2, 3, 5, 1], 0),
    (31, "free", None, [5, 3], 1),
    (40, "fixed", "alice", [1, 5], 0),
    (41, "ffa", None, [4, 5, 1, 3], [0, 2, 3, 1]),
    (45, "fixed", "bob", [3, 2], "tie"),
    (50, "free", None, [4, 2], 0),
    (52, "ffa", None, [1, 3, 4, 5], 2),
    (60, "fixed", "alice", [2, 1], 1),
    (61, "fixed", "bob", [1, 4], 1),
    (65, "free", None, [1, 3], 0),
    (70, "ffa", None, [3, 1, 2, 4], [3, 1, 0, 2]),
    (71, "fixed", "alice", [5, 4], 1),
]


def records() -> list[tuple[str, str | None, VoteRecord]]:
    out = []
    for minutes, kind, character, shown, outcome in LOG:
        t = T0 + 60.0 * minutes
        if isinstance(outcome, list):
            vote = VoteRecord(tuple(shown), ranking=tuple(outcome), time=t)
        else:
            vote = VoteRecord(tuple(shown), winner=outcome, time=t)
        out.append((kind, character, vote))
    return out


def expected() -> dict[str, object]:
    config = RatingConfig()
    books: dict[str, RatingBook] = {}
    votes: dict[str, list[VoteRecord]] = {}
    for kind, character, vote in records():
        for board in boards_for(kind, character):
            books.setdefault(board, RatingBook(config)).apply(vote)
            votes.setdefault(board, []).append(vote)
    boards: dict[str, object] = {}
    for board, book in sorted(books.items()):
        now = max(v.time for v in votes[board])
        bt = bradley_terry(votes[board], rounds=BT_ROUNDS, seed=BT_SEED)
        boards[board] = {
            "elo": {str(c): {"rating": s.elo, "time_weighted": s.time_weighted_elo(now)}
                    for c, s in sorted(book.states.items())},
            "trueskill": {str(c): {"mu": s.mu, "sigma": s.sigma, "conservative": s.conservative}
                          for c, s in sorted(book.states.items())},
            "counts": {str(c): [s.games, s.wins, s.draws, s.losses]
                       for c, s in sorted(book.states.items())},
            "bt": {str(r.checkpoint_id): {"rating": r.rating, "lower": r.lower,
                                          "upper": r.upper, "rank": r.rank}
                   for r in bt.ratings},
        }
    return {
        "parameters": {
            "elo": {"k": config.elo.k, "scale": config.elo.scale, "base": config.elo.base,
                    "initial": config.elo.initial},
            "trueskill": {"mu": config.trueskill.mu, "sigma": config.trueskill.sigma,
                          "beta": config.trueskill.beta, "tau": config.trueskill.tau,
                          "draw_probability": config.trueskill.draw_probability},
            "both_bad_as_draw": config.both_bad_as_draw,
            "bt": {"rounds": BT_ROUNDS, "seed": BT_SEED},
        },
        "votes": [
            {"minutes": m, "kind": k, "character": c, "shown": s, "outcome": o}
            for m, k, c, s, o in LOG
        ],
        "boards": boards,
    }


if __name__ == "__main__":
    path = HERE / "ratings.json"
    path.write_text(json.dumps(expected(), indent=1) + "\n")
    print(f"wrote {path}")
