"""Everything one leaderboard view shows, as plain data: the dashboard, `arena report` and
`arena export leaderboard` all render this and compute nothing of their own.

A view reads only: the stored Elo and TrueSkill snapshots (never mixed across parameter
sets: a system whose snapshots were made with other parameters is left out and named in
``notices``), the board's aggregated log (:mod:`arena.leaderboard.log`: Bradley-Terry, heatmaps,
position bias, Elo over time), the stored CCIP and CLIP scores, and the checkpoints'
training configs. Statistics come from :mod:`metrics.rank_stats`.

The table's rows and ranks are :func:`arena.leaderboard.rows.board_rows`, the same rows the
API, the CLI and the hooks show.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pandas as pd
from sqlalchemy import select
from sqlalchemy.orm import Session

from arena.errors import NotFound
from arena.leaderboard.fits import BT_REFIT_SECONDS, bt_rows
from arena.leaderboard.log import BoardLog, board_log
from arena.leaderboard.robust import (
    disagreements,
    position_warnings,
    robust_rows,
    robust_summary,
    rows_of,
)
from arena.leaderboard.rows import board_rows, latest_scores
from arena.leaderboard.voters import robust_fit_in_hand
from arena.models import Checkpoint, Prompt, RatingSnapshot, TrainingConfigRecord
from arena.ratings import rating_config, rating_parameters
from arena.settings import Settings, get_settings
from metrics.boards import CHARACTER_KIND, OVERALL, board_name, kind_boards, parse_board
from metrics.elo import time_weighted_average
from metrics.match_kinds import MATCH_KINDS, MATCH_SIZES
from metrics.rank_stats import PositionBias, RankCorrelation, position_bias, spearman
from metrics.rating_systems import DEFAULT_SYSTEM, SYSTEMS

__all__ = [
    "KNOBS",
    "MIN_CORRELATION_CHECKPOINTS",
    "MISSING",
    "TABLE_COLUMNS",
    "BoardView",
    "KnobCorrelation",
    "board_choices",
    "load_view",
    "table_frame",
]

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
# What a table shows where a value is missing (a system without intervals, a score not
# computed yet).
MISSING = "—"
# Below this many checkpoints a rank correlation and its interval say nothing: not shown.
MIN_CORRELATION_CHECKPOINTS = 5
TABLE_COLUMNS = ("Rank", "Checkpoint", "Training config", "Step", "Rating", "95% lower",
                 "95% upper", "TrueSkill mu", "TrueSkill sigma", "mu - 3 sigma",
                 "Time-weighted Elo", "Games", "Win rate", "CCIP score", "CLIP score")


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
    # The robust board: what it discounted and its fitted position terms.
    robust: dict[str, Any] | None = None

    @property
    def covers(self) -> int:
        """The newest vote every row of the view accounts for (a Bradley-Terry fit may lag
        the log: then the whole row is the fit's)."""
        fitted = [r["fit_vote_id"] for r in self.rows if r.get("fit_vote_id") is not None]
        return fitted[0] if fitted else self.log.last_vote_id

    @property
    def label(self) -> str:
        """``board · system`` as a title."""
        return f"{self.board} · {SYSTEMS[self.system].label}"


def board_choices(session: Session) -> list[str]:
    """The overall and per-kind boards, then one fixed-character board per character."""
    characters = session.scalars(
        select(Prompt.character)
        .where(Prompt.kind == CHARACTER_KIND, Prompt.character.is_not(None))
        .distinct()
        .order_by(Prompt.character)
    ).all()
    return [*kind_boards(), *(board_name(CHARACTER_KIND, c) for c in characters)]


def require_board(session: Session, board: str) -> None:
    """A :class:`NotFound` naming the known boards when ``board`` is not one of them."""
    boards = board_choices(session)
    if board not in boards:
        shown = ", ".join(boards[:8]) + (", ..." if len(boards) > 8 else "")
        raise NotFound(f"unknown board {board[:80]!r}; expected one of: {shown}")


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


def _character_board(session: Session, settings: Settings,
                     notices: list[str]) -> dict[str, dict[int, float]]:
    """Time-weighted Elo per character board (the report's character-fidelity board)."""
    params = rating_parameters("elo", settings)
    rows = session.scalars(
        select(RatingSnapshot).where(RatingSnapshot.system == "elo",
                                     RatingSnapshot.board.like(f"{CHARACTER_KIND}/%"))
    ).all()
    if any(r.parameters != params for r in rows):
        notices.append("the character boards' Elo snapshots were computed with other rating "
                       "parameters; run `arena ratings recompute`")
        return {}
    by_board: dict[str, list[RatingSnapshot]] = {}
    for r in rows:
        by_board.setdefault(parse_board(r.board).character or "", []).append(r)
    out: dict[str, dict[int, float]] = {}
    for character, snaps in sorted(by_board.items()):
        now = max((s.held_since for s in snaps if s.held_since is not None), default=0.0)
        out[character] = {
            s.checkpoint_id: time_weighted_average(s.weighted_sum, s.held_since, s.first_time,
                                                   s.rating, now)
            for s in snaps
        }
    return out


def load_view(session: Session, board: str = OVERALL, system: str = DEFAULT_SYSTEM,
              settings: Settings | None = None, wait: bool = False) -> BoardView:
    """Read one board in one system; a UserError names an unknown board or system.
    Bradley-Terry: the newest fit at hand, refitted in the background, unless ``wait`` (a
    report or export fits the newest votes)."""
    s = settings or get_settings()
    found = board_rows(session, board, system, s, wait=wait)
    notices = found.notices
    checkpoints = _checkpoints(session)
    log = board_log(session, board, rating_config(s))
    fitted = [r["fit_vote_id"] for r in found.rows if r["fit_vote_id"] is not None]
    if fitted and fitted[0] < log.last_vote_id:
        # One moment per row: the other systems' snapshots already count the newer votes.
        for row in found.rows:
            row.update(mu=None, sigma=None, conservative=None, time_weighted=None)
        notices.append(
            f"Bradley-Terry as fitted on this board's votes up to #{fitted[0]}; "
            f"newer votes (up to #{log.last_vote_id}) join at the next refit, which runs "
            f"in the background at most every {BT_REFIT_SECONDS:.0f} s"
        )
    ccip = {(cid, char): v for (cid, char), v in latest_scores(session, "ccip").items()
            if char is not None}
    view = BoardView(board, system, s.matchmaking_strategy, found.rows, notices, checkpoints,
                     log, ccip=ccip)
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
            view.position[kind] = position_bias(wins)
    _robust_notices(session, view, s, wait)
    return view


def _robust_notices(session: Session, view: BoardView, settings: Settings, wait: bool) -> None:
    """What the robust board says about this board: the position bias from its fitted term
    (win shares by position mix the bias with who was shown where), checkpoints whose plain
    and robust places differ by more than their intervals allow, and what it discounted."""
    if wait:
        robust, result = robust_rows(session, view.board, settings)
    else:  # a dashboard view never waits for a robust fit
        found = robust_fit_in_hand(session, view.board, settings)
        if found is None:
            view.notices.append("robust board: its first fit runs in the background; its "
                                "warnings appear on a later view")
            return
        robust, result = rows_of(*found), found[1]
    view.robust = robust_summary(result)
    for warning in position_warnings(result):
        view.notices.append(f"position bias in {warning}; positions are shuffled, so this is "
                            "the voters' habit, not the checkpoints'")
    plain = (view.rows if view.system == "bt"
             else bt_rows(session, view.board, settings, wait=wait))
    view.notices.extend(disagreements(plain, robust))
    if view.system == "robust" and result.flagged_voters + result.discounted_voters:
        view.notices.append(
            f"robust board: {result.flagged_voters} flagged voters left out "
            f"({result.flagged_votes} votes), {result.discounted_voters} voters "
            f"({result.discounted_votes} votes) counted at less than half weight")


def knob_correlations(view: BoardView) -> list[KnobCorrelation]:
    """Spearman's rho between each numeric knob and the rating, over the board's rows (shown
    from :data:`MIN_CORRELATION_CHECKPOINTS` checkpoints on)."""
    out = []
    for knob, label in KNOBS.items():
        pairs = [(view.checkpoints[r["checkpoint_id"]].knobs[knob], r["rating"])
                 for r in view.rows if knob in view.checkpoints[r["checkpoint_id"]].knobs]
        if pairs:
            out.append(KnobCorrelation(knob, label, spearman([p[0] for p in pairs],
                                                             [p[1] for p in pairs])))
    return out


def _num(value: float | None, digits: int) -> float | str:
    return MISSING if value is None else round(float(value), digits)


def table_frame(view: BoardView) -> pd.DataFrame:
    """The leaderboard table exactly as shown (and as downloaded as CSV)."""
    table = [
        (
            int(r["rank"]), r["checkpoint"], r["config"],
            MISSING if r["step"] is None else int(r["step"]),
            _num(r["rating"], 1), _num(r["lower"], 1), _num(r["upper"], 1),
            _num(r["mu"], 2), _num(r["sigma"], 2), _num(r["conservative"], 2),
            _num(r["time_weighted"], 1), r["games"], _num(r["win_rate"], 3),
            _num(r["ccip"], 3), _num(r["clip"], 3),
        )
        for r in view.rows
    ]
    return pd.DataFrame(table, columns=list(TABLE_COLUMNS))
