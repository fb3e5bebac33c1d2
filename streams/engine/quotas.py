"""Quotas: the target a scope is measured against for a metric and period.

An explicit target always wins. A team without one is measured against the sum of its
members' targets: its reps' (those in the team at the instant) plus its child teams'
(explicit or, recursively, derived). The company likewise sums the top-level teams and the
reps in no team. Nobody contributing a target means *no target* (None), never zero,
so attainment and status stay null instead of claiming 0 %.

Mid-period changes: each target may carry ``effective_from``; at ``as_of`` the one with the
latest ``effective_from <= as_of`` is in force (no ``effective_from`` = from the period's
start; if ``as_of`` precedes them all, the earliest is used). A naive ``effective_from`` is
read as UTC.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from decimal import Decimal

from streams.engine.periods import Period
from streams.engine.roster import Roster, as_utc
from streams.engine.scopes import SCOPES

_EPSILON = timedelta(microseconds=1)

QuotaKey = tuple[str, str, str, str]  # scope, scope_id, metric, period label
TeamIds = set[str]  # (named here: inside QuotaBook, ``set`` is the method)


class QuotaBook:
    __slots__ = ("_rep_ids", "_targets")

    def __init__(self) -> None:
        self._targets: dict[QuotaKey, dict[datetime | None, Decimal]] = {}
        self._rep_ids: dict[tuple[str, str], set[str]] = {}  # (metric, label) -> reps with one

    def set(
        self,
        scope: str,
        scope_id: str,
        metric: str,
        period_label: str,
        target: Decimal,
        effective_from: datetime | None = None,
    ) -> None:
        if scope not in SCOPES:
            raise ValueError(f"scope must be one of {SCOPES}")
        if effective_from is not None:
            effective_from = as_utc(effective_from)
        self._targets.setdefault((scope, scope_id, metric, period_label), {})[effective_from] = (
            target
        )
        if scope == "rep":
            self._rep_ids.setdefault((metric, period_label), set()).add(scope_id)

    def remove(
        self,
        scope: str,
        scope_id: str,
        metric: str,
        period_label: str,
        effective_from: datetime | None = None,
    ) -> None:
        key = (scope, scope_id, metric, period_label)
        if effective_from is not None:
            effective_from = as_utc(effective_from)
        entries = self._targets.get(key, {})
        entries.pop(effective_from, None)
        if not entries:
            self._targets.pop(key, None)
            if scope == "rep":
                self._rep_ids.get((metric, period_label), set()).discard(scope_id)

    def entries(self) -> Iterator[tuple[QuotaKey, datetime | None, Decimal]]:
        """Every explicit target: (key, effective_from, target)."""
        for key, by_start in self._targets.items():
            for start, target in by_start.items():
                yield key, start, target

    def explicit(
        self, scope: str, scope_id: str, metric: str, period: Period, as_of: datetime
    ) -> Decimal | None:
        by_start = self._targets.get((scope, scope_id, metric, period.label))
        if not by_start:
            return None
        if len(by_start) == 1:  # the common case: one target, in force whatever ``as_of``
            return next(iter(by_start.values()))
        ordered = sorted(
            by_start.items(),
            key=lambda kv: (period.start if kv[0] is None else kv[0], kv[0] is not None),
        )
        in_force = ordered[0][1]
        for start, target in ordered:
            if (period.start if start is None else start) <= as_of:
                in_force = target
        return in_force

    def target(
        self,
        scope: str,
        scope_id: str,
        metric: str,
        period: Period,
        as_of: datetime,
        roster: Roster,
    ) -> Decimal | None:
        """The target in force at ``as_of`` (see module doc), None when there is none."""
        explicit = self.explicit(scope, scope_id, metric, period, as_of)
        if explicit is not None or scope == "rep":
            return explicit
        # Membership is read inside the period: a team's target is that of its members then.
        at = min(max(as_of, period.start), period.end - _EPSILON)
        if scope == "team":
            return self._team(scope_id, metric, period, as_of, at, roster, set())
        tops = [t for t in roster.teams() if roster.parent(t) is None]
        parts = [self._team(t, metric, period, as_of, at, roster, set()) for t in sorted(tops)]
        parts += self._rep_targets(None, metric, period, as_of, at, roster)
        return _sum(parts)

    def _team(
        self,
        team_id: str,
        metric: str,
        period: Period,
        as_of: datetime,
        at: datetime,
        roster: Roster,
        visiting: TeamIds,
    ) -> Decimal | None:
        explicit = self.explicit("team", team_id, metric, period, as_of)
        if explicit is not None or team_id in visiting:
            return explicit
        visiting.add(team_id)
        parts = self._rep_targets(team_id, metric, period, as_of, at, roster)
        parts += [
            self._team(child, metric, period, as_of, at, roster, visiting)
            for child in sorted(roster.children(team_id))
        ]
        return _sum(parts)

    def _rep_targets(
        self,
        team_id: str | None,
        metric: str,
        period: Period,
        as_of: datetime,
        at: datetime,
        roster: Roster,
    ) -> list[Decimal | None]:
        """Explicit targets of the reps directly in ``team_id`` at ``at`` (None: in no team)."""
        reps = self._rep_ids.get((metric, period.label), set())
        return [
            self.explicit("rep", rep, metric, period, as_of)
            for rep in sorted(reps)
            if roster.team_at(rep, at) == team_id
        ]


def _sum(parts: list[Decimal | None]) -> Decimal | None:
    present = [p for p in parts if p is not None]
    return sum(present, Decimal(0)) if present else None
