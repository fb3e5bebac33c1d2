"""The worker's HTTP API (Faust web server): live progress, leaderboard, health, metrics.

Any worker answers: progress requests are forwarded to the worker holding the scope's
partition (the URL Faust's assignor publishes for it), with the caller's Authorization
header, so access is decided the same on every worker (``streams.auth``). Bad parameters get
a 4xx JSON body ``{"error": ..., "field": ...}`` (``field`` names the parameter, null when
none is at fault); a scope no worker holds or has restored yet gets 503 with Retry-After. Every
route is in the OpenAPI document ``schemas/openapi.v1.json``, served at ``/api/v1/openapi.json``.
Views reach the live state through ``self.app.runtime`` (see ``streams.app``).
"""

from __future__ import annotations

import asyncio
import functools
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import aiohttp
from aiohttp import hdrs
from aiohttp import web as aiohttp_web
from aiohttp.typedefs import Handler
from faust.web import Request, Response, View
from faust.web.exceptions import ValidationError

from streams import metrics, resources
from streams.engine.catalog import MetricCatalog
from streams.engine.errors import Invalid
from streams.engine.instants import parse_instant
from streams.engine.periods import Calendar, Period
from streams.engine.scopes import COMPANY, Scope

MAX_LIMIT = 1000
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}\Z", re.ASCII)
RETRY_AFTER = "2"
FORWARD_TIMEOUT = aiohttp.ClientTimeout(total=10)
#: The deadline of a leaderboard's questions to the other workers.
GATHER_TIMEOUT = aiohttp.ClientTimeout(total=3)


@dataclass(frozen=True)
class Query:
    """The common parameters: which period, as of when.

    Without ``as_of`` the figures are live: every credit counted, target and expected at this
    instant. ``as_of`` (a date ``YYYY-MM-DD`` or an RFC 3339 instant) is day-granular: the
    figures as they stood at the end of that day in the organisation's time zone — credit
    dated before the next local midnight (``day`` is that day's label), target, expected and
    closed-or-not at that midnight (``as_of``).
    """

    period: Period
    as_of: datetime
    day: str | None

    @classmethod
    def parse(cls, request: Request, calendar: Calendar) -> Query:
        day = _as_of_day(request.query.get("as_of"), calendar)
        as_of = datetime.now(UTC) if day is None else day.end
        label = request.query.get("period")
        if label is None:
            period = calendar.current("quarter", as_of if day is None else day.start)
        else:
            parsed = calendar.parse(label)
            if isinstance(parsed, Invalid):
                raise ValidationError(parsed.message, field="period")
            period = parsed
        return cls(period, as_of, None if day is None else day.label)


def _as_of_day(raw: str | None, calendar: Calendar) -> Period | None:
    """The local day ``as_of`` names, None without one; 400 for anything else."""
    if raw is None:
        return None
    if _DATE.match(raw):
        day = calendar.parse(raw)
    else:
        instant = parse_instant(raw)
        if instant is None:
            raise ValidationError(
                f"as_of must be a date (YYYY-MM-DD) or an RFC 3339 instant with offset: {raw!r}",
                field="as_of",
            )
        day = calendar.day_at(instant)
    if isinstance(day, Invalid) or day.type != "day":
        raise ValidationError(f"as_of out of the calendar's range: {raw!r}", field="as_of")
    return day


def metric_param(request: Request, catalog: MetricCatalog) -> str:
    """``metric``, by default revenue; one of the catalog's."""
    metric: str = request.query.get("metric", "revenue")
    if metric not in catalog.names:
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

    @property
    def runtime(self) -> Any:
        return self.app.runtime  # type: ignore[attr-defined]

    def unavailable(self, reason: str) -> Response:
        response = self.error(503, reason, field=None)
        response.headers["Retry-After"] = RETRY_AFTER
        return response

    async def progress(self, scope: Scope, request: Request) -> Response:
        rt = self.runtime
        query = Query.parse(request, rt.rules.calendar)
        if not rt.mirror.ready.is_set():
            return self.unavailable("reference data (quotas, roster) still loading")
        if not rt.views.known(scope):
            return self.error(404, f"unknown {scope[0]}: {scope[1]}", field=f"{scope[0]}_id")
        if rt.views.tally(scope) is None:
            return self.unavailable(f"partition of {scope[0]} {scope[1]} not restored here yet")
        progress = rt.views.progress(scope, query.period, query.as_of, query.day)
        return self.json(progress.to_dict())

    async def routed(self, scope: Scope, request: Request) -> Response:
        """Answer here if this worker holds the scope's partition, else ask its owner; 503 when
        the owner is unknown or does not answer (never a figure from books that lack it)."""
        rt = self.runtime
        partition = rt.views.partition_of(scope)
        if partition in rt.partitions.assigned:
            return await self.progress(scope, request)
        owner = owner_url(self.app, rt.outputs.topics.activity, partition)
        if owner is None or owner == rt.settings.advertised_url:
            return self.unavailable(f"no worker holds partition {partition} right now")
        try:
            async with aiohttp.ClientSession(timeout=FORWARD_TIMEOUT) as session:
                url = f"{owner}{request.url.path}"
                params, headers = dict(request.query), forwarded_headers(request)
                async with session.get(url, params=params, headers=headers) as answer:
                    body = await answer.read()
                    return self.bytes(body, status=answer.status, content_type=answer.content_type)
        except (aiohttp.ClientError, TimeoutError):
            return self.unavailable(f"the worker holding partition {partition} did not answer")


def forwarded_headers(request: Request) -> dict[str, str]:
    """The caller's credentials, for a request this worker makes on the caller's behalf: the
    other worker decides on them as if the caller had asked it directly."""
    authorization = request.headers.get("Authorization")
    return {} if authorization is None else {"Authorization": authorization}


def owner_url(app: Any, topic: str, partition: int) -> str | None:
    """The web URL of the worker assigned ``partition`` of ``topic`` (Faust's assignor
    publishes every member's URL and partitions)."""
    for url, topics in app.router.external_topics_metadata().items():
        if partition in topics.get(topic, ()):
            return str(url).rstrip("/")
    return None


class RepProgress(ApiView):
    async def get(self, request: Request, rep_id: str) -> Response:
        return await self.routed(("rep", rep_id), request)


class TeamProgress(ApiView):
    async def get(self, request: Request, team_id: str) -> Response:
        return await self.routed(("team", team_id), request)


class CompanyProgress(ApiView):
    async def get(self, request: Request) -> Response:
        return await self.routed(COMPANY, request)


class Leaderboard(ApiView):
    """The ranking over every partition: this worker's reps plus each other worker's top
    ``limit`` (asked with ``local=true``, within ``GATHER_TIMEOUT``). Partitions that no worker
    answered for are listed in ``missing_partitions`` and the answer says ``"partial": true``."""

    async def get(self, request: Request) -> Response:
        rt = self.runtime
        query = Query.parse(request, rt.rules.calendar)
        metric = metric_param(request, rt.rules.catalog)
        limit = limit_param(request)
        team = request.query.get("team")
        local = request.query.get("local", "false")
        if local not in ("true", "false"):
            raise ValidationError("local must be true or false", field="local")
        if team is not None and not rt.views.known(("team", team)):
            return self.error(404, f"unknown team: {team}", field="team")
        entries = rt.views.leaderboard(metric, query.period, query.as_of, team, limit, query.day)
        covered = set(rt.views.partitions.owned)
        if local == "false":
            for board in await self.gather(request, covered):
                entries += board["entries"]
                covered |= set(board["partitions"])
        missing = sorted(set(range(rt.views.partition_count)) - covered)
        body: dict[str, Any] = {
            "metric": metric,
            "period": query.period.label,
            "as_of": query.as_of.isoformat(),
            "as_of_day": query.day,
            "team": team,
            "entries": ranked(entries, limit),
            "partitions": sorted(covered),
            "partial": bool(missing),
            "missing_partitions": missing,
        }
        return self.json(body)

    async def gather(self, request: Request, covered: set[int]) -> list[dict[str, Any]]:
        """The local boards of the workers holding partitions this one does not, asked the
        caller's question (the same ``as_of`` day; live figures are each worker's own now)."""
        rt = self.runtime
        topic = rt.outputs.topics.activity
        peers = {
            str(url).rstrip("/")
            for url, topics in self.app.router.external_topics_metadata().items()
            if set(topics.get(topic, ())) - covered
        } - {rt.settings.advertised_url}
        params = {**request.query, "local": "true"}
        headers = forwarded_headers(request)

        async def ask(session: aiohttp.ClientSession, peer: str) -> dict[str, Any] | None:
            try:
                url = f"{peer}{request.url.path}"
                async with session.get(url, params=params, headers=headers) as answer:
                    if answer.status != 200:
                        return None
                    board: dict[str, Any] = await answer.json()
                    return board
            except (aiohttp.ClientError, TimeoutError, ValueError):
                return None

        async with aiohttp.ClientSession(timeout=GATHER_TIMEOUT) as session:
            boards = await asyncio.gather(*(ask(session, peer) for peer in sorted(peers)))
        return [board for board in boards if board is not None]


def ranked(entries: list[dict[str, Any]], limit: int) -> list[dict[str, Any]]:
    """The first ``limit`` reps by value, descending (ties by rep id), ranked from 1; a rep
    answered twice (a partition changing hands meanwhile) is ranked once."""
    unique: dict[str, dict[str, Any]] = {}
    for entry in sorted(entries, key=lambda e: (-Decimal(e["value"]), e["rep_id"])):
        unique.setdefault(entry["rep_id"], entry)
    best = list(unique.values())[:limit]
    return [{**entry, "rank": rank} for rank, entry in enumerate(best, start=1)]


class Health(View):
    async def get(self, request: Request) -> Response:
        rt = self.app.runtime  # type: ignore[attr-defined]
        loaded = rt.mirror.ready.is_set()
        restored = rt.partitions.assigned_once and rt.partitions.ready
        ready = loaded and restored
        body = {
            "status": "ok" if ready else "starting",
            "reference_loaded": loaded,
            "tables_restored": restored,
            "partitions": sorted(rt.partitions.owned),
            "reps": len(rt.reference.roster.reps()),
            "unassigned_reps": _sample(rt.views.unassigned_reps()),
            "state": rt.partitions.state_report(),
        }
        return self.json(body, status=200 if ready else 503)


def _sample(reps: list[str], shown: int = 20) -> dict[str, Any]:
    """How many reps, and the first few ids: enough to act on, bounded in size."""
    return {"count": len(reps), "first": reps[:shown]}


class OpenApi(View):
    """The OpenAPI 3.1 document of every route (``schemas/openapi.v1.json``, read once)."""

    async def get(self, request: Request) -> Response:
        return self.bytes(_openapi(), content_type="application/json")


@functools.cache
def _openapi() -> bytes:
    return resources.openapi_text().encode()


class Metrics(View):
    async def get(self, request: Request) -> Response:
        return self.bytes(metrics.render(), content_type="text/plain; version=0.0.4")


@aiohttp_web.middleware
async def json_errors(request: aiohttp_web.Request, handler: Handler) -> aiohttp_web.StreamResponse:
    """aiohttp's own refusals — no route for the path (404), a method the route lacks (405) —
    as JSON ``{"error", "field": null}`` like every other answer of the API."""
    try:
        return await handler(request)
    except aiohttp_web.HTTPException as exc:
        if exc.status < 400 or exc.content_type == "application/json":
            raise
        headers = {k: v for k, v in exc.headers.items() if k != hdrs.CONTENT_TYPE}
        body = {"error": exc.reason, "field": None}
        return aiohttp_web.json_response(body, status=exc.status, headers=headers)


def register(app: Any) -> None:
    """Attach the live API's routes to ``app``."""
    app.page("/api/v1/reps/{rep_id}/progress")(RepProgress)
    app.page("/api/v1/teams/{team_id}/progress")(TeamProgress)
    app.page("/api/v1/company/progress")(CompanyProgress)
    app.page("/api/v1/leaderboard")(Leaderboard)
    app.page("/api/v1/openapi.json")(OpenApi)
    app.page("/healthz")(Health)
    app.page("/metrics")(Metrics)
