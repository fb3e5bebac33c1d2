"""Celebrations: a rep, team or the company reaching 100 % or the stretch level of a target.

The publisher decides *when* (:mod:`streams.engine.milestones`, the highest level celebrated per
figure kept in the partition's changelog); this module says it to Alertmanager, which routes
``component="celebration"`` to its own receiver (``deploy/alertmanager/alertmanager.yml``).
Alertmanager is posted to directly (its ``/api/v2/alerts``, as Prometheus does): a milestone is
an event, not a condition Prometheus could re-evaluate. A milestone is written to the changelog
only after Alertmanager accepted it, so an unreachable Alertmanager delays a celebration to the
next evaluation instead of losing it; a crash between the two re-posts the same labels, which
Alertmanager's notification log de-duplicates.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, Final

import httpx
import structlog

from streams.engine.milestones import NAMES, STRETCH

log = structlog.get_logger(__name__)

#: How long Alertmanager keeps a celebration active; it resolves itself afterwards (the
#: celebrations receiver does not send resolutions).
ACTIVE_FOR: Final = timedelta(minutes=30)
ALERT_NAMES: Final = {"target": "TargetReached", "stretch": "StretchReached"}
BOARDS: Final = {
    "rep": "/d/spm-rep-drilldown/rep-drill-down?var-rep={id}&var-metric={metric}"
    "&var-period_type={period_type}",
    "team": "/d/spm-sales-floor/sales-floor?var-team={id}&var-metric={metric}"
    "&var-period_type={period_type}",
    "company": "/d/spm-sales-floor/sales-floor?var-metric={metric}&var-period_type={period_type}",
}


@dataclass(frozen=True)
class Celebration:
    scope: str
    id: str
    name: str | None  # a rep's display name
    team: str  # the rep's team, a team's own id, "" for the company
    metric: str
    period: str  # label, e.g. 2026-11
    period_type: str
    level: int  # streams.engine.milestones.TARGET or STRETCH
    value: Decimal
    target: Decimal
    stretch: Decimal  # the configured stretch factor (1.2 = 120 %)

    @property
    def milestone(self) -> str:
        return NAMES[self.level]

    def alert(self, now: datetime) -> dict[str, Any]:
        """The Alertmanager alert (API v2) of this celebration."""
        who = {
            "rep": f"{self.name or self.id} ({self.id}, team {self.team or '-'})",
            "team": f"Team {self.id}",
            "company": "The company",
        }[self.scope]
        share = (
            f"{self.stretch * 100:f}".rstrip("0").rstrip(".") if self.level == STRETCH else "100"
        )
        labels = {
            "alertname": ALERT_NAMES[self.milestone],
            "component": "celebration",
            "severity": "info",
            "scope": self.scope,
            "id": self.id,
            "team": self.team,
            "metric": self.metric,
            "period": self.period,
            "period_type": self.period_type,
        }
        if self.scope == "rep":
            labels["rep"] = self.id
        return {
            "labels": labels,
            "annotations": {
                "summary": f"{who} reached {share} % of the {self.metric} target for {self.period}",
                "description": (
                    f"{self.metric} is {_amount(self.value)} against a target of "
                    f"{_amount(self.target)} ({_percent(self.value, self.target)})."
                ),
                "dashboard": BOARDS[self.scope].format(
                    id=self.id, metric=self.metric, period_type=self.period_type
                ),
            },
            "startsAt": now.isoformat(),
            "endsAt": (now + ACTIVE_FOR).isoformat(),
        }


def _amount(value: Decimal) -> str:
    """An exact decimal with thousands separators, as a manager reads it (12,000.5)."""
    text = f"{value:,f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def _percent(value: Decimal, target: Decimal) -> str:
    return f"{(value / target * 100).quantize(Decimal('0.1'))} %"


class Alertmanager:
    """Posts alerts to Alertmanager's API; ``url`` empty: nothing is posted (and nothing is
    held back — celebrations are then only counted and logged)."""

    def __init__(self, url: str, timeout: float = 5.0) -> None:
        self.url = url.rstrip("/")
        self._timeout = timeout

    @property
    def enabled(self) -> bool:
        return bool(self.url)

    async def post(self, celebrations: Sequence[Celebration], now: datetime) -> bool:
        """Whether Alertmanager accepted all of ``celebrations`` (one request)."""
        if not celebrations:
            return True
        if not self.enabled:
            for c in celebrations:
                log.info("celebration.unposted", scope=c.scope, id=c.id, milestone=c.milestone)
            return True
        body = [c.alert(now) for c in celebrations]
        try:
            async with httpx.AsyncClient(timeout=self._timeout) as client:
                response = await client.post(f"{self.url}/api/v2/alerts", json=body)
        except httpx.HTTPError as exc:
            log.warning("celebration.alertmanager_unreachable", url=self.url, error=str(exc))
            return False
        if response.status_code != 200:
            log.warning(
                "celebration.alertmanager_refused",
                url=self.url,
                status=response.status_code,
                body=response.text[:500],
            )
            return False
        return True
