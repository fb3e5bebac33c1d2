"""A synthetic sales organisation and its activity traffic, reproducible from a seed.

The demo, benchmarks and tests need an organisation whose figures *mean* something: every
rep has quotas sized to the same baseline activity rates the traffic is drawn from, so a rep
working at the baseline ends a period at about 100 % and the reps generated as ``behind``
(a fraction of the baseline activity) really do fall behind. Everything is drawn from
``random.Random`` seeded by the organisation's seed (plus the day, or the traffic start), so
two runs give identical organisations, and a backfill re-sent on the same day repeats the
same event ids, which the pipeline deduplicates.

Activity happens on weekdays between 08:00 and 18:00 in the calendar's time zone; quotas are
the baseline daily rate times the weekdays in the period, times a per-rep stretch.
"""

from __future__ import annotations

import heapq
import itertools
import math
import random
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, tzinfo
from decimal import Decimal
from functools import cached_property
from typing import Any

from streams.engine.catalog import DEAL_WON, MetricCatalog
from streams.engine.imports import QuotaRow, RosterRow, TeamRow
from streams.engine.money import Rates
from streams.engine.periods import Calendar

#: Baseline events per rep and weekday (deals: wins; every other type one event each).
BASELINE_PER_DAY: dict[str, float] = {
    "call.completed": 12.0,
    "email.sent": 8.0,
    "meeting.held": 2.0,
    "proposal.sent": 0.5,
    DEAL_WON: 0.4,
}
QUOTA_PERIOD_TYPES = ("week", "month", "quarter", "year")
SOURCES = {
    "call.completed": "dialer.demo",
    "email.sent": "mail.demo",
    "meeting.held": "calendar.demo",
}
DEFAULT_SOURCE = "crm.demo"
WORKDAY_START, WORKDAY_HOURS = time(8), 10
#: Deal amounts are lognormal: median in the region's currency, this spread (sigma).
DEAL_SIGMA = 0.5
SPLIT_CHANCE = 0.15
LOST_CHANCE = 0.05  # a won deal is later lost (credit taken back)
REOPEN_CHANCE = 0.05  # a won deal is reopened, then won again for another amount
DUPLICATE_CHANCE = 0.01  # an event is re-sent as is (same id): the pipeline must ignore it

# region id, name, deal currency, median deal amount in that currency
_REGIONS = (
    ("amer", "Americas", "USD", 6_000),
    ("emea", "EMEA", "EUR", 5_500),
    ("apac", "APAC", "AUD", 9_000),
    ("ukie", "UK & Ireland", "GBP", 4_800),
)
_SEGMENTS = (
    ("ent", "Enterprise"),
    ("mm", "Mid-Market"),
    ("smb", "SMB"),
    ("strat", "Strategic"),
    ("pub", "Public Sector"),
)
_FIRST = (  # noqa: SIM905 (a word list reads better as text)
    "Ada Amir Ana Aiko Ben Bianca Carlos Chen Dana Diego Elena Emeka Fatima Felix Grace Hugo "
    "Ines Ivan Jana Jonas Kai Keiko Lena Liam Maya Mateo Nadia Noah Olga Omar Priya Paulo "
    "Quinn Rosa Ravi Sara Sven Tariq Uma Victor Wen Yara Zoe"
).split()
_LAST = (  # noqa: SIM905
    "Abbott Alvarez Becker Brennan Costa Dubois Eriksen Fischer Garcia Haddad Ito Jansen "
    "Kowalski Larsen Moreau Nakamura Novak Okafor Olsen Patel Quintero Rossi Schmidt Silva "
    "Tanaka Torres Urban Varga Weber Xu Yilmaz Zhang"
).split()


@dataclass(frozen=True, slots=True)
class Team:
    team_id: str
    name: str
    parent_id: str | None
    currency: str = "USD"
    median_deal: float = 6_000


@dataclass(frozen=True, slots=True)
class Rep:
    """A rep; ``activity`` multiplies the baseline rates, ``stretch`` the quotas."""

    rep_id: str
    name: str
    team_id: str
    activity: float
    stretch: float
    behind: bool


@dataclass(frozen=True)
class Organisation:
    """Company → regions → teams → reps; ``behind`` names the reps generated to lag."""

    seed: int
    company: Team
    regions: tuple[Team, ...]
    teams: tuple[Team, ...]
    reps: tuple[Rep, ...]

    @classmethod
    def generate(
        cls,
        seed: int,
        regions: int = 2,
        teams_per_region: int = 3,
        reps_per_team: int = 6,
        behind_per_team: int = 1,
    ) -> Organisation:
        if not 1 <= regions <= len(_REGIONS):
            raise ValueError(f"regions must be 1..{len(_REGIONS)}")
        if teams_per_region < 1 or reps_per_team < 1 or not 0 <= behind_per_team <= reps_per_team:
            raise ValueError("need teams and reps, and no more behind reps than reps")
        rng = random.Random(seed)
        company = Team("acme", "Acme Corp", None)
        names = _names(rng, regions * teams_per_region * reps_per_team)
        region_teams: list[Team] = []
        teams: list[Team] = []
        reps: list[Rep] = []
        for region_id, region_name, currency, median in _REGIONS[:regions]:
            region_teams.append(Team(region_id, region_name, company.team_id, currency, median))
            for t in range(teams_per_region):
                seg_id, seg_name = (
                    _SEGMENTS[t] if t < len(_SEGMENTS) else (f"t{t + 1}", f"Team {t + 1}")
                )
                team = Team(
                    f"{region_id}-{seg_id}",
                    f"{region_name} {seg_name}",
                    region_id,
                    currency,
                    median,
                )
                teams.append(team)
                behind = set(rng.sample(range(reps_per_team), behind_per_team))
                for r in range(reps_per_team):
                    lagging = r in behind
                    reps.append(
                        Rep(
                            rep_id=f"rep-{len(reps) + 1:03d}",
                            name=names[len(reps)],
                            team_id=team.team_id,
                            activity=rng.uniform(0.3, 0.5) if lagging else rng.uniform(1.0, 1.3),
                            stretch=rng.uniform(0.9, 1.05),
                            behind=lagging,
                        )
                    )
        return cls(seed, company, tuple(region_teams), tuple(teams), tuple(reps))

    @cached_property
    def _team_by_id(self) -> dict[str, Team]:
        return {t.team_id: t for t in self.all_teams}

    def team(self, team_id: str) -> Team:
        return self._team_by_id[team_id]

    def members(self, team_id: str) -> list[str]:
        """Reps directly in ``team_id``."""
        return [r.rep_id for r in self.reps if r.team_id == team_id]

    @property
    def all_teams(self) -> tuple[Team, ...]:
        """Company, regions and teams: every node of the tree, root first."""
        return (self.company, *self.regions, *self.teams)

    @property
    def behind(self) -> frozenset[str]:
        return frozenset(r.rep_id for r in self.reps if r.behind)

    def team_rows(self) -> list[TeamRow]:
        return [TeamRow(t.team_id, t.name, t.parent_id) for t in self.all_teams]

    def roster_rows(self) -> list[RosterRow]:
        return [RosterRow(r.rep_id, r.name, r.team_id, None) for r in self.reps]

    def quota_rows(
        self, now: datetime, calendar: Calendar, catalog: MetricCatalog, rates: Rates
    ) -> list[QuotaRow]:
        """Every rep's target for every metric the traffic feeds, in the periods holding ``now``.

        Teams and the company get none: their targets are the sums of their reps'.
        """
        rows = []
        for period_type in QUOTA_PERIOD_TYPES:
            period = calendar.current(period_type, now)
            weekdays = _weekdays(period.start.date(), period.end.date())
            for rep in self.reps:
                for metric in catalog.metrics:
                    daily = self._daily_target(rep, metric.kind, metric.event_types, now, rates)
                    if daily:
                        target = _round_target(daily * weekdays * rep.stretch, metric.kind)
                        rows.append(
                            QuotaRow("rep", rep.rep_id, metric.name, period.label, target, None)
                        )
        return rows

    def _daily_target(
        self, rep: Rep, kind: str, event_types: frozenset[str], now: datetime, rates: Rates
    ) -> float:
        count = sum(BASELINE_PER_DAY.get(t, 0.0) for t in event_types)
        if kind != "amount":
            return count
        team = self.team(rep.team_id)
        mean_local = team.median_deal * math.exp(DEAL_SIGMA**2 / 2)
        base = rates.to_base(Decimal(str(mean_local)), team.currency, now)
        return count * float(base) if isinstance(base, Decimal) else 0.0


def _names(rng: random.Random, n: int) -> list[str]:
    pool = [f"{first} {last}" for first in _FIRST for last in _LAST]
    if n > len(pool):
        raise ValueError(f"at most {len(pool)} reps")
    return rng.sample(pool, n)


def _weekdays(first: date, end: date) -> int:
    """Weekdays in [first, end)."""
    return sum((first + timedelta(days=i)).weekday() < 5 for i in range((end - first).days))


def _round_target(value: float, kind: str) -> Decimal:
    step = 1000 if kind == "amount" else 1
    return Decimal(max(step, round(value / step) * step))


def _poisson(rng: random.Random, lam: float) -> int:
    """Knuth's method: fine for the small daily rates used here."""
    limit, k, p = math.exp(-lam), 0, rng.random()
    while p > limit:
        k += 1
        p *= rng.random()
    return k


class _EventMaker:
    """Builds CloudEvents dicts for one organisation from one random stream."""

    def __init__(self, org: Organisation, rng: random.Random, zone: tzinfo) -> None:
        self.org = org
        self.rng = rng
        self.zone = zone

    def event(self, event_type: str, t: datetime, data: dict[str, Any]) -> dict[str, Any]:
        return {
            "specversion": "1.0",
            "id": str(uuid.UUID(int=self.rng.getrandbits(128), version=4)),
            "source": SOURCES.get(event_type, DEFAULT_SOURCE),
            "type": event_type,
            "time": t.astimezone(self.zone).isoformat(timespec="milliseconds"),
            "datacontenttype": "application/json",
            "data": data,
        }

    def activity(self, rep: Rep, event_type: str, t: datetime) -> dict[str, Any]:
        data: dict[str, Any] = {"rep_id": rep.rep_id}
        if event_type == "call.completed":
            data["duration_s"] = int(self.rng.lognormvariate(math.log(240), 0.7))
        return self.event(event_type, t, data)

    def deal(self, rep: Rep, t: datetime, gap: Callable[[], timedelta]) -> list[dict[str, Any]]:
        """A won deal and, for a few, its later history: lost, or reopened and won again
        (another amount); ``gap`` draws the time between those steps."""
        deal_id = f"D-{self.rng.getrandbits(48):012x}"
        story = [self._won(rep, t, deal_id)]
        fate = self.rng.random()
        if fate < LOST_CHANCE + REOPEN_CHANCE:
            t += gap()
            lost = fate < LOST_CHANCE
            story.append(
                self.event(
                    "deal.lost" if lost else "deal.reopened",
                    t,
                    {"rep_id": rep.rep_id, "deal_id": deal_id},
                )
            )
            if not lost:
                story.append(self._won(rep, t + gap(), deal_id))
        return story

    def _won(self, rep: Rep, t: datetime, deal_id: str) -> dict[str, Any]:
        team = self.org.team(rep.team_id)
        amount = self.rng.lognormvariate(math.log(team.median_deal), DEAL_SIGMA)
        data: dict[str, Any] = {
            "rep_id": rep.rep_id,
            "deal_id": deal_id,
            "amount": f"{amount:.2f}",
            "currency": team.currency,
        }
        mates = [m for m in self.org.members(rep.team_id) if m != rep.rep_id]
        if mates and self.rng.random() < SPLIT_CHANCE:
            share = Decimal(self.rng.choice(("0.5", "0.6", "0.7", "0.8")))
            data["splits"] = [
                {"rep_id": rep.rep_id, "share": str(share)},
                {"rep_id": self.rng.choice(mates), "share": str(1 - share)},
            ]
        return self.event(DEAL_WON, t, data)

    def malformed(self, rep: Rep, t: datetime) -> dict[str, Any]:
        """An event the contract rejects (the demo sends a few to show the dead-letter path)."""
        event = self.activity(rep, "call.completed", t)
        flaw = self.rng.randrange(3)
        if flaw == 0:
            del event["data"]["rep_id"]
        elif flaw == 1:
            event["time"] = t.strftime("%Y-%m-%d %H:%M:%S")  # no offset
        else:
            event = self._won(rep, t, f"D-{self.rng.getrandbits(48):012x}")
            event["data"]["currency"] = "XXX"
        return event


def backfill(
    org: Organisation, now: datetime, calendar: Calendar, since: datetime | None = None
) -> list[dict[str, Any]]:
    """Every event from ``since`` (default: the start of the current quarter) up to ``now``,
    in time order, so figures exist before live traffic starts.

    Each (rep, day) is drawn from its own seeded stream: the events of a past day are the
    same on every run, which makes re-sending a backfill harmless.
    """
    start = since or calendar.current("quarter", now).start
    zone = calendar.zone
    timed: list[tuple[datetime, dict[str, Any]]] = []
    day = start.astimezone(zone).date()
    while day <= now.astimezone(zone).date():
        if day.weekday() < 5:
            for rep in org.reps:
                rng = random.Random(f"{org.seed}:{rep.rep_id}:{day.isoformat()}")
                for event in _rep_day(_EventMaker(org, rng, zone), rep, day):
                    t = datetime.fromisoformat(event["time"])
                    if start <= t < now:
                        timed.append((t, event))
        day += timedelta(days=1)
    timed.sort(key=lambda pair: pair[0])
    return [event for _, event in timed]


def _rep_day(maker: _EventMaker, rep: Rep, day: date) -> list[dict[str, Any]]:
    rng = maker.rng
    opening = datetime.combine(day, WORKDAY_START, tzinfo=maker.zone)
    events: list[dict[str, Any]] = []
    for event_type, rate in BASELINE_PER_DAY.items():
        for _ in range(_poisson(rng, rate * rep.activity)):
            t = opening + timedelta(seconds=rng.uniform(0, WORKDAY_HOURS * 3600))
            if event_type == DEAL_WON:
                events.extend(maker.deal(rep, t, lambda: timedelta(days=rng.uniform(1, 10))))
            else:
                events.append(maker.activity(rep, event_type, t))
    return events + [e for e in events if rng.random() < DUPLICATE_CHANCE]


def traffic(
    org: Organisation,
    now: datetime,
    rate_per_s: float,
    calendar: Calendar,
    malformed_ratio: float = 0.0,
) -> Iterator[dict[str, Any]]:
    """Endless live traffic from ``now``: event *i* is timed ``now + i / rate_per_s``.

    The mix follows the baseline rates weighted by each rep's activity (so calls ≫ emails >
    meetings > proposals > deals, and behind reps are rarely heard of); deal amendments
    arrive tens of seconds after their win, ``DUPLICATE_CHANCE`` of the events are sent
    twice and ``malformed_ratio`` of them break the contract. Seeded by the organisation's
    seed and ``now``: reproducible, yet a new run never repeats an earlier run's ids.
    """
    if rate_per_s <= 0:
        raise ValueError("rate_per_s must be positive")
    rng = random.Random(f"{org.seed}:traffic:{now.isoformat()}")
    maker = _EventMaker(org, rng, calendar.zone)
    rep_weights = [rep.activity for rep in org.reps]
    types, type_weights = list(BASELINE_PER_DAY), list(BASELINE_PER_DAY.values())
    later: list[tuple[datetime, int, dict[str, Any]]] = []  # amendments still to come
    previous: dict[str, Any] | None = None
    for i in itertools.count():
        t = now + timedelta(seconds=i / rate_per_s)
        if later and later[0][0] <= t:
            event = heapq.heappop(later)[2]
        elif previous is not None and rng.random() < DUPLICATE_CHANCE:
            event = previous
        elif rng.random() < malformed_ratio:
            event = maker.malformed(rng.choices(org.reps, rep_weights)[0], t)
        else:
            rep = rng.choices(org.reps, rep_weights)[0]
            event_type = rng.choices(types, type_weights)[0]
            if event_type == DEAL_WON:
                event, *rest = maker.deal(rep, t, lambda: timedelta(seconds=rng.uniform(10, 60)))
                for j, amendment in enumerate(rest):
                    heapq.heappush(
                        later, (datetime.fromisoformat(amendment["time"]), i * 2 + j, amendment)
                    )
            else:
                event = maker.activity(rep, event_type, t)
        previous = event
        yield event
