"""``streams.reconcile``'s own rules: which period a run proves, and its result's round trip
through the admin API's JSON."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from streams.engine.errors import Invalid
from streams.engine.periods import Calendar, Period
from streams.reconcile import Difference, Result, period_to_prove

NOW = datetime(2026, 11, 30, 23, 30, tzinfo=UTC)  # already December 1st in Berlin


def label(calendar: Calendar, text: str | None, previous: bool) -> str:
    period = period_to_prove(calendar, text, previous, NOW)
    assert isinstance(period, Period), period
    return period.label


def test_the_default_is_the_organisations_current_quarter_and_previous_the_one_before() -> None:
    assert label(Calendar(), None, False) == "2026-Q4"
    assert label(Calendar(), None, True) == "2026-Q3"
    fiscal = Calendar("Europe/Berlin", fiscal_year_start_month=2)  # FY 2027 = Feb 2026-Jan 2027
    assert label(fiscal, None, False) == "2027-Q4"
    assert label(fiscal, None, True) == "2027-Q3"
    assert label(Calendar("Europe/Berlin"), "2026-11", True) == "2026-10"
    assert label(Calendar(), "2026-01-01", True) == "2025-12-31"
    assert isinstance(period_to_prove(Calendar(), "2026-Q9", True, NOW), Invalid)


def test_a_result_survives_the_admin_apis_json() -> None:
    result = Result(
        "run-1",
        "2026-Q4",
        NOW,
        NOW,
        10,
        42,
        (
            Difference("rep", "ann", "revenue", Decimal("1200.50"), Decimal("1300")),
            Difference("team", "emea", "calls", Decimal(3), None),
        ),
    )
    assert Result.from_dict(result.to_dict()) == result
