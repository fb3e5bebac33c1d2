"""Explain and reconcile routes: why a figure is what it is, and proof that it is right.

``GET /api/v1/{reps/<id>|teams/<id>|company}/explain?metric=&period=&as_of=&limit=&cursor=``
lists the contributions behind a figure from the ClickHouse history (``credit_history``), newest
first, paged by a keyset ``cursor`` (``next_cursor`` of the previous page); ``period`` and
``as_of`` mean what they mean for progress (``as_of``: credit dated before the end of that
day). ``POST /api/v1/admin/reconcile?period=`` runs ``streams.reconcile`` here, for the
``spm reconcile`` command while this worker holds the embedded chDB path. Both answer from the
worker whose history store ``SPM_CLICKHOUSE_URL`` names (others answer 503, as the history
routes do).
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import structlog
from clickhouse_connect.driver.exceptions import ClickHouseError
from faust.web import Request, Response, View
from faust.web.exceptions import ValidationError

from streams import credit_history, reconcile
from streams.chclient import get_client
from streams.engine.errors import Invalid
from streams.engine.explain import Line, LineKey
from streams.engine.instants import format_instant, parse_instant
from streams.engine.money import decimal_text
from streams.engine.periods import Period
from streams.engine.scopes import COMPANY
from streams.web import Query, forwarded_headers, limit_param, metric_param
from streams.web_history import Unavailable, period_label, require_known, run_query

log = structlog.get_logger(__name__)

EXPLAIN_LIMIT, EXPLAIN_MAX = 100, 1000
#: Explanations of this worker's history store, reused while it is unchanged (paging).
CACHE = credit_history.ExplanationCache()


def _parsed_period(request: Request, rt: Any) -> Period:
    period = rt.rules.calendar.parse(period_label(request, rt.rules.calendar))
    if isinstance(period, Invalid):
        raise ValidationError(period.message, field="period")
    return period


def _cursor(request: Request) -> LineKey | None:
    """``cursor``: the JSON array ``[time, source, id, rep_id]`` of the last line read."""
    raw: str | None = request.query.get("cursor")
    if raw is None:
        return None
    try:
        time, source, event_id, rep_id = json.loads(raw)
        instant = parse_instant(time)
        if instant is None or not all(isinstance(v, str) for v in (source, event_id, rep_id)):
            raise ValueError(raw)
    except (ValueError, TypeError):
        raise ValidationError(
            "cursor must be the next_cursor of the previous page", field="cursor"
        ) from None
    return instant, source, event_id, rep_id


def _settle(request: Request) -> float:
    raw: str = request.query.get("settle", str(reconcile.DEFAULT_SETTLE))
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not 0 <= value <= reconcile.MAX_SETTLE:
        raise ValidationError(
            f"settle must be a number of seconds from 0 to {reconcile.MAX_SETTLE:g}",
            field="settle",
        )
    return value


def cursor_text(key: LineKey) -> str:
    time, source, event_id, rep_id = key
    return json.dumps([format_instant(time), source, event_id, rep_id])


def line_json(line: Line) -> dict[str, Any]:
    c = line.contribution
    e, claim = c.event, c.claim

    def ref(other: Any) -> dict[str, str] | None:
        if other is None:
            return None
        return {
            "source": other.source,
            "id": other.id,
            "type": other.type,
            "time": format_instant(other.time),
        }

    return {
        "event": ref(e),
        "rep_id": claim.rep_id,
        "teams": list(line.teams),
        "deal_id": e.deal_id,
        "share": decimal_text(claim.share),
        "value": decimal_text(claim.credit),
        "amount": None if e.amount is None else decimal_text(e.amount),
        "currency": e.currency,
        "rate": None if line.rate is None else decimal_text(line.rate),
        "amount_base": None if e.amount_base is None else decimal_text(e.amount_base),
        "status": c.status,
        "counted": line.counts,
        "replaces": ref(c.replaces),
        "by": ref(c.by),
        "reason": line.reason,
    }


async def _explain(view: View, scope: tuple[str, str], request: Request) -> Response:
    rt = view.app.runtime  # type: ignore[attr-defined]
    metric = metric_param(request, rt.rules.catalog)
    query = Query.parse(request, rt.rules.calendar)  # period, and as_of as the live API reads it
    period, before = query.period, (None if query.day is None else query.as_of)
    limit = limit_param(request, EXPLAIN_LIMIT, EXPLAIN_MAX)
    cursor = _cursor(request)
    found = await run_query(rt.settings, CACHE.explanation, rt.rules, scope, metric, period, before)
    if not found.lines:
        require_known(rt, *scope, f"{scope[0]}_id")
    lines, next_key = found.page(cursor, limit)
    return view.json(
        {
            "scope": scope[0],
            "id": scope[1],
            "metric": metric,
            "period": period.label,
            "period_type": period.type,
            "as_of": None if before is None else format_instant(before),
            "as_of_day": query.day,
            "total": decimal_text(found.total),
            "contributions": len(found.lines),
            "counted": found.counted,
            "lines": [line_json(line) for line in lines],
            "next_cursor": None if next_key is None else cursor_text(next_key),
        }
    )


class RepExplain(View):
    async def get(self, request: Request, rep_id: str) -> Response:
        return await _explain(self, ("rep", rep_id), request)


class TeamExplain(View):
    async def get(self, request: Request, team_id: str) -> Response:
        return await _explain(self, ("team", team_id), request)


class CompanyExplain(View):
    async def get(self, request: Request) -> Response:
        return await _explain(self, COMPANY, request)


class Reconcile(View):
    """Runs a reconciliation on this worker's history against the live API (this worker's
    own, which forwards each scope to its owner), records it and answers the result."""

    async def post(self, request: Request) -> Response:
        rt = self.app.runtime  # type: ignore[attr-defined]
        period = _parsed_period(request, rt)
        settle = _settle(request)
        url = rt.settings.advertised_url
        headers = forwarded_headers(request)

        def run() -> reconcile.Result:
            client = get_client(rt.settings)
            with httpx.Client(base_url=url, timeout=reconcile.API_TIMEOUT) as http:
                result = reconcile.reconcile(
                    client,
                    rt.rules,
                    period,
                    reconcile.api_figures(http, period.label, headers),
                    settle=settle,
                )
            reconcile.record(client, result)
            return result

        try:
            result = await asyncio.to_thread(run)
        except reconcile.LiveUnavailable as exc:
            raise Unavailable(str(exc)) from exc
        except ClickHouseError as exc:
            log.warning("reconcile.history_failed", error=str(exc))
            raise Unavailable() from exc
        return self.json(result.to_dict())


def register(app: Any) -> None:
    """Attach the explain and reconcile routes to ``app``."""
    app.page("/api/v1/reps/{rep_id}/explain")(RepExplain)
    app.page("/api/v1/teams/{team_id}/explain")(TeamExplain)
    app.page("/api/v1/company/explain")(CompanyExplain)
    app.page("/api/v1/admin/reconcile")(Reconcile)
