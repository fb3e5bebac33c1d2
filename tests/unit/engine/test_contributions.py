"""The contribution book: versioned puts, incremental sums per period label."""

from __future__ import annotations

from decimal import Decimal

from streams.engine.contributions import (
    Contribution,
    ContributionBook,
    contribution_from_dict,
    contribution_to_dict,
)
from streams.engine.periods import Calendar

from .conftest import utc


def test_first_activity_wins_and_duplicates_are_ignored() -> None:
    book = ContributionBook(Calendar())
    c = Contribution("calls", utc(2026, 11, 27, 10), Decimal(1), ())
    change = book.put("alice", "k", c)
    assert change is not None and change.old is None and change.new == c and change.key == "k"
    assert book.put("alice", "k", c) is None
    assert book.put("alice", "k", Contribution("calls", utc(2026, 1, 1), Decimal(5), ())) is None
    assert book.value("alice", "calls", "2026-11-27") == 1
    assert book.value("alice", "calls", "2026-W48") == 1
    assert book.value("alice", "calls", "2026") == 1
    assert book.value("alice", "calls", "2026-01") == 0
    assert book.value("nobody", "calls", "2026") == 0


def test_higher_version_moves_the_amount_between_periods() -> None:
    book = ContributionBook(Calendar())
    book.put("a", "deal", Contribution("revenue", utc(2026, 10, 30), Decimal("100"), (1,)))
    book.put("a", "other", Contribution("revenue", utc(2026, 10, 2), Decimal("7"), (1,)))
    change = book.put("a", "deal", Contribution("revenue", utc(2026, 11, 2), Decimal("40"), (2,)))
    assert change is not None and change.old is not None and change.old.amount == 100
    assert book.value("a", "revenue", "2026-10") == 7
    assert book.value("a", "revenue", "2026-11") == 40
    assert book.value("a", "revenue", "2026-Q4") == 47
    assert book.put("a", "deal", Contribution("revenue", utc(2026, 9, 1), Decimal(1), (1,))) is None
    book.put("a", "deal", Contribution("revenue", utc(2026, 11, 2), Decimal(0), (3,)))
    assert book.value("a", "revenue", "2026-Q4") == 7
    assert book.labels("a", "revenue") >= {"2026-10", "2026-11", "2026-Q4"}
    assert book.get("a", "deal") == Contribution("revenue", utc(2026, 11, 2), Decimal(0), (3,))


def test_sums_follow_the_calendar_time_zone() -> None:
    book = ContributionBook(Calendar("America/New_York"))
    book.put("a", "k", Contribution("calls", utc(2026, 12, 1, 3), Decimal(1), ()))
    assert book.value("a", "calls", "2026-11") == 1
    assert book.value("a", "calls", "2026-12") == 0


def test_contribution_round_trips_including_nested_versions() -> None:
    c = Contribution("revenue", utc(2026, 11, 1), Decimal("12.50"), ((1, "x"), ()))
    doc = contribution_to_dict(c)
    assert doc["amount"] == "12.5" and doc["time"] == "2026-11-01T00:00:00+00:00"
    import json

    back = contribution_from_dict(json.loads(json.dumps(doc)))
    assert back == c and back.version > ((1, "w"), ())
    assert Contribution.from_dict(c.to_dict()) == c


def test_clear_empties_the_book() -> None:
    book = ContributionBook(Calendar())
    book.put("a", "k", Contribution("calls", utc(2026, 11, 1), Decimal(1), ()))
    book.clear()
    assert list(book.scopes()) == [] and book.value("a", "calls", "2026") == 0
