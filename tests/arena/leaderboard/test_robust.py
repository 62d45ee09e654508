"""The robust board's warnings: plain and robust places that cannot both hold, and position bias
read from the fitted term."""

from __future__ import annotations

from arena.leaderboard.robust import disagreements, place_ranges, position_warnings
from metrics.bradley_terry import BTRating
from metrics.robust import PositionTerm, RobustParams, RobustResult


def _rows(bounds: dict[str, tuple[float, float]]) -> list[dict[str, object]]:
    return [{"checkpoint_id": i, "checkpoint": name, "rating": (low + high) / 2, "lower": low,
             "upper": high} for i, (name, (low, high)) in enumerate(bounds.items())]


def test_place_ranges_follow_the_intervals() -> None:
    rows = _rows({"a": (1100, 1200), "b": (1050, 1150), "c": (900, 1000)})
    assert place_ranges(rows) == {0: (1, 2), 1: (1, 2), 2: (3, 3)}


def test_a_checkpoint_lifted_by_discounted_votes_is_named() -> None:
    plain = _rows({"target": (1150, 1250), "x": (1000, 1100), "z": (700, 800)})
    robust = _rows({"target": (850, 950), "x": (1000, 1100), "z": (700, 800)})
    warnings = disagreements(plain, robust)
    # The target falls from 1st to 2nd, so x rises from 2nd to 1st; z stays 3rd.
    assert [w.split(" ")[0] for w in warnings] == ["target", "x"]
    assert warnings[0].startswith("target places 1 on Bradley-Terry but 2 on the robust board")
    assert disagreements(plain, plain) == []


def test_position_warning_comes_from_the_fitted_term() -> None:
    def result(*terms: PositionTerm) -> RobustResult:
        return RobustResult((BTRating(1, 1000.0, 990.0, 1010.0, 1),), terms, {}, {}, {}, 10,
                            0, 0, 0, 0, RobustParams())

    biased = result(PositionTerm("fixed", 1, -0.3, -0.4, -0.2),
                    PositionTerm("ffa", 2, 0.05, -0.05, 0.15))
    warnings = position_warnings(biased)
    assert len(warnings) == 1
    assert "fixed: position B is disfavoured" in warnings[0] and "-0.30" in warnings[0]
    assert position_warnings(result(PositionTerm("fixed", 1, 0.0, -0.1, 0.1))) == []
