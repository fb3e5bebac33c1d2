-- Current figures (issue 13): the newest figures of every scope/id/metric/period, exact
-- decimals, for the boards' leaderboard, team standings and progress tables (Prometheus holds
-- floats of a few of them only). The sink writes every spm.progress message here, unsampled;
-- ReplacingMergeTree(as_of) keeps the newest per key on merge, and readers use FINAL so a
-- not-yet-merged older row never shows. value/target/attainment/gap are the engine's exact
-- figures as of `as_of` (the last change of the value); pace and status move with time and are
-- Prometheus' (recorded rules) on the boards. Numbered 013 after its issue: migrations apply in
-- version order and gaps are allowed, so concurrent branches do not compete for 003.
CREATE TABLE IF NOT EXISTS current_figures
(
    scope       LowCardinality(String),
    id          String,
    metric      LowCardinality(String),
    period      LowCardinality(String),
    period_type LowCardinality(String),
    as_of       DateTime64(3, 'UTC'),
    value       Decimal(76, 38),
    target      Nullable(Decimal(76, 38)),
    attainment  Nullable(Decimal(76, 38)),
    expected    Nullable(Decimal(76, 38)),
    pace        Nullable(Decimal(76, 38)),
    `projection` Nullable(Decimal(76, 38)),
    gap         Nullable(Decimal(76, 38)),
    status      LowCardinality(Nullable(String))
)
ENGINE = ReplacingMergeTree(as_of)
ORDER BY (scope, id, metric, period);
