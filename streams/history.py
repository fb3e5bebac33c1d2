"""History queries, shared by the ``/api/v1/history/...`` routes, the CLI and the dashboards.

Every query is a module constant (``*_SQL``, ClickHouse ``{name:Type}`` parameters, never
formatted user input) so Grafana's ClickHouse panels can run the very same text; the
functions bind the parameters and return plain dicts and lists (decimals as strings, times
as RFC 3339 UTC).

Where the figures come from, and why they are exact:

* Quota figures (value, target, …) are the live engine's own, recorded in
  ``progress_snapshots``. Team attribution, deal splits and retractions are the engine's work
  and are not recomputed here; the newest snapshot of a scope/metric/period is therefore what
  the live table held. Snapshots are read with ``argMax(…, as_of)``, which a re-delivered
  (duplicate) row cannot change, so no ``FINAL`` is needed.
* A snapshot's day is the day it was recorded (``as_of``, in the organisation's time zone):
  the cumulative lines show how the period unfolded as the live tables saw it.
* Events, alerts and dead letters are read deduplicated by their identity (``FINAL`` where
  a row's duplicates share its partition, ``GROUP BY`` the identity otherwise).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from clickhouse_connect.driver import Client

from streams.engine.errors import Invalid
from streams.engine.events import Event, Split
from streams.engine.periods import Calendar, Period

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
FOREVER = datetime(2299, 12, 31, tzinfo=UTC)  # within DateTime64(3)'s range
REPLAY_PAGE = 10_000


class BadQuery(ValueError):
    """A query parameter is unusable; ``invalid`` says which and why (API: 400)."""

    def __init__(self, invalid: Invalid) -> None:
        super().__init__(invalid.message)
        self.invalid = invalid


# --- SQL ------------------------------------------------------------------------------------------
CUMULATIVE_SQL = """
SELECT toDate(as_of, {tz:String}) AS day,
       argMax(tuple(value, target), as_of) AS figures,
       max(as_of) AS last_as_of
FROM progress_snapshots
WHERE scope = {scope:String} AND id = {id:String}
  AND metric = {metric:String} AND period = {period:String}
GROUP BY day
ORDER BY day
"""

FIGURES_AT_SQL = """
SELECT count() AS snapshots,
       argMax(tuple(value, target, attainment), as_of) AS figures,
       max(as_of) AS last_as_of
FROM progress_snapshots
WHERE scope = {scope:String} AND id = {id:String}
  AND metric = {metric:String} AND period = {period:String}
  AND as_of <= {at:DateTime64(3, 'UTC')}
"""

# Roster records as they stand now (newest change per key, tombstones dropped); a rep's team
# for a period is the record with the latest effective_from before the period's end.
# argMax skips NULL arguments, hence the tuples (never NULL) around nullable columns.
TEAM_AT_SQL = """
SELECT rep AS rep_id,
       tupleElement(argMax(tuple(team, rep_name), ifNull(effective, toDate(0))), 1) AS team_id,
       tupleElement(argMax(tuple(team, rep_name), ifNull(effective, toDate(0))), 2) AS name
FROM (
    SELECT argMax(tuple(deleted, rep_id, team_id, name, effective_from), kafka_offset) AS latest,
           tupleElement(latest, 1) AS gone,
           tupleElement(latest, 2) AS rep,
           tupleElement(latest, 3) AS team,
           tupleElement(latest, 4) AS rep_name,
           tupleElement(latest, 5) AS effective
    FROM roster_history
    WHERE kind = 'rep'
    GROUP BY key
)
WHERE gone = 0 AND (effective IS NULL OR effective < {until:Date})
GROUP BY rep
"""

LEADERBOARD_SQL = f"""
SELECT s.id AS rep_id, m.name AS name, m.team_id AS team_id,
       tupleElement(s.figures, 1) AS value,
       tupleElement(s.figures, 2) AS target,
       tupleElement(s.figures, 3) AS attainment,
       s.last_as_of AS as_of
FROM (
    SELECT id,
           argMax(tuple(value, target, attainment), as_of) AS figures,
           max(as_of) AS last_as_of
    FROM progress_snapshots
    WHERE scope = 'rep' AND metric = {{metric:String}} AND period = {{period:String}}
    GROUP BY id
) AS s
LEFT JOIN ({TEAM_AT_SQL}) AS m ON m.rep_id = s.id
WHERE {{team:String}} = '' OR m.team_id = {{team:String}}
ORDER BY value DESC, rep_id
LIMIT {{limit:UInt32}}
"""

ALERT_HISTORY_SQL = """
SELECT alert_id, scope, id, name, team_id, metric, period, from_status, to_status,
       value, target, pace, gap, at
FROM alerts FINAL
WHERE ({scope:String} = '' OR scope = {scope:String})
  AND ({id:String} = '' OR id = {id:String})
  AND at >= {since:DateTime64(3, 'UTC')}
ORDER BY at DESC, alert_id
LIMIT {limit:UInt32}
"""

# A dead letter produced twice may fall into two monthly partitions: deduplicate by identity.
REJECTED_BY_REASON_SQL = """
SELECT code AS error_code, count() AS events, min(first_rejected) AS first_at,
       max(first_rejected) AS last_at, argMax(message, first_rejected) AS example
FROM (
    SELECT argMin(error_code, rejected_at) AS code,
           argMin(error_message, rejected_at) AS message,
           min(rejected_at) AS first_rejected
    FROM rejected_events
    GROUP BY source_topic, source_partition, source_offset
)
WHERE first_rejected >= {since:DateTime64(3, 'UTC')}
GROUP BY code
ORDER BY events DESC, error_code
"""

LATEST_PROGRESS_SQL = """
SELECT scope, id, metric, period, period_type,
       argMax(tuple(value, target, attainment, expected, pace, `projection`, gap, status), as_of),
       max(as_of)
FROM progress_snapshots
WHERE ({scope:String} = '' OR scope = {scope:String})
  AND ({period:String} = '' OR period = {period:String})
GROUP BY scope, id, metric, period, period_type
ORDER BY scope, id, metric, period
"""

# Keyset pages in event-time order: each page is its own short query (no long-held stream).
REPLAY_EVENTS_SQL = """
SELECT source, id, type, time, rep_id, deal_id, amount, currency, amount_base, splits, data, copy
FROM activity_events FINAL
WHERE time >= {since:DateTime64(3, 'UTC')}
  AND (time, source, id, copy) > ({after_time:DateTime64(3, 'UTC')}, {after_source:String},
                                  {after_id:String}, {after_copy:UInt64})
ORDER BY time, source, id, copy
LIMIT {limit:UInt32}
"""

FIGURES = ("value", "target", "attainment", "expected", "pace", "projection", "gap", "status")


# --- queries --------------------------------------------------------------------------------------
def rep_cumulative(
    client: Client,
    rep_id: str,
    metric: str,
    period_label: str,
    calendar: Calendar,
    *,
    now: datetime | None = None,
) -> dict[str, Any]:
    """A rep's value per day of a period against the target line (see :func:`cumulative`)."""
    return cumulative(client, "rep", rep_id, metric, period_label, calendar, now=now)


def team_cumulative(
    client: Client,
    team_id: str,
    metric: str,
    period_label: str,
    calendar: Calendar,
    *,
    now: datetime | None = None,
) -> dict[str, Any]:
    """A team's value per day of a period against the target line (see :func:`cumulative`)."""
    return cumulative(client, "team", team_id, metric, period_label, calendar, now=now)


def cumulative(
    client: Client,
    scope: str,
    scope_id: str,
    metric: str,
    period_label: str,
    calendar: Calendar,
    *,
    now: datetime | None = None,
) -> dict[str, Any]:
    """Per day of the period (up to today): the value at the day's end, its target, and the
    target line ``expected`` = target × elapsed fraction at the day's end (``Calendar.expected``,
    so business days count when configured). Before the first snapshot a day's value is None.
    """
    period = _period(calendar, period_label)
    rows = client.query(
        CUMULATIVE_SQL,
        parameters={
            "tz": calendar.tz,
            "scope": scope,
            "id": scope_id,
            "metric": metric,
            "period": period.label,
        },
    ).result_rows
    by_day = {day: (*figures, as_of) for day, figures, as_of in rows}
    last_day = min(_local_date(period.end, calendar) - timedelta(days=1), _today(calendar, now))
    days = []
    value = target = as_of = None
    day = _local_date(period.start, calendar)
    while day <= last_day:
        if day in by_day:
            value, target, as_of = by_day[day]
        end = min(_period(calendar, day.isoformat()).end, period.end)
        expected = None if target is None else target * calendar.expected(period, end)
        days.append(
            {
                "day": day.isoformat(),
                "value": _text(value),
                "target": _text(target),
                "expected": _text(expected),
                "as_of": _instant(as_of),
            }
        )
        day += timedelta(days=1)
    return {**_head(scope, scope_id, metric, period), "days": days}


def period_over_period(
    client: Client,
    scope: str,
    scope_id: str,
    metric: str,
    period_label: str,
    calendar: Calendar,
) -> dict[str, Any]:
    """This period against the one before: both final (newest) figures, and the previous
    period's value at the same point of its course (same elapsed share of its length) as the
    current period's newest snapshot, which is the fair comparison while a period runs."""
    period = _period(calendar, period_label)
    previous = calendar.current(period.type, period.start - timedelta(microseconds=1))
    current_figures = _figures_at(client, scope, scope_id, metric, period, FOREVER)
    previous_final = _figures_at(client, scope, scope_id, metric, previous, FOREVER)
    same_point = None
    previous_then: dict[str, Any] | None = None
    if current_figures is not None:
        as_of = datetime.fromisoformat(current_figures["as_of"])
        share = (min(as_of, period.end) - period.start) / (period.end - period.start)
        same_point = previous.start + (previous.end - previous.start) * max(share, 0.0)
        previous_then = _figures_at(client, scope, scope_id, metric, previous, same_point)
    change = None
    if current_figures is not None and previous_then is not None:
        change = Decimal(current_figures["value"]) - Decimal(previous_then["value"])
    return {
        **_head(scope, scope_id, metric, period),
        "current": current_figures,
        "previous": {
            "period": previous.label,
            "final": previous_final,
            "same_point": _instant(same_point),
            "at_same_point": previous_then,
        },
        "change": _text(change),
        "change_ratio": _text(
            None
            if change is None or previous_then is None or Decimal(previous_then["value"]) == 0
            else change / Decimal(previous_then["value"])
        ),
    }


def leaderboard(
    client: Client,
    metric: str,
    period_label: str,
    calendar: Calendar,
    *,
    limit: int = 10,
    team: str | None = None,
) -> dict[str, Any]:
    """Reps ranked by their final value of ``metric`` in a (past or running) period; ``team``
    restricts to the reps whose roster record at the period's end puts them in that team."""
    period = _period(calendar, period_label)
    _check_limit(limit)
    rows = client.query(
        LEADERBOARD_SQL,
        parameters={
            "metric": metric,
            "period": period.label,
            "until": _local_date(period.end, calendar),
            "team": team or "",
            "limit": limit,
        },
    ).result_rows
    entries = [
        {
            "rank": rank,
            "rep_id": rep_id,
            "name": name,
            "team_id": team_id,
            "value": _text(value),
            "target": _text(target),
            "attainment": _text(attainment),
            "as_of": _instant(as_of),
        }
        for rank, (rep_id, name, team_id, value, target, attainment, as_of) in enumerate(rows, 1)
    ]
    return {
        "metric": metric,
        "period": period.label,
        "period_type": period.type,
        "team": team,
        "entries": entries,
    }


def alert_history(
    client: Client,
    *,
    scope: str | None = None,
    scope_id: str | None = None,
    since: datetime | None = None,
    limit: int = 100,
) -> list[dict[str, Any]]:
    """Status changes, newest first, optionally for one scope (and id) and since an instant."""
    _check_limit(limit)
    rows = client.query(
        ALERT_HISTORY_SQL,
        parameters={
            "scope": scope or "",
            "id": scope_id or "",
            "since": since or EPOCH,
            "limit": limit,
        },
    )
    return [_jsonable(dict(zip(rows.column_names, row, strict=True))) for row in rows.result_rows]


def rejected_by_reason(client: Client, *, since: datetime | None = None) -> list[dict[str, Any]]:
    """Dead letters per error code (count, first and last time, one example message)."""
    rows = client.query(REJECTED_BY_REASON_SQL, parameters={"since": since or EPOCH})
    return [_jsonable(dict(zip(rows.column_names, row, strict=True))) for row in rows.result_rows]


def latest_progress(
    client: Client, *, scope: str | None = None, period: str | None = None
) -> list[dict[str, Any]]:
    """The newest snapshot per scope/id/metric/period: what the live tables held last."""
    rows = client.query(
        LATEST_PROGRESS_SQL, parameters={"scope": scope or "", "period": period or ""}
    ).result_rows
    return [
        {
            "scope": s,
            "id": i,
            "metric": m,
            "period": p,
            "period_type": t,
            **_jsonable(dict(zip(FIGURES, figures, strict=True))),
            "as_of": _instant(as_of),
        }
        for s, i, m, p, t, figures, as_of in rows
    ]


def replay_events(
    client: Client, since: datetime | None = None, *, page: int = REPLAY_PAGE
) -> Iterator[bytes]:
    """Accepted events (deduplicated; conflicting copies of one key each once) in event-time
    order, as canonical ``spm.events`` JSON (equal values; decimals written without trailing
    zeros), read ``page`` rows per query."""
    after: tuple[datetime, str, str, int] = (EPOCH - timedelta(milliseconds=1), "", "", 0)
    while True:
        rows = client.query(
            REPLAY_EVENTS_SQL,
            parameters={
                "since": since or EPOCH,
                "after_time": after[0],
                "after_source": after[1],
                "after_id": after[2],
                "after_copy": after[3],
                "limit": page,
            },
        ).result_rows
        for row in rows:
            yield event_from_row(row[:-1]).to_json()
        if len(rows) < page:
            return
        last = rows[-1]
        after = (last[3], last[0], last[1], last[-1])


# --- helpers --------------------------------------------------------------------------------------
def _period(calendar: Calendar, label: str) -> Period:
    period = calendar.parse(label)
    if isinstance(period, Invalid):
        raise BadQuery(period)
    return period


def _check_limit(limit: int) -> None:
    if limit < 1:
        raise BadQuery(Invalid("bad_limit", "limit must be at least 1", "limit"))


def _figures_at(
    client: Client, scope: str, scope_id: str, metric: str, period: Period, at: datetime
) -> dict[str, Any] | None:
    parameters = {
        "scope": scope,
        "id": scope_id,
        "metric": metric,
        "period": period.label,
        "at": at,
    }
    count, (value, target, attainment), as_of = client.query(
        FIGURES_AT_SQL, parameters=parameters
    ).result_rows[0]
    if count == 0:
        return None
    return {
        "period": period.label,
        "value": _text(value),
        "target": _text(target),
        "attainment": _text(attainment),
        "as_of": _instant(as_of),
    }


def event_from_row(row: Sequence[Any]) -> Event:
    """An ``activity_events`` row (``REPLAY_EVENTS_SQL`` columns before ``copy``) as the engine's
    event."""
    source, id_, type_, time, rep_id, deal_id, amount, currency, amount_base, splits, data = row
    return Event(
        source=source,
        id=id_,
        type=type_,
        time=_utc(time),
        rep_id=rep_id,
        deal_id=deal_id,
        amount=_plain(amount),
        currency=currency,
        amount_base=_plain(amount_base),
        splits=None
        if splits is None
        else tuple(Split(s["rep_id"], Decimal(s["share"])) for s in json.loads(splits)),
        data=json.loads(data),
    )


def _head(scope: str, scope_id: str, metric: str, period: Period) -> dict[str, Any]:
    return {
        "scope": scope,
        "id": scope_id,
        "metric": metric,
        "period": period.label,
        "period_type": period.type,
        "start": _instant(period.start),
        "end": _instant(period.end),
    }


def _local_date(t: datetime, calendar: Calendar) -> date:
    return t.astimezone(calendar.zone).date()


def _today(calendar: Calendar, now: datetime | None) -> date:
    return _local_date(now or datetime.now(UTC), calendar)


def _utc(t: datetime) -> datetime:
    """ClickHouse returns DateTime64(3, 'UTC') values naive; they are UTC."""
    return t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)


def _plain(value: Decimal | None) -> Decimal | None:
    """A stored decimal without the column's trailing zeros (``12.50…0`` → ``12.5``)."""
    if value is None:
        return None
    normal = value.normalize()
    return normal.quantize(Decimal(1)) if normal == normal.to_integral() else normal


def _text(value: Decimal | None) -> str | None:
    plain = _plain(value)
    return None if plain is None else format(plain, "f")


def _instant(t: datetime | None) -> str | None:
    return None if t is None else _utc(t).isoformat()


def _jsonable(row: dict[str, Any]) -> dict[str, Any]:
    return {
        name: _text(v) if isinstance(v, Decimal) else _instant(v) if isinstance(v, datetime) else v
        for name, v in row.items()
    }
