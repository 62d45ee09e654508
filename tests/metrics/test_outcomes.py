"""The one vote -> outcomes mapping: duels, best of four, full rankings, invalid votes."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from metrics.outcomes import (
    InvalidVote,
    PairOutcome,
    RankedGame,
    VoteRecord,
    pairwise,
    pairwise_table,
    placements,
    trueskill_games,
)

A, B, C, D = 11, 22, 33, 44


@pytest.mark.parametrize(
    ("winner", "expected"),
    [
        (0, [PairOutcome(A, B, 1.0)]),
        (1, [PairOutcome(B, A, 1.0)]),
        ("tie", [PairOutcome(A, B, 0.5)]),
        ("both_bad", [PairOutcome(A, B, 0.5)]),
    ],
)
def test_duel(winner: object, expected: list[PairOutcome]) -> None:
    assert pairwise(VoteRecord((A, B), winner=winner)) == expected  # type: ignore[arg-type]


def test_both_bad_can_be_excluded() -> None:
    vote = VoteRecord((A, B), winner="both_bad")
    assert pairwise(vote, both_bad_as_draw=False) == []
    assert trueskill_games(vote, both_bad_as_draw=False) == []
    assert placements(vote, both_bad_as_draw=False) == {}
    tie = VoteRecord((A, B), winner="tie")
    assert pairwise(tie, both_bad_as_draw=False) == [PairOutcome(A, B, 0.5)]


def test_best_of_four_learns_nothing_among_the_losers() -> None:
    vote = VoteRecord((A, B, C, D), winner=2)
    assert pairwise(vote) == [PairOutcome(C, A, 1.0), PairOutcome(C, B, 1.0),
                              PairOutcome(C, D, 1.0)]
    assert trueskill_games(vote) == [RankedGame((C, A), (0, 1)), RankedGame((C, B), (0, 1)),
                                     RankedGame((C, D), (0, 1))]
    assert placements(vote) == {A: "loss", B: "loss", C: "win", D: "loss"}


def test_full_ranking_is_every_ordered_pair() -> None:
    vote = VoteRecord((A, B, C, D), ranking=(3, 1, 0, 2))  # D > B > A > C
    assert pairwise(vote) == [
        PairOutcome(D, B, 1.0), PairOutcome(D, A, 1.0), PairOutcome(D, C, 1.0),
        PairOutcome(B, A, 1.0), PairOutcome(B, C, 1.0), PairOutcome(A, C, 1.0),
    ]
    assert trueskill_games(vote) == [RankedGame((A, B, C, D), (2, 1, 3, 0))]
    assert placements(vote) == {A: "loss", B: "loss", C: "loss", D: "win"}


def test_duel_trueskill_ranks() -> None:
    assert trueskill_games(VoteRecord((A, B), winner=1)) == [RankedGame((A, B), (1, 0))]
    assert trueskill_games(VoteRecord((A, B), winner="tie")) == [RankedGame((A, B), (0, 0))]
    assert placements(VoteRecord((A, B), winner="tie")) == {A: "draw", B: "draw"}


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"participants": (A, B), "winner": 2}, "winner: unknown position 2, expected 0..1"),
        ({"participants": (A, B), "winner": -1}, "unknown position -1"),
        ({"participants": (A, B, C, D), "winner": "tie"}, "only allowed in a duel"),
        ({"participants": (A, B, C, D), "winner": "both_bad"}, "only allowed in a duel"),
        ({"participants": (A, B, C, D), "ranking": (0, 1, 2)}, "expected all 4 positions"),
        ({"participants": (A, B, C, D), "ranking": (0, 1, 1, 2)}, "positions repeat"),
        ({"participants": (A, B, C, D), "ranking": (0, 1, 2, 7)}, "unknown position 7"),
        ({"participants": (A, A), "winner": 0}, "each checkpoint may be shown once"),
        ({"participants": (A,), "winner": 0}, "at least 2 checkpoints"),
        ({"participants": (A, B)}, "exactly one of winner or ranking"),
        ({"participants": (A, B), "winner": 0, "ranking": (0, 1)}, "exactly one of"),
        ({"participants": (A, B), "winner": "draw"}, "'tie' or 'both_bad', got 'draw'"),
        ({"participants": (A, B), "winner": True}, "got True"),
        ({"participants": (A, "x"), "winner": 0}, "expected checkpoint ids"),
        ({"participants": (A, B), "winner": 0, "time": float("nan")}, "finite unix time"),
    ],
)
def test_invalid_votes_name_the_field(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidVote, match=message):
        VoteRecord(**kwargs)  # type: ignore[arg-type]
    assert issubclass(InvalidVote, ValueError)


def test_lists_become_tuples() -> None:
    vote = VoteRecord([A, B, C, D], ranking=[3, 2, 1, 0])  # type: ignore[arg-type]
    assert vote.participants == (A, B, C, D) and vote.ranking == (3, 2, 1, 0)
    assert hash(vote) == hash(VoteRecord((A, B, C, D), ranking=(3, 2, 1, 0)))


four_way = st.permutations([A, B, C, D])


@given(four_way, st.permutations(range(4)))
def test_ranking_outcomes_are_a_tournament(shown: list[int], ranking: list[int]) -> None:
    """A ranking gives one outcome per unordered pair, consistent with the ranks."""
    vote = VoteRecord(tuple(shown), ranking=tuple(ranking))
    outcomes = pairwise(vote)
    assert len(outcomes) == 6
    assert {frozenset((o.a, o.b)) for o in outcomes} == {
        frozenset(p) for p in [(A, B), (A, C), (A, D), (B, C), (B, D), (C, D)]}
    (game,) = trueskill_games(vote)
    rank = dict(zip(game.checkpoints, game.ranks, strict=True))
    assert all(rank[o.a] < rank[o.b] and o.score_a == 1.0 for o in outcomes)


@given(four_way, st.integers(0, 3))
def test_best_of_four_is_the_first_row_of_a_ranking(shown: list[int], best: int) -> None:
    """Best of four = the winner's pairs of any ranking that puts it first."""
    vote = VoteRecord(tuple(shown), winner=best)
    rest = [p for p in range(4) if p != best]
    full = pairwise(VoteRecord(tuple(shown), ranking=(best, *rest)))
    assert pairwise(vote) == full[:3]
    assert all(o.a == shown[best] for o in pairwise(vote))


def _vote(draw: st.DrawFn) -> VoteRecord:
    size = draw(st.sampled_from([2, 3, 4, 5]))
    shown = tuple(draw(st.lists(st.integers(0, 9), min_size=size, max_size=size, unique=True)))
    how = draw(st.sampled_from(["winner", "ranking", "tie", "both_bad"] if size == 2
                               else ["winner", "ranking"]))
    if how == "ranking":
        return VoteRecord(shown, ranking=tuple(draw(st.permutations(range(size)))))
    if how == "winner":
        return VoteRecord(shown, winner=draw(st.integers(0, size - 1)))
    return VoteRecord(shown, winner=how)


@given(st.lists(st.composite(_vote)(), max_size=30), st.booleans())
def test_pairwise_table_is_pairwise_of_every_ballot(votes: list[VoteRecord],
                                                    both_bad_as_draw: bool) -> None:
    """The array form lists exactly the outcomes :func:`pairwise` gives each ballot."""
    table = pairwise_table([(v.participants, v.winner, v.ranking) for v in votes],
                           both_bad_as_draw)
    got = sorted(zip(table.ballot.tolist(), table.a.tolist(), table.b.tolist(),
                     table.score_a.tolist(), strict=True))
    want = sorted((i, *o) for i, v in enumerate(votes) for o in pairwise(v, both_bad_as_draw))
    assert got == want


@pytest.mark.parametrize(
    ("ballot", "message"),
    [
        (((A, A), 0, None), "participants: expected at least 2 distinct"),
        (((A, B, C), "tie", None), "only allowed in a duel"),
        (((A, B), 2, None), "winner: expected a position 0..1"),
        (((A, B, C), None, (0, 0, 1)), "ranking: expected all 3 positions"),
        (((A, B), "best", None), "winner: expected a position, 'tie' or 'both_bad'"),
    ],
)
def test_pairwise_table_refuses_malformed_ballots(ballot: tuple[object, ...],
                                                  message: str) -> None:
    with pytest.raises(InvalidVote, match=message):
        pairwise_table([ballot])  # type: ignore[list-item]
