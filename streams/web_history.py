"""The history API (``/api/v1/history/...``): how periods unfolded, past rankings, alerts, dead
letters and the accepted events, read from ClickHouse with the queries of ``streams.history``.

Same conventions as the live API (``web.py``): a bad parameter is answered 400
``{"error": ..., "field": ...}``, an unknown rep or team 404 ``{"error": ...}``. The queries
block (embedded chDB), so each runs in a thread. A worker answers from the history store its
``SPM_CLICKHOUSE_URL`` names: with several workers that is a shared ClickHouse server, since an
embedded chDB path holds only what its own worker's sink consumed. A worker owns its chDB path
(one process per path), which is why ``spm replay`` reads the events through
``/api/v1/history/events`` while the worker runs.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Concatenate, ParamSpec, TypeVar

import structlog
from clickhouse_connect.driver import Client
from clickhouse_connect.driver.exceptions import ClickHouseError
from faust.web import Request, Response, View
from faust.web.exceptions import NotFound, ValidationError, WebError

from streams import history
from streams.chclient import get_client
from streams.engine.instants import parse_instant
from streams.engine.periods import Calendar
from streams.engine.scopes import COMPANY, SCOPES
from streams.settings import Settings
from streams.web import limit_param, metric_param

log = structlog.get_logger(__name__)

ALERTS_LIMIT = 100
EVENTS_LIMIT = history.REPLAY_PAGE
EventKey = tuple[datetime, str, str]  # time, source, id: the order of the event history

P = ParamSpec("P")
T = TypeVar("T")


class Unavailable(WebError):
    """The history store cannot answer now (503); the reason goes to the log, not the client."""

    code = 503
    detail = "history store unavailable"

    def __init__(self, detail: str | None = None) -> None:
        super().__init__(detail, field=None)


async def run_query(
    settings: Settings, fn: Callable[Concatenate[Client, P], T], *args: P.args, **kwargs: P.kwargs
) -> T:
    """``fn(client, ...)`` in a thread on the process's client; its ``BadQuery`` becomes a 400."""

    def run() -> T:
        return fn(get_client(settings), *args, **kwargs)

    try:
        return await asyncio.to_thread(run)
    except history.BadQuery as exc:
        raise ValidationError(exc.invalid.message, field=exc.invalid.path) from exc
    except ClickHouseError as exc:
        log.warning("history.query_failed", query=fn.__name__, error=str(exc))
        raise Unavailable() from exc


# --- parameters --------------------------------------------------------------------------------
def _runtime(view: View) -> Any:
    return view.app.runtime  # type: ignore[attr-defined]


def period_label(request: Request, calendar: Calendar) -> str:
    """The period label asked for (validated by the query), by default the current quarter."""
    label: str | None = request.query.get("period")
    return calendar.current("quarter", datetime.now(UTC)).label if label is None else label


#: What ClickHouse's DateTime64 holds: no stored time lies outside, so an instant asked for
#: beyond it is the nearest end (``since=0001-01-01…`` means "from the start").
STORE_RANGE = (datetime(1900, 1, 1, tzinfo=UTC), datetime(2299, 12, 31, 23, 59, 59, 999000, UTC))


def _stored(t: datetime) -> datetime:
    return min(max(t, STORE_RANGE[0]), STORE_RANGE[1])


def _instant(request: Request, name: str) -> datetime | None:
    raw: str | None = request.query.get(name)
    if raw is None:
        return None
    value = parse_instant(raw)
    if value is None:
        raise ValidationError(f"{name} is not an RFC 3339 instant with offset: {raw!r}", field=name)
    return _stored(value)


def _iso(t: datetime | None) -> str | None:
    return None if t is None else t.isoformat()


def _scope(request: Request, *, required: bool) -> tuple[str | None, str | None]:
    """``scope`` and ``id``: an id needs a scope; the company's id is implied."""
    scope: str | None = request.query.get("scope")
    scope_id: str | None = request.query.get("id")
    if scope is None:
        if required or scope_id is not None:
            raise ValidationError("scope is required: rep, team or company", field="scope")
        return None, None
    if scope not in SCOPES:
        raise ValidationError(f"scope must be rep, team or company, not {scope!r}", field="scope")
    if scope == "company":
        if scope_id not in (None, COMPANY[1]):
            raise ValidationError(f"the company's id is {COMPANY[1]!r}", field="id")
        return scope, COMPANY[1]
    if required and not scope_id:
        raise ValidationError(f"id is required for scope {scope}", field="id")
    return scope, scope_id


def _after(request: Request) -> EventKey | None:
    """The paging cursor: the JSON array ``[time, source, id]`` of the last event read."""
    raw: str | None = request.query.get("after")
    if raw is None:
        return None
    try:
        time, source, event_id = json.loads(raw)
        instant = parse_instant(time)
        if instant is None or not isinstance(source, str) or not isinstance(event_id, str):
            raise ValueError(raw)
    except (ValueError, TypeError):
        raise ValidationError(
            'after must be the JSON array ["<time>", "<source>", "<id>"] of the last event read',
            field="after",
        ) from None
    return _stored(instant), source, event_id


def require_known(rt: Any, scope: str, scope_id: str, field: str) -> None:
    """404 for a scope neither the roster nor the live tables know (history had nothing);
    ``field``: the parameter that named it."""
    if not rt.mirror.ready.is_set():
        raise Unavailable("reference data (quotas, roster) still loading")
    if not rt.views.known((scope, scope_id)):
        raise NotFound(f"unknown {scope}: {scope_id}", field=field)


# --- views -------------------------------------------------------------------------------------
async def _cumulative(view: View, scope: str, scope_id: str, request: Request) -> Response:
    rt = _runtime(view)
    query = history.rep_cumulative if scope == "rep" else history.team_cumulative
    calendar = rt.rules.calendar
    metric = metric_param(request, rt.rules.catalog)
    body = await run_query(
        rt.settings, query, scope_id, metric, period_label(request, calendar), calendar
    )
    if all(day["value"] is None for day in body["days"]):
        require_known(rt, scope, scope_id, f"{scope}_id")
    return view.json(body)


class RepCumulative(View):
    async def get(self, request: Request, rep_id: str) -> Response:
        return await _cumulative(self, "rep", rep_id, request)


class TeamCumulative(View):
    async def get(self, request: Request, team_id: str) -> Response:
        return await _cumulative(self, "team", team_id, request)


class PeriodOverPeriod(View):
    async def get(self, request: Request) -> Response:
        rt = _runtime(self)
        scope, scope_id = _scope(request, required=True)
        assert scope is not None and scope_id is not None
        calendar = rt.rules.calendar
        body = await run_query(
            rt.settings,
            history.period_over_period,
            scope,
            scope_id,
            metric_param(request, rt.rules.catalog),
            period_label(request, calendar),
            calendar,
        )
        if body["current"] is None and body["previous"]["final"] is None:
            require_known(rt, scope, scope_id, "id")
        return self.json(body)


class HistoryLeaderboard(View):
    async def get(self, request: Request) -> Response:
        rt = _runtime(self)
        calendar = rt.rules.calendar
        metric, label = metric_param(request, rt.rules.catalog), period_label(request, calendar)
        limit = limit_param(request)
        team: str | None = request.query.get("team")
        if team is not None:
            require_known(rt, "team", team, "team")
        body = await run_query(
            rt.settings, history.leaderboard, metric, label, calendar, limit=limit, team=team
        )
        return self.json(body)


class AlertHistory(View):
    async def get(self, request: Request) -> Response:
        scope, scope_id = _scope(request, required=False)
        since = _instant(request, "since")
        limit = limit_param(request, ALERTS_LIMIT)
        alerts = await run_query(
            _runtime(self).settings,
            history.alert_history,
            scope=scope,
            scope_id=scope_id,
            since=since,
            limit=limit,
        )
        body: dict[str, Any] = {
            "scope": scope,
            "id": scope_id,
            "since": _iso(since),
            "alerts": alerts,
        }
        return self.json(body)


class RejectedByReason(View):
    async def get(self, request: Request) -> Response:
        since = _instant(request, "since")
        reasons = await run_query(_runtime(self).settings, history.rejected_by_reason, since=since)
        return self.json({"since": _iso(since), "reasons": reasons})


def events_page(
    client: Client, since: datetime | None, after: EventKey | None, limit: int
) -> list[bytes]:
    """Up to ``limit`` accepted events (``history.replay_events`` order) after ``after``, and
    the other copies of the last one's key at its time: the cursor names no copy, so a page
    never ends between conflicting copies of one event.

    The page starts at the cursor's time and drops the few events of that same millisecond
    that were already read, so every page costs one short query.
    """
    start = since if after is None else max(since or after[0], after[0])
    lines = history.replay_events(client, start, page=limit + 1)
    if after is not None:
        lines = itertools.dropwhile(lambda line: _event_key(line) <= after, lines)
    page = list(itertools.islice(lines, limit))
    if len(page) == limit:
        last = _event_key(page[-1])
        page.extend(itertools.takewhile(lambda line: _event_key(line) == last, lines))
    return page


def _event_key(line: bytes) -> EventKey:
    doc = json.loads(line)
    time = parse_instant(doc["time"])
    assert time is not None  # canonical events carry a valid time
    return time, doc["source"], doc["id"]


class EventHistory(View):
    """Canonical event JSON lines (``application/x-ndjson``), oldest first. A page shorter than
    ``limit`` is the last; the next page is asked with ``after`` = ``[time, source, id]`` of
    the last line (a keyset cursor: pages never overlap, however long the paging takes)."""

    async def get(self, request: Request) -> Response:
        since, after = _instant(request, "since"), _after(request)
        limit = limit_param(request, EVENTS_LIMIT, EVENTS_LIMIT)
        lines = await run_query(_runtime(self).settings, events_page, since, after, limit)
        return self.bytes(
            b"".join(line + b"\n" for line in lines), content_type="application/x-ndjson"
        )


def register(app: Any) -> None:
    """Attach the history API's routes to ``app``."""
    app.page("/api/v1/history/reps/{rep_id}/cumulative")(RepCumulative)
    app.page("/api/v1/history/teams/{team_id}/cumulative")(TeamCumulative)
    app.page("/api/v1/history/period-over-period")(PeriodOverPeriod)
    app.page("/api/v1/history/leaderboard")(HistoryLeaderboard)
    app.page("/api/v1/history/alerts")(AlertHistory)
    app.page("/api/v1/history/rejected")(RejectedByReason)
    app.page("/api/v1/history/events")(EventHistory)
