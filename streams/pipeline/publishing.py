"""Progress records, status alerts and quota gauges of the scopes batches changed.

A busy scope (a region, the company) changes in nearly every batch; its figures are evaluated
once per ``publish_interval`` instead, for every (metric, period) that changed meanwhile, and
its current periods are re-evaluated on every tick because pace falls as time passes. A
partition restored here has all its figures exported at the next flush (its previous owner
stopped exporting them when it lost the partition). A status
is persisted in its partition's changelog before its alert goes out, so a restart neither
repeats nor loses a transition. Milestones (100 % / stretch of a target) are celebrated through
Alertmanager (:mod:`streams.celebrations`) and written to the changelog once it accepted them.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import orjson
import structlog

from streams import metrics
from streams.celebrations import Alertmanager, Celebration
from streams.engine import milestones
from streams.engine.pace import Figures
from streams.engine.periods import Period
from streams.engine.scopes import Scope, scope_key
from streams.engine.tally import SEP
from streams.live import LiveViews
from streams.pipeline.outputs import Outputs, Pending, settle
from streams.pipeline.partitions import MILESTONE_KIND, STATUS_KIND, Owned
from streams.reference import ReferenceData
from streams.settings import Settings

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class Celebrating:
    """What is celebrated (period types, the stretch factor) and where it is said."""

    period_types: frozenset[str]
    stretch: Decimal
    alertmanager: Alertmanager

    @classmethod
    def from_settings(cls, settings: Settings) -> Celebrating:
        return cls(
            frozenset(settings.celebrate_period_types),
            Decimal(str(settings.stretch_attainment)),
            Alertmanager(settings.alertmanager_url),
        )


class Publisher:
    """Collects changed figures per partition and publishes them when flushed."""

    def __init__(
        self,
        views: LiveViews,
        reference: ReferenceData,
        outputs: Outputs,
        celebrating: Celebrating,
    ) -> None:
        self.views = views
        self.reference = reference
        self.outputs = outputs
        self.celebrating = celebrating
        #: partition -> scope -> changed (metric, day)
        self.pending: dict[int, dict[Scope, set[tuple[str, str]]]] = {}
        #: Scopes whose every current figure was exported once (later flushes export only
        #: what changed; the tick exports everything).
        self.exported: set[Scope] = set()

    def forget(self, partitions: set[int]) -> None:
        """Partitions went elsewhere: export their scopes in full should they come back."""
        self.exported = {s for s in self.exported if self.views.partition_of(s) not in partitions}

    def note(self, owned: Owned, changed: set[tuple[Scope, str, str]]) -> None:
        scopes = self.pending.setdefault(owned.tally.partition, {})
        for scope, metric, day in changed:
            scopes.setdefault(scope, set()).add((metric, day))

    async def flush(self) -> None:
        """Publish every pending change of the partitions still owned, and every figure of
        the partitions restored since the last flush."""
        pending, self.pending = self.pending, {}
        for part, entries in self.views.partitions.state_report()["entries"].items():
            metrics.TABLE_KEYS.labels(part).set(entries)
        work: dict[int, list[tuple[Scope, Any]]] = {
            p: list(scopes.items()) for p, scopes in pending.items()
        }
        fresh = self.views.partitions.take_fresh()
        if fresh:
            for scope in self.views.scopes():
                p = self.views.partition_of(scope)
                if p in fresh and scope not in pending.get(p, {}):
                    work.setdefault(p, []).append((scope, None))
        await self._publish(work)

    async def tick(self) -> None:
        """Re-evaluate the current periods of every owned scope (pace moves with time)."""
        metrics.UNASSIGNED_REPS.set(len(self.views.unassigned_reps()))
        work: dict[int, list[tuple[Scope, set[tuple[str, str]] | None]]] = {}
        for scope in self.views.scopes():
            work.setdefault(self.views.partition_of(scope), []).append((scope, None))
        await self._publish(work)

    async def _publish(self, work: dict[int, list[tuple[Scope, Any]]]) -> None:
        """Per owned partition: progress records of the changed (metric, day)s, gauges and
        alerts of current figures — all of them on a tick (``None``) or a scope's first time."""
        now = datetime.now(UTC)
        current = self.views.current_periods(now)
        self._export_periods(current, now)
        for p, items in sorted(work.items()):
            owned = self.views.partitions.owned.get(p)
            if owned is None:
                continue
            sent: Pending = []
            statuses: dict[str, dict[str, Any]] = {}
            reached: dict[str, Celebration] = {}
            for scope, changed in sorted(items, key=lambda item: item[0]):
                if changed is None or scope not in self.exported:
                    figures = self._every(current)
                    self.exported.add(scope)
                else:
                    figures = _in_periods(owned, changed, current)
                if changed:
                    sent.extend(await self._progress(owned, scope, changed, now))
                if self._on_roster(scope):
                    sent.extend(await self._current(owned, scope, figures, now, statuses, reached))
                await asyncio.sleep(0)  # let the agent run between scopes
            await settle(sent)
            statuses.update(await self._celebrate(owned, reached, now))
            await settle(await self.outputs.records(owned.tally, statuses))

    def _on_roster(self, scope: Scope) -> bool:
        """Gauges and alerts are labelled with rep ids only of reps on the roster: a rep id
        from a payload alone must not grow the series without bound (its credit shows in
        the ``unassigned`` team's series)."""
        return scope[0] != "rep" or self.reference.roster.rep_name(scope[1]) is not None

    def _export_periods(self, current: tuple[Period, ...], now: datetime) -> None:
        """The per-period-type series the recording rules and alerts derive figures from."""
        calendar = self.views.calendar
        for period in current:
            expected = float(calendar.expected(period, now))
            metrics.PERIOD_EXPECTED.labels(period.type).set(expected)
            days_left = calendar.business_days_left(period, now)
            metrics.PERIOD_BUSINESS_DAYS_LEFT.labels(period.type).set(days_left)

    async def _celebrate(
        self, owned: Owned, reached: dict[str, Celebration], now: datetime
    ) -> dict[str, dict[str, Any]]:
        """Post the milestones reached to Alertmanager; once it accepted them, the changelog
        records that remember them. :meth:`_milestones` already raised the levels in memory
        (so a concurrent tick or flush does not post them too); refused or unreachable, they
        go back down and the next evaluation (at the latest the next tick) tries again."""
        if not reached:
            return {}
        lowest: dict[str, int] = {}
        for key, celebration in reached.items():
            figure = key.rsplit(":", 1)[0]
            lowest[figure] = min(lowest.get(figure, celebration.level), celebration.level)
        if not await self.celebrating.alertmanager.post(list(reached.values()), now):
            for figure, level in lowest.items():
                if level > 1:
                    owned.milestones[figure] = level - 1
                else:
                    owned.milestones.pop(figure, None)
            return {}
        for celebration in reached.values():
            metrics.CELEBRATIONS.labels(celebration.scope, celebration.milestone).inc()
        return {
            f"{MILESTONE_KIND}{SEP}{figure}": {MILESTONE_KIND: owned.milestones[figure]}
            for figure in lowest
            if figure in owned.milestones
        }

    def _every(self, current: tuple[Period, ...]) -> list[tuple[Period, str]]:
        return [(period, metric) for period in current for metric in self.views.catalog.names]

    async def _progress(
        self, owned: Owned, scope: Scope, changed: set[tuple[str, str]], now: datetime
    ) -> Pending:
        """One progress record per changed (metric, period label)."""
        calendar = self.views.calendar
        labels = {
            (metric, label) for metric, day in changed for label in owned.tally.labels_of_day(day)
        }
        key = scope_key(scope).encode()
        sent: Pending = []
        for metric, label in sorted(labels):
            period = calendar.parse(label)
            if not isinstance(period, Period):
                continue
            f = self.views.figures(scope, metric, period, now)
            record = {
                "scope": scope[0],
                "id": scope[1],
                "metric": metric,
                "period": label,
                "period_type": period.type,
                "as_of": now.isoformat(),
                **f.to_dict(),
            }
            sent.append(
                await self.outputs.producer.send(
                    self.outputs.topics.progress, orjson.dumps(record), key=key
                )
            )
        return sent

    async def _current(
        self,
        owned: Owned,
        scope: Scope,
        figures: list[tuple[Period, str]],
        now: datetime,
        statuses: dict[str, dict[str, Any]],
        reached: dict[str, Celebration],
    ) -> Pending:
        """Gauges of current (period, metric) figures, an alert per status transition and the
        milestones newly reached."""
        kind, scope_id = scope
        roster = self.reference.roster
        team = roster.team_at(scope_id, now) if kind == "rep" else None
        if kind == "rep":
            metrics.QUOTAS.set_rep_info(scope_id, roster.rep_name(scope_id) or scope_id, team or "")
            latest = owned.tally.last_activity.get(scope_id)
            if latest is not None:  # from the rep's buckets: this worker owns the rep
                metrics.QUOTAS.record_activity(scope_id, latest)
        sent: Pending = []
        for period, metric in figures:
            f = self.views.figures(scope, metric, period, now)
            metrics.QUOTAS.publish(kind, scope_id, metric, period.type, f.to_dict(), team)
            self._milestones(owned, scope, team, metric, period, f, reached)
            alert = self._transition(owned, scope, team, metric, period.label, f, now, statuses)
            if alert is not None:
                sent.append(
                    await self.outputs.producer.send(
                        self.outputs.topics.alerts,
                        orjson.dumps(alert),
                        key=f"{kind}:{scope_id}".encode(),
                    )
                )
        return sent

    def _milestones(
        self,
        owned: Owned,
        scope: Scope,
        team: str | None,
        metric: str,
        period: Period,
        f: Figures,
        reached: dict[str, Celebration],
    ) -> None:
        """Note each milestone ``f`` reached above the highest celebrated (or being
        celebrated) for that figure."""
        if period.type not in self.celebrating.period_types or f.target is None:
            return
        kind, scope_id = scope
        figure = f"{kind}:{scope_id}:{metric}:{period.label}"
        now_level = milestones.level(f.value, f.target, self.celebrating.stretch)
        new = milestones.crossed(owned.milestones.get(figure, 0), now_level)
        if new:
            owned.milestones[figure] = now_level  # before any await: see _celebrate
        for level in new:
            reached[f"{figure}:{level}"] = Celebration(
                scope=kind,
                id=scope_id,
                name=self.reference.roster.rep_name(scope_id) if kind == "rep" else None,
                team=(team or "") if kind == "rep" else (scope_id if kind == "team" else ""),
                metric=metric,
                period=period.label,
                period_type=period.type,
                level=level,
                value=f.value,
                target=f.target,
                stretch=self.celebrating.stretch,
            )

    def _transition(
        self,
        owned: Owned,
        scope: Scope,
        team: str | None,
        metric: str,
        label: str,
        f: Figures,
        now: datetime,
        statuses: dict[str, dict[str, Any]],
    ) -> dict[str, Any] | None:
        """The alert for a status change (on_track ↔ at_risk ↔ behind), once per change."""
        if f.status is None:
            return None
        kind, scope_id = scope
        key = f"{kind}:{scope_id}:{metric}:{label}"
        previous = owned.statuses.get(key)
        if previous == f.status:
            return None
        owned.statuses[key] = f.status
        statuses[f"{STATUS_KIND}{SEP}{key}"] = {STATUS_KIND: f.status}
        if previous is None and f.status == "on_track":
            return None  # first evaluation: nothing to act on
        figures = f.to_dict()
        metrics.ALERTS_EMITTED.labels(kind, f.status).inc()
        return {
            "alert_id": f"{key}:{now.isoformat()}",
            "scope": kind,
            "id": scope_id,
            "name": self.reference.roster.rep_name(scope_id) if kind == "rep" else None,
            "team_id": team if kind == "rep" else (scope_id if kind == "team" else None),
            "metric": metric,
            "period": label,
            "from_status": previous,
            "to_status": f.status,
            **{k: figures[k] for k in ("value", "target", "pace", "gap")},
            "at": now.isoformat(),
        }


def _in_periods(
    owned: Owned, changed: set[tuple[str, str]], current: tuple[Period, ...]
) -> list[tuple[Period, str]]:
    """The current (period, metric) figures that changed days fall in: a backfill of past days
    leaves the current gauges and statuses alone (the tick re-evaluates them all anyway)."""
    labels_of_day = owned.tally.labels_of_day
    hit = {(label, metric) for metric, day in changed for label in labels_of_day(day)}
    return sorted(
        (
            (period, metric)
            for period in current
            for metric in {m for m, _ in changed}
            if (period.label, metric) in hit
        ),
        key=lambda pm: (pm[0].label, pm[1]),
    )
