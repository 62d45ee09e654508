"""The registry tables: match kinds, rating systems and boards, each defined once."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from metrics.boards import OVERALL, board_help, board_name, boards_for, parse_board
from metrics.match_kinds import KINDS, MATCH_KINDS, MATCH_SIZES, check_winner, spec
from metrics.outcomes import BOTH_BAD, TIE, InvalidVote, VoteRecord
from metrics.rating_systems import DEFAULT_SYSTEM, SYSTEMS, check_system, system_help
from metrics.simulate import ESTIMATORS


def test_match_kinds_say_what_a_vote_may_answer() -> None:
    assert tuple(KINDS) == MATCH_KINDS
    assert MATCH_SIZES == {"fixed": 2, "free": 2, "ffa": 4}
    assert KINDS["fixed"].answers == (TIE, BOTH_BAD)
    assert KINDS["free"].answers == (BOTH_BAD,)
    assert KINDS["ffa"].answers == ()
    assert [k for k, s in KINDS.items() if s.rankings] == ["ffa"]
    for kind in MATCH_KINDS:
        entry = spec(kind)
        for answer in (TIE, BOTH_BAD):
            if answer in entry.answers:
                assert check_winner(kind, answer) == (answer, None)
            else:
                with pytest.raises(ValueError, match=entry.noun):
                    check_winner(kind, answer)
        for position in range(entry.size):
            assert check_winner(kind, str(position)) == ("win", position)
        # Every button's value is an answer the kind accepts, and the outcomes agree.
        for _label, _key, winner in entry.buttons:
            outcome, position = check_winner(kind, winner)
            VoteRecord(tuple(range(entry.size)),
                       winner=position if outcome == "win" else outcome)  # type: ignore[arg-type]
    with pytest.raises(InvalidVote):
        VoteRecord((1, 2), winner=2)
    assert [b[0] for b in KINDS["fixed"].buttons] == ["A is better", "B is better", "Draw",
                                                     "Both bad"]
    with pytest.raises(ValueError, match="expected one of fixed, free, ffa, got 'duel'"):
        spec("duel")


def test_rating_systems_table() -> None:
    assert DEFAULT_SYSTEM in SYSTEMS
    assert system_help() == "elo, tw_elo, trueskill, bt or robust."
    assert {n for n, s in SYSTEMS.items() if s.has_intervals} == {"trueskill", "bt", "robust"}
    assert SYSTEMS["tw_elo"].parameters == "elo"
    assert system_help(simulated=True) == "elo, trueskill, bt or robust."
    assert ESTIMATORS == ("elo", "trueskill", "bt", "robust")
    with pytest.raises(ValueError) as error:
        check_system("glicko")
    assert str(error.value) == (
        "system: expected one of elo, tw_elo, trueskill, bt, robust, got 'glicko'")


@given(st.sampled_from(MATCH_KINDS), st.one_of(st.none(), st.text(min_size=1, max_size=12)))
def test_every_board_a_vote_counts_on_parses_back(kind: str, character: str | None) -> None:
    boards = boards_for(kind, character)
    assert boards[0] == kind and boards[-1] == OVERALL
    for board in boards:
        parsed = parse_board(board)
        assert parsed.name == board
        assert board_name(parsed.kind, parsed.character) == board


def test_unknown_board_lists_the_valid_ones() -> None:
    assert board_help() == "overall, fixed, free, ffa or fixed/<character>."
    for bad in ("duel", "fixed/", "free/alice", ""):
        with pytest.raises(ValueError) as error:
            parse_board(bad)
        assert str(error.value) == ("board: expected overall, fixed, free, ffa or "
                                    f"fixed/<character>, got {bad!r}")
