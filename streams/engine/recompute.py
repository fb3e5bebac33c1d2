"""From-scratch recomputation: the reference the incremental engine is tested against.

Deliberately written the plain way and sharing no code with the ledger, postings or
contribution book: keep the first event of each (source, id), take each deal's latest win
and latest retraction by (time, id, source), and sum every credit directly. If the
incremental path and this one disagree for any scope, metric or period, one has a bug.
It reuses only the inputs' own rules (calendar labels, the roll-up rule, quota targets).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from datetime import datetime
from decimal import Decimal

from streams.engine.catalog import MetricCatalog
from streams.engine.errors import Invalid
from streams.engine.events import Event
from streams.engine.money import Rates
from streams.engine.pace import Figures, Thresholds, figures
from streams.engine.periods import Calendar
from streams.engine.quotas import QuotaBook
from streams.engine.rollup import teams_for
from streams.engine.roster import Roster

FigureKey = tuple[str, str, str, str]


def recompute(
    events: Iterable[Event],
    roster: Roster,
    quotas: QuotaBook,
    calendar: Calendar,
    catalog: MetricCatalog,
    rates: Rates,
    thresholds: Thresholds,
    as_of: datetime,
    before: datetime | None = None,
) -> dict[FigureKey, Figures]:
    """Figures for every scope, metric and label that has data or a quota.

    ``rates`` is accepted for symmetry with the engine's inputs: events arrive decoded, with
    ``amount_base`` already converted at their time. ``before``: count only credit dated
    before that instant (the API's ``as_of``: a deal counts as its ledger stands now, if its
    deciding win is dated before the cut).
    """
    del rates
    first: dict[tuple[str, str], Event] = {}
    for e in events:
        first.setdefault((e.source, e.id), e)

    values: dict[FigureKey, Decimal] = defaultdict(Decimal)

    def add(scope: str, scope_id: str, metric: str, t: datetime, amount: Decimal) -> None:
        if before is not None and t >= before:
            return
        for label in calendar.labels_at(t):
            values[(scope, scope_id, metric, label)] += amount

    def teams_of(rep: str, t: datetime) -> tuple[str, ...]:
        day = calendar.parse(calendar.labels_at(t)[0])
        assert not isinstance(day, Invalid)
        return teams_for(roster, rep, day.end)

    deals: dict[str, list[Event]] = defaultdict(list)
    for e in first.values():
        if e.type in ("deal.won", "deal.lost", "deal.reopened"):
            deals[e.deal_id or ""].append(e)
            continue
        for m in catalog.metrics:
            if e.type in m.event_types:
                add("rep", e.rep_id, m.name, e.time, Decimal(1))
                for team in teams_of(e.rep_id, e.time):
                    add("team", team, m.name, e.time, Decimal(1))
                add("company", "company", m.name, e.time, Decimal(1))

    deal_metrics = [m for m in catalog.metrics if "deal.won" in m.event_types]
    for evs in deals.values():
        wins = [e for e in evs if e.type == "deal.won"]
        if not wins:
            continue
        win = max(wins, key=lambda e: (e.time, e.id, e.source))
        ends = [(e.time, e.id, e.source) for e in evs if e.type != "deal.won"]
        if ends and max(ends) > (win.time, win.id, win.source):
            continue
        assert win.amount_base is not None
        shares = sorted(
            [(s.rep_id, s.share) for s in win.splits] if win.splits else [(win.rep_id, Decimal(1))]
        )
        amounts: dict[str, Decimal] = {}
        for rep, share in shares[:-1]:
            amounts[rep] = win.amount_base * share
        amounts[shares[-1][0]] = win.amount_base - sum(amounts.values(), Decimal(0))
        for m in deal_metrics:
            for rep, share in shares:
                credit = amounts[rep] if m.kind == "amount" else share
                add("rep", rep, m.name, win.time, credit)
                for team in teams_of(rep, win.time):
                    add("team", team, m.name, win.time, credit)
                add("company", "company", m.name, win.time, credit)

    keys = set(values)
    quota_periods = set()
    for (scope, scope_id, metric, label), _, _ in quotas.entries():
        keys.add((scope, scope_id, metric, label))
        quota_periods.add((metric, label))
    for metric, label in quota_periods:
        keys.add(("company", "company", metric, label))
        keys.update(("team", team, metric, label) for team in roster.teams())

    result = {}
    for key in keys:
        scope, scope_id, metric, label = key
        period = calendar.parse(label)
        if isinstance(period, Invalid):
            continue
        target = quotas.target(scope, scope_id, metric, period, as_of, roster)
        expected = calendar.expected(period, as_of)
        closed = as_of >= period.end
        value = values.get(key, Decimal(0))
        result[key] = figures(value, target, expected, thresholds, closed=closed)
    return result
