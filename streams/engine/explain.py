"""Why a figure is what it is: the contributions behind one scope, metric and period.

The lines are ``recompute.contributions`` — the very terms the independent recomputation adds
up — filtered with ``recompute.credited_scopes`` and the calendar's labels, so an explanation's
total is the recomputed value by construction (and property-tested to be). Superseded and
retracted wins are listed too, marked, with the reason a person can check against the CRM.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from streams.engine.errors import Invalid
from streams.engine.money import Rates, decimal_text
from streams.engine.periods import Calendar, Period
from streams.engine.recompute import (
    COUNTED,
    RETRACTED,
    SUPERSEDED,
    Contribution,
    credited_scopes,
    teams_of,
)
from streams.engine.roster import Roster

#: Lines are listed newest first; the cursor of a page is the key of its last line.
LineKey = tuple[datetime, str, str, str]  # event time, source, id, credited rep


@dataclass(frozen=True, slots=True)
class Line:
    """A contribution as shown: the rep's team lineage it rolled up to, the conversion rate
    (base units per unit of the deal's currency) and a sentence saying why it counts or not."""

    contribution: Contribution
    teams: tuple[str, ...]
    rate: Decimal | None
    reason: str

    @property
    def key(self) -> LineKey:
        e = self.contribution.event
        return (e.time, e.source, e.id, self.contribution.claim.rep_id)

    @property
    def counts(self) -> bool:
        return self.contribution.status == COUNTED


@dataclass(frozen=True, slots=True)
class Explanation:
    scope: tuple[str, str]
    metric: str
    period: Period
    total: Decimal
    lines: tuple[Line, ...]  # newest first

    @property
    def counted(self) -> int:
        return sum(1 for line in self.lines if line.counts)

    def page(self, after: LineKey | None, limit: int) -> tuple[tuple[Line, ...], LineKey | None]:
        """Up to ``limit`` lines after the cursor ``after`` and the next page's cursor (None:
        this was the last page). A keyset: pages never overlap or skip."""
        start = 0 if after is None else _first_after(self.lines, after)
        lines = self.lines[start : start + limit]
        more = start + limit < len(self.lines)
        return lines, (lines[-1].key if more and lines else None)


def explain(
    contributions: Iterable[Contribution],
    roster: Roster,
    calendar: Calendar,
    rates: Rates,
    scope: tuple[str, str],
    metric: str,
    period: Period,
    before: datetime | None = None,
) -> Explanation:
    """The contributions of ``metric`` to ``scope`` in ``period``; total = the counted ones.
    ``before``: only contributions dated before that instant (the API's ``as_of`` cut)."""
    lines = [
        Line(c, teams_of(roster, calendar, c.claim.rep_id, c.event.time), rate, why)
        for c in contributions
        if c.claim.metric == metric
        and (before is None or c.event.time < before)
        and period.label in calendar.labels_at(c.event.time)
        and scope in credited_scopes(roster, calendar, c)
        for rate in (_rate(c, rates),)
        for why in (reason(c, calendar, rate),)
    ]
    lines.sort(key=lambda line: line.key, reverse=True)
    total = sum((line.contribution.claim.credit for line in lines if line.counts), Decimal(0))
    return Explanation(scope, metric, period, total, tuple(lines))


def reason(c: Contribution, calendar: Calendar, rate: Decimal | None = None) -> str:
    """``deal D-42 re-won on 2026-11-03 for 12,000 EUR at 1.0823; 60 % split; superseded …``
    (the rate is shown when it is not 1, i.e. the deal was not in the base currency)."""
    e = c.event
    if e.type != "deal.won":
        return f"{e.type} on {_day(e.time, calendar)} ({e.source}/{e.id})"
    verb = "re-won" if c.replaces is not None else "won"
    text = f"deal {e.deal_id} {verb} on {_day(e.time, calendar)}"
    text += f" for {_money(e.amount)} {e.currency}"
    if rate is not None and rate != 1:
        text += f" at {decimal_text(rate)}"
    if e.splits:
        text += f"; {decimal_text(c.claim.share * 100)} % split"
    by = c.by
    if c.status == SUPERSEDED and by is not None:
        text += f"; superseded by the win of {_day(by.time, calendar)} ({by.source}/{by.id})"
    elif c.status == RETRACTED and by is not None:
        text += f"; retracted by {by.type} on {_day(by.time, calendar)} ({by.source}/{by.id})"
    return text


def _rate(c: Contribution, rates: Rates) -> Decimal | None:
    """Base units per unit of the win's currency at its time (None: not a win)."""
    e = c.event
    if e.currency is None:
        return None
    rate = rates.to_base(Decimal(1), e.currency, e.time)
    return None if isinstance(rate, Invalid) else rate


def _day(t: datetime, calendar: Calendar) -> str:
    return calendar.labels_at(t)[0]


def _money(amount: Decimal | None) -> str:
    return "?" if amount is None else f"{amount:,}"


def _first_after(lines: Sequence[Line], after: LineKey) -> int:
    """Index of the first line whose key is below ``after`` (lines are in descending order)."""
    lo, hi = 0, len(lines)
    while lo < hi:
        mid = (lo + hi) // 2
        if lines[mid].key >= after:
            lo = mid + 1
        else:
            hi = mid
    return lo
