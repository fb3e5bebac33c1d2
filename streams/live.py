"""The live read model: contribution books of the scopes this worker owns, and their figures.

The agents write contributions into the books (after writing them to their Faust tables, which
are the durable copy the books are rebuilt from after a restart or rebalance); the API, the
progress/alert publishers and the metrics exporter read figures from here. Plain Python: no
Faust, Kafka or ClickHouse, so it is unit-testable and shared by every shell.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from streams.engine.catalog import MetricCatalog
from streams.engine.contributions import ContributionBook
from streams.engine.credit import COMPANY, team_scope
from streams.engine.pace import Figures, Thresholds, figures
from streams.engine.periods import PERIOD_TYPES, Calendar, Period
from streams.reference import ReferenceData

SCOPES = ("rep", "team", "company")


@dataclass(frozen=True, slots=True)
class Progress:
    """One scope's figures for one period, as the API and the progress topic publish them."""

    scope: str
    scope_id: str
    period: Period
    as_of: datetime
    metrics: dict[str, Figures]

    def to_dict(self) -> dict[str, Any]:
        return {
            "scope": self.scope,
            "id": self.scope_id,
            "period": self.period.label,
            "period_type": self.period.type,
            "as_of": self.as_of.isoformat(),
            "metrics": {name: f.to_dict() for name, f in self.metrics.items()},
        }


class LiveViews:
    """Books of rep and team/company contributions plus the reference data they are read with."""

    def __init__(
        self,
        calendar: Calendar,
        catalog: MetricCatalog,
        thresholds: Thresholds,
        reference: ReferenceData,
    ) -> None:
        self.calendar = calendar
        self.catalog = catalog
        self.thresholds = thresholds
        self.reference = reference
        #: Rep contributions by rep id; team and company ones by ``team:<id>``/``company:company``.
        self.reps = ContributionBook(calendar)
        self.teams = ContributionBook(calendar)

    def _book_key(self, scope: str, scope_id: str) -> tuple[ContributionBook, str]:
        if scope == "rep":
            return self.reps, scope_id
        return self.teams, team_scope(scope_id) if scope == "team" else COMPANY

    def figures(
        self, scope: str, scope_id: str, metric: str, period: Period, as_of: datetime
    ) -> Figures:
        book, key = self._book_key(scope, scope_id)
        value = book.value(key, metric, period.label)
        target = self.reference.quotas.target(
            scope, scope_id, metric, period, as_of, self.reference.roster
        )
        return figures(value, target, self.calendar.expected(period, as_of), self.thresholds)

    def progress(self, scope: str, scope_id: str, period: Period, as_of: datetime) -> Progress:
        return Progress(
            scope,
            scope_id,
            period,
            as_of,
            {m: self.figures(scope, scope_id, m, period, as_of) for m in self.catalog.names},
        )

    def current_periods(self, as_of: datetime) -> tuple[Period, ...]:
        return tuple(self.calendar.current(t, as_of) for t in PERIOD_TYPES)

    def known(self, scope: str, scope_id: str) -> bool:
        """A scope the API may answer for: on the roster, or with contributions here."""
        roster = self.reference.roster
        if scope == "rep" and scope_id in roster.reps():
            return True
        if scope == "team" and scope_id in roster.teams():
            return True
        book, key = self._book_key(scope, scope_id)
        return scope == "company" or key in book.scopes()

    def leaderboard(
        self,
        metric: str,
        period: Period,
        as_of: datetime,
        team: str | None = None,
        limit: int = 10,
    ) -> list[dict[str, Any]]:
        """Reps ranked by value (ties by rep id); team filter includes sub-teams' members."""
        roster = self.reference.roster
        if team is None:
            reps: Iterable[str] = roster.reps()
        else:
            reps = roster.members_at(team, _within(period, as_of))
        rows = []
        for rep_id in reps:
            f = self.figures("rep", rep_id, metric, period, as_of)
            rows.append((rep_id, f))
        rows.sort(key=lambda row: (-row[1].value, row[0]))
        return [
            {
                "rank": rank,
                "rep_id": rep_id,
                "name": roster.rep_name(rep_id),
                "team_id": roster.team_at(rep_id, _within(period, as_of)),
                **{k: v for k, v in f.to_dict().items() if k in ("value", "target", "attainment")},
            }
            for rank, (rep_id, f) in enumerate(rows[:limit], start=1)
        ]


def _within(period: Period, as_of: datetime) -> datetime:
    """``as_of`` clipped into the period: membership of a past period is its final one."""
    return min(max(as_of, period.start), period.end - timedelta(microseconds=1))
