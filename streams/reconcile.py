"""Reconciliation: the live figures of a period proven against the ClickHouse history.

Every scope's value of every metric is recomputed from the stored events and roster with the
engine's independent recomputation (``recompute.values``, the rules ``explain`` lists) and
compared with what the live API answers; each run is recorded in ``reconciliations`` so a
board can show when the numbers were last proven. Targets are not compared: they are read
at query time from the quota book, not derived from events.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from urllib.parse import quote

import httpx
import orjson
from clickhouse_connect.driver import Client

from streams import credit_history
from streams.engine.errors import Invalid
from streams.engine.money import decimal_text
from streams.engine.periods import Calendar, Period
from streams.engine.recompute import values
from streams.engine.scopes import COMPANY
from streams.rules import Rules

#: A scope's live values per metric; None when the live API does not know the scope.
LiveFigures = Callable[[str, str], dict[str, Decimal] | None]
API_TIMEOUT = 30.0
#: Seconds before differing scopes are compared once more (``spm reconcile --settle``).
DEFAULT_SETTLE, MAX_SETTLE = 5.0, 300.0


class LiveUnavailable(RuntimeError):
    """The live API did not answer a figure (down, or a partition moving): no verdict."""


@dataclass(frozen=True, slots=True)
class Difference:
    scope: str
    id: str
    metric: str
    history: Decimal
    live: Decimal | None  # None: the live API does not know the scope

    def to_dict(self) -> dict[str, Any]:
        return {
            "scope": self.scope,
            "id": self.id,
            "metric": self.metric,
            "history": decimal_text(self.history),
            "live": None if self.live is None else decimal_text(self.live),
        }

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> Difference:
        live = doc["live"]
        return cls(
            doc["scope"],
            doc["id"],
            doc["metric"],
            Decimal(doc["history"]),
            None if live is None else Decimal(live),
        )


@dataclass(frozen=True, slots=True)
class Result:
    run_id: str
    period: str
    started_at: datetime
    finished_at: datetime
    events: int
    figures: int
    differences: tuple[Difference, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "period": self.period,
            "started_at": self.started_at.isoformat(),
            "finished_at": self.finished_at.isoformat(),
            "events": self.events,
            "figures": self.figures,
            "differences": [d.to_dict() for d in self.differences],
        }

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> Result:
        return cls(
            doc["run_id"],
            doc["period"],
            datetime.fromisoformat(doc["started_at"]),
            datetime.fromisoformat(doc["finished_at"]),
            doc["events"],
            doc["figures"],
            tuple(Difference.from_dict(d) for d in doc["differences"]),
        )


def reconcile(
    client: Client,
    rules: Rules,
    period: Period,
    live: LiveFigures,
    *,
    settle: float = 0.0,
    sleep: Callable[[float], None] = time.sleep,
) -> Result:
    """Compare every scope's values of ``period`` (history's scopes, the roster's reps and
    teams, the company) with ``live``; a scope the live API does not know must have none.

    The live tables and the history sink consume the same input independently, so an event in
    flight can make one briefly ahead of the other: with ``settle`` > 0 the scopes that differ
    are compared once more after that many seconds, and only differences that persist count.
    """
    started = datetime.now(UTC)
    events, figures, differences = _compare(client, rules, period, live, None)
    if differences and settle > 0:
        sleep(settle)
        again = {(d.scope, d.id) for d in differences}
        _, _, differences = _compare(client, rules, period, live, again)
    return Result(
        str(uuid.uuid4()),
        period.label,
        started,
        datetime.now(UTC),
        events,
        figures,
        tuple(differences),
    )


def _compare(
    client: Client,
    rules: Rules,
    period: Period,
    live: LiveFigures,
    only: set[tuple[str, str]] | None,
) -> tuple[int, int, list[Difference]]:
    """(events read, figures compared, differences) of the scopes ``only`` (None: all)."""
    events = credit_history.period_events(client, period)
    roster = credit_history.roster(client)
    recomputed = {
        (scope, scope_id, metric): value
        for (scope, scope_id, metric, label), value in values(
            events, roster, rules.calendar, rules.catalog
        ).items()
        if label == period.label
    }
    scopes = {(scope, scope_id) for scope, scope_id, _ in recomputed}
    scopes |= {("rep", rep) for rep in roster.reps()} | {("team", t) for t in roster.teams()}
    scopes.add(COMPANY)
    differences, figures = [], 0
    for scope, scope_id in sorted(scopes if only is None else scopes & only):
        answered = live(scope, scope_id)
        for metric in rules.catalog.names:
            want = recomputed.get((scope, scope_id, metric), Decimal(0))
            if answered is None and want == 0:
                continue  # unknown to both: nothing to prove
            figures += 1
            have = None if answered is None else answered.get(metric, Decimal(0))
            if have != want:
                differences.append(Difference(scope, scope_id, metric, want, have))
    return len({e.key for e in events}), figures, differences  # copies not merged yet


def period_to_prove(
    calendar: Calendar, label: str | None, previous: bool, now: datetime
) -> Period | Invalid:
    """The period a run proves: ``label``, or the organisation's current quarter (fiscal
    calendar and zone included); with ``previous`` the period of the same type before it, so
    a nightly job needs no date arithmetic of its own."""
    period = calendar.current("quarter", now) if label is None else calendar.parse(label)
    if isinstance(period, Invalid) or not previous:
        return period
    return calendar.current(period.type, period.start - timedelta(microseconds=1))


def record(client: Client, result: Result) -> None:
    """Keep the run in ``reconciliations`` (the sales floor's "last reconciled")."""
    details = orjson.dumps([d.to_dict() for d in result.differences]).decode()
    client.insert(
        "reconciliations",
        [
            (
                result.run_id,
                result.period,
                result.started_at,
                result.finished_at,
                result.events,
                result.figures,
                len(result.differences),
                details,
            )
        ],
        column_names=(
            "run_id",
            "period",
            "started_at",
            "finished_at",
            "events",
            "figures",
            "differences",
            "details",
        ),
    )


def api_figures(
    http: httpx.Client, period: str, headers: dict[str, str] | None = None
) -> LiveFigures:
    """Live values from a worker's progress API (any worker: it forwards to the owner)."""

    def figures(scope: str, scope_id: str) -> dict[str, Decimal] | None:
        path = (
            "/api/v1/company/progress"
            if scope == "company"
            else f"/api/v1/{scope}s/{quote(scope_id, safe='')}/progress"
        )
        try:
            answer = http.get(path, params={"period": period}, headers=headers)
        except httpx.HTTPError as exc:
            raise LiveUnavailable(f"live API at {http.base_url} failed: {exc}") from exc
        if answer.status_code == 404:
            return None
        if answer.status_code != 200:
            raise LiveUnavailable(
                f"live API answered {answer.status_code} for {scope} {scope_id}: "
                f"{answer.text[:200]}"
            )
        metrics = answer.json()["metrics"]
        return {name: Decimal(doc["value"]) for name, doc in metrics.items()}

    return figures
