"""Money conversion and the metric catalog."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from streams.engine.catalog import MetricCatalog
from streams.engine.errors import Invalid
from streams.engine.money import Rates, decimal_text, parse_decimal

from .conftest import utc


def test_shipped_table_has_the_required_currencies(rates: Rates) -> None:
    assert {"USD", "EUR", "GBP", "JPY", "CAD", "AUD", "CHF", "SEK"} <= rates.currencies


def test_rates_are_effective_dated(rates: Rates) -> None:
    assert rates.to_base(Decimal("100"), "EUR", utc(2025, 12, 31, 23)) == Decimal("108.00")
    assert rates.to_base(Decimal("100"), "EUR", utc(2026, 1, 1)) == Decimal("109.00")
    assert rates.to_base(Decimal("100"), "EUR", utc(1990, 1, 1)) == Decimal("108.00")  # earliest
    assert rates.to_base(Decimal("12.34"), "USD", utc(2026, 1, 1)) == Decimal("12.34")


def test_unknown_or_malformed_currency_is_a_value(rates: Rates) -> None:
    for code in ("XYZ", "usd", "US", ""):
        result = rates.to_base(Decimal(1), code, utc(2026, 1, 1))
        assert isinstance(result, Invalid) and result.code == "unknown_currency"


def test_other_base_uses_cross_rates(tmp_path: Path) -> None:
    table = tmp_path / "rates.csv"
    table.write_text(
        "currency,rate,effective_from\nUSD,1,2020-01-01\nEUR,1.25,2020-01-01\n"
        "GBP,1.5,2020-01-01\nGBP,2,2026-06-01T12:00:00+02:00\n"
    )
    eur = Rates.load(table, "EUR")
    assert eur.to_base(Decimal("10"), "USD", utc(2026, 1, 1)) == Decimal("8")
    assert eur.to_base(Decimal("10"), "GBP", utc(2026, 6, 1, 9, 59)) == Decimal("12")
    assert eur.to_base(Decimal("10"), "GBP", utc(2026, 6, 1, 10)) == Decimal("16")
    with pytest.raises(ValueError):
        Rates.load(table, "JPY")


def test_bad_rates_table_fails_at_start(tmp_path: Path) -> None:
    table = tmp_path / "rates.csv"
    table.write_text("currency,rate,effective_from\nEUR,-1,2020-01-01\n")
    with pytest.raises(ValueError, match="line 2"):
        Rates.load(table, "EUR")


def test_decimal_parsing_is_strict_and_text_is_plain() -> None:
    assert parse_decimal("12.50") == Decimal("12.50")
    assert parse_decimal(7) == Decimal(7)
    for bad in ("1e3", " 1", "1,5", "NaN", True, None, 1.5):
        assert parse_decimal(bad) is None
    assert decimal_text(Decimal("1E+3")) == "1000"


def test_default_catalog(catalog: MetricCatalog) -> None:
    assert catalog.names == ("revenue", "deals_won", "calls", "emails", "meetings", "proposals")
    assert [m.name for m in catalog.metrics_for("deal.won")] == ["revenue", "deals_won"]
    assert [m.name for m in catalog.deal_metrics] == ["revenue", "deals_won"]
    assert catalog.activity_metrics_for("deal.won") == ()
    assert [m.kind for m in catalog.metrics_for("call.completed")] == ["count"]
    assert catalog.counts("deal.lost") and catalog.counts("email.sent")
    assert not catalog.counts("sms.sent")


def test_users_add_metrics_in_yaml(tmp_path: Path) -> None:
    path = tmp_path / "catalog.yaml"
    path.write_text(
        "metrics:\n"
        "  revenue: {kind: amount, event_types: [deal.won]}\n"
        "  demos: {kind: count, event_types: [demo.booked, demo.held]}\n"
        "  touches: {kind: count, event_types: [call.completed, demo.held]}\n"
    )
    catalog = MetricCatalog.load(path)
    assert [m.name for m in catalog.metrics_for("demo.held")] == ["demos", "touches"]
    assert catalog.known("demo.booked") and catalog.known("meeting.held")
    assert not catalog.known("sms.sent")
    assert not catalog.counts("meeting.held")  # built-in type, but no metric here


@pytest.mark.parametrize(
    "body",
    [
        "metrics: {x: {kind: amount, event_types: [call.completed]}}",
        "metrics: {x: {kind: count, event_types: [deal.lost]}}",
        "metrics: {x: {kind: count, event_types: [deal.won, call.completed]}}",
        "metrics: {x: {kind: total, event_types: [a]}}",
        "metrics: {Bad-Name: {kind: count, event_types: [a]}}",
        "metrics: {x: {kind: count, event_types: []}}",
        "metrics: {x: {kind: count}}",
        "[]",
    ],
)
def test_bad_catalogs_fail_at_start(tmp_path: Path, body: str) -> None:
    path = tmp_path / "catalog.yaml"
    path.write_text(body)
    with pytest.raises(ValueError):
        MetricCatalog.load(path)
