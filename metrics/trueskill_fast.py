"""TrueSkill for arena votes: the ``trueskill`` package's model, computed faster.

TrueSkill (Herbrich, Minka & Graepel 2007, "TrueSkill: A Bayesian Skill Rating System") keeps a
Gaussian N(mu, sigma^2) per player. The ``trueskill`` package (Heungsub Lee) is the reference:
its model, parameters (mu 25, sigma 25/3, beta sigma/2, tau sigma/100, draw probability 0.10)
and numeric primitives are used here unchanged: its ``ppf`` and its ``erfc`` approximation,
the latter through the same standard-normal ``cdf``/``pdf`` formulas as its default backend
(bit for bit, a test checks). What is faster is the arithmetic around them:

- a duel is the closed form of the two-player factor graph (Herbrich et al. 2007, Table 1;
  Moser 2010, "Computing Your Skill"): with ``c^2 = 2 beta^2 + s_w^2 + s_l^2``,
  ``mu_w += s_w^2 / c * v(t, e)``, ``mu_l -= s_l^2 / c * v(t, e)``,
  ``s^2 *= 1 - s^2 / c^2 * w(t, e)``, where ``s^2`` is sigma^2 + tau^2, ``t`` the mean
  difference over ``c``, ``e`` the draw margin over ``c`` and v, w the truncated-Gaussian
  corrections for a win or a draw;
- a game of three or more single players replays the package's message schedule (the chain of
  team-difference factors swept forward and backward until the largest change is at most
  ``min_delta`` = 1e-4, at most 10 sweeps) on plain floats instead of factor and message
  objects, in the same order of operations, so it reproduces the package's numbers.

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
from trueskill.backends import erfc as _erfc

from metrics.outcomes import RankedGame

__all__ = [
    "Rating",
    "TrueSkillModel",
    "TrueSkillParams",
    "conservative_score",
]

Rating = tuple[float, float]  # (mu, sigma)

_SIGMA = 25.0 / 3  # the package's defaults, written as it derives them
_MIN_DELTA = 0.0001  # trueskill.DELTA: the schedule stops once no message moves more
_MAX_SWEEPS = 10  # the package's cap on forward/backward sweeps
_SQRT2 = math.sqrt(2)
_PDF_SCALE = 1 / math.sqrt(2 * math.pi) * 1  # the package's pdf prefactor at sigma 1


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


def _cdf(x: float) -> float:
    """The package's default ``cdf(x)`` (mu 0, sigma 1), its erfc, same operations."""
    return 0.5 * _erfc(-x / _SQRT2)


def _pdf(x: float) -> float:
    """The package's default ``pdf(x)`` (mu 0, sigma 1), same operations."""
    return _PDF_SCALE * math.exp(-(x**2 / 2))


def _draw_vw(diff: float, margin: float) -> tuple[float, float] | None:
    """``TrueSkill.v_draw`` and ``w_draw``; None where the package raises."""
    abs_diff = abs(diff)
    a, b = margin - abs_diff, -margin - abs_diff
    denom = _cdf(a) - _cdf(b)
    if not denom:
        return None
    pdf_a, pdf_b = _pdf(a), _pdf(b)
    v = (pdf_b - pdf_a) / denom
    return v * (-1 if diff < 0 else +1), v**2 + (a * pdf_a - b * pdf_b) / denom


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
        if len(ratings) == 2:
            return self.rate_duel(ratings, ranks)
        return self._rate_chain(ratings, ranks)

    def rate_games(
        self, ratings: Mapping[int, Rating], games: Sequence[RankedGame]
    ) -> dict[int, Rating]:
        """New ratings after a vote's games, all rated from the pre-vote ``ratings``; a
        checkpoint in several games (the best-of-four winner) multiplies their messages."""
        if len(games) == 1:
            checkpoints, ranks = games[0]
            if len(checkpoints) == 2 and self.engine == "fast":
                a, b = checkpoints
                new_a, new_b = self.rate_duel((ratings[a], ratings[b]), ranks)
                return {a: new_a, b: new_b}
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

    # ------------------------------------------------------------------- duels
    def rate_duel(self, ratings: Sequence[Rating], ranks: Sequence[int]) -> list[Rating]:
        """New (mu, sigma) of the two players of a duel (the fast engine's closed form, what
        :meth:`rate` does for two players); ranks as in :meth:`rate`."""
        first = 1 if ranks[1] < ranks[0] else 0  # the package sorts by rank, stably
        (mu_a, sigma_a), (mu_b, sigma_b) = ratings[first], ratings[1 - first]
        tau2 = self._tau * self._tau
        var_a = sigma_a * sigma_a + tau2
        var_b = sigma_b * sigma_b + tau2
        c2 = 2.0 * self._beta2 + var_a + var_b
        c = math.sqrt(c2)
        t, margin = (mu_a - mu_b) / c, self._margin / c
        if ranks[0] == ranks[1]:
            vw = _draw_vw(t, margin)
            if vw is None:
                raise _unstable(ratings)
            v, w = vw
        else:  # TrueSkill.v_win and w_win, with _cdf and _pdf inlined
            z = t - margin
            cdf = 0.5 * _erfc(-z / _SQRT2)
            v = _PDF_SCALE * math.exp(-(z**2 / 2)) / cdf if cdf else -z
            w = v * (v + z)
            if not 0 < w < 1:
                raise _unstable(ratings)
        new_a = (mu_a + var_a / c * v, math.sqrt(var_a * (1.0 - var_a / c2 * w)))
        new_b = (mu_b - var_b / c * v, math.sqrt(var_b * (1.0 - var_b / c2 * w)))
        return [new_a, new_b] if first == 0 else [new_b, new_a]

    # ---------------------------------------------------- three or more players
    def _rate_chain(self, ratings: Sequence[Rating], ranks: Sequence[int]) -> list[Rating]:
        """The package's ``run_schedule`` for single-player teams, on floats.

        Names: per team k, the rating prior ``r`` (after the dynamics factor), the performance
        ``pp`` and the team performance marginal ``tp`` with its message ``tf`` from the
        team-performance factor; per adjacent pair x, the difference marginal ``d``, the
        messages of difference factor x to its left and right team (``ml``, ``mr``) and to
        ``d`` (``md``), and of the truncation factor to ``d`` (``mt``). Gaussians are
        (precision pi, precision-adjusted mean tau) as in the package, and every sum keeps the
        package's order of operations. A zero precision means "no information": its mean is 0
        and a sum factor over it sends a zero-precision message, as in ``SumFactor.update``.
        """
        n = len(ratings)
        order = sorted(range(n), key=ranks.__getitem__)
        beta2, dyn = self._beta2, self._tau
        r_pi, r_tau, pp_pi, pp_tau, tp_pi, tp_tau = ([0.0] * n for _ in range(6))
        for k, i in enumerate(order):
            mu, sigma = ratings[i]
            pi = sigma**-2  # the package's Rating(mu, sigma) round trip
            tau = pi * mu
            mu, sigma = tau / pi, math.sqrt(1 / pi)
            pi = math.sqrt(sigma**2 + dyn**2) ** -2  # PriorFactor.down
            tau = pi * mu
            r_pi[k], r_tau[k] = pi, tau
            a = 1.0 / (1.0 + beta2 * pi)  # LikelihoodFactor.down
            pp_pi[k], pp_tau[k] = a * pi, a * tau
            pi = 1.0 / (1 / pp_pi[k])  # team SumFactor.down (one term, weight 1)
            tp_pi[k], tp_tau[k] = pi, pi * (pp_tau[k] / pp_pi[k])
        tf_pi, tf_tau = tp_pi[:], tp_tau[:]
        m = n - 1
        # Per difference x: (d_pi, d_tau, md_pi, md_tau, mt_pi, mt_tau, ml_pi, ml_tau, mr_pi,
        # mr_tau), unpacked into locals for a step and packed back after it.
        zero = (0.0,) * 10
        diffs = [zero] * m
        draw = [ranks[order[x]] == ranks[order[x + 1]] for x in range(m)]
        # One sweep: forward over the first m-1 differences, each then sending to its right
        # team (+1); backward over the last m-1, each sending to its left team (-1). With
        # only two teams the package just repeats the first difference (0: no send). Sweeps
        # stop once no truncation moved more than _MIN_DELTA; then the two end differences
        # send to their outer teams, without truncating again.
        sweep = [(x, 1) for x in range(m - 1)] + [(x, -1) for x in range(m - 1, 0, -1)]
        if m == 1:
            sweep = [(0, 0)]
        ends = [(0, -1), (m - 1, 1)]
        margin, erfc, exp, sqrt = self._margin, _erfc, math.exp, math.sqrt
        plan, sweeps = sweep, 0
        while True:
            truncate, delta = plan is sweep, 0.0
            for x, send in plan:
                d_pi, d_tau, md_pi, md_tau, mt_pi, mt_tau, ml_pi, ml_tau, mr_pi, mr_tau = diffs[x]
                # Messages into difference factor x from its two teams.
                p0, t0 = tp_pi[x] - ml_pi, tp_tau[x] - ml_tau
                p1, t1 = tp_pi[x + 1] - mr_pi, tp_tau[x + 1] - mr_tau
                mean0 = t0 / p0 if p0 else 0.0
                mean1 = t1 / p1 if p1 else 0.0
                if truncate:
                    # SumFactor.down: d = tp[x] - tp[x+1]
                    pi = 1.0 / (1 / p0 + 1 / p1) if p0 and p1 else 0.0
                    tau = pi * (mean0 - mean1)
                    d_pi = (d_pi - md_pi) + pi
                    d_tau = (d_tau - md_tau) + tau
                    md_pi, md_tau = pi, tau
                    # TruncateFactor.up
                    div_pi, div_tau = d_pi - mt_pi, d_tau - mt_tau
                    sqrt_pi = sqrt(div_pi)
                    diff = div_tau / sqrt_pi
                    if draw[x]:
                        vw = _draw_vw(diff, margin * sqrt_pi)
                        if vw is None:
                            raise _unstable(ratings)
                        v, w = vw
                    else:
                        z = diff - margin * sqrt_pi
                        c = 0.5 * erfc(-z / _SQRT2)  # v_win, w_win; _cdf, _pdf inlined
                        v = _PDF_SCALE * exp(-(z**2 / 2)) / c if c else -z
                        w = v * (v + z)
                        if not 0 < w < 1:
                            raise _unstable(ratings)
                    denom = 1.0 - w
                    pi, tau = div_pi / denom, (div_tau + sqrt_pi * v) / denom
                    mt_pi = (pi + mt_pi) - d_pi
                    mt_tau = (tau + mt_tau) - d_tau
                    pi_delta = abs(d_pi - pi)
                    if pi_delta != math.inf:  # Variable.delta
                        change = max(abs(d_tau - tau), sqrt(pi_delta))
                        if change > delta:
                            delta = change
                    d_pi, d_tau = pi, tau
                if send:
                    # The message from the difference variable into factor x.
                    pd, td = d_pi - md_pi, d_tau - md_tau
                    mean_d = td / pd if pd else 0.0
                    if send == 1:  # SumFactor.up(1): tp[x+1] = tp[x] - d
                        pi = 1.0 / (1.0 / p0 + 1.0 / pd) if p0 and pd else 0.0
                        tau = pi * (mean0 - mean_d)
                        tp_pi[x + 1] = (tp_pi[x + 1] - mr_pi) + pi
                        tp_tau[x + 1] = (tp_tau[x + 1] - mr_tau) + tau
                        mr_pi, mr_tau = pi, tau
                    else:  # SumFactor.up(0): tp[x] = d + tp[x+1]
                        pi = 1.0 / (1.0 / pd + 1.0 / p1) if pd and p1 else 0.0
                        tau = pi * (mean_d + mean1)
                        tp_pi[x] = (tp_pi[x] - ml_pi) + pi
                        tp_tau[x] = (tp_tau[x] - ml_tau) + tau
                        ml_pi, ml_tau = pi, tau
                diffs[x] = (d_pi, d_tau, md_pi, md_tau, mt_pi, mt_tau, ml_pi, ml_tau, mr_pi, mr_tau)
            if not truncate:
                break
            sweeps += 1
            plan = ends if delta <= _MIN_DELTA or sweeps == _MAX_SWEEPS else sweep

        out: list[Rating] = [(0.0, 0.0)] * n
        for k, i in enumerate(order):
            p, t = tp_pi[k] - tf_pi[k], tp_tau[k] - tf_tau[k]  # team SumFactor.up(0)
            pi = 1.0 / (1.0 / p) if p else 0.0
            up_pi, up_tau = pp_pi[k] + pi, pp_tau[k] + pi * (t / p if p else 0.0)
            p, t = up_pi - pp_pi[k], up_tau - pp_tau[k]  # LikelihoodFactor.up
            a = 1.0 / (1.0 + beta2 * p)
            pi, tau = r_pi[k] + a * p, r_tau[k] + a * t
            mu, sigma = tau / pi, math.sqrt(1 / pi)
            pi = sigma**-2  # Rating(mu, sigma) as the package returns it
            tau = pi * mu
            out[i] = (tau / pi, math.sqrt(1 / pi))
        return out
