"""The robust board as leaderboard rows, what it discounted, and the warnings it supports.

:func:`robust_rows` formats :func:`arena.leaderboard.voters.robust_fit` (reliability-weighted,
position-aware Bradley-Terry with intervals resampled by voter, :mod:`metrics.robust`) in the
shape of the Bradley-Terry rows (rating, interval, games, without names), which the one row
builder (:func:`arena.leaderboard.rows.board_rows`, the ``robust`` system) ranks and names like
every other system's. :func:`robust_summary` says how many
voters and votes it discounted and gives the fitted position terms; :func:`disagreements`
names checkpoints whose plain and robust places differ by more than their intervals allow;
:func:`position_warnings` reads the position bias from the fitted term instead of raw win
shares.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy.orm import Session

from arena.leaderboard.voters import robust_fit_at_hand
from arena.settings import Settings
from metrics.robust import RobustResult

__all__ = ["disagreements", "place_ranges", "position_warnings", "robust_rows",
           "robust_summary", "rows_of"]

POSITION_NAMES = "ABCD"


def robust_rows(session: Session, board: str, settings: Settings | None = None,
                wait: bool = True) -> tuple[list[dict[str, Any]], RobustResult]:
    """The robust board's rows (without names) and its fit. ``wait=False``: the fit at hand,
    refitted in the background (see :func:`arena.leaderboard.voters.robust_fit_at_hand`)."""
    covers, result = robust_fit_at_hand(session, board, settings, wait=wait)
    return rows_of(covers, result), result


def rows_of(covers: int, result: RobustResult) -> list[dict[str, Any]]:
    """A robust fit as rows (without names): games count the votes the board reads
    (excluded votes left out, as on every board); ``fit_vote_id`` is ``covers``, the newest
    vote the fit covers."""
    empty = (0, 0, 0, 0)
    rows = []
    for r in result.ratings:
        games, wins, draws, losses = result.tallies.get(r.checkpoint_id, empty)
        rows.append({"checkpoint_id": r.checkpoint_id, "rating": r.rating, "lower": r.lower,
                     "upper": r.upper, "games": games, "wins": wins, "draws": draws,
                     "losses": losses, "fit_vote_id": covers})
    return rows


def robust_summary(result: RobustResult) -> dict[str, Any]:
    """What the robust board discounted, and its fitted position terms (log-odds against
    position A of the same match kind, with intervals)."""
    return {
        "votes": result.n_votes,
        "voters": sum(1 for s in result.voters.values() if s.votes),
        "flagged_voters": result.flagged_voters,
        "flagged_votes": result.flagged_votes,
        "discounted_voters": result.discounted_voters,
        "discounted_votes": result.discounted_votes,
        "position_terms": [{"kind": t.kind, "position": t.position, "value": t.value,
                            "lower": t.lower, "upper": t.upper} for t in result.position],
        "parameters": result.params.describe(),
    }


def place_ranges(rows: Sequence[dict[str, Any]]) -> dict[int, tuple[int, int]]:
    """Per checkpoint, the best and worst place its interval allows: 1 + the checkpoints
    surely above it (their lower bound above its upper), n - those surely below it."""
    ranges = {}
    for row in rows:
        above = sum(1 for o in rows if o["lower"] > row["upper"])
        below = sum(1 for o in rows if o["upper"] < row["lower"])
        ranges[row["checkpoint_id"]] = (1 + above, len(rows) - below)
    return ranges


def disagreements(plain: Sequence[dict[str, Any]],
                  robust: Sequence[dict[str, Any]]) -> list[str]:
    """Checkpoints whose places on plain Bradley-Terry and on the robust board cannot both be
    right: the place ranges their intervals allow do not overlap."""
    p, r = place_ranges(plain), place_ranges(robust)
    names = {row["checkpoint_id"]: row.get("checkpoint", str(row["checkpoint_id"]))
             for row in plain}
    out = []
    for cid in sorted(set(p) & set(r), key=lambda c: p[c]):
        (p_best, p_worst), (r_best, r_worst) = p[cid], r[cid]
        if p_worst < r_best or r_worst < p_best:
            out.append(f"{names[cid]} places {_span(p_best, p_worst)} on Bradley-Terry but "
                       f"{_span(r_best, r_worst)} on the robust board: votes the robust board "
                       "discounts move it (see `arena voters suspicious`)")
    return out


def _span(best: int, worst: int) -> str:
    return str(best) if best == worst else f"{best}-{worst}"


def position_warnings(result: RobustResult) -> list[str]:
    """Shown positions the fitted position term favours or disfavours beyond its interval."""
    out = []
    for t in result.position:
        if t.lower > 0 or t.upper < 0:
            side = "favoured" if t.value > 0 else "disfavoured"
            out.append(f"{t.kind}: position {POSITION_NAMES[t.position]} is {side} against "
                       f"position A by {t.value:+.2f} log-odds [{t.lower:+.2f}, {t.upper:+.2f}] "
                       "(fitted position term; the robust board corrects for it)")
    return out
