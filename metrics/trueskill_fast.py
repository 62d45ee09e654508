"""TrueSkill for arena votes: the ``trueskill`` package's model, computed faster.

TrueSkill (Herbrich, Minka & Graepel 2007, "TrueSkill: A Bayesian Skill Rating System") keeps a
Gaussian N(mu, sigma^2) per player. The ``trueskill`` package (Heungsub Lee) is the reference:
its model, parameters (mu 25, sigma 25/3, beta sigma/2, tau sigma/100, draw probability 0.10)
and numeric primitives are used here unchanged: its ``ppf`` and its ``erfc`` approximation,
the latter through the same standard-normal ``cdf``/``pdf`` formulas as its default backend
(bit for bit, a test checks). What is faster is the arithmetic around them, done in C by
``metrics._trueskill_kernel`` (metrics/_trueskill_kernel.c):

- a duel is the closed form of the two-player factor graph (Herbrich et al. 2007, Table 1;
  Moser 2010, "Computing Your Skill"): with ``c^2 = 2 beta^2 + s_w^2 + s_l^2``,
  ``mu_w += s_w^2 / c * v(t, e)``, ``mu_l -= s_l^2 / c * v(t, e)``,
  ``s^2 *= 1 - s^2 / c^2 * w(t, e)``, where ``s^2`` is sigma^2 + tau^2, ``t`` the mean
  difference over ``c``, ``e`` the draw margin over ``c`` and v, w the truncated-Gaussian
  corrections for a win or a draw;
- a game of three or more single players replays the package's message schedule (the chain of
  team-difference factors swept forward and backward until the largest change is at most
  ``min_delta`` = 1e-4, at most 10 sweeps) on plain doubles instead of factor and message
  objects, in the same order of operations, so it reproduces the package's numbers bit for
  bit.

A best-of-four vote is rated as the winner's three duels (see
:func:`metrics.outcomes.trueskill_games`), each from the pre-vote ratings; every loser takes its
duel's result and the winner's three likelihood messages multiply: in natural parameters,
``pi = pi_0 + sum(pi_i - pi_0)`` and ``tau = tau_0 + sum(tau_i - tau_0)`` where
``(pi_0, tau_0)`` is the winner's prior widened by the dynamics factor tau, the single
expectation-propagation pass of the star-shaped factor graph "winner beats each of three".

Leaderboards sort by the conservative score ``mu - 3 sigma`` (Herbrich et al. 2007, sec. 4).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import trueskill

from metrics.compiled import compiled
from metrics.outcomes import RankedGame

_trueskill_kernel = compiled("_trueskill_kernel")

__all__ = [
    "Rating",
    "TrueSkillModel",
    "TrueSkillParams",
    "conservative_score",
]

Rating = tuple[float, float]  # (mu, sigma)

_SIGMA = 25.0 / 3  # the package's defaults, written as it derives them


@dataclass(frozen=True, slots=True)
class TrueSkillParams:
    """TrueSkill environment parameters (the ``trueskill`` package's defaults)."""

    mu: float = 25.0
    sigma: float = _SIGMA
    beta: float = _SIGMA / 2
    tau: float = _SIGMA / 100
    draw_probability: float = 0.10

    def __post_init__(self) -> None:
        for name in ("sigma", "beta"):
            if not getattr(self, name) > 0:
                raise ValueError(
                    f"trueskill {name}: expected a positive number, got {getattr(self, name)!r}"
                )
        if not self.tau >= 0:
            raise ValueError(f"trueskill tau: expected a number >= 0, got {self.tau!r}")
        if not 0 <= self.draw_probability < 1:
            raise ValueError(
                "trueskill draw_probability: expected a number in [0, 1), "
                f"got {self.draw_probability!r}"
            )

    def env(self) -> trueskill.TrueSkill:
        """The ``trueskill`` package environment with these parameters."""
        return trueskill.TrueSkill(
            mu=self.mu,
            sigma=self.sigma,
            beta=self.beta,
            tau=self.tau,
            draw_probability=self.draw_probability,
        )


def conservative_score(mu: float, sigma: float) -> float:
    """The leaderboard's sort key, ``mu - 3 sigma``: a skill the player exceeds with ~99.9%."""
    return mu - 3.0 * sigma


def _unstable(ratings: Sequence[Rating]) -> FloatingPointError:
    shown = ", ".join(f"({mu:.3f}, {sigma:.3f})" for mu, sigma in ratings)
    return FloatingPointError(
        f"trueskill: the update underflows for ratings {shown}; "
        "the outcome is too unlikely for double precision"
    )


class TrueSkillModel:
    """Rates TrueSkill games; ``engine="package"`` runs the ``trueskill`` package itself (the
    reference the fast engine is tested and benchmarked against)."""

    def __init__(
        self,
        params: TrueSkillParams | None = None,
        engine: Literal["fast", "package"] = "fast",
    ) -> None:
        if engine not in ("fast", "package"):
            raise ValueError(f"trueskill engine: expected 'fast' or 'package', got {engine!r}")
        self.params = params or TrueSkillParams()
        self.engine = engine
        self._env = self.params.env()
        self._beta2 = self.params.beta**2
        self._tau = self.params.tau
        # trueskill.calc_draw_margin for two single players (size 2), same order of operations.
        self._margin = (
            self._env.ppf((self.params.draw_probability + 1) / 2.0)
            * math.sqrt(2)
            * self.params.beta
        )

    # ----------------------------------------------------------------- one game
    def rate(self, ratings: Sequence[Rating], ranks: Sequence[int]) -> list[Rating]:
        """New (mu, sigma) of single players after one game; lower rank is better, equal
        ranks draw."""
        if len(ratings) != len(ranks) or len(ratings) < 2:
            raise ValueError(
                f"trueskill game: expected one rank per rating and at least 2 players, got "
                f"{len(ratings)} ratings and {len(ranks)} ranks"
            )
        return self._rate(ratings, ranks)

    def _rate(self, ratings: Sequence[Rating], ranks: Sequence[int]) -> list[Rating]:
        if self.engine == "package":
            groups = [(self._env.create_rating(mu, sigma),) for mu, sigma in ratings]
            return [(g[0].mu, g[0].sigma) for g in self._env.rate(groups, ranks=list(ranks))]
        rated = _trueskill_kernel.rate(ratings, ranks, self._beta2, self._tau, self._margin)
        if rated is None:
            raise _unstable(ratings)
        return rated

    def rate_games(
        self, ratings: Mapping[int, Rating], games: Sequence[RankedGame]
    ) -> dict[int, Rating]:
        """New ratings after a vote's games, all rated from the pre-vote ``ratings``; a
        checkpoint in several games (the best-of-four winner) multiplies their messages."""
        if len(games) == 1:
            checkpoints, ranks = games[0]
            rated = self._rate([ratings[c] for c in checkpoints], ranks)
            return dict(zip(checkpoints, rated, strict=True))
        results: dict[int, list[Rating]] = {}
        for game in games:
            rated = self.rate([ratings[c] for c in game.checkpoints], game.ranks)
            for checkpoint, rating in zip(game.checkpoints, rated, strict=True):
                results.setdefault(checkpoint, []).append(rating)
        out: dict[int, Rating] = {}
        for checkpoint, rated_list in results.items():
            if len(rated_list) == 1:
                out[checkpoint] = rated_list[0]
                continue
            mu, sigma = ratings[checkpoint]
            pi0 = 1.0 / (sigma * sigma + self._tau * self._tau)
            tau0 = pi0 * mu
            pi, tau = pi0, tau0
            for mu_i, sigma_i in rated_list:
                pi_i = 1.0 / (sigma_i * sigma_i)
                pi += pi_i - pi0
                tau += pi_i * mu_i - tau0
            out[checkpoint] = (tau / pi, math.sqrt(1.0 / pi))
        return out
