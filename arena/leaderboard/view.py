"""Everything one leaderboard view shows, as plain data: the dashboard, `arena report` and
`arena export leaderboard` all render this and compute nothing of their own.

A view reads only: the stored Elo and TrueSkill snapshots (never mixed across parameter
sets: a system whose snapshots were made with other parameters is left out and named in
``notices``), the board's aggregated log (:mod:`arena.leaderboard.log`: Bradley-Terry, heatmaps,
position bias, Elo over time), the stored CCIP and CLIP scores, and the checkpoints'
training configs. Statistics come from :mod:`metrics.rank_stats`.

Rank bands (as public arenas show them): a checkpoint's rank is 1 + the number of
checkpoints whose whole 95% interval lies above its own, so checkpoints whose intervals
overlap share a rank; a system without intervals (Elo, time-weighted Elo) ranks by rating,
ties sharing a rank.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pandas as pd
from sqlalchemy import select
from sqlalchemy.orm import Session

from arena.errors import UserError
from arena.leaderboard.log import BoardLog, board_log, board_where
from arena.models import Checkpoint, MetricScore, Prompt, RatingSnapshot, TrainingConfigRecord
from arena.ratings import (
    BT_REFIT_SECONDS,
    StaleRatings,
    bt_rows,
    rating_config,
    rating_parameters,
    snapshot_rows,
)
from arena.settings import Settings, get_settings
from metrics.elo import time_weighted_average
from metrics.match_kinds import MATCH_KINDS, MATCH_SIZES
from metrics.rank_stats import PositionBias, RankCorrelation, position_bias, spearman
from metrics.rating_book import OVERALL
from metrics.trueskill_fast import conservative_score

__all__ = [
    "KNOBS",
    "SYSTEMS",
    "TABLE_COLUMNS",
    "BoardView",
    "KnobCorrelation",
    "board_choices",
    "load_view",
    "rank_bands",
    "table_frame",
]

SYSTEMS = {"elo": "Elo", "tw_elo": "Time-weighted Elo", "trueskill": "TrueSkill",
           "bt": "Bradley-Terry"}
# Numeric training knobs a rating can be plotted against (config fields, and the checkpoint's
# own step); resolution is the side of a square with the same pixel count.
KNOBS = {
    "dataset_size": "Dataset size",
    "batch_size": "Batch size",
    "unet_lr": "U-Net learning rate",
    "text_encoder_lr": "Text-encoder learning rate",
    "epochs": "Epochs",
    "steps": "Training steps",
    "resolution": "Resolution (px)",
    "checkpoint_step": "Step of the checkpoint",
}
TABLE_COLUMNS = ("Rank", "Checkpoint", "Training config", "Step", "Rating", "95% lower",
                 "95% upper", "TrueSkill mu", "TrueSkill sigma", "mu - 3 sigma",
                 "Time-weighted Elo", "Games", "Win rate", "CCIP score", "CLIP score")
Z95 = 1.959963984540054


@dataclass(frozen=True)
class CheckpointInfo:
    """A checkpoint as the dashboard labels it, with its numeric training knobs."""

    id: int
    name: str
    config: str
    step: int | None
    knobs: dict[str, float]


@dataclass(frozen=True)
class KnobCorrelation:
    """How a training knob tracks the rating across checkpoints (Spearman, 95% interval)."""

    knob: str
    label: str
    correlation: RankCorrelation


@dataclass
class BoardView:
    """One board in one rating system, with everything the figures need."""

    board: str
    system: str
    strategy: str
    rows: list[dict[str, Any]]
    notices: list[str]
    checkpoints: dict[int, CheckpointInfo]
    log: BoardLog
    ccip: dict[tuple[int, str], float] = field(default_factory=dict)
    character_board: dict[str, dict[int, float]] = field(default_factory=dict)
    knobs: list[KnobCorrelation] = field(default_factory=list)
    agreement: dict[str, RankCorrelation] = field(default_factory=dict)
    position: dict[str, PositionBias] = field(default_factory=dict)

    @property
    def label(self) -> str:
        """``board · system`` as a title."""
        return f"{self.board} · {SYSTEMS[self.system]}"


def board_choices(session: Session) -> list[str]:
    """The overall and per-kind boards, then one fixed-character board per character."""
    characters = session.scalars(
        select(Prompt.character)
        .where(Prompt.kind == "fixed", Prompt.character.is_not(None))
        .distinct()
        .order_by(Prompt.character)
    ).all()
    return [OVERALL, *MATCH_KINDS, *(f"fixed/{c}" for c in characters)]


def rank_bands(rows: list[dict[str, Any]]) -> None:
    """Set ``rank`` on rows (see the module docstring) and sort them best first."""
    rows.sort(key=lambda r: (-r["rating"], r["checkpoint"]))
    for row in rows:
        if row["lower"] is not None and row["upper"] is not None:
            row["rank"] = 1 + sum(
                1 for other in rows
                if other["lower"] is not None and other["lower"] > row["upper"]
            )
        else:
            row["rank"] = 1 + sum(1 for other in rows if other["rating"] > row["rating"])


def _knobs(data: dict[str, Any], step: int | None) -> dict[str, float]:
    knobs: dict[str, float] = {}
    for name in ("dataset_size", "batch_size", "unet_lr", "text_encoder_lr", "epochs", "steps"):
        value = data.get(name)
        if isinstance(value, int | float) and not isinstance(value, bool):
            knobs[name] = float(value)
    resolution = data.get("resolution")
    if isinstance(resolution, dict) and resolution.get("width") and resolution.get("height"):
        knobs["resolution"] = (float(resolution["width"]) * float(resolution["height"])) ** 0.5
    if step is not None:
        knobs["checkpoint_step"] = float(step)
    return knobs


def _checkpoints(session: Session) -> dict[int, CheckpointInfo]:
    rows = session.execute(
        select(Checkpoint.id, Checkpoint.name, Checkpoint.step, TrainingConfigRecord.name,
               TrainingConfigRecord.data)
        .join(TrainingConfigRecord, TrainingConfigRecord.id == Checkpoint.config_id)
    )
    return {cid: CheckpointInfo(cid, name, config, step, _knobs(data or {}, step))
            for cid, name, step, config, data in rows}


def _scores(session: Session, metric: str) -> dict[tuple[int, str | None], float]:
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


def _snapshots(session: Session, board: str, system: str, settings: Settings,
               notices: list[str]) -> dict[int, RatingSnapshot] | None:
    try:
        return {s.checkpoint_id: s for s in snapshot_rows(session, board, system, settings)}
    except StaleRatings as exc:
        notices.append(f"{exc} (its numbers are not shown)")
        return None


def _character_board(session: Session, settings: Settings,
                     notices: list[str]) -> dict[str, dict[int, float]]:
    """Time-weighted Elo per character board (the report's character-fidelity board)."""
    params = rating_parameters("elo", settings)
    rows = session.scalars(
        select(RatingSnapshot).where(RatingSnapshot.system == "elo",
                                     RatingSnapshot.board.like("fixed/%"))
    ).all()
    if any(r.parameters != params for r in rows):
        notices.append("the character boards' Elo snapshots were computed with other rating "
                       "parameters; run `arena ratings recompute`")
        return {}
    by_board: dict[str, list[RatingSnapshot]] = {}
    for r in rows:
        by_board.setdefault(r.board.removeprefix("fixed/"), []).append(r)
    out: dict[str, dict[int, float]] = {}
    for character, snaps in sorted(by_board.items()):
        now = max((s.held_since for s in snaps if s.held_since is not None), default=0.0)
        out[character] = {
            s.checkpoint_id: time_weighted_average(s.weighted_sum, s.held_since, s.first_time,
                                                   s.rating, now)
            for s in snaps
        }
    return out


def _rows(system: str, checkpoints: dict[int, CheckpointInfo],
          elo: dict[int, RatingSnapshot] | None, ts: dict[int, RatingSnapshot] | None,
          bt: list[dict[str, Any]] | None, ccip: dict[int, float],
          clip: dict[int, float]) -> list[dict[str, Any]]:
    now = max((s.held_since for s in (elo or {}).values() if s.held_since is not None),
              default=0.0)
    if system == "bt":
        ids = [r["checkpoint_id"] for r in bt or []]
    else:
        source = elo if system in ("elo", "tw_elo") else ts
        ids = sorted(source or {})
    bt_by_id = {r["checkpoint_id"]: r for r in bt or []}
    rows = []
    for cid in ids:
        info = checkpoints[cid]
        e = (elo or {}).get(cid)
        t = (ts or {}).get(cid)
        tw = (time_weighted_average(e.weighted_sum, e.held_since, e.first_time, e.rating, now)
              if e is not None else None)
        mu = t.mu if t is not None else None
        sigma = t.sigma if t is not None else None
        conservative = conservative_score(mu, sigma) if mu is not None and sigma else None
        lower = upper = None
        if system == "bt":
            b = bt_by_id[cid]
            rating, lower, upper = b["rating"], b["lower"], b["upper"]
            games, wins, draws = b["games"], b["wins"], b["draws"]
        else:
            counts = e if system in ("elo", "tw_elo") else t
            if counts is None:  # ids come from this system's snapshots
                continue
            games, wins, draws = counts.games, counts.wins, counts.draws
            if system == "elo":
                rating = e.rating  # type: ignore[union-attr]
            elif system == "tw_elo":
                rating = tw
            else:
                rating = conservative
                lower, upper = mu - Z95 * sigma, mu + Z95 * sigma  # type: ignore[operator]
        rows.append({
            "checkpoint_id": cid,
            "checkpoint": info.name,
            "config": info.config,
            "step": info.step,
            "rating": float(rating),  # type: ignore[arg-type]
            "lower": lower,
            "upper": upper,
            "mu": mu,
            "sigma": sigma,
            "conservative": conservative,
            "time_weighted": tw,
            "games": int(games),
            "wins": int(wins),
            "draws": int(draws),
            "win_rate": (wins + 0.5 * draws) / games if games else None,
            "ccip": ccip.get(cid),
            "clip": clip.get(cid),
        })
    rank_bands(rows)
    return rows


def load_view(session: Session, board: str = OVERALL, system: str = "elo",
              settings: Settings | None = None, wait: bool = False) -> BoardView:
    """Read one board in one system; a UserError names an unknown board or system.
    Bradley-Terry: the newest fit at hand, refitted in the background, unless ``wait`` (a
    report or export fits the newest votes)."""
    s = settings or get_settings()
    if system not in SYSTEMS:
        raise UserError(f"system: expected one of {', '.join(SYSTEMS)}, got {system!r}")
    board_where(board)
    notices: list[str] = []
    checkpoints = _checkpoints(session)
    elo = _snapshots(session, board, "elo", s, notices)
    ts = _snapshots(session, board, "trueskill", s, notices)
    log = board_log(session, board, rating_config(s))
    bt = bt_rows(session, board, s, wait=wait) if system == "bt" else None
    if bt and bt[0]["fit_vote_id"] < log.last_vote_id:
        notices.append(
            f"Bradley-Terry as fitted on this board's votes up to #{bt[0]['fit_vote_id']}; "
            f"newer votes (up to #{log.last_vote_id}) join at the next refit, which runs "
            f"in the background at most every {BT_REFIT_SECONDS:.0f} s"
        )
    character = board.removeprefix("fixed/") if board.startswith("fixed/") else None
    ccip_scores = _scores(session, "ccip")
    ccip = {(cid, char): v for (cid, char), v in ccip_scores.items() if char is not None}
    clip = _per_checkpoint(_scores(session, "clip_score"), character)
    selected_stale = (system in ("elo", "tw_elo") and elo is None) or (
        system == "trueskill" and ts is None)
    rows = [] if selected_stale else _rows(system, checkpoints, elo, ts, bt,
                                           _per_checkpoint(ccip_scores, character), clip)
    view = BoardView(board, system, s.matchmaking_strategy, rows, notices, checkpoints, log,
                     ccip=ccip)
    view.character_board = _character_board(session, s, notices)
    view.knobs = knob_correlations(view)
    for character_name, ratings in view.character_board.items():
        pairs = [(ratings[cid], value) for (cid, char), value in ccip.items()
                 if char == character_name and cid in ratings]
        if pairs:
            view.agreement[character_name] = spearman([p[0] for p in pairs],
                                                      [p[1] for p in pairs])
    for kind in MATCH_KINDS:
        wins = log.position_wins.get(kind)
        if wins and len(wins) == MATCH_SIZES[kind]:
            bias = view.position[kind] = position_bias(wins)
            if bias.significant():
                shares = ", ".join(f"{share:.0%}" for share in bias.shares)
                notices.append(
                    f"position bias in {kind} matches: wins by shown position {shares} "
                    f"(p = {bias.p_value:.3g}); positions are shuffled, so this is the voters' "
                    "habit, not the checkpoints'"
                )
    return view


def knob_correlations(view: BoardView) -> list[KnobCorrelation]:
    """Spearman's rho between each numeric knob and the rating, over the board's rows."""
    out = []
    for knob, label in KNOBS.items():
        pairs = [(view.checkpoints[r["checkpoint_id"]].knobs[knob], r["rating"])
                 for r in view.rows if knob in view.checkpoints[r["checkpoint_id"]].knobs]
        if pairs:
            out.append(KnobCorrelation(knob, label, spearman([p[0] for p in pairs],
                                                             [p[1] for p in pairs])))
    return out


def _num(value: float | None, digits: int) -> float | None:
    return None if value is None else round(float(value), digits)


def table_frame(view: BoardView) -> pd.DataFrame:
    """The leaderboard table exactly as shown (and as downloaded as CSV)."""
    table = [
        (
            int(r["rank"]), r["checkpoint"], r["config"], r["step"],
            _num(r["rating"], 1), _num(r["lower"], 1), _num(r["upper"], 1),
            _num(r["mu"], 2), _num(r["sigma"], 2), _num(r["conservative"], 2),
            _num(r["time_weighted"], 1), r["games"], _num(r["win_rate"], 3),
            _num(r["ccip"], 3), _num(r["clip"], 3),
        )
        for r in view.rows
    ]
    frame = pd.DataFrame(table, columns=list(TABLE_COLUMNS))
    return frame.astype({"Step": "Int64"})
