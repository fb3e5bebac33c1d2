"""The live read model: figures of the scopes whose partitions this worker owns.

A scope's value for a period is its tally's sum of day buckets for that period's label (for
an ``as_of`` question, of its days up to ``as_of``'s day); its target comes from the reference
data at the as-of instant. The API, the publisher and the
metrics exporter all read figures here, so they all agree.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from streams.engine.catalog import MetricCatalog
from streams.engine.pace import Figures, Thresholds, figures
from streams.engine.periods import PERIOD_TYPES, Calendar, Period
from streams.engine.scopes import Scope, scope_key
from streams.engine.tally import Tally
from streams.pipeline.kafka import partition_for
from streams.pipeline.partitions import Partitions
from streams.reference import ReferenceData


@dataclass(frozen=True, slots=True)
class Progress:
    """One scope's figures for one period, as the API and the progress topic publish them."""

    scope: str
    scope_id: str
    period: Period
    as_of: datetime
    metrics: dict[str, Figures]
    #: The last day whose credit counts (an ``as_of`` question), None for live figures.
    as_of_day: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "scope": self.scope,
            "id": self.scope_id,
            "period": self.period.label,
            "period_type": self.period.type,
            "as_of": self.as_of.isoformat(),
            "as_of_day": self.as_of_day,
            "metrics": {name: f.to_dict() for name, f in self.metrics.items()},
        }


class LiveViews:
    """Figures from the owned tallies and the reference data they are read with."""

    def __init__(
        self,
        calendar: Calendar,
        catalog: MetricCatalog,
        thresholds: Thresholds,
        reference: ReferenceData,
        partitions: Partitions,
        partition_count: int,
    ) -> None:
        self.calendar = calendar
        self.catalog = catalog
        self.thresholds = thresholds
        self.reference = reference
        self.partitions = partitions
        self.partition_count = partition_count
        self._expected_at: datetime | None = None
        self._expected_by_label: dict[str, Decimal] = {}

    def partition_of(self, scope: Scope) -> int:
        return partition_for(scope_key(scope), self.partition_count)

    def tally(self, scope: Scope) -> Tally | None:
        """The tally holding ``scope``, if this worker owns and has restored it."""
        owned = self.partitions.owned.get(self.partition_of(scope))
        return None if owned is None else owned.tally

    def value(self, scope: Scope, metric: str, label: str) -> Decimal | None:
        tally = self.tally(scope)
        return None if tally is None else tally.value(scope, metric, label)

    def figures(
        self,
        scope: Scope,
        metric: str,
        period: Period,
        as_of: datetime,
        through_day: str | None = None,
    ) -> Figures:
        """Figures at ``as_of`` (target, expected, closed or not); the value counts every
        credit, or with ``through_day`` only the period's days up to that one."""
        tally = self.tally(scope)
        if tally is None:
            raise LookupError(f"{scope} is not held by this worker")
        target = self.reference.quotas.target(
            scope[0], scope[1], metric, period, as_of, self.reference.roster
        )
        if through_day is None:
            value = tally.value(scope, metric, period.label)
        else:
            value = tally.value_through(scope, metric, period, through_day)
        expected = self._expected(period, as_of)
        return figures(value, target, expected, self.thresholds, closed=as_of >= period.end)

    def _expected(self, period: Period, as_of: datetime) -> Decimal:
        """``calendar.expected``, remembered for the last ``as_of`` (a flush evaluates many
        scopes' figures of the same periods at one instant)."""
        if self._expected_at != as_of:
            self._expected_at, self._expected_by_label = as_of, {}
        found = self._expected_by_label.get(period.label)
        if found is None:
            found = self._expected_by_label[period.label] = self.calendar.expected(period, as_of)
        return found

    def progress(
        self, scope: Scope, period: Period, as_of: datetime, through_day: str | None = None
    ) -> Progress:
        return Progress(
            scope[0],
            scope[1],
            period,
            as_of,
            {m: self.figures(scope, m, period, as_of, through_day) for m in self.catalog.names},
            through_day,
        )

    def current_periods(self, as_of: datetime) -> tuple[Period, ...]:
        return tuple(self.calendar.current(t, as_of) for t in PERIOD_TYPES)

    def known(self, scope: Scope) -> bool:
        """A scope the API may answer for: on the roster, the company, or with data here."""
        kind, scope_id = scope
        roster = self.reference.roster
        if kind == "company" or (kind == "rep" and scope_id in roster.reps()):
            return True
        if kind == "team" and scope_id in roster.teams():
            return True
        tally = self.tally(scope)
        return tally is not None and scope in tally.scopes()

    def scopes(self) -> set[Scope]:
        """Every scope of the owned partitions: on the roster or holding data."""
        roster = self.reference.roster
        every: set[Scope] = {("rep", r) for r in roster.reps()}
        every |= {("team", t) for t in roster.teams()}
        every.add(("company", "company"))
        for owned in self.partitions.owned.values():
            every.update(owned.tally.scopes())
        return {s for s in every if self.partition_of(s) in self.partitions.owned}

    def unassigned_reps(self) -> list[str]:
        """Reps with credit in the owned partitions who are not on the roster."""
        roster = self.reference.roster
        return sorted(
            scope_id
            for kind, scope_id in self.scopes()
            if kind == "rep" and roster.rep_name(scope_id) is None
        )

    def leaderboard(
        self,
        metric: str,
        period: Period,
        as_of: datetime,
        team: str | None = None,
        limit: int = 10,
        through_day: str | None = None,
    ) -> list[dict[str, Any]]:
        """The first ``limit`` reps held here by value (ties by rep id), unranked; a team
        includes sub-teams' members."""
        roster = self.reference.roster
        if team is None:
            reps: Iterable[str] = roster.reps()
        else:
            reps = roster.members_at(team, _within(period, as_of))
        rows = [
            (rep_id, self.figures(("rep", rep_id), metric, period, as_of, through_day))
            for rep_id in reps
            if self.tally(("rep", rep_id)) is not None
        ]
        rows.sort(key=lambda row: (-row[1].value, row[0]))
        return [
            {
                "rep_id": rep_id,
                "name": roster.rep_name(rep_id),
                "team_id": roster.team_at(rep_id, _within(period, as_of)),
                **{k: v for k, v in f.to_dict().items() if k in ("value", "target", "attainment")},
            }
            for rep_id, f in rows[:limit]
        ]


def _within(period: Period, as_of: datetime) -> datetime:
    """``as_of`` clipped into the period: membership of a past period is its final one."""
    return min(max(as_of, period.start), period.end - timedelta(microseconds=1))
