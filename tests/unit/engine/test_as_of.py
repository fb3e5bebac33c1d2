"""``as_of``: figures as they stood at the end of a day, from the same day buckets.

The engine reads a period's value up to a day (``Tally.value_through``) with targets and
expected progress at that day's end; ``recompute`` restricted to credit dated before the same
instant must give exactly the same figures, for every scope, metric, period and many days.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from decimal import Decimal

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streams.engine.engine import Engine
from streams.engine.events import Event
from streams.engine.periods import Period

from .conftest import activity, recomputed, utc, won
from .test_properties import START, worlds


def _day(engine: Engine, label: str) -> Period:
    day = engine.calendar.parse(label)
    assert isinstance(day, Period) and day.type == "day"
    return day


def _assert_as_of_equals_recompute(engine: Engine, stream: list[Event], label: str) -> None:
    cut = _day(engine, label).end
    expected = recomputed(engine, stream, cut, before=cut)
    for key in set(expected) | set(engine.keys()):
        got = engine.figures(*key, cut, through_day=label)
        if key in expected:
            assert got == expected[key], (key, label)
        else:
            assert got.value == 0, (key, label)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(worlds(), st.lists(st.integers(-3, 105), min_size=1, max_size=6))
def test_as_of_equals_recompute_before_the_cut(
    world: tuple[Engine, list[Event], datetime], offsets: list[int]
) -> None:
    """Days before, inside and after the events' ~100 days, in three calendars (zones, fiscal
    years, business days): period edges, closed periods and quota changes all vary."""
    engine, stream, _ = world
    for event in stream:
        engine.apply(event)
    for offset in offsets:
        label = engine.calendar.labels_at(START + timedelta(days=offset))[0]
        _assert_as_of_equals_recompute(engine, stream, label)


def test_a_past_day_leaves_out_later_credit(make_engine: Callable[..., Engine]) -> None:
    """The issue's case: a year's value as of June 30th counts nothing dated after it, and the
    quarter that ended that day is closed."""
    engine = make_engine()
    engine.roster.set_team("dach", "DACH", None)
    engine.roster.set_assignment("ann", "Ann", "dach", None)
    engine.quotas.set("rep", "ann", "calls", "2017-Q2", Decimal(2), None)
    for event in [
        activity("c1", "ann", utc(2017, 6, 30, 23, 59)),
        activity("c2", "ann", utc(2017, 7, 1)),
        won("w1", "D1", "ann", utc(2017, 5, 2), "100"),
        won("w2", "D2", "ann", utc(2017, 8, 2), "50"),
    ]:
        engine.apply(event)
    june_30 = _day(engine, "2017-06-30").end
    year = engine.figures("rep", "ann", "calls", "2017", june_30, through_day="2017-06-30")
    assert year.value == 1 and engine.figures("rep", "ann", "calls", "2017", june_30).value == 2
    revenue = engine.figures("company", "company", "revenue", "2017", june_30, "2017-06-30")
    assert revenue.value == 100
    q2 = engine.figures("rep", "ann", "calls", "2017-Q2", june_30, through_day="2017-06-30")
    assert (q2.value, q2.status) == (1, "missed")
    q2_later = engine.figures("rep", "ann", "calls", "2017-Q2", utc(2019, 1, 1), "2018-12-31")
    assert q2_later.status == "missed"
