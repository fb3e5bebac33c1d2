"""Property tests: the incremental engine equals a from-scratch recomputation.

Random streams mix activities (counted and ignored types), wins with and without splits,
amended wins, losses and reopenings on a few deals, exact re-sends, equal timestamps,
transfers set up front and quota changes; the engine fed any permutation, in any batches,
with re-deliveries and with partitions crashing and restored by a new owner, must give, for
every scope, metric and period, exactly the figures ``recompute`` derives directly.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta
from decimal import Decimal

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streams.engine.catalog import MetricCatalog
from streams.engine.engine import Engine, Messages
from streams.engine.events import Event, Split
from streams.engine.ledger import DealState, merge
from streams.engine.money import Rates
from streams.engine.pace import Thresholds
from streams.engine.periods import Calendar
from streams.engine.rollup import UNASSIGNED

from .conftest import recomputed, utc

CATALOG = MetricCatalog.load()
RATES = Rates.load(None, "USD")
CALENDARS = [
    Calendar(),
    Calendar("America/New_York", fiscal_year_start_month=2, week_start=6),
    Calendar("Europe/Berlin", fiscal_year_start_month=4, business_days=True, holiday_country="DE"),
]
REPS = ["ann", "cat", "dan", "eve"]
TEAMS = {"emea": None, "dach": "emea", "uk": "emea", "us": None}
DEALS = ["D1", "D2", "D3"]
START = utc(2026, 9, 20)
# a coarse grid of instants (~100 days, shifting hours) so equal times, transfers between two
# events of one deal and period edges in every time zone are all frequent
times = st.integers(0, 30).map(lambda n: START + timedelta(hours=n * 77))
amounts = st.decimals(min_value=0, max_value=10_000, places=2, allow_nan=False)
share_sets = st.sampled_from(
    [
        None,
        (("ann", "0.5"), ("dan", "0.5")),
        (("cat", "0.3333"), ("ann", "0.3333"), ("eve", "0.3334")),
        (("dan", "0.1"), ("cat", "0.9")),
    ]
)


@st.composite
def event_specs(draw: st.DrawFn) -> Event:
    kind = draw(
        st.sampled_from(["call", "email", "other", "won", "won", "won", "lost", "reopened"])
    )
    event_id = draw(st.integers(0, 40).map(str))
    source = draw(st.sampled_from(["crm", "dialer"]))
    rep, at = draw(st.sampled_from(REPS)), draw(times)
    if kind in ("call", "email", "other"):
        type_ = {"call": "call.completed", "email": "email.sent", "other": "sms.sent"}[kind]
        return Event(source, event_id, type_, at, rep)
    deal = draw(st.sampled_from(DEALS))
    if kind == "won":
        amount = draw(amounts)
        splits = draw(share_sets)
        split_tuple = None if splits is None else tuple(Split(r, Decimal(s)) for r, s in splits)
        return Event(
            source, event_id, "deal.won", at, rep, deal, amount, "USD", amount, split_tuple
        )
    return Event(source, event_id, f"deal.{kind}", at, rep, deal)


@st.composite
def worlds(draw: st.DrawFn) -> tuple[Engine, list[Event], datetime]:
    calendar = draw(st.sampled_from(CALENDARS))
    engine = Engine(calendar, CATALOG, RATES, Thresholds())
    for team, parent in TEAMS.items():
        engine.roster.set_team(team, team.upper(), parent)
    for rep in REPS:
        engine.roster.set_assignment(rep, rep.title(), draw(st.sampled_from(list(TEAMS))), None)
        for _ in range(draw(st.integers(0, 3))):  # transfers
            engine.roster.set_assignment(
                rep, rep.title(), draw(st.sampled_from(list(TEAMS))), draw(times)
            )
    for _ in range(draw(st.integers(0, 6))):  # quotas, some changing mid-period
        scope = draw(st.sampled_from(["rep", "rep", "team", "company"]))
        scope_id = {
            "rep": draw(st.sampled_from(REPS)),
            "team": draw(st.sampled_from(list(TEAMS))),
            "company": "company",
        }[scope]
        label = calendar.labels_at(draw(times))[draw(st.integers(0, 4))]
        engine.quotas.set(
            scope,
            scope_id,
            draw(st.sampled_from(CATALOG.names)),
            label,
            Decimal(draw(st.integers(0, 5000))),
            draw(st.none() | times),
        )
    drawn = draw(st.lists(event_specs(), min_size=3, max_size=40))
    events = [replace(e, id=f"{e.id}-{i}") for i, e in enumerate(drawn)]
    resent = draw(st.lists(st.sampled_from(events), max_size=8))  # exact duplicates
    # conflicting copies: one idempotency key, any other content (rep, day, type, deal, amount)
    conflicting = [
        replace(draw(event_specs()), source=e.source, id=e.id)
        for e in draw(st.lists(st.sampled_from(events), max_size=8))
    ]
    stream = draw(st.permutations(events + resent + conflicting))
    as_of = draw(times)
    return engine, stream, as_of


def _assert_matches_recompute(engine: Engine, stream: list[Event], as_of: datetime) -> None:
    for event in stream:
        engine.apply(event)
    _assert_equals_recompute(engine, stream, as_of)


def _assert_equals_recompute(engine: Engine, stream: list[Event], as_of: datetime) -> None:
    expected = recomputed(engine, stream, as_of)
    for key in set(expected) | set(engine.keys()):
        if key in expected:
            assert engine.figures(*key, as_of) == expected[key], key
        else:
            assert engine.value(*key) == 0, key


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(worlds())
def test_engine_equals_recompute(world: tuple[Engine, list[Event], datetime]) -> None:
    _assert_matches_recompute(*world)


def _same_world(engine: Engine) -> Engine:
    """An empty engine with the same rules, roster and quotas."""
    return Engine(
        engine.calendar,
        engine.catalog,
        engine.rates,
        engine.thresholds,
        roster=engine.roster,
        quotas=engine.quotas,
    )


def _ledgers(engine: Engine) -> dict[str, DealState]:
    """Every deal's ledger that holds an event (a deal only ever told that another copy of
    its event's key counts holds none)."""
    return {
        d: deal.state
        for t in engine.tallies
        for d, deal in t.deals.items()
        if deal.state is not None and deal.state != DealState(d)
    }


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(worlds(), st.randoms(use_true_random=False))
def test_arrival_order_never_matters(
    world: tuple[Engine, list[Event], datetime], rnd: object
) -> None:
    """Conflicting copies included: which copy counts is decided by content, not order."""
    engine, stream, as_of = world
    shuffled = list(stream)
    rnd.shuffle(shuffled)  # type: ignore[attr-defined]
    twin = _same_world(engine)
    for event in stream:
        engine.apply(event)
    for event in shuffled:
        twin.apply(event)
    keys = set(engine.keys()) | set(twin.keys())
    assert {k: engine.value(*k) for k in keys} == {k: twin.value(*k) for k in keys}
    assert _ledgers(engine) == _ledgers(twin)
    fresh = _same_world(engine)
    _assert_matches_recompute(fresh, shuffled, as_of)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(worlds(), st.data())
def test_batches_redeliveries_and_crashes_change_nothing(
    world: tuple[Engine, list[Event], datetime], data: st.DataObject
) -> None:
    """Random batch boundaries; a batch delivered twice; a crash that sent a batch's messages
    but lost all or some of its changelog records, after which a new owner restores the
    partition and the input is delivered again; old messages between partitions delivered
    again."""
    engine, stream, as_of = world
    partitions = st.integers(0, len(engine.tallies) - 1)
    i = 0
    while i < len(stream):
        batch = [(e, 0) for e in stream[i : i + data.draw(st.integers(1, 8))]]
        i += len(batch)
        before = [dict(records) for records in engine.records]
        engine.apply_batch(batch)
        fault = data.draw(st.sampled_from(["none", "none", "redeliver", "crash", "torn", "old"]))
        if fault == "redeliver":
            engine.apply_batch(batch)
        elif fault in ("crash", "torn"):
            p = data.draw(partitions)
            written = {k: v for k, v in engine.records[p].items() if before[p].get(k) != v}
            # torn: the crash came while the records were written, some of them made it
            kept = (
                data.draw(st.sets(st.sampled_from(sorted(written))))
                if fault == "torn" and written
                else set()
            )
            engine.records[p] = before[p] | {k: written[k] for k in kept}
            engine.restore(p)
            engine.apply_batch(batch)
        elif fault == "old":
            n = data.draw(st.integers(1, 20))
            old = Messages(engine.copy_log[-n:], engine.credit_log[-n:], engine.bucket_log[-n:])
            engine.deliver(old, set())
    _assert_equals_recompute(engine, stream, as_of)


deal_events = st.lists(event_specs(), max_size=25).map(
    lambda es: [e for e in es if e.deal_id == "D1"]
)


@settings(max_examples=200, deadline=None)
@given(deal_events, st.randoms(use_true_random=False))
def test_ledger_merge_is_a_join(events: list[Event], rnd: object) -> None:
    def fold(es: list[Event]) -> DealState | None:
        state = None
        for e in es:
            nxt = merge(state, e)
            assert merge(nxt, e) == nxt
            state = nxt
        return state

    shuffled = events + events[: len(events) // 2]
    rnd.shuffle(shuffled)  # type: ignore[attr-defined]
    assert fold(events) == fold(shuffled)


@st.composite
def roster_changes(draw: st.DrawFn) -> tuple[str, tuple[object, ...]]:
    """A late reference change: a transfer (effective any time, also before events already
    counted), a hire of a rep that already has activity, a departure, or a re-parented team."""
    kind = draw(st.sampled_from(["assign", "assign", "assign", "leave", "team"]))
    if kind == "team":
        team = draw(st.sampled_from(["dach", "uk"]))
        return "team", (team, team.upper(), draw(st.sampled_from(["emea", "us", None])))
    rep = draw(st.sampled_from([*REPS, "zed"]))
    team = None if kind == "leave" else draw(st.sampled_from(list(TEAMS)))
    return "assign", (rep, rep.title(), team, draw(st.none() | times))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(worlds(), st.lists(st.tuples(st.integers(0, 40), roster_changes()), max_size=8), st.data())
def test_late_roster_changes_re_attribute_the_past(
    world: tuple[Engine, list[Event], datetime],
    changes: list[tuple[int, tuple[str, tuple[object, ...]]]],
    data: st.DataObject,
) -> None:
    """Roster changes arriving at any point of the stream, effective at any time (also before
    events already counted, and after the last event), for reps with or without activity so
    far, with crashes in between: once a batch has run after the last change (the worker's
    timer runs one), the figures equal the recomputation with the final roster."""
    engine, stream, as_of = world
    stream = stream + [replace(e, rep_id="zed", id=f"z{e.id}") for e in stream[:3]]
    pending = sorted(changes, key=lambda change: change[0])
    before: list[dict[str, dict[str, object]]] = [{} for _ in engine.tallies]
    for i, event in enumerate(stream):
        while pending and pending[0][0] <= i:
            kind, args = pending.pop(0)[1]
            if kind == "team":
                engine.roster.set_team(*args)  # type: ignore[arg-type]
            else:
                engine.roster.set_assignment(*args)  # type: ignore[arg-type]
            fault = data.draw(st.sampled_from(["none", "restore", "crash"]))
            p = data.draw(st.integers(0, len(engine.tallies) - 1))
            if fault == "crash" and i > 0:  # the last batch's records lost, its input again
                engine.records[p] = before[p]
                engine.restore(p)
                engine.apply(stream[i - 1])
            elif fault != "none":
                engine.restore(p)
        before = [dict(records) for records in engine.records]
        engine.apply(event)
    for _, (kind, args) in pending:
        if kind == "team":
            engine.roster.set_team(*args)  # type: ignore[arg-type]
        else:
            engine.roster.set_assignment(*args)  # type: ignore[arg-type]
    engine.apply_batch([])
    _assert_equals_recompute(engine, stream, as_of)
    figure_keys = list(engine.keys())
    company = {k[2:]: engine.value(*k) for k in figure_keys if k[0] == "company"}
    roots = [t for t in engine.roster.teams() | {UNASSIGNED} if engine.roster.parent(t) is None]
    for (metric, label), total in company.items():
        assert total == sum(engine.value("team", t, metric, label) for t in roots), (metric, label)
