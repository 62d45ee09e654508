"""The one leaderboard row builder and the one rank rule, for every surface.

The API (``GET /api/v1/leaderboard``), ``arena ratings``, the trainer hooks, the dashboard,
``arena report`` and ``arena export leaderboard`` all show :func:`board_rows`; they only
format its rows. A row holds the checkpoint (id, name, training config, step), the selected
system's ``rating`` and 95% interval (``lower``/``upper``, None for a system without
intervals), the other systems' numbers on the same board (Elo's time-weighted average,
TrueSkill's ``mu``/``sigma``/``conservative``), the game counts and win rate, the stored CCIP
and CLIP scores, and ``fit_vote_id`` (Bradley-Terry: the newest vote its fit covers).

Rank rule (:func:`rank_rows`, as public arenas show it): in a system with intervals
(:attr:`metrics.rating_systems.RatingSystem.has_intervals`) a checkpoint's rank is 1 + the
number of checkpoints whose whole 95% interval lies above its own, so checkpoints whose
intervals overlap share a rank; in a system without intervals (Elo, time-weighted Elo) it is
1 + the number of checkpoints with a higher rating (equal ratings share a rank). Rows are
sorted by rating, best first, then by name.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from arena.errors import StaleRatings
from arena.leaderboard.fits import bt_rows
from arena.leaderboard.log import board_where
from arena.leaderboard.robust import robust_rows, robust_summary
from arena.models import Checkpoint, MetricScore, RatingSnapshot, TrainingConfigRecord
from arena.ratings import snapshot_rows
from arena.settings import Settings, get_settings
from metrics.boards import OVERALL, parse_board
from metrics.elo import time_weighted_average
from metrics.rating_systems import DEFAULT_SYSTEM, RatingSystem, check_system
from metrics.trueskill_fast import conservative_score

__all__ = ["Z95", "BoardRows", "board_document", "board_rows", "latest_scores", "leaderboard",
           "rank_rows", "system_for"]

# Two-sided 95% normal quantile: TrueSkill's interval is mu +- Z95 sigma.
Z95 = 1.959963984540054


@dataclass
class BoardRows:
    """One board's rows in one system; ``stale`` names why the system's numbers are not shown
    (its snapshots were made with other parameters), ``notices`` every such note."""

    board: str
    system: str
    rows: list[dict[str, Any]]
    notices: list[str] = field(default_factory=list)
    stale: str | None = None
    # The robust system: what it discounted and its fitted position terms
    # (:func:`arena.leaderboard.robust.robust_summary`).
    robust: dict[str, Any] | None = None


def system_for(name: str) -> RatingSystem:
    """The registry entry of ``name``; an InputError lists the valid systems."""
    return check_system(name)


def rank_rows(rows: list[dict[str, Any]], has_intervals: bool) -> None:
    """Sort ``rows`` best first and set each ``rank`` by the rule in the module docstring."""
    rows.sort(key=lambda r: (-r["rating"], r["checkpoint"]))
    for row in rows:
        if has_intervals:
            row["rank"] = 1 + sum(1 for other in rows if other["lower"] > row["upper"])
        else:
            row["rank"] = 1 + sum(1 for other in rows if other["rating"] > row["rating"])


def latest_scores(session: Session, metric: str) -> dict[tuple[int, str | None], float]:
    """The newest stored score of ``metric`` per (checkpoint, character)."""
    latest: dict[tuple[int, str | None], float] = {}
    for cid, character, value in session.execute(
        select(MetricScore.checkpoint_id, MetricScore.character, MetricScore.value)
        .where(MetricScore.metric == metric, MetricScore.checkpoint_id.is_not(None))
        .order_by(MetricScore.created_at, MetricScore.id)
    ):
        latest[(cid, character)] = float(value)
    return latest


def _per_checkpoint(scores: dict[tuple[int, str | None], float],
                    character: str | None) -> dict[int, float]:
    """One score per checkpoint: the board's character where it has one, else the mean."""
    values: dict[int, list[float]] = {}
    for (cid, char), value in scores.items():
        if character is None or char == character:
            values.setdefault(cid, []).append(value)
    return {cid: sum(v) / len(v) for cid, v in values.items()}


def _labels(session: Session, ids: list[int]) -> dict[int, tuple[str, str, int | None]]:
    """(name, training config, step) per checkpoint id."""
    if not ids:
        return {}
    return {
        cid: (name, config, step)
        for cid, name, config, step in session.execute(
            select(Checkpoint.id, Checkpoint.name, TrainingConfigRecord.name, Checkpoint.step)
            .join(TrainingConfigRecord, TrainingConfigRecord.id == Checkpoint.config_id)
            .where(Checkpoint.id.in_(ids))
        )
    }


def _snapshots(session: Session, board: str, system: str, settings: Settings,
               out: BoardRows) -> dict[int, RatingSnapshot] | None:
    """The board's snapshots of an online system, or None (and a notice) when stale."""
    try:
        return {s.checkpoint_id: s for s in snapshot_rows(session, board, system, settings)}
    except StaleRatings as exc:
        out.notices.append(f"{exc} (its numbers are not shown)")
        if out.system == system or check_system(out.system).parameters == system:
            out.stale = str(exc)
        return None


def board_rows(session: Session, board: str = OVERALL, system: str = DEFAULT_SYSTEM,
               settings: Settings | None = None, wait: bool = True) -> BoardRows:
    """The rows of ``board`` in ``system`` (read-only). A UserError names an unknown board or
    system. Bradley-Terry: the newest fit, unless ``wait=False`` (the dashboard), which takes
    the fit at hand and refits in the background (:func:`arena.leaderboard.fits.bt_rows`);
    the robust board likewise (:func:`arena.leaderboard.robust.robust_rows`), and says what it
    discounted in ``robust``."""
    s = settings or get_settings()
    chosen = system_for(system)
    board_where(board)
    out = BoardRows(board, system, [])
    elo = _snapshots(session, board, "elo", s, out)
    ts = _snapshots(session, board, "trueskill", s, out)
    if out.stale is not None:
        return out
    bt = ({r["checkpoint_id"]: r for r in bt_rows(session, board, s, wait=wait)}
          if chosen.source == "bt" else {})
    if chosen.source == "robust":  # a fitted system like bt: the same columns
        fitted, result = robust_rows(session, board, s, wait=wait)
        bt = {r["checkpoint_id"]: r for r in fitted}
        out.robust = robust_summary(result)
    source = {"elo": elo, "tw_elo": elo, "trueskill": ts, "bt": bt,
              "robust": bt}[chosen.source] or {}
    ids = list(source)
    labels = _labels(session, ids)
    character = parse_board(board).character
    ccip = _per_checkpoint(latest_scores(session, "ccip"), character)
    clip = _per_checkpoint(latest_scores(session, "clip_score"), character)
    now = max((e.held_since for e in (elo or {}).values() if e.held_since is not None),
              default=0.0)
    for cid in ids:
        e, t, b = (elo or {}).get(cid), (ts or {}).get(cid), bt.get(cid)
        tw = (time_weighted_average(e.weighted_sum, e.held_since, e.first_time, e.rating, now)
              if e is not None else None)
        mu = t.mu if t is not None else None
        sigma = t.sigma if t is not None else None
        conservative = conservative_score(mu, sigma) if mu is not None and sigma else None
        lower = upper = None
        if b is not None:
            rating, lower, upper = b["rating"], b["lower"], b["upper"]
            counts = (b["games"], b["wins"], b["draws"], b["losses"])
        else:
            snap = e if chosen.source in ("elo", "tw_elo") else t
            if snap is None:  # not reached: ids come from this system's snapshots
                continue
            counts = (snap.games, snap.wins, snap.draws, snap.losses)
            if chosen.source == "elo":
                rating = snap.rating
            elif chosen.source == "tw_elo":
                rating = tw
            else:
                rating = mu  # inside its own interval; mu - 3 sigma is its own column
                lower, upper = mu - Z95 * sigma, mu + Z95 * sigma  # type: ignore[operator]
        games, wins, draws, losses = (int(n) for n in counts)
        name, config, step = labels[cid]
        out.rows.append({
            "rank": 0,
            "checkpoint_id": cid,
            "checkpoint": name,
            "config": config,
            "step": step,
            "rating": float(rating),  # type: ignore[arg-type]
            "lower": lower,
            "upper": upper,
            "mu": mu,
            "sigma": sigma,
            "conservative": conservative,
            "time_weighted": tw,
            "games": games,
            "wins": wins,
            "draws": draws,
            "losses": losses,
            "win_rate": (wins + 0.5 * draws) / games if games else None,
            "ccip": ccip.get(cid),
            "clip": clip.get(cid),
            "fit_vote_id": b["fit_vote_id"] if b is not None else None,
        })
    rank_rows(out.rows, chosen.has_intervals)
    return out


def board_document(session: Session, board: str = OVERALL, system: str = DEFAULT_SYSTEM,
                   settings: Settings | None = None) -> dict[str, Any]:
    """:func:`board_rows` for the API and ``arena ratings``: board, system, rows and, for the
    robust system, ``robust`` (what it discounted, its position terms);
    :class:`arena.errors.StaleRatings` when the system's snapshots are stale."""
    found = board_rows(session, board, system, settings)
    if found.stale is not None:
        raise StaleRatings(found.stale)
    document: dict[str, Any] = {"board": board, "system": system, "rows": found.rows}
    if found.robust is not None:
        document["robust"] = found.robust
    return document


def leaderboard(session: Session, board: str = OVERALL, system: str = DEFAULT_SYSTEM,
                settings: Settings | None = None) -> list[dict[str, Any]]:
    """:func:`board_document`'s rows (the hooks)."""
    rows: list[dict[str, Any]] = board_document(session, board, system, settings)["rows"]
    return rows
