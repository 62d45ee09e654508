"""Voters as the robust board sees them: what each was shown, how far each can be trusted, and
the operator's exclusions.

The robust board (:mod:`metrics.robust`) needs every match a voter was shown on a board, voted
or not (a skip is a signal), with the seconds from issue to vote. :func:`shown_matches` reads
them: a match counts as shown once it was voted, skipped, or expired unanswered (a match still
open may yet be voted). Matches whose votes an operator excluded (:mod:`arena.decisions`: by
voter or by prompt) are left out here as on every other board; :func:`exclude_voter` /
:func:`include_voter` record a decision and replay the log
(:func:`arena.leaderboard.fits.recompute`), so every board, plain and robust, is recomputed
without (or again with) the voter's votes, which stay in the log.

Voters are named by their row id and by the pseudonym the vote export uses
(:func:`arena.export.voter_pseudonym`), never by the signed id their browser holds.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from sqlalchemy import Connection, func, or_, select
from sqlalchemy.orm import Session

from arena.db import Database
from arena.decisions import Decision, Exclusions, excluded_voter_ids, exclusions
from arena.errors import NotFound
from arena.export import voter_pseudonym
from arena.leaderboard import store as board_store
from arena.leaderboard.fits import BT_REFIT_SECONDS, refit_in_background
from arena.models import Match, MatchImage, Prompt, Vote, Voter, utcnow
from arena.ratings import board_where, record_from, robust_params
from arena.registry import checkpoint_labels
from arena.settings import Settings
from metrics.reliability import VoterMatch
from metrics.robust import RobustParams, RobustResult, robust_bradley_terry

ROBUST = "robust"  # the stored aggregate's name (arena.leaderboard.store)

__all__ = [
    "exclude_voter",
    "fit_robust_state",
    "include_voter",
    "resolve_voter",
    "robust_fit",
    "robust_fit_at_hand",
    "robust_fit_in_hand",
    "shown_matches",
    "suspicious",
]


def shown_matches(session: Session | Connection, board: str,
                  excluded: Exclusions | None = None) -> list[VoterMatch]:
    """Every match shown to a voter on ``board`` (voted, skipped or expired), in issue order,
    leaving out the voters and prompts in ``excluded`` (default: the exclusions in force)."""
    excluded = exclusions(session) if excluded is None else excluded
    where = [*board_where(board), *excluded.where()]
    now = utcnow()
    rows = session.execute(
        select(Match.id, Match.voter_id, Match.kind, Match.issued_at, Vote.outcome,
               Vote.winner_position, Vote.ranking, Vote.created_at)
        .join(Prompt, Prompt.id == Match.prompt_id)
        .outerjoin(Vote, Vote.match_id == Match.id)
        .where(*where, or_(Vote.id.is_not(None), Match.skipped_at.is_not(None),
                           Match.expires_at < now))
        .order_by(Match.id)
    ).all()
    positions: dict[int, list[int]] = {}
    for match_id, checkpoint_id in session.execute(
        select(MatchImage.match_id, MatchImage.checkpoint_id)
        .join(Match, Match.id == MatchImage.match_id)
        .join(Prompt, Prompt.id == Match.prompt_id)
        .where(*where)
        .order_by(MatchImage.match_id, MatchImage.position)
    ):
        positions.setdefault(match_id, []).append(checkpoint_id)
    shown = []
    for match_id, voter, kind, issued, outcome, winner, ranking, voted in rows:
        if match_id not in positions:
            continue
        participants = tuple(positions[match_id])
        if outcome is None:
            shown.append(VoterMatch(voter, kind, participants))
            continue
        record = record_from(outcome, winner, ranking, list(participants), voted.timestamp())
        seconds = max((voted - issued).total_seconds(), 0.0)
        shown.append(VoterMatch(voter, kind, participants, record, seconds))
    return shown


# Robust fits per (database, board, parameters, exclusions): (newest match and vote covered,
# the fit, when it was fitted, the seconds it took). A fit stays exact until the board gets a
# new shown match or vote.
_CACHE: dict[tuple[Any, ...], tuple[list[int], RobustResult, float, float]] = {}
_CACHE_SIZE = 32
_GUARD = threading.Lock()
STATE_LAYOUT = 2  # of RobustResult.to_state
# A refit reads every shown match of the board, seconds at a million votes: the next one waits
# at least this many times as long as the last took, so refits take at most about a tenth of
# the refit process however large the board grows.
REFIT_SPACING = 10.0


def _stored_parameters(params: RobustParams, excluded: Exclusions) -> dict[str, Any]:
    return {**params.describe(), **excluded.parameters(), "layout": STATE_LAYOUT}


def _newest(session: Session | Connection) -> list[int]:
    return [session.scalar(select(func.max(Match.id))) or 0,
            session.scalar(select(func.max(Vote.id))) or 0]


def _url(session: Session | Connection) -> str:
    return str(session.get_bind().url) if isinstance(session, Session) else str(session.engine.url)


def _keep(key: tuple[Any, ...], newest: list[int], result: RobustResult, fitted_at: float,
          seconds: float) -> None:
    with _GUARD:
        current = _CACHE.get(key)
        if current is None or current[0] <= newest:
            _CACHE.pop(key, None)
            _CACHE[key] = (newest, result, fitted_at, seconds)
        while len(_CACHE) > _CACHE_SIZE:
            _CACHE.pop(next(iter(_CACHE)))


def _lookup(session: Session | Connection, board: str, settings: Settings | None
            ) -> tuple[tuple[Any, ...], list[int],
                       tuple[list[int], RobustResult, float, float] | None]:
    """``(cache key, newest match and vote, the fit at hand or None)``: from memory, else
    from the board's stored aggregate (keyed by the parameters and the exclusions)."""
    params = robust_params(settings)
    excluded = exclusions(session)
    key = (_url(session), board, params, excluded)
    newest = _newest(session)
    with _GUARD:
        cached = _CACHE.get(key)
    if cached is None and isinstance(session, Session):
        stored = board_store.load(session, board, ROBUST, _stored_parameters(params, excluded))
        if stored is not None:
            cached = (stored[1]["newest"], RobustResult.from_state(stored[1]["result"], params),
                      float("-inf"), 0.0)
            _keep(key, *cached)
    return key, newest, cached


def robust_fit_at_hand(session: Session | Connection, board: str,
                       settings: Settings | None = None, store: bool = False,
                       wait: bool = True) -> tuple[int, RobustResult]:
    """``(newest vote id it covers, the robust board of board without excluded votes)``:
    from memory or from its stored aggregate (:mod:`arena.leaderboard.store`, keyed by its
    parameters and the exclusions) while no match or vote came since, else fitted anew.
    ``wait=False`` (the API) takes the fit at hand even when newer matches or votes exist
    and refits in the refit process (:func:`arena.leaderboard.fits.refit_pool`) at most
    every ``BT_REFIT_SECONDS`` and ``REFIT_SPACING`` times the last fit's duration, as
    Bradley-Terry does: reading every shown match is seconds on a large board; only a board
    never fitted is fitted on the spot. ``store`` (a writing
    session) stores a new fit, voter reliabilities and signals included."""
    if not wait:
        found = robust_fit_in_hand(session, board, settings, start=False)
        if found is not None:
            return found
    key, newest, cached = _lookup(session, board, settings)
    if cached is not None and cached[0] == newest:
        return newest[1], cached[1]
    params, excluded = key[2], key[3]
    began = time.monotonic()
    result = robust_bradley_terry(shown_matches(session, board, excluded), params)
    if store and isinstance(session, Session):
        board_store.save(session, board, ROBUST, _stored_parameters(params, excluded),
                         newest[1], result.n_votes,
                         {"newest": newest, "result": result.to_state()})
    _keep(key, newest, result, time.monotonic(), time.monotonic() - began)
    return newest[1], result


def robust_fit_in_hand(session: Session | Connection, board: str,
                       settings: Settings | None = None, start: bool = True
                       ) -> tuple[int, RobustResult] | None:
    """The fit at hand, never fitted here (a dashboard view: its notices wait for no fit):
    ``(newest vote it covers, the fit)``, a refit started in the refit process when newer
    matches or votes exist (spaced as in :func:`robust_fit_at_hand`); None when the board has no
    fit yet, a first one started in the background with ``start``."""
    key, newest, cached = _lookup(session, board, settings)
    if cached is None:
        if start:
            _refit_later(key, float("-inf"), 0.0, board, settings, key[3])
        return None
    if cached[0] != newest:
        _refit_later(key, cached[2], cached[3], board, settings, key[3])
    return cached[0][1], cached[1]


def robust_fit(session: Session | Connection, board: str, settings: Settings | None = None,
               store: bool = False, wait: bool = True) -> RobustResult:
    """The robust board of ``board`` without excluded votes (see :func:`robust_fit_at_hand`)."""
    return robust_fit_at_hand(session, board, settings, store, wait)[1]


def _refit_later(key: tuple[Any, ...], fitted_at: float, seconds: float, board: str,
                 settings: Settings | None, excluded: Exclusions) -> None:
    if time.monotonic() - fitted_at < max(BT_REFIT_SECONDS, REFIT_SPACING * seconds):
        return
    params = key[2]
    refit_in_background(
        ("robust", *key), fit_robust_state, (key[0], board, settings, excluded),
        lambda answer: _keep(key, answer[0], RobustResult.from_state(answer[1], params),
                             time.monotonic(), answer[2]))


# A refit's store is for the next server start: at most one per board this often, so refits
# do not add a large write (and a commit's flush) to the database every few seconds.
STORE_SECONDS = 300.0
_STORED_AT: dict[tuple[Any, ...], float] = {}  # in the refit process


def fit_robust_state(url: str, board: str, settings: Settings | None,
                     excluded: Exclusions) -> tuple[list[int], dict[str, Any], float]:
    """In the refit process: the robust board of ``board`` read and fitted there (the shown
    matches never cross a process boundary) and stored with the board's aggregates (at most
    every ``STORE_SECONDS`` per board), as ``(newest match and vote, its state, seconds
    taken)``."""
    params = robust_params(settings)
    began = time.monotonic()
    db = Database(url)  # one per fit: a fit takes far longer than a connection
    try:
        with db.session(readonly=True) as session:
            newest = _newest(session)
            result = robust_bradley_terry(shown_matches(session, board, excluded), params)
        state = result.to_state()
        stored_key = (url, board, params, excluded)
        if time.monotonic() - _STORED_AT.get(stored_key, float("-inf")) >= STORE_SECONDS:
            with db.session() as session:  # for the next server start
                board_store.save(session, board, ROBUST, _stored_parameters(params, excluded),
                                 newest[1], result.n_votes, {"newest": newest, "result": state})
            _STORED_AT[stored_key] = time.monotonic()
    finally:
        db.dispose()
    return newest, state, time.monotonic() - began


def _voter_row(voter: int, external: str, result: RobustResult,
               names: dict[int, tuple[str, str]]) -> dict[str, Any]:
    s = result.voters[voter]
    focus = names.get(s.focus, (str(s.focus), ""))[0] if s.focus is not None else None
    return {
        "voter_id": voter,
        "voter": voter_pseudonym(external),
        "flagged": s.flagged,
        "reasons": [_named(reason, names) for reason in s.reasons],
        "votes": s.votes,
        "skips": s.skips,
        "reliability": s.reliability,
        "weight": result.weights.get(voter),
        "agreement": s.agreement,
        "focus_checkpoint": focus,
        "focus_share": s.focus_share,
        "focus_expected": s.focus_expected,
        "concentration_p": s.concentration_p,
        "skip_p": s.skip_p,
        "selective_p": s.selective_p,
        "median_seconds": s.median_seconds,
    }


def _named(reason: str, names: dict[int, tuple[str, str]]) -> str:
    """A reason with checkpoint ids replaced by checkpoint names."""
    words = reason.split(" ")
    for i, word in enumerate(words):
        if i and words[i - 1] == "checkpoint":
            head = word.rstrip(",;)")
            ids = [int(part) for part in head.split(",") if part.isdigit()]
            if ids and len(ids) == len(head.split(",")):
                words[i] = ",".join(names.get(c, (str(c), ""))[0] for c in ids) + word[len(head):]
    return " ".join(words)


def suspicious(session: Session, board: str, settings: Settings | None = None,
               every: bool = False, store: bool = False) -> dict[str, Any]:
    """The voters of ``board`` with their reliability and signals, flagged ones first (all
    voters with ``every``), the checkpoints voted selectively, what the robust board
    discounted, and the voters excluded now with the decision in force (``store``: see
    :func:`robust_fit`)."""
    result = robust_fit(session, board, settings, store)
    ids = list(result.voters)
    externals = dict(session.execute(select(Voter.id, Voter.external_id)
                                      .where(Voter.id.in_(ids))).all()) if ids else {}
    checkpoints = sorted({s.focus for s in result.voters.values() if s.focus is not None}
                         | set(result.selective))
    names = checkpoint_labels(session, checkpoints)
    rows = [_voter_row(v, externals[v], result, names) for v in ids
            if every or result.voters[v].flagged]
    rows.sort(key=lambda r: (not r["flagged"], -(r["votes"]), r["voter_id"]))
    excluded = excluded_voter_ids(session)
    excluded_externals = dict(session.execute(
        select(Voter.id, Voter.external_id).where(Voter.id.in_(list(excluded)))).all())
    return {
        "board": board,
        "parameters": result.params.describe(),
        "votes": result.n_votes,
        "voters": len(result.voters),
        "flagged_voters": result.flagged_voters,
        "flagged_votes": result.flagged_votes,
        "discounted_voters": result.discounted_voters,
        "discounted_votes": result.discounted_votes,
        "selective_checkpoints": {names.get(c, (str(c), ""))[0]: p
                                  for c, p in result.selective.items()},
        "rows": rows,
        "excluded": [{"voter_id": d.subject_id,
                      "voter": voter_pseudonym(excluded_externals[d.subject_id]),
                      **{k: v for k, v in d.as_dict().items() if k in ("reason", "created_at")}}
                     for d in excluded.values()],
    }


def resolve_voter(session: Session, voter: str) -> int:
    """A voter's row id from its row id or its export pseudonym; NotFound otherwise."""
    text = voter.strip()
    if text.isdigit() and session.get(Voter, int(text)) is not None:
        return int(text)
    for voter_id, external in session.execute(select(Voter.id, Voter.external_id)):
        if voter_pseudonym(external) == text:
            return int(voter_id)
    raise NotFound(f"no voter {voter!r}: expected a voter row id or pseudonym "
                   "(see `arena voters suspicious --all`)")


def _decide(db: Database, voter: str, action: str, reason: str,
            settings: Settings | None) -> tuple[Decision, int]:
    from arena.leaderboard.fits import change_and_recompute

    with db.session(readonly=True) as session:
        voter_id = resolve_voter(session, voter)
    return change_and_recompute(db, "voter", voter_id, action, reason, settings)


def exclude_voter(db: Database, voter: str, reason: str,
                  settings: Settings | None = None) -> tuple[Decision, int]:
    """Record that ``voter``'s votes are excluded (with ``reason``) and replay the log so
    every board is recomputed without them; returns the decision and the votes replayed."""
    return _decide(db, voter, "exclude", reason, settings)


def include_voter(db: Database, voter: str, reason: str,
                  settings: Settings | None = None) -> tuple[Decision, int]:
    """Record that ``voter``'s votes count again and replay the log."""
    return _decide(db, voter, "include", reason, settings)

