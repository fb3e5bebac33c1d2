"""Shared builders for the engine's unit tests: shipped catalog/rates, event factories, the
recomputation of an engine's world."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from streams.engine.catalog import MetricCatalog
from streams.engine.engine import Engine, FigureKey
from streams.engine.events import Event, Split
from streams.engine.money import Rates
from streams.engine.pace import Figures
from streams.engine.periods import Calendar
from streams.engine.recompute import recompute


def recomputed(
    engine: Engine, stream: list[Event], as_of: datetime, before: datetime | None = None
) -> dict[FigureKey, Figures]:
    """``recompute`` of ``stream`` with the engine's own rules, roster and quotas."""
    return recompute(
        stream,
        engine.roster,
        engine.quotas,
        engine.calendar,
        engine.catalog,
        engine.rates,
        engine.thresholds,
        as_of,
        before=before,
    )


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def activity(
    event_id: str, rep: str, at: datetime, type_: str = "call.completed", source: str = "dialer"
) -> Event:
    return Event(source, event_id, type_, at, rep)


def won(
    event_id: str,
    deal: str,
    rep: str,
    at: datetime,
    amount: str,
    splits: dict[str, str] | None = None,
    source: str = "crm",
) -> Event:
    split_tuple = None
    if splits is not None:
        split_tuple = tuple(Split(r, Decimal(s)) for r, s in splits.items())
    return Event(
        source,
        event_id,
        "deal.won",
        at,
        rep,
        deal,
        Decimal(amount),
        "USD",
        Decimal(amount),
        split_tuple,
    )


def lost(event_id: str, deal: str, rep: str, at: datetime, type_: str = "deal.lost") -> Event:
    return Event("crm", event_id, type_, at, rep, deal)


def cloud_event(**overrides: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "specversion": "1.0",
        "id": "evt-1",
        "source": "crm://acme",
        "type": "deal.won",
        "time": "2026-11-27T10:00:00+01:00",
        "data": {"rep_id": "alice", "deal_id": "D-1", "amount": "1000.00", "currency": "USD"},
    }
    doc.update(overrides)
    return doc


def raw(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc).encode()


@pytest.fixture(scope="session")
def catalog() -> MetricCatalog:
    return MetricCatalog.load()


@pytest.fixture(scope="session")
def rates() -> Rates:
    return Rates.load(None, "USD")


@pytest.fixture
def make_engine(catalog: MetricCatalog, rates: Rates) -> Callable[..., Engine]:
    def build(calendar: Calendar | None = None) -> Engine:
        return Engine(calendar or Calendar(), catalog, rates)

    return build
