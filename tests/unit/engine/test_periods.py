"""Periods: labels on fiscal calendars, local midnights across DST, expected progress."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from streams.engine.errors import Invalid
from streams.engine.periods import PERIOD_TYPES, Calendar, Period

from .conftest import utc


def test_default_labels_match_the_contract() -> None:
    labels = Calendar().labels_at(utc(2026, 11, 27, 10))
    assert labels == ("2026-11-27", "2026-W48", "2026-11", "2026-Q4", "2026")
    assert [p.type for p in Calendar().periods_at(utc(2026, 11, 27))] == list(PERIOD_TYPES)


def test_period_edges_are_midnight_and_end_is_exclusive() -> None:
    cal = Calendar()
    last = utc(2026, 11, 30, 23, 59, 59, 999999)
    assert cal.labels_at(last) == ("2026-11-30", "2026-W49", "2026-11", "2026-Q4", "2026")
    first = utc(2026, 12, 1)
    assert cal.labels_at(first)[2] == "2026-12"
    month = cal.current("month", last)
    assert (month.start, month.end) == (utc(2026, 11, 1), utc(2026, 12, 1))
    assert cal.labels_at(utc(2026, 12, 31, 23, 59))[4] == "2026"
    assert cal.labels_at(utc(2027, 1, 1))[3:] == ("2027-Q1", "2027")


@pytest.mark.parametrize(
    ("start_month", "at", "quarter", "year"),
    [
        (2, utc(2026, 1, 31, 23, 59), "2026-Q4", "2026"),  # FY Feb 2025 – Jan 2026
        (2, utc(2026, 2, 1), "2027-Q1", "2027"),  # FY Feb 2026 – Jan 2027
        (2, utc(2026, 4, 30), "2027-Q1", "2027"),
        (2, utc(2026, 5, 1), "2027-Q2", "2027"),
        (2, utc(2026, 11, 27), "2027-Q4", "2027"),
        (2, utc(2027, 1, 15), "2027-Q4", "2027"),
        (4, utc(2026, 11, 27), "2027-Q3", "2027"),  # FY Apr 2026 – Mar 2027
        (4, utc(2026, 3, 31), "2026-Q4", "2026"),
        (10, utc(2026, 10, 1), "2027-Q1", "2027"),
        (12, utc(2026, 11, 30), "2026-Q4", "2026"),
        (12, utc(2026, 12, 1), "2027-Q1", "2027"),
    ],
)
def test_fiscal_year_is_named_by_the_year_it_ends(
    start_month: int, at: datetime, quarter: str, year: str
) -> None:
    labels = Calendar(fiscal_year_start_month=start_month).labels_at(at)
    assert labels[3:] == (quarter, year)
    assert labels[2] == f"{at.year}-{at.month:02d}"  # months keep calendar labels


def test_fiscal_periods_have_fiscal_bounds() -> None:
    cal = Calendar(fiscal_year_start_month=2)
    year = cal.parse("2027")
    q4 = cal.parse("2027-Q4")
    assert isinstance(year, Period) and isinstance(q4, Period)
    assert (year.start, year.end) == (utc(2026, 2, 1), utc(2027, 2, 1))
    assert (q4.start, q4.end) == (utc(2026, 11, 1), utc(2027, 2, 1))


def test_weeks_starting_on_sunday() -> None:
    cal = Calendar(week_start=6)
    week = cal.current("week", utc(2026, 11, 27, 12))  # a Friday
    assert week.label == "2026-W47"
    assert (week.start, week.end) == (utc(2026, 11, 22), utc(2026, 11, 29))
    # the week holding Jan 4 2026 (a Sunday) is week 1; the one before belongs to 2025
    assert cal.labels_at(utc(2026, 1, 4))[1] == "2026-W01"
    assert cal.labels_at(utc(2026, 1, 3))[1] == "2025-W53"
    assert cal.labels_at(utc(2026, 11, 29))[1] == "2026-W48"  # Sunday opens a new week


def test_iso_weeks_at_year_ends() -> None:
    cal = Calendar()
    assert cal.labels_at(utc(2026, 12, 31))[1] == "2026-W53"
    assert cal.labels_at(utc(2027, 1, 3))[1] == "2026-W53"
    assert cal.labels_at(utc(2027, 1, 4))[1] == "2027-W01"
    assert cal.labels_at(utc(2024, 12, 30))[1] == "2025-W01"


def test_new_york_days_follow_dst() -> None:
    cal = Calendar("America/New_York")
    spring = cal.current("day", utc(2026, 3, 8, 12))
    assert spring.label == "2026-03-08"
    assert (spring.start, spring.end) == (utc(2026, 3, 8, 5), utc(2026, 3, 9, 4))  # 23 h
    assert cal.labels_at(utc(2026, 3, 9, 3, 59, 59))[0] == "2026-03-08"
    assert cal.labels_at(utc(2026, 3, 9, 4))[0] == "2026-03-09"
    autumn = cal.current("day", utc(2026, 11, 1, 12))
    assert (autumn.start, autumn.end) == (utc(2026, 11, 1, 4), utc(2026, 11, 2, 5))  # 25 h
    # elapsed real time: 12.5 h of 25 h
    assert cal.expected(autumn, utc(2026, 11, 1, 16, 30)) == Decimal("0.5")
    # a late call on Nov 30 local time is already December in UTC
    assert cal.labels_at(utc(2026, 12, 1, 4, 30))[2] == "2026-11"


def test_berlin_month_and_year_edges() -> None:
    cal = Calendar("Europe/Berlin")
    assert cal.labels_at(utc(2026, 2, 28, 23, 30))[:3] == ("2026-03-01", "2026-W09", "2026-03")
    march = cal.parse("2026-03")
    assert isinstance(march, Period)
    assert (march.start, march.end) == (utc(2026, 2, 28, 23), utc(2026, 3, 31, 22))
    assert cal.labels_at(utc(2026, 3, 31, 21, 59))[2:4] == ("2026-03", "2026-Q1")
    assert cal.labels_at(utc(2026, 3, 31, 22))[2:4] == ("2026-04", "2026-Q2")
    assert cal.labels_at(utc(2026, 12, 31, 23)) == (
        "2027-01-01",
        "2026-W53",
        "2027-01",
        "2027-Q1",
        "2027",
    )


def test_midnight_skipped_by_dst_starts_the_day_at_one() -> None:
    cal = Calendar("America/Santiago")  # clocks jump 00:00 -> 01:00 on 2026-09-06
    day = cal.current("day", utc(2026, 9, 6, 12))
    assert day.start == utc(2026, 9, 6, 4)
    assert (day.start.hour, day.end.hour) == (1, 0)
    assert cal.labels_at(utc(2026, 9, 6, 3, 59))[0] == "2026-09-05"


@pytest.mark.parametrize(
    "calendar",
    [
        Calendar(),
        Calendar("America/New_York", 2, 6),
        Calendar("Europe/Berlin", 4, 2),
        Calendar("Asia/Kathmandu", 7, 0),
        Calendar("Pacific/Chatham", 12, 5),
    ],
)
def test_every_label_parses_back_to_its_period(calendar: Calendar) -> None:
    t = utc(2025, 12, 20)
    while t < utc(2027, 1, 10):
        for period in calendar.periods_at(t):
            assert period.start <= t < period.end
            assert calendar.parse(period.label) == period
        t += timedelta(hours=7, minutes=45)


@pytest.mark.parametrize("label", ["2026-Q5", "2026-W54", "2026-13", "2026-02-30", "26", "x"])
def test_bad_labels_are_values(label: str) -> None:
    result = Calendar().parse(label)
    assert isinstance(result, Invalid) and result.code == "bad_period"


@pytest.mark.parametrize(
    ("calendar", "label"),
    [
        (Calendar(), "9999"),
        (Calendar(), "9999-Q4"),
        (Calendar(), "9999-12"),
        (Calendar(), "9999-12-31"),
        (Calendar(), "0000"),
        (Calendar("America/New_York", fiscal_year_start_month=2), "9999-W52"),
    ],
)
def test_labels_past_the_calendars_range_are_values(calendar: Calendar, label: str) -> None:
    """Their periods would start before year 1 or end after 9999: refused, never raised."""
    result = calendar.parse(label)
    assert isinstance(result, Invalid) and result.code == "bad_period"


def test_instants_past_the_calendars_range_are_values() -> None:
    day = Calendar().day_at(datetime(9998, 6, 1, tzinfo=UTC))
    assert isinstance(day, Period) and day.label == "9998-06-01"
    for t in (datetime(9999, 12, 31, tzinfo=UTC), datetime(1, 1, 1, tzinfo=UTC)):
        result = Calendar("Asia/Tokyo").day_at(t)
        assert isinstance(result, Invalid) and result.code == "bad_time"


def test_week_53_only_where_it_exists() -> None:
    assert isinstance(Calendar().parse("2026-W53"), Period)
    assert isinstance(Calendar().parse("2025-W53"), Invalid)


def test_expected_calendar_time_is_clipped() -> None:
    cal = Calendar()
    november = cal.current("month", utc(2026, 11, 1))
    assert cal.expected(november, utc(2026, 11, 16)) == Decimal("0.5")
    assert cal.expected(november, utc(2026, 10, 1)) == 0
    assert cal.expected(november, utc(2027, 1, 1)) == 1
    assert cal.expected(november, utc(2026, 11, 1)) == 0


def test_expected_by_us_business_days() -> None:
    cal = Calendar(business_days=True, holiday_country="US")
    november = cal.current("month", utc(2026, 11, 1))
    # 21 weekdays minus Veterans Day (11th) and Thanksgiving (26th) = 19 business days;
    # by Monday the 16th, 9 have passed (2-6, 9-13 without the 11th).
    assert cal.expected(november, utc(2026, 11, 16)) == Decimal(9) / Decimal(19)
    assert cal.expected(november, utc(2026, 11, 16, 12)) == Decimal("0.5")
    # a holiday and a weekend add nothing
    assert cal.expected(november, utc(2026, 11, 11, 18)) == cal.expected(
        november, utc(2026, 11, 11, 1)
    )
    assert cal.expected(november, utc(2026, 11, 8, 23)) == Decimal(5) / Decimal(19)


def test_business_days_without_holidays_count_weekdays() -> None:
    cal = Calendar(business_days=True)
    week = cal.current("week", utc(2026, 11, 25))
    assert cal.expected(week, utc(2026, 11, 26)) == Decimal("0.6")  # Mon-Wed of 5
    assert cal.expected(week, utc(2026, 11, 28, 12)) == 1  # Saturday: all 5 done
