"""The inputs of an explanation or a recomputation, read back from the ClickHouse history.

The history keeps every accepted event (``activity_events``), every roster change
(``roster_history``) and each event's credits (``credits``, the index by rep). From them the
engine's own rules (``streams.engine.recompute``/``explain``) rebuild any scope's figures:
the events of the period plus every event of each deal won in it (a later win or retraction
outside the period still decides whether that win counts). The roster is today's, as the live
tables use it; ``before`` cuts credit as the live API's ``as_of`` does.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Hashable
from datetime import date, datetime
from typing import Any

from clickhouse_connect.driver import Client

from streams import history
from streams.engine.events import Event
from streams.engine.explain import Explanation, explain
from streams.engine.periods import Period
from streams.engine.recompute import DEAL_TYPES, contributions
from streams.engine.roster import Roster, as_utc
from streams.reference import ReferenceData
from streams.rules import Rules

# Events are read without FINAL (twice as fast): a re-delivered copy not merged yet is the same
# event, and ``recompute.contributions`` keeps one copy of each (source, id). They are read from
# ``counted_events``, without the conflicting copies that lose: a copy for another rep, period or
# deal than the one that counts would otherwise be selected without it.
# The event columns of ``history.event_from_row``; an event's ``data`` object is not needed to
# count or explain it and parsing it was a third of an explanation's time, so it reads as null.
_EVENT_COLUMNS = (
    "source, id, type, time, rep_id, deal_id, amount, currency, amount_base, splits, 'null'"
)

# Deals with a win in the period (for a rep: a win that credits the rep, from ``credits``).
_PERIOD_DEALS = """
SELECT DISTINCT deal_id FROM counted_events
WHERE type = 'deal.won' AND time >= {start:DateTime64(3, 'UTC')}
  AND time < {end:DateTime64(3, 'UTC')}
"""
_REP_DEALS = """
SELECT DISTINCT deal_id FROM credits
WHERE rep_id = {rep:String} AND deal_id IS NOT NULL AND time >= {start:DateTime64(3, 'UTC')}
  AND time < {end:DateTime64(3, 'UTC')}
"""

PERIOD_EVENTS_SQL = f"""
SELECT {_EVENT_COLUMNS} FROM counted_events
WHERE ((time >= {{start:DateTime64(3, 'UTC')}} AND time < {{end:DateTime64(3, 'UTC')}}
        AND type NOT IN {{deal_types:Array(String)}})
       OR deal_id IN ({_PERIOD_DEALS}))
"""

REP_EVENTS_SQL = f"""
SELECT {_EVENT_COLUMNS} FROM counted_events
WHERE ((rep_id = {{rep:String}} AND type NOT IN {{deal_types:Array(String)}}
        AND time >= {{start:DateTime64(3, 'UTC')}} AND time < {{end:DateTime64(3, 'UTC')}})
       OR deal_id IN ({_REP_DEALS}))
"""

# Every roster change in the order the mirror applied it (one partition, by offset).
ROSTER_SQL = """
SELECT kind, rep_id, team_id, name, parent_id, ifNull(effective_at, effective_from), deleted
FROM roster_history FINAL
ORDER BY kafka_partition, kafka_offset
"""


# The rep board's "explain" table: a rep's newest credits of a metric, each marked as the deal
# rules mark it (superseded: not the deal's latest win by (time, id, source); retracted: a
# deal.lost/deal.reopened later than that win). Times are the history's milliseconds, so two
# wins of one deal within the same millisecond may be ordered differently than by the engine;
# the explain API (streams.engine.explain) is exact.
RECENT_CREDITS_SQL = """
SELECT c.time AS time, c.metric AS metric, c.credit AS value, c.share AS share,
       c.deal_id AS deal_id, c.amount AS amount, c.currency AS currency, c.rate AS rate,
       concat(c.source, '/', c.id) AS event, c.type AS type,
       multiIf(c.deal_id IS NULL, 'counted',
               tuple(c.time, c.id, c.source) != d.latest_win, 'superseded',
               d.latest_end > d.latest_win, 'retracted',
               'counted') AS status
FROM (
    SELECT * FROM credits FINAL
    WHERE rep_id = {rep:String} AND metric = {metric:String}
      AND (source, id, copy) NOT IN (SELECT source, id, copy FROM losing_copies)
    ORDER BY time DESC, source, id
    LIMIT {limit:UInt32}
) AS c
LEFT JOIN (
    SELECT deal_id,
           maxIf(tuple(time, id, source), type = 'deal.won') AS latest_win,
           maxIf(tuple(time, id, source), type != 'deal.won') AS latest_end
    FROM counted_events
    WHERE deal_id IN (
        SELECT deal_id FROM credits WHERE rep_id = {rep:String} AND deal_id IS NOT NULL
    )
    GROUP BY deal_id
) AS d ON d.deal_id = c.deal_id
ORDER BY time DESC, event
"""

# The sales floor's "last reconciled": the newest run, when and with how many differences.
LAST_RECONCILED_SQL = """
SELECT toUnixTimestamp64Milli(finished_at) AS last_reconciled, differences, period
FROM reconciliations
ORDER BY finished_at DESC
LIMIT 1
"""


def period_events(client: Client, period: Period) -> list[Event]:
    """Every event a figure of ``period`` can depend on, for any scope."""
    return _events(client, PERIOD_EVENTS_SQL, period)


def rep_events(client: Client, rep_id: str, period: Period) -> list[Event]:
    """The events a rep's figures of ``period`` depend on: the rep's activities in it and
    every event of the deals whose wins in it credit the rep."""
    return _events(client, REP_EVENTS_SQL, period, rep=rep_id)


def roster(client: Client) -> Roster:
    """The roster rebuilt from its recorded changes, as the worker's mirror builds it."""
    data = ReferenceData()
    rows = client.query(ROSTER_SQL).result_rows
    for kind, rep_id, team_id, name, parent_id, effective_from, deleted in rows:
        data.apply_roster(
            None
            if deleted
            else _roster_record(kind, rep_id, team_id, name, parent_id, effective_from)
        )
    return data.roster


# Every active part of the tables an explanation reads: an insert or a merge makes a new part
# (a new name), so an unchanged list means an unchanged history.
HISTORY_VERSION_SQL = """
SELECT groupArray(part) FROM (
    SELECT concat(table, '/', name) AS part FROM system.parts
    WHERE database = currentDatabase() AND active
      AND table IN ('activity_events', 'credits', 'roster_history')
    ORDER BY part
)
"""


class ExplanationCache:
    """The last few explanations, reused while the history is unchanged: paging through a
    figure's contributions computes them once. Keyed by the history's parts, so a page is
    never answered from a history that has changed since; very long listings (the company
    over a busy quarter) are not kept, to bound memory."""

    def __init__(self, entries: int = 8, max_lines: int = 100_000) -> None:
        self.entries = entries
        self.max_lines = max_lines
        self._lock = threading.Lock()
        self._cached: OrderedDict[Hashable, Explanation] = OrderedDict()

    def explanation(
        self,
        client: Client,
        rules: Rules,
        scope: tuple[str, str],
        metric: str,
        period: Period,
        before: datetime | None = None,
    ) -> Explanation:
        """:func:`explanation`, from the cache when the history has not changed."""
        parts = tuple(client.query(HISTORY_VERSION_SQL).result_rows[0][0])
        key = (scope, metric, period.label, before, parts)
        with self._lock:
            found = self._cached.get(key)
            if found is not None:
                self._cached.move_to_end(key)
                return found
        found = explanation(client, rules, scope, metric, period, before)
        if len(found.lines) <= self.max_lines:
            with self._lock:
                self._cached[key] = found
                while len(self._cached) > self.entries:
                    self._cached.popitem(last=False)
        return found


def explanation(
    client: Client,
    rules: Rules,
    scope: tuple[str, str],
    metric: str,
    period: Period,
    before: datetime | None = None,
) -> Explanation:
    """The contributions behind ``scope``'s ``metric`` in ``period``, from the history
    (``before``: only those dated before that instant)."""
    if scope[0] == "rep":
        events = rep_events(client, scope[1], period)
    else:
        events = period_events(client, period)
    return explain(
        contributions(events, rules.catalog),
        roster(client),
        rules.calendar,
        rules.rates,
        scope,
        metric,
        period,
        before,
    )


def _events(client: Client, sql: str, period: Period, **parameters: Any) -> list[Event]:
    rows = client.query(
        sql,
        parameters={
            "start": period.start,
            "end": period.end,
            "deal_types": list(DEAL_TYPES),
            **parameters,
        },
    ).result_rows
    return [history.event_from_row(row) for row in rows]


def _roster_record(
    kind: str,
    rep_id: str | None,
    team_id: str | None,
    name: str | None,
    parent_id: str | None,
    effective_from: date | datetime | None,
) -> dict[str, Any]:
    return {
        "kind": kind,
        "rep_id": rep_id,
        "team_id": team_id,
        "name": name,
        "parent_id": parent_id,
        "effective_from": None if effective_from is None else _text(effective_from),
    }


def _text(effective: date | datetime) -> str:
    """As the mirror receives it: a date (midnight UTC) or an instant (ClickHouse: naive UTC)."""
    if isinstance(effective, datetime):
        return as_utc(effective).isoformat()
    return effective.isoformat()
