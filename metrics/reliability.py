"""How far each voter can be trusted: Crowd-BT reliability and behaviour signals.

**Crowd-BT** (Chen, Bennett, Collins-Thompson & Horvitz, WSDM 2013, "Pairwise ranking
aggregation in a crowdsourced setting", eq. 2): voter k reports the true order of a pair with
probability eta_k and the reverse with 1 - eta_k, so

    P(k says i beats j) = eta_k * s(d) + (1 - eta_k) * (1 - s(d)),   s(d) = sigmoid(d)

with ``d`` the position-aware strength difference of :mod:`metrics.factor_bt`. Fitted by
alternating MAP: given the strengths, each eta_k by EM on its own voter's comparisons (the
E-step gives a comparison the posterior ``r = eta s / (eta s + (1 - eta)(1 - s))`` that the
voter reported the true order; the M-step takes eta's posterior mean under a
Beta(``prior_agree``, ``prior_disagree``) prior); given the etas, the strengths and position
terms by Bradley-Terry with each vote weighted ``2 eta - 1`` (the slope of the voter's answer
probability in s(d): a random voter, eta = 0.5, weighs nothing). Alternating rather than the
joint mixture likelihood keeps the strengths on the plain Bradley-Terry scale: in the joint
likelihood a lower eta for every voter and more spread-out strengths explain the same votes,
and the fit drifts along that ridge. eta is kept at 0.5 or above: a voter who disagrees with
the consensus counts as noise (weight zero), never as a signal to be read backwards, which an
attacker could otherwise steer.

**Behaviour signals** a reliability model cannot see, from every match a voter was shown
(voted or skipped) — an honest voter neither skips nor votes depending on which checkpoints
are on screen:

- *concentration*: the share of the voter's votes whose match shows one checkpoint, against
  that checkpoint's share of all matches shown (binomial upper tail);
- *skip avoidance*: whether the voter voted when one checkpoint was shown and skipped the
  rest (one-sided Fisher exact test: hypergeometric upper tail of the voted matches showing
  it among all the voter's shown matches);
- *selective voting across the board*: a one-sided Cochran-Mantel-Haenszel test per
  checkpoint, each voter a stratum (Mantel & Haenszel 1959), of whether matches showing it are
  voted on more often than the same voter's other matches. An attacker spread over many voter
  ids leaves little evidence per id but the same pattern on each; pooled, it points at the
  checkpoints it acts on (the target, and the rivals it votes down). Each voter who skipped
  anything is then tested on the union of those checkpoints (hypergeometric, as above);
- *answer speed*: the median seconds from the match being shown to the vote (a recogniser
  answers fast); reported beside the others, never a reason alone (fast honest voters exist).

A voter is flagged when a per-voter test's p-value is below ``alpha`` divided by the number
of tests made (Bonferroni over voters, checkpoints and the two tests); when the board-level
test finds selectively voted checkpoints (p below ``alpha`` over the number of checkpoints)
and the voter's own test on them is below ``alpha``; or when Crowd-BT's posterior puts eta
below 0.5 with probability ``1 - alpha / voters``. A voter who never skips can only be
flagged by concentration or by Crowd-BT, and one who skips at random cannot show selective
voting, so few honest voters are flagged (the simulator measures how few).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field
from statistics import median

import numpy as np

from metrics.errors import InputError
from metrics.factor_bt import Comparisons, design, fit_rows
from metrics.outcomes import VoteRecord

__all__ = [
    "BoardSignals",
    "CrowdBTFit",
    "ReliabilityParams",
    "VoterMatch",
    "VoterSignals",
    "against_consensus",
    "fit_crowd_bt",
    "voter_signals",
]

VoterKey = Hashable


@dataclass(frozen=True, slots=True)
class VoterMatch:
    """A match shown to a voter: its kind, the checkpoints by shown position, the vote (None
    when the voter skipped it) and the seconds from showing to voting (None if unknown)."""

    voter: VoterKey
    kind: str
    participants: tuple[int, ...]
    vote: VoteRecord | None = None
    seconds: float | None = None


@dataclass(frozen=True)
class ReliabilityParams:
    """Crowd-BT prior and iteration limits, and the behaviour tests' false-flag rate."""

    prior_agree: float = 18.0
    prior_disagree: float = 2.0
    max_iterations: int = 50
    tolerance: float = 1e-4
    alpha: float = 0.01
    min_votes: int = 4

    def __post_init__(self) -> None:
        if self.prior_agree <= 0 or self.prior_disagree <= 0:
            raise InputError("prior_agree, prior_disagree: expected positive pseudo-counts")
        if not 0 < self.alpha < 1:
            raise InputError(f"alpha: expected a probability in (0, 1), got {self.alpha!r}")


@dataclass(frozen=True)
class CrowdBTFit:
    """Crowd-BT's estimate: parameters (theta then gamma, as :func:`metrics.factor_bt.fit_rows`),
    eta per voter index, the agreeing (sum of ``r``) and total comparison weight per voter, and
    ``r`` per comparison."""

    params: np.ndarray
    eta: np.ndarray
    agree: np.ndarray
    total: np.ndarray
    posterior: np.ndarray
    iterations: int

    def weights(self) -> np.ndarray:
        """Each voter's vote weight in the strengths' fit, ``2 eta - 1``."""
        return 2.0 * self.eta - 1.0


def _margin(params: np.ndarray, c: Comparisons, n: int) -> np.ndarray:
    gamma = np.concatenate([params[n:], [0.0]])  # index -1 is position 0
    return params[c.winner] - params[c.loser] + gamma[c.winner_slot] - gamma[c.loser_slot]


def _etas(s: np.ndarray, c: Comparisons, voter: np.ndarray, voters: int, eta: np.ndarray,
          p: ReliabilityParams) -> tuple[np.ndarray, np.ndarray]:
    """eta per voter given the model's win probabilities ``s``, by EM from ``eta``."""
    total = np.bincount(voter, weights=c.weight, minlength=voters)
    r = np.ones(len(c))
    for _ in range(p.max_iterations):
        e = eta[voter]
        r = e * s / (e * s + (1.0 - e) * (1.0 - s))
        agree = np.bincount(voter, weights=c.weight * r, minlength=voters)
        new = np.maximum((p.prior_agree + agree) / (p.prior_agree + p.prior_disagree + total),
                         0.5)
        moved = float(np.max(np.abs(new - eta))) if voters else 0.0
        eta = new
        if moved < p.tolerance:
            break
    return eta, r


def fit_crowd_bt(c: Comparisons, voter: np.ndarray, n: int, voters: int,
                 params: ReliabilityParams | None = None) -> CrowdBTFit:
    """Crowd-BT by alternating MAP on comparisons ``c`` of ``n`` checkpoints; ``voter[m]`` is
    comparison m's voter index (0 .. ``voters`` - 1)."""
    p = params or ReliabilityParams()
    x, inverse = design(c, n)
    total = np.bincount(voter, weights=c.weight, minlength=voters)
    eta = np.full(voters, p.prior_agree / (p.prior_agree + p.prior_disagree))
    theta: np.ndarray | None = None
    r = np.ones(len(c))
    iterations = 0
    for _ in range(p.max_iterations):
        iterations += 1
        weight = c.weight * (2.0 * eta - 1.0)[voter]
        theta = fit_rows(x, np.bincount(inverse, weights=weight, minlength=len(x)), n,
                         start=theta)
        s = 1.0 / (1.0 + np.exp(-_margin(theta, c, n)))
        new, r = _etas(s, c, voter, voters, eta, p)
        moved = float(np.max(np.abs(new - eta))) if voters else 0.0
        eta = new
        if moved < p.tolerance:
            break
    assert theta is not None
    agree = np.bincount(voter, weights=c.weight * r, minlength=voters)
    return CrowdBTFit(theta, eta, agree, total, r, iterations)


@dataclass
class VoterSignals:
    """One voter's behaviour on a board (see the module doc)."""

    voter: VoterKey
    shown: int
    votes: int
    skips: int
    focus: int | None = None
    focus_share: float | None = None
    focus_expected: float | None = None
    concentration_p: float = 1.0
    skip_p: float = 1.0
    selective_p: float = 1.0
    median_seconds: float | None = None
    reliability: float | None = None
    agreement: float | None = None
    against_p: float = 0.0
    reasons: list[str] = field(default_factory=list)

    @property
    def flagged(self) -> bool:
        return bool(self.reasons)


def _log_factorials(n: int) -> np.ndarray:
    return np.concatenate([[0.0], np.cumsum(np.log(np.arange(1, n + 1)))])


def _upper_tail(log_pmf: np.ndarray, k: np.ndarray) -> np.ndarray:
    """``P(X >= k)`` per row from log probabilities of X = 0 .. n (columns)."""
    pmf = np.exp(log_pmf)
    tails = np.cumsum(pmf[:, ::-1], axis=1)[:, ::-1]
    return np.minimum(tails[np.arange(len(k)), k.astype(int)], 1.0)


def _tails(k: np.ndarray, n: int, q: np.ndarray) -> np.ndarray:
    """Binomial upper tails ``P(X >= k)``, X ~ Binomial(n, q), per checkpoint (exact sums;
    scipy.stats costs seconds to import in a serving process)."""
    lf = _log_factorials(n)
    j = np.arange(n + 1)
    q = np.clip(q, 1e-300, 1.0 - 1e-16)[:, None]
    log_pmf = lf[n] - lf[j] - lf[n - j] + j * np.log(q) + (n - j) * np.log1p(-q)
    return _upper_tail(log_pmf, k)


def _skip_tails(k: np.ndarray, shown: int, with_c: np.ndarray, votes: int) -> np.ndarray:
    """Hypergeometric upper tails: of ``shown`` matches, ``with_c`` show the checkpoint and
    ``votes`` were voted on; ``P(at least k voted ones show it)`` if voting ignored it."""
    lf = _log_factorials(shown)
    j = np.arange(votes + 1)[None, :]
    m = with_c.astype(int)[:, None]
    possible = (j <= m) & (votes - j <= shown - m)
    jj, rest = np.minimum(j, m), np.clip(shown - m - (votes - j), 0, None)
    log_pmf = (lf[m] - lf[jj] - lf[m - jj] + lf[shown - m] - lf[np.clip(votes - j, 0, None)]
               - lf[rest] - (lf[shown] - lf[votes] - lf[shown - votes]))
    return _upper_tail(np.where(possible, log_pmf, -np.inf), k)


@dataclass(frozen=True)
class BoardSignals:
    """Every voter's signals, and the checkpoints whose presence makes voters vote rather than
    skip across the board (Mantel-Haenszel p-value per checkpoint, only the significant)."""

    voters: dict[VoterKey, VoterSignals]
    selective: dict[int, float]


def _normal_tail(z: float) -> float:
    return 0.5 * math.erfc(z / math.sqrt(2.0))


def _selective_checkpoints(in_votes: np.ndarray, in_shown: np.ndarray, votes: np.ndarray,
                           shown: np.ndarray) -> np.ndarray:
    """One-sided Cochran-Mantel-Haenszel p-value per checkpoint (columns), strata = voters
    (rows): are matches showing it voted on more often than the voter's other matches?
    Under honest voting each voter's count is hypergeometric (Mantel & Haenszel 1959)."""
    usable = (shown >= 2) & (votes < shown)
    x, m = in_votes[usable], in_shown[usable]
    n, total = votes[usable][:, None], shown[usable][:, None]
    expected = n * m / total
    variance = n * m * (total - n) * (total - m) / (total * total * (total - 1.0))
    spread = np.sqrt(variance.sum(axis=0))
    z = np.where(spread > 0, (x - expected).sum(axis=0) / np.where(spread > 0, spread, 1.0), 0.0)
    return np.array([_normal_tail(float(v)) for v in z])


def voter_signals(matches: Sequence[VoterMatch], params: ReliabilityParams | None = None,
                  ) -> BoardSignals:
    """Behaviour signals of every voter in ``matches`` and the behaviour reasons to flag them
    (Crowd-BT's reason is added by :func:`metrics.robust.robust_bradley_terry`)."""
    p = params or ReliabilityParams()
    order: dict[VoterKey, int] = {}
    for m in matches:
        order.setdefault(m.voter, len(order))
    checkpoints = sorted({c for m in matches for c in m.participants})
    position = {c: i for i, c in enumerate(checkpoints)}
    v_count, c_count = len(order), len(checkpoints)
    in_votes, in_shown = np.zeros((v_count, c_count)), np.zeros((v_count, c_count))
    votes, shown = np.zeros(v_count), np.zeros(v_count)
    answers: dict[int, list[float]] = defaultdict(list)
    for m in matches:
        k, cols = order[m.voter], [position[c] for c in m.participants]
        shown[k] += 1
        in_shown[k, cols] += 1
        if m.vote is not None:
            votes[k] += 1
            in_votes[k, cols] += 1
            if m.seconds is not None:
                answers[k].append(m.seconds)
    share = in_shown.sum(axis=0) / max(len(matches), 1)
    tested = votes >= p.min_votes
    threshold = p.alpha / max(2 * int(tested.sum()) * c_count, 1)
    selective_p = _selective_checkpoints(in_votes, in_shown, votes, shown)
    selective = [j for j in range(c_count) if selective_p[j] < p.alpha / max(c_count, 1)]
    chosen = {checkpoints[j] for j in selective}
    any_shown, any_voted = np.zeros(v_count), np.zeros(v_count)
    for m in matches if chosen else ():
        if chosen.intersection(m.participants):
            any_shown[order[m.voter]] += 1
            any_voted[order[m.voter]] += m.vote is not None
    seconds = [t for ts in answers.values() for t in ts]
    overall_seconds = median(seconds) if seconds else None
    result: dict[VoterKey, VoterSignals] = {}
    for voter, k in order.items():
        n, total = int(votes[k]), int(shown[k])
        signals = VoterSignals(voter, total, n, total - n,
                               median_seconds=median(answers[k]) if answers[k] else None)
        result[voter] = signals
        if not n:
            continue
        conc = _tails(in_votes[k], n, share)
        skip = (_skip_tails(in_votes[k], total, in_shown[k], n) if signals.skips
                else np.ones(c_count))
        best = int(np.argmin(np.minimum(conc, skip)))
        signals.focus = checkpoints[best]
        signals.focus_share = float(in_votes[k, best] / n)
        signals.focus_expected = float(share[best])
        signals.concentration_p = float(conc[best])
        signals.skip_p = float(skip[best])
        if selective and signals.skips:
            signals.selective_p = float(_skip_tails(
                any_voted[k:k + 1], total, any_shown[k:k + 1], n)[0])
        if tested[k] and signals.concentration_p < threshold:
            signals.reasons.append(
                f"{int(in_votes[k, best])} of {n} votes show checkpoint {checkpoints[best]}"
                f" (expected {100 * share[best]:.0f}%, p = {signals.concentration_p:.1e})")
        if signals.skip_p < threshold:
            signals.reasons.append(
                f"skipped {signals.skips} of {total} matches, voting when checkpoint "
                f"{checkpoints[best]} was shown ({int(in_votes[k, best])} of "
                f"{int(in_shown[k, best])} such matches, {n} votes in all; "
                f"p = {signals.skip_p:.1e})")
        if signals.selective_p < p.alpha:
            listed = ", ".join(str(c) for c in sorted(chosen))
            signals.reasons.append(
                f"voted in {int(any_voted[k])} of {int(any_shown[k])} matches showing "
                f"checkpoint {listed} and {n - int(any_voted[k])} of "
                f"{total - int(any_shown[k])} others (p = {signals.selective_p:.1e}); "
                f"the board's voters vote selectively when {listed} is shown")
        fast = (overall_seconds is not None and signals.median_seconds is not None
                and signals.median_seconds < overall_seconds / 2)
        if signals.reasons and fast:
            signals.reasons.append(
                f"answers in {signals.median_seconds:.1f} s (median of all voters "
                f"{overall_seconds:.1f} s)")
    return BoardSignals(result, {checkpoints[j]: float(selective_p[j]) for j in selective})


def against_consensus(agree: float, total: float, params: ReliabilityParams) -> float:
    """Posterior probability (Beta prior of ``params``) that a voter agrees with the consensus
    order less often than at random, given ``agree`` of ``total`` comparisons agreeing: the
    Beta cdf at 0.5, integrated numerically (trapezoid rule, 4,000 steps)."""
    a = params.prior_agree + agree
    b = params.prior_disagree + max(total - agree, 0.0)
    x = np.linspace(0.0, 1.0, 4001)[1:-1]
    log_pdf = (a - 1.0) * np.log(x) + (b - 1.0) * np.log1p(-x)
    pdf = np.exp(log_pdf - log_pdf.max())
    below = x <= 0.5
    return float(np.trapezoid(pdf[below], x[below]) / np.trapezoid(pdf, x))
