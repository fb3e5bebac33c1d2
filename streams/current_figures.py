"""Queries of the ``current_figures`` table (migration 013): the newest exact figures per
scope/id/metric/period, written by the ClickHouse sink from every progress message.

The boards' leaderboard, team standings and a rep's progress table run these (bound to their
variables by ``dashboards.build.grafana_sql``), so what they show are the engine's decimals,
not Prometheus' floats. "Current" is the newest period label of the type that has figures
(labels of one type sort in time order), so the boards need no calendar of their own.
"""

from __future__ import annotations

from typing import Final

from streams.history import TEAM_AT_SQL

_CURRENT_PERIOD: Final = (
    "(SELECT max(period) FROM current_figures WHERE period_type = {period_type:String})"
)

#: Reps by value (ties by id, as the API ranks them) in the current period of a type; ``team``
#: is a regular expression the rep's current team must match whole (``.*``: everyone).
LEADERBOARD_SQL: Final = f"""
SELECT f.id AS id, ifNull(m.name, f.id) AS name, ifNull(m.team_id, '') AS team,
       f.value AS value, f.target AS target, f.attainment AS attainment, f.as_of AS as_of
FROM current_figures AS f FINAL
LEFT JOIN ({TEAM_AT_SQL}) AS m ON m.rep_id = f.id
WHERE f.scope = 'rep' AND f.metric = {{metric:String}} AND f.period = {_CURRENT_PERIOD}
  AND match(team, concat('^(', {{team:String}}, ')$'))
ORDER BY f.value DESC, id
LIMIT {{limit:UInt32}}
"""

#: Teams matching ``team`` (a regular expression, whole id) by attainment in the current period.
TEAM_STANDINGS_SQL: Final = f"""
SELECT id, value, target, attainment, gap, as_of
FROM current_figures FINAL
WHERE scope = 'team' AND metric = {{metric:String}} AND period = {_CURRENT_PERIOD}
  AND match(id, concat('^(', {{team:String}}, ')$'))
ORDER BY attainment DESC NULLS LAST, id
"""

#: One scope's figures per metric in the current period of a type.
PROGRESS_SQL: Final = f"""
SELECT metric, value, target, attainment, gap, as_of
FROM current_figures FINAL
WHERE scope = {{scope:String}} AND id = {{id:String}} AND period = {_CURRENT_PERIOD}
ORDER BY metric
"""
