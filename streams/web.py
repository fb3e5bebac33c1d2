"""The worker's HTTP API (Faust web server): live progress, leaderboard, health, metrics.

Any worker answers: progress requests are routed to the worker owning the scope's partition
(``app.table_route``). Bad parameters get a 4xx JSON body ``{"error": ..., "field": ...}``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from faust.exceptions import SameNode
from faust.web import Request, Response, View
from faust.web.exceptions import ValidationError

from streams import metrics
from streams.agents import mirror, rep_keeper, reps_table, rules, team_keeper, teams_table, views
from streams.app import app
from streams.engine.credit import COMPANY, team_scope
from streams.engine.errors import Invalid
from streams.engine.periods import Period

MAX_LIMIT = 1000


@dataclass(frozen=True)
class Query:
    """The common parameters: which period, as of when."""

    period: Period
    as_of: datetime

    @classmethod
    def parse(cls, request: Request) -> Query:
        as_of = _as_of(request.query.get("as_of"))
        label = request.query.get("period")
        if label is None:
            period = rules.calendar.current("quarter", as_of)
        else:
            parsed = rules.calendar.parse(label)
            if isinstance(parsed, Invalid):
                raise ValidationError(parsed.message, field="period")
            period = parsed
        return cls(period, as_of)


def _as_of(raw: str | None) -> datetime:
    if raw is None:
        return datetime.now(UTC)
    try:
        value = datetime.fromisoformat(raw)
    except ValueError:
        raise ValidationError(f"not an RFC 3339 instant: {raw!r}", field="as_of") from None
    if value.tzinfo is None:
        raise ValidationError("as_of needs a UTC offset", field="as_of")
    return value


def metric_param(request: Request) -> str:
    """``metric``, by default revenue; one of the catalog's."""
    metric: str = request.query.get("metric", "revenue")
    if metric not in rules.catalog.names:
        raise ValidationError(f"unknown metric {metric!r}", field="metric")
    return metric


def limit_param(request: Request, default: int = 10, maximum: int = MAX_LIMIT) -> int:
    raw: str | None = request.query.get("limit")
    if raw is None:
        return default
    if not raw.isdecimal() or not 1 <= int(raw) <= maximum:
        raise ValidationError(f"limit must be an integer from 1 to {maximum}", field="limit")
    return int(raw)


class ApiView(View):
    """Progress answered here or by the owning worker; Faust answers a raised
    ``ValidationError`` with 400 ``{"error", "field"}``."""

    async def progress(self, scope: str, scope_id: str, request: Request) -> Response:
        query = Query.parse(request)
        if not mirror.ready.is_set():
            return self.error(503, "reference data (quotas, roster) still loading")
        if rep_keeper.stale or team_keeper.stale:
            return self.error(503, "live tables still being restored")
        if not views.known(scope, scope_id):
            return self.error(404, f"unknown {scope}: {scope_id}")
        return self.json(views.progress(scope, scope_id, query.period, query.as_of).to_dict())

    async def routed(self, scope: str, scope_id: str, request: Request) -> Response:
        """Answer here if this worker owns the scope's partition, else forward to the owner."""
        if scope == "rep":
            table, key = reps_table, scope_id
        else:
            table, key = teams_table, team_scope(scope_id) if scope == "team" else COMPANY
        try:
            return await app.router.route_req(table.name, key.encode(), self.web, request)
        except SameNode:
            return await self.progress(scope, scope_id, request)


@app.page("/api/v1/reps/{rep_id}/progress")
class RepProgress(ApiView):
    async def get(self, request: Request, rep_id: str) -> Response:
        return await self.routed("rep", rep_id, request)


@app.page("/api/v1/teams/{team_id}/progress")
class TeamProgress(ApiView):
    async def get(self, request: Request, team_id: str) -> Response:
        return await self.routed("team", team_id, request)


@app.page("/api/v1/company/progress")
class CompanyProgress(ApiView):
    async def get(self, request: Request) -> Response:
        return await self.routed("company", "company", request)


@app.page("/api/v1/leaderboard")
class Leaderboard(ApiView):
    async def get(self, request: Request) -> Response:
        query = Query.parse(request)
        metric = metric_param(request)
        limit = limit_param(request)
        team = request.query.get("team")
        if team is not None and not views.known("team", team):
            return self.error(404, f"unknown team: {team}")
        entries = views.leaderboard(metric, query.period, query.as_of, team, limit)
        body: dict[str, Any] = {
            "metric": metric,
            "period": query.period.label,
            "as_of": query.as_of.isoformat(),
            "team": team,
            "entries": entries,
        }
        return self.json(body)


@app.page("/healthz")
class Health(View):
    async def get(self, request: Request) -> Response:
        loaded = mirror.ready.is_set()
        restored = not (rep_keeper.stale or team_keeper.stale)
        ready = loaded and restored
        body = {
            "status": "ok" if ready else "starting",
            "reference_loaded": loaded,
            "tables_restored": restored,
            # What the worker really runs with (Faust decides once the worker has started).
            "exactly_once": app.in_transaction,
            "reps": len(views.reference.roster.reps()),
            "assignment": sorted(f"{tp.topic}:{tp.partition}" for tp in app.consumer.assignment()),
        }
        return self.json(body, status=200 if ready else 503)


@app.page("/metrics")
class Metrics(View):
    async def get(self, request: Request) -> Response:
        return self.bytes(metrics.render(), content_type="text/plain; version=0.0.4")
