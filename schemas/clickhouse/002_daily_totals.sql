-- Daily per-rep and per-team (and company) totals per metric, for the dashboards' speed:
-- for every scope/id/metric/period and UTC day, the period's value (and target) as of the
-- day's last snapshot. For period_type 'day' that is the day's own total; for longer periods
-- it is the cumulative line the dashboards draw.
--
-- Why this view is exact although it reads a ReplacingMergeTree: a materialized view sees
-- every inserted block, duplicates included, so a sum or count would double a re-delivered
-- row. argMax(x, as_of) is insensitive to duplicates (a repeated snapshot has the same as_of
-- and the same figures), so the merged state equals the state of the deduplicated base table.
-- The figures travel as one tuple because argMax skips NULL arguments: a target removed
-- (NULL) must win over an older target, and a tuple is never NULL.
-- Team attribution, deal splits and retractions are the live engine's work and arrive here
-- already applied in its progress figures. Read with
--   SELECT day, argMaxMerge(figures_state).value ... FROM daily_totals WHERE ... GROUP BY day
CREATE TABLE IF NOT EXISTS daily_totals
(
    scope       LowCardinality(String),
    id          String,
    metric      LowCardinality(String),
    period      LowCardinality(String),
    period_type LowCardinality(String),
    day         Date,
    figures_state AggregateFunction(
        argMax, Tuple(value Decimal(76, 38), target Nullable(Decimal(76, 38))), DateTime64(3, 'UTC')
    ),
    last_as_of    SimpleAggregateFunction(max, DateTime64(3, 'UTC'))
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(day)
ORDER BY (scope, id, metric, period_type, period, day);

CREATE MATERIALIZED VIEW IF NOT EXISTS daily_totals_mv TO daily_totals AS
SELECT
    scope,
    id,
    metric,
    period,
    period_type,
    toDate(as_of) AS day,
    argMaxState(CAST((value, target), 'Tuple(value Decimal(76, 38), target Nullable(Decimal(76, 38)))'), as_of)
        AS figures_state,
    max(as_of) AS last_as_of
FROM progress_snapshots
GROUP BY scope, id, metric, period, period_type, day;
