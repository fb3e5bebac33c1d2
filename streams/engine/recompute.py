"""From-scratch recomputation: the reference the incremental engine is tested against.

Deliberately written the plain way and sharing no code with the ledger or the tally: keep
the copy of each (source, id) with the smallest digest, take each deal's latest win and
latest retraction by (time, id, source), and sum every credit directly. If the
incremental path and this one disagree for any scope, metric or period, one has a bug.
It reuses only the inputs' own rules (calendar labels, the roll-up rule, quota targets).

The same pass lists every *contribution* (one event's credit to one rep and metric, marked
counted, superseded or retracted), so ``explain`` shows exactly the terms these sums add up.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
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
from streams.engine.scopes import COMPANY

FigureKey = tuple[str, str, str, str]

COUNTED, SUPERSEDED, RETRACTED = "counted", "superseded", "retracted"
DEAL_TYPES = ("deal.won", "deal.lost", "deal.reopened")


@dataclass(frozen=True, slots=True)
class Claim:
    """What one event credits to one rep for one metric, before the deal rules decide whether
    it counts: ``share`` of the event, ``credit`` its value (base currency for amounts)."""

    rep_id: str
    metric: str
    share: Decimal
    credit: Decimal


@dataclass(frozen=True, slots=True)
class Contribution:
    """One claim of one event and whether it counts: a win later than it ``SUPERSEDED`` it,
    a later retraction ``RETRACTED`` it (``by`` is that event). ``replaces`` is the win this one
    followed on the same deal, if any."""

    event: Event
    claim: Claim
    status: str = COUNTED
    by: Event | None = None
    replaces: Event | None = None


def claims(event: Event, catalog: MetricCatalog) -> tuple[Claim, ...]:
    """The event's credits as if it counted: an activity 1 per matching metric; a win its
    amount (or its share, for counts) per split rep, the last rep in ``rep_id`` order taking
    the amount minus the others' parts. Retractions and other types claim nothing."""
    if event.type in DEAL_TYPES:
        if event.type != "deal.won":
            return ()
        assert event.amount_base is not None
        shares = sorted(
            [(s.rep_id, s.share) for s in event.splits]
            if event.splits
            else [(event.rep_id, Decimal(1))]
        )
        amounts: dict[str, Decimal] = {}
        for rep, share in shares[:-1]:
            amounts[rep] = event.amount_base * share
        amounts[shares[-1][0]] = event.amount_base - sum(amounts.values(), Decimal(0))
        return tuple(
            Claim(rep, m.name, share, amounts[rep] if m.kind == "amount" else share)
            for m in catalog.metrics
            if "deal.won" in m.event_types
            for rep, share in shares
        )
    return tuple(
        Claim(event.rep_id, m.name, Decimal(1), Decimal(1))
        for m in catalog.metrics
        if event.type in m.event_types
    )


def contributions(events: Iterable[Event], catalog: MetricCatalog) -> Iterator[Contribution]:
    """Every claim of the copy of each (source, id) that counts (the smallest digest), marked
    by the deal rules: a deal counts its latest win by (time, id, source), unless a retraction
    is later still."""
    chosen: dict[tuple[str, str], Event] = {}
    for e in events:
        held = chosen.get((e.source, e.id))
        if held is None or e.copy_digest < held.copy_digest:
            chosen[(e.source, e.id)] = e

    deals: dict[str, list[Event]] = defaultdict(list)
    for e in chosen.values():
        if e.type in DEAL_TYPES:
            deals[e.deal_id or ""].append(e)
            continue
        for claim in claims(e, catalog):
            yield Contribution(e, claim)

    for evs in deals.values():
        wins = sorted((e for e in evs if e.type == "deal.won"), key=_rank)
        if not wins:
            continue
        latest = wins[-1]
        ends = [e for e in evs if e.type != "deal.won"]
        retraction = max(ends, key=_rank) if ends else None
        if retraction is not None and _rank(retraction) <= _rank(latest):
            retraction = None
        for i, win in enumerate(wins):
            status, by = (
                (SUPERSEDED, latest)
                if win is not latest
                else (RETRACTED, retraction)
                if retraction is not None
                else (COUNTED, None)
            )
            replaces = wins[i - 1] if i else None
            for claim in claims(win, catalog):
                yield Contribution(win, claim, status, by, replaces)


def _rank(e: Event) -> tuple[datetime, str, str]:
    return (e.time, e.id, e.source)


def teams_of(roster: Roster, calendar: Calendar, rep: str, t: datetime) -> tuple[str, ...]:
    """The team lineage a rep's credit at ``t`` rolls up to: the roll-up rule's, as of the end
    of the event's day in the organisation's zone."""
    return teams_for(roster, rep, calendar.periods_at(t)[0].end)


def credited_scopes(roster: Roster, calendar: Calendar, c: Contribution) -> list[tuple[str, str]]:
    """The scopes a contribution counts for: its rep, the rep's teams, the company."""
    rep, t = c.claim.rep_id, c.event.time
    teams = teams_of(roster, calendar, rep, t)
    return [("rep", rep), *(("team", team) for team in teams), COMPANY]


def values(
    events: Iterable[Event],
    roster: Roster,
    calendar: Calendar,
    catalog: MetricCatalog,
    before: datetime | None = None,
) -> dict[FigureKey, Decimal]:
    """Every scope's value per metric and period label: the counted contributions summed
    (with ``before``, only those dated before that instant)."""
    totals: dict[FigureKey, Decimal] = defaultdict(Decimal)
    for c in contributions(events, catalog):
        if c.status != COUNTED or (before is not None and c.event.time >= before):
            continue
        labels = calendar.labels_at(c.event.time)
        for scope, scope_id in credited_scopes(roster, calendar, c):
            for label in labels:
                totals[(scope, scope_id, c.claim.metric, label)] += c.claim.credit
    return totals


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
    values_ = values(events, roster, calendar, catalog, before)

    keys = set(values_)
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
        value = values_.get(key, Decimal(0))
        result[key] = figures(value, target, expected, thresholds, closed=closed)
    return result
