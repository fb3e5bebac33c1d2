"""Milestones: levels from exact decimals, and each level celebrated once going up."""

from __future__ import annotations

from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from streams.engine.milestones import STRETCH, TARGET, crossed, level

STRETCH_AT = Decimal("1.2")


def test_levels_are_decided_on_exact_decimals():
    target = Decimal("10000.00")
    assert level(Decimal("9999.999999"), target, STRETCH_AT) == 0
    assert level(Decimal("10000"), target, STRETCH_AT) == TARGET
    assert level(Decimal("11999.99"), target, STRETCH_AT) == TARGET
    assert level(Decimal("12000"), target, STRETCH_AT) == STRETCH


def test_no_positive_target_is_nothing_to_reach():
    assert level(Decimal(5), None, STRETCH_AT) == 0
    assert level(Decimal(5), Decimal(0), STRETCH_AT) == 0


@given(st.lists(st.integers(0, 2), max_size=30))
def test_any_course_celebrates_each_level_reached_exactly_once(course: list[int]) -> None:
    highest, celebrated = 0, []
    for now in course:
        new = crossed(highest, now)
        celebrated.extend(new)
        highest = max(highest, now)
    assert celebrated == list(range(1, max(course, default=0) + 1))
