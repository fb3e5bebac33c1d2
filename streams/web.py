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

from streams import metrics
from streams.agents import mirror, rep_keeper, reps_table, rules, team_keeper, teams_table, views
from streams.app import app
from streams.engine.credit import COMPANY, team_scope
from streams.engine.errors import Invalid
from streams.engine.periods import Period

MAX_LIMIT = 1000


class BadRequest(Exception):
    """A request parameter is wrong; answered with 400 and the field it concerns."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


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
                raise BadRequest("period", parsed.message)
            period = parsed
        return cls(period, as_of)


def _as_of(raw: str | None) -> datetime:
    if raw is None:
        return datetime.now(UTC)
    try:
        value = datetime.fromisoformat(raw)
    except ValueError:
        raise BadRequest("as_of", f"not an RFC 3339 instant: {raw!r}") from None
    if value.tzinfo is None:
        raise BadRequest("as_of", "as_of needs a UTC offset")
    return value


def _limit(raw: str | None) -> int:
    if raw is None:
        return 10
    if not raw.isdecimal() or not 1 <= int(raw) <= MAX_LIMIT:
        raise BadRequest("limit", f"limit must be an integer from 1 to {MAX_LIMIT}")
    return int(raw)


class ApiView(View):
    """Turns :class:`BadRequest` into a 400 JSON answer and waits for reference data."""

    def bad(self, exc: BadRequest) -> Response:
        return self.error(400, exc.message, field=exc.field)

    async def progress(self, scope: str, scope_id: str, request: Request) -> Response:
        try:
            query = Query.parse(request)
        except BadRequest as exc:
            return self.bad(exc)
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
        try:
            query = Query.parse(request)
            metric = request.query.get("metric", "revenue")
            if metric not in rules.catalog.names:
                raise BadRequest("metric", f"unknown metric {metric!r}")
            limit = _limit(request.query.get("limit"))
            team = request.query.get("team")
        except BadRequest as exc:
            return self.bad(exc)
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
