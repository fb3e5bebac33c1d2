"""The in-process incremental engine: the streaming pipeline's composition in one object.

Events go through the same steps the agents take — dedupe by (source, id), deal events
merged into the deal's ledger state, postings (``streams.engine.postings``) put into the
contribution book — so backfills, the API's what-ifs and the tests get the pipeline's
figures without Kafka. ``recompute`` is the independent reference it is checked against.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from decimal import Decimal

from streams.engine.catalog import DEAL_TYPES, MetricCatalog
from streams.engine.contributions import Change, ContributionBook
from streams.engine.credit import (
    COMPANY,
    activity_contributions,
    deal_contributions,
    team_contributions,
    team_scope,
)
from streams.engine.errors import Invalid
from streams.engine.events import Event
from streams.engine.ledger import DealState, merge
from streams.engine.money import Rates
from streams.engine.pace import Figures, Thresholds, figures
from streams.engine.periods import Calendar
from streams.engine.quotas import QuotaBook
from streams.engine.roster import Roster

FigureKey = tuple[str, str, str, str]  # scope, scope_id, metric, period label


class Engine:
    """Live figures for every rep, team and the company (scope id ``company``)."""

    def __init__(
        self,
        calendar: Calendar,
        catalog: MetricCatalog,
        rates: Rates,
        thresholds: Thresholds | None = None,
    ) -> None:
        self.calendar = calendar
        self.catalog = catalog
        self.rates = rates
        self.thresholds = thresholds or Thresholds()
        self.roster = Roster()
        self.quotas = QuotaBook()
        self.reps = ContributionBook(calendar)  # keyed by rep id
        self.teams = ContributionBook(calendar)  # keyed by team_scope(id) and COMPANY
        self.deals: dict[str, DealState] = {}
        self._seen: set[tuple[str, str]] = set()
        self.duplicates = 0
        self.ignored = 0

    def apply(self, event: Event) -> list[Change]:
        """Apply one accepted event; returns the contribution changes it caused."""
        event_key = (event.source, event.id)
        if event_key in self._seen:
            self.duplicates += 1
            return []
        self._seen.add(event_key)
        if event.type in DEAL_TYPES:
            old = self.deals.get(event.deal_id) if event.deal_id is not None else None
            new = merge(old, event)
            if new is old:
                return []
            self.deals[new.deal_id] = new
            credits = deal_contributions(new.deal_id, old, new, self.catalog)
        else:
            credits = activity_contributions(event, self.catalog)
            if not credits:
                self.ignored += 1
                return []
        changes = []
        for rep_id, key, contribution in credits:
            change = self.reps.put(rep_id, key, contribution)
            if change is None:
                continue
            changes.append(change)
            for scope, team_key, rolled in team_contributions(change, key, self.roster):
                team_change = self.teams.put(scope, team_key, rolled)
                if team_change is not None:
                    changes.append(team_change)
        return changes

    def value(self, scope: str, scope_id: str, metric: str, label: str) -> Decimal:
        if scope == "rep":
            return self.reps.value(scope_id, metric, label)
        book_key = team_scope(scope_id) if scope == "team" else COMPANY
        return self.teams.value(book_key, metric, label)

    def figures(
        self, scope: str, scope_id: str, metric: str, label: str, as_of: datetime
    ) -> Figures:
        period = self.calendar.parse(label)
        if isinstance(period, Invalid):
            raise ValueError(period.message)
        target = self.quotas.target(scope, scope_id, metric, period, as_of, self.roster)
        expected = self.calendar.expected(period, as_of)
        return figures(
            self.value(scope, scope_id, metric, label), target, expected, self.thresholds
        )

    def keys(self) -> Iterator[FigureKey]:
        """Every (scope, id, metric, label) holding data."""
        for book, is_rep in ((self.reps, True), (self.teams, False)):
            for book_key in book.scopes():
                scope, scope_id = ("rep", book_key) if is_rep else book_key.split(":", 1)
                for metric in book.metrics(book_key):
                    for label in book.labels(book_key, metric):
                        yield scope, scope_id, metric, label
