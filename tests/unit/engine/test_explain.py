"""``explain``: the contributions behind a figure, whose total is the recomputed value.

A worked example pins the wording a rep reads; hypothesis worlds (the engine property tests'
strategy) prove, for every scope, metric and period, that the counted lines add up to
``recompute`` and that paging returns every line once.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from decimal import Decimal

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streams.engine.catalog import MetricCatalog
from streams.engine.engine import Engine
from streams.engine.events import Event, Split
from streams.engine.explain import explain
from streams.engine.money import Rates
from streams.engine.periods import Calendar, Period
from streams.engine.recompute import COUNTED, RETRACTED, SUPERSEDED, contributions, values
from streams.engine.roster import Roster
from streams.engine.scopes import COMPANY

from .conftest import activity, lost, utc, won
from .test_properties import worlds

CATALOG = MetricCatalog.load()
RATES = Rates.load(None, "USD")
CALENDAR = Calendar("Europe/Berlin")


def _period(label: str, calendar: Calendar = CALENDAR) -> Period:
    period = calendar.parse(label)
    assert isinstance(period, Period)
    return period


def _roster() -> Roster:
    roster = Roster()
    roster.set_team("emea", "EMEA", None)
    roster.set_team("dach", "DACH", "emea")
    roster.set_assignment("ann", "Ann", "dach", None)
    roster.set_assignment("bob", "Bob", "emea", None)
    return roster


def test_a_rewon_split_deal_in_euros_reads_as_the_crm_tells_it() -> None:
    first = won("w-1", "D-42", "ann", utc(2026, 11, 1, 9), "9000")
    rewon = Event(
        "crm",
        "w-2",
        "deal.won",
        utc(2026, 11, 3, 10),
        "ann",
        "D-42",
        Decimal("12000"),
        "EUR",
        Decimal("12000") * Decimal("1.09"),
        (Split("ann", Decimal("0.6")), Split("bob", Decimal("0.4"))),
    )
    lost_deal = [
        won("w-3", "D-7", "bob", utc(2026, 11, 2), "500"),
        lost("l-1", "D-7", "bob", utc(2026, 11, 4)),
    ]
    call = activity("c-1", "ann", utc(2026, 11, 2, 23, 30))  # 00:30 on the 3rd in Berlin
    events = [first, rewon, *lost_deal, call, call]
    roster = _roster()
    got = explain(
        contributions(events, CATALOG), roster, CALENDAR, RATES, ("rep", "ann"), "revenue",
        _period("2026-11"),
    )  # fmt: skip
    assert [(line.contribution.event.id, line.contribution.status) for line in got.lines] == [
        ("w-2", COUNTED),
        ("w-1", SUPERSEDED),
    ]
    assert got.total == Decimal("12000") * Decimal("1.09") * Decimal("0.6")
    assert (
        got.lines[0].reason == "deal D-42 re-won on 2026-11-03 for 12,000 EUR at 1.09; 60 % split"
    )
    assert got.lines[0].teams == ("dach", "emea")
    assert got.lines[0].rate == Decimal("1.09")
    assert got.lines[1].reason == (
        "deal D-42 won on 2026-11-01 for 9,000 USD; superseded by the win of 2026-11-03 (crm/w-2)"
    )

    emea = explain(
        contributions(events, CATALOG), roster, CALENDAR, RATES, ("team", "emea"), "revenue",
        _period("2026-11"),
    )  # fmt: skip
    statuses = {
        (line.contribution.event.id, line.contribution.claim.rep_id): line.contribution.status
        for line in emea.lines
    }
    assert statuses == {
        ("w-2", "ann"): COUNTED,
        ("w-2", "bob"): COUNTED,
        ("w-1", "ann"): SUPERSEDED,
        ("w-3", "bob"): RETRACTED,
    }
    assert emea.total == Decimal("12000") * Decimal("1.09")
    retracted = next(line for line in emea.lines if line.contribution.event.id == "w-3")
    assert retracted.reason.endswith("; retracted by deal.lost on 2026-11-04 (crm/l-1)")

    calls = explain(
        contributions(events, CATALOG), roster, CALENDAR, RATES, COMPANY, "calls",
        _period("2026-11-03"),
    )  # fmt: skip
    assert [line.reason for line in calls.lines] == ["call.completed on 2026-11-03 (dialer/c-1)"]
    assert calls.total == 1  # the copy is not a second contribution


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(worlds(), st.integers(1, 7))
def test_every_explanation_adds_up_to_the_recomputed_value(
    world: tuple[Engine, list[Event], datetime], limit: int
) -> None:
    engine, stream, _ = world
    calendar, roster = engine.calendar, engine.roster
    listed = list(contributions(stream, CATALOG))
    expected = values(stream, roster, calendar, CATALOG)
    scopes = {("rep", r) for r in roster.reps()} | {("team", t) for t in roster.teams()}
    labels = {label for e in stream for label in calendar.labels_at(e.time)}
    keys = {(s, i, m, lbl) for s, i in scopes | {COMPANY} for m in CATALOG.names for lbl in labels}
    assert set(expected) <= keys
    sent: dict[tuple[str, str], list[Event]] = {}
    for e in stream:
        sent.setdefault(e.key, []).append(e)
    for scope, scope_id, metric, label in keys:
        period = calendar.parse(label)
        assert isinstance(period, Period)
        got = explain(listed, roster, calendar, RATES, (scope, scope_id), metric, period)
        assert got.total == expected.get((scope, scope_id, metric, label), 0)
        for line in got.lines:  # every line names the copy of its key that counts
            copies = sent[line.contribution.event.key]
            assert line.contribution.event == min(copies, key=lambda e: e.copy_digest)
        paged, cursor = [], None
        while True:
            page, cursor = got.page(cursor, limit)
            paged.extend(page)
            if cursor is None:
                break
        assert paged == list(got.lines)


def test_a_cursor_from_an_older_listing_still_pages_on() -> None:
    roster = _roster()
    events = [activity(f"c-{i}", "ann", utc(2026, 11, 2 + i % 5, i)) for i in range(12)]
    period = _period("2026-11")
    before = explain(
        contributions(events, CATALOG), roster, CALENDAR, RATES, ("rep", "ann"), "calls", period
    )
    first, cursor = before.page(None, 5)
    assert cursor is not None
    newer = [*events, replace(events[0], id="c-new", time=utc(2026, 11, 20))]
    after = explain(
        contributions(newer, CATALOG), roster, CALENDAR, RATES, ("rep", "ann"), "calls", period
    )
    rest, _ = after.page(cursor, 100)
    assert [line.key for line in first + rest] == [line.key for line in before.lines]
