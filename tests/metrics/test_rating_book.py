"""RatingBook: boards, counts, and that state round-trips so online == replay."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given
from hypothesis import strategies as st

from metrics.boards import boards_for
from metrics.outcomes import VoteRecord
from metrics.rating_book import CheckpointRating, RatingBook, RatingConfig


def test_boards() -> None:
    assert boards_for("fixed", "alice") == ("fixed", "fixed/alice", "overall")
    assert boards_for("fixed", None) == ("fixed", "overall")
    assert boards_for("free", None) == ("free", "overall")
    assert boards_for("ffa", "ignored") == ("ffa", "overall")
    with pytest.raises(ValueError, match="match kind: expected one of fixed, free, ffa"):
        boards_for("duel")


def test_apply_counts_and_touches() -> None:
    book = RatingBook()
    assert book.apply(VoteRecord((1, 2), winner=1, time=10.0)) == (1, 2)
    assert book.states[2].mu > 25.0 > book.states[1].mu
    assert book.apply(VoteRecord((2, 3), winner="both_bad", time=20.0)) == (2, 3)
    assert book.apply(VoteRecord((1, 2, 3, 4), winner=3, time=30.0)) == (1, 2, 3, 4)
    s = book.states
    assert [s[2].games, s[2].wins, s[2].draws, s[2].losses] == [3, 1, 1, 1]
    assert [s[4].games, s[4].wins, s[4].losses] == [1, 1, 0]
    assert s[1].first_time == 10.0 and s[4].first_time == 30.0
    assert sum(state.elo for state in s.values()) == pytest.approx(4000.0)


def test_both_bad_excluded_changes_nothing() -> None:
    book = RatingBook(RatingConfig(both_bad_as_draw=False))
    assert book.apply(VoteRecord((1, 2), winner="both_bad", time=1.0)) == ()
    assert book.states == {}
    assert book.get(7) == book.new_state(7) and 7 not in book.states


def test_time_weighted_elo_follows_the_holding_times() -> None:
    book = RatingBook()
    book.apply(VoteRecord((1, 2), winner=0, time=0.0))  # 1 holds 1016 from t=0
    book.apply(VoteRecord((1, 3), winner=1, time=100.0))  # then a lower value from t=100
    s = book.states[1]
    assert s.time_weighted_elo(100.0) == pytest.approx(1016.0)
    assert s.time_weighted_elo(300.0) == pytest.approx((100 * 1016.0 + 200 * s.elo) / 300)


vote_st = st.one_of(
    st.tuples(st.permutations(range(5)), st.sampled_from([0, 1, "tie", "both_bad"])).map(
        lambda t: ("duel", t[0][:2], t[1])),
    st.tuples(st.permutations(range(5)), st.integers(0, 3)).map(
        lambda t: ("best", t[0][:4], t[1])),
    st.tuples(st.permutations(range(5)), st.permutations(range(4))).map(
        lambda t: ("rank", t[0][:4], tuple(t[1]))),
)


@given(st.lists(vote_st, min_size=1, max_size=25), st.integers(0, 25), st.booleans())
def test_reloaded_state_continues_exactly(votes: list[tuple], cut: int, both_bad: bool) -> None:
    """Copy the states field by field (as the database does) at any point and continue:
    the result is identical, bit for bit, to one uninterrupted replay."""
    config = RatingConfig(both_bad_as_draw=both_bad)
    records = []
    for i, (kind, shown, outcome) in enumerate(votes):
        t = 1.7e9 + 37.0 * i
        if kind == "rank":
            records.append(VoteRecord(tuple(shown), ranking=outcome, time=t))
        else:
            records.append(VoteRecord(tuple(shown), winner=outcome, time=t))
    whole = RatingBook(config)
    for r in records:
        whole.apply(r)
    first = RatingBook(config)
    for r in records[:cut]:
        first.apply(r)
    rows = [dataclasses.asdict(s) for s in first.states.values()]
    second = RatingBook(config, [CheckpointRating(**row) for row in rows])
    for r in records[cut:]:
        second.apply(r)
    assert second.states == whole.states


@given(st.lists(vote_st, min_size=1, max_size=25), st.booleans())
def test_the_duel_path_equals_the_general_path(votes: list[tuple], both_bad: bool) -> None:
    """Duels take a path of their own (the replay's hot loop); it gives the general path's
    numbers bit for bit, Elo, TrueSkill, time weights and counts."""
    config = RatingConfig(both_bad_as_draw=both_bad)
    fast, general = RatingBook(config), RatingBook(config)
    general._fast = False  # every vote through pairwise / elo_update / trueskill_games
    for i, (kind, shown, outcome) in enumerate(votes):
        record = (VoteRecord(tuple(shown), ranking=outcome, time=1.7e9 + 37.0 * i)
                  if kind == "rank" else
                  VoteRecord(tuple(shown), winner=outcome, time=1.7e9 + 37.0 * i))
        assert fast.apply(record) == general.apply(record)
    assert fast.states == general.states
