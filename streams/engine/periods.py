"""Periods on the organisation's calendar: which day/week/month/quarter/year an instant is in.

All boundaries are local midnights in the organisation's IANA time zone, so a call at
23:30 in New York on the 31st counts in that month even though it is already the 1st in
UTC, and a DST day simply lasts 23 or 25 hours. An event counts in the period of its
event ``time``, never of its arrival.

Labels (defaults: UTC, fiscal year = calendar year, weeks start on Monday)::

    year 2026   quarter 2026-Q4   month 2026-11   week 2026-W48   day 2026-11-27

Fiscal calendars (``fiscal_year_start_month`` = s > 1):

* the fiscal year is named by the calendar year in which it **ends**: with s = 2 (February)
  the year Feb 2026 – Jan 2027 is ``2027``;
* quarters count from the fiscal year start: ``2027-Q1`` = Feb–Apr 2026, ``2027-Q4`` =
  Nov 2026 – Jan 2027;
* months keep their calendar labels (``2026-02``), days too;
* weeks do not follow the fiscal year: a week starts on ``week_start`` (0 = Monday … 6 =
  Sunday) and belongs to the calendar year holding its 4th day (so for Monday weeks the
  labels are exactly ISO 8601 weeks, ``2026-W53`` included); week 1 is the week holding
  January 4th.

Expected progress (``Calendar.expected``) is elapsed real time over the period's length, or
with ``business_days`` the elapsed business days (weekends and the ``holiday_country``'s
public holidays from the ``holidays`` package excluded, the current business day counted
by its elapsed fraction) over the period's business days.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import holidays

from streams.engine.errors import Invalid
from streams.engine.instants import epoch_us

PERIOD_TYPES = ("day", "week", "month", "quarter", "year")
_SLOT_SECONDS = 900  # every modern UTC offset is a multiple of 15 minutes
_MAX_CACHED = 500_000
_LABEL = re.compile(
    r"(?P<year>\d{4})(?:-(?:Q(?P<q>[1-4])|W(?P<w>\d{2})|(?P<m>\d{2})(?:-(?P<d>\d{2}))?))?\Z",
    re.ASCII,
)


@dataclass(frozen=True, slots=True)
class Period:
    """One period: ``start`` inclusive, ``end`` exclusive, both in the organisation's zone."""

    type: str
    label: str
    start: datetime
    end: datetime


@dataclass(frozen=True, slots=True)
class _Day:
    """Everything cached for one local date."""

    periods: tuple[Period, ...]
    labels: tuple[str, ...]
    start_s: float
    end_s: float


class Calendar:
    """The organisation's calendar; ``periods_at``/``labels_at`` are cached per local day."""

    __slots__ = (
        "_business_totals",
        "_days",
        "_holidays",
        "_midnights",
        "_slots",
        "_weekend",
        "business_days",
        "fiscal_year_start_month",
        "holiday_country",
        "tz",
        "week_start",
        "zone",
    )

    def __init__(
        self,
        tz: str = "UTC",
        fiscal_year_start_month: int = 1,
        week_start: int = 0,
        business_days: bool = False,
        holiday_country: str | None = None,
    ) -> None:
        if not 1 <= fiscal_year_start_month <= 12:
            raise ValueError("fiscal_year_start_month must be 1..12")
        if not 0 <= week_start <= 6:
            raise ValueError("week_start must be 0 (Monday) .. 6 (Sunday)")
        self.tz = tz
        self.zone = ZoneInfo(tz)
        self.fiscal_year_start_month = fiscal_year_start_month
        self.week_start = week_start
        self.business_days = business_days
        self.holiday_country = holiday_country
        self._holidays = holidays.country_holidays(holiday_country) if holiday_country else None
        self._weekend = frozenset(getattr(self._holidays, "weekend", None) or {5, 6})
        self._days: dict[date, _Day] = {}
        self._slots: dict[int, _Day] = {}
        self._midnights: dict[date, datetime] = {}
        self._business_totals: dict[tuple[date, date], int] = {}

    # --- lookups ---------------------------------------------------------------------------
    def periods_at(self, t: datetime) -> tuple[Period, ...]:
        """The periods holding instant ``t``, one per type in ``PERIOD_TYPES`` order."""
        return self._day_of(t).periods

    def labels_at(self, t: datetime) -> tuple[str, ...]:
        """The labels of ``periods_at(t)`` (the engine's hot path)."""
        return self._day_of(t).labels

    def current(self, period_type: str, at: datetime) -> Period:
        return self.periods_at(at)[PERIOD_TYPES.index(period_type)]

    def day_at(self, t: datetime) -> Period | Invalid:
        """The local day holding ``t``, or Invalid when the calendar cannot hold ``t``'s
        periods (its fiscal year would end past year 9999, or start before year 1)."""
        try:
            return self.periods_at(t)[0]
        except (ValueError, OverflowError):
            return Invalid("bad_time", f"out of the calendar's range: {t.isoformat()}")

    def parse(self, label: str) -> Period | Invalid:
        """The period a label names on this calendar (``2027-Q1``, ``2026-W48`` …)."""
        m = _LABEL.match(label)
        bad = Invalid("bad_period", f"not a period label: {label!r}", "period")
        if m is None:
            return bad
        year = int(m["year"])
        try:
            if m["q"]:
                first = self._fiscal_year_first_month(year)
                probe = _add_months(first, 3 * (int(m["q"]) - 1))
                kind = 3
            elif m["w"]:
                jan4 = date(year, 1, 4)
                probe = (jan4 - timedelta(days=(jan4.weekday() - self.week_start) % 7)) + timedelta(
                    weeks=int(m["w"]) - 1
                )
                kind = 1
            elif m["d"]:
                probe, kind = date(year, int(m["m"]), int(m["d"])), 0
            elif m["m"]:
                probe, kind = date(year, int(m["m"]), 1), 2
            else:
                probe, kind = self._fiscal_year_first_month(year), 4
            period = self._day(probe).periods[kind]
        except (ValueError, OverflowError):  # e.g. 9999: its year would end in year 10000
            return bad
        return period if period.label == label else bad

    # --- expected progress -----------------------------------------------------------------
    def expected(self, period: Period, as_of: datetime) -> Decimal:
        """Elapsed fraction of ``period`` at ``as_of``, clipped to [0, 1]."""
        as_of = as_of.astimezone(UTC)  # same-zone datetimes compare by wall time
        if as_of <= period.start:
            return Decimal(0)
        if as_of >= period.end:
            return Decimal(1)
        if not self.business_days:
            done = epoch_us(as_of) - epoch_us(period.start)
            return Decimal(done) / Decimal(epoch_us(period.end) - epoch_us(period.start))
        first, last = self._local_date(period.start), self._local_date(period.end)
        total = self._business_days_between(first, last)
        if total == 0:
            return Decimal(0)
        today = self._local_date(as_of)
        elapsed = Decimal(self._business_days_between(first, today))
        if self._is_business_day(today):
            day = self._day(today).periods[0]
            elapsed += Decimal(epoch_us(as_of) - epoch_us(day.start)) / Decimal(
                epoch_us(day.end) - epoch_us(day.start)
            )
        return elapsed / total

    def business_days_left(self, period: Period, as_of: datetime) -> int:
        """Business days of ``period`` from ``as_of``'s local day on, that day included (it is
        not over yet); weekends and the configured country's holidays excluded, whether or not
        expected progress counts business days. 0 once the period is over."""
        as_of = as_of.astimezone(UTC)
        if as_of >= period.end:
            return 0
        first = self._local_date(max(as_of, period.start))
        return self._business_days_between(first, self._local_date(period.end))

    def _is_business_day(self, d: date) -> bool:
        return d.weekday() not in self._weekend and (
            self._holidays is None or d not in self._holidays
        )

    def _business_days_between(self, first: date, last: date) -> int:
        """Business days in [first, last)."""
        key = (first, last)
        n = self._business_totals.get(key)
        if n is None:
            n = sum(
                self._is_business_day(first + timedelta(days=i)) for i in range((last - first).days)
            )
            self._business_totals[key] = n
        return n

    # --- construction ----------------------------------------------------------------------
    def _local_date(self, t: datetime) -> date:
        return t.astimezone(self.zone).date()

    def _day_of(self, t: datetime) -> _Day:
        ts = t.timestamp()
        slot = int(ts // _SLOT_SECONDS)
        day = self._slots.get(slot)
        if day is None:
            day = self._day(self._local_date(t))
            if day.start_s <= slot * _SLOT_SECONDS and (slot + 1) * _SLOT_SECONDS <= day.end_s:
                if len(self._slots) >= _MAX_CACHED:
                    self._slots.clear()
                self._slots[slot] = day
        return day

    def _day(self, d: date) -> _Day:
        day = self._days.get(d)
        if day is None:
            if len(self._days) >= _MAX_CACHED:
                self._days.clear()
            day = self._days[d] = self._build(d)
        return day

    def _build(self, d: date) -> _Day:
        week_first = d - timedelta(days=(d.weekday() - self.week_start) % 7)
        month_first = d.replace(day=1)
        s = self.fiscal_year_start_month
        fy_start_year = d.year if d.month >= s else d.year - 1
        fy_label = fy_start_year if s == 1 else fy_start_year + 1
        fy_first = date(fy_start_year, s, 1)
        quarter_index = ((d.month - s) % 12) // 3
        quarter_first = _add_months(fy_first, 3 * quarter_index)
        anchor = week_first + timedelta(days=3)
        week_label = f"{anchor.year}-W{(anchor.timetuple().tm_yday - 1) // 7 + 1:02d}"
        spans = (
            ("day", d.isoformat(), d, d + timedelta(days=1)),
            ("week", week_label, week_first, week_first + timedelta(days=7)),
            ("month", f"{d.year}-{d.month:02d}", month_first, _add_months(month_first, 1)),
            (
                "quarter",
                f"{fy_label}-Q{quarter_index + 1}",
                quarter_first,
                _add_months(quarter_first, 3),
            ),
            ("year", str(fy_label), fy_first, _add_months(fy_first, 12)),
        )
        periods = tuple(
            Period(k, lab, self._midnight(a), self._midnight(b)) for k, lab, a, b in spans
        )
        return _Day(
            periods,
            tuple(p.label for p in periods),
            periods[0].start.timestamp(),
            periods[0].end.timestamp(),
        )

    def _midnight(self, d: date) -> datetime:
        """The first instant of local date ``d`` (DST-safe: midnight may be skipped or doubled)."""
        found = self._midnights.get(d)
        if found is None:
            candidates = (
                datetime(d.year, d.month, d.day, fold=fold, tzinfo=self.zone).astimezone(UTC)
                for fold in (0, 1)
            )
            found = min(c for c in candidates if c.astimezone(self.zone).date() == d)
            found = found.astimezone(self.zone)
            self._midnights[d] = found
        return found

    def _fiscal_year_first_month(self, fy_label: int) -> date:
        s = self.fiscal_year_start_month
        return date(fy_label if s == 1 else fy_label - 1, s, 1)


def _add_months(d: date, n: int) -> date:
    """First day of the month ``n`` months after ``d``'s month."""
    index = d.year * 12 + d.month - 1 + n
    return date(index // 12, index % 12 + 1, 1)
