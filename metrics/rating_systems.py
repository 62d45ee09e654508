"""The rating systems a leaderboard can be shown in, defined once for every package.

Each entry says what a board's rows hold in that system: where the ``rating`` column comes
from (an online snapshot updated per vote, or a fit of the board's log), whether rows carry a
95% interval (which decides the rank rule, :func:`arena.leaderboard.rows.rank_rows`), and which
stored parameter set produced the numbers. The API's accepted values, the CLI's help and the
dashboard's buttons read this table; a new system is one entry here plus, for a new source,
one branch in :mod:`arena.leaderboard.rows`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from metrics.errors import InputError

__all__ = [
    "DEFAULT_SYSTEM",
    "ONLINE_SYSTEMS",
    "REPORT_SYSTEM",
    "SYSTEMS",
    "RatingSystem",
    "check_system",
    "system_help",
]

Source = Literal["elo", "tw_elo", "trueskill", "bt", "robust"]


@dataclass(frozen=True)
class RatingSystem:
    """One rating system as the leaderboard shows it.

    ``source``: what fills the ``rating`` column (``elo``: the Elo snapshot; ``tw_elo``: the
    time-weighted average of the Elo snapshot; ``trueskill``: mu - 3 sigma of the TrueSkill
    snapshot; ``bt``: the Bradley-Terry fit of the board's log). ``online``: updated in the
    vote's transaction (stored as snapshots of this name) rather than fitted when read.
    ``parameters``: the system whose stored parameters produce the numbers.
    ``sort``: what the rows are sorted by, best first (for provenance). ``simulated``: the
    convergence simulator (:mod:`metrics.simulate`) can rank by it.
    """

    name: str
    label: str
    source: Source
    has_intervals: bool
    online: bool
    parameters: str
    sort: str
    simulated: bool = False


SYSTEMS: dict[str, RatingSystem] = {
    s.name: s
    for s in (
        RatingSystem("elo", "Elo", "elo", has_intervals=False, online=True, parameters="elo",
                     sort="Elo rating", simulated=True),
        RatingSystem("tw_elo", "Time-weighted Elo", "tw_elo", has_intervals=False, online=False,
                     parameters="elo", sort="time-weighted average of the Elo rating"),
        RatingSystem("trueskill", "TrueSkill", "trueskill", has_intervals=True, online=True,
                     parameters="trueskill", sort="mu - 3 sigma", simulated=True),
        RatingSystem("bt", "Bradley-Terry", "bt", has_intervals=True, online=False,
                     parameters="bt", sort="Bradley-Terry rating (bootstrap intervals)",
                     simulated=True),
        RatingSystem("robust", "Robust Bradley-Terry", "robust", has_intervals=True,
                     online=False, parameters="robust",
                     sort="reliability-weighted, position-aware Bradley-Terry rating without "
                          "flagged voters (intervals resampled by voter; metrics/robust.py)",
                     simulated=True),
    )
}
# The systems stored as snapshots and updated per vote.
ONLINE_SYSTEMS: tuple[str, ...] = tuple(name for name, s in SYSTEMS.items() if s.online)
# What the API, `arena ratings`, the hooks and the dashboard show unless asked otherwise.
DEFAULT_SYSTEM = "elo"
# What `arena report` and `arena export leaderboard` show unless asked otherwise.
REPORT_SYSTEM = "bt"


def system_help(simulated: bool = False) -> str:
    """The systems (``simulated``: those the simulator ranks by) as a CLI help sentence:
    ``elo, tw_elo, trueskill or bt.``"""
    names = [n for n, s in SYSTEMS.items() if s.simulated or not simulated]
    return f"{', '.join(names[:-1])} or {names[-1]}."


def check_system(name: str, what: str = "system") -> RatingSystem:
    """The system called ``name``; else an InputError naming the input and the choices."""
    system = SYSTEMS.get(name)
    if system is None:
        raise InputError(f"{what}: expected one of {', '.join(SYSTEMS)}, got {name!r}")
    return system
