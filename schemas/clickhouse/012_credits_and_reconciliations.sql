-- Credits as applied, the results of reconciliation runs, roster changes' exact instants.
--
-- credits: one row per accepted event, credited rep and metric — what the event credits if
-- it counts (streams.engine.recompute.claims: an activity 1, a won deal its split part in
-- base currency, or its share for counts), with the deal's own amount, currency and the rate
-- used. Written by the sink from the same decoded event as its activity_events row, so a
-- re-delivered event writes the identical row (sorting key = identity, ReplacingMergeTree;
-- the time never changes, so copies share a monthly partition). Whether a credit still counts
-- (a later win superseded it, a later deal.lost/deal.reopened retracted it) and which win it
-- replaced follow from the deal's events in activity_events; explain and reconcile derive it
-- there with the engine's rules (streams.engine.explain), and so does the rep board's query.
-- The team is not stored: it is read from roster_history with the engine's roster rule
-- whenever a credit is explained, so a retroactive roster fix moves it like the live figures.
CREATE TABLE IF NOT EXISTS credits
(
    rep_id      String,
    metric      LowCardinality(String),
    time        DateTime64(3, 'UTC'),
    source      LowCardinality(String),
    id          String,
    type        LowCardinality(String),
    deal_id     Nullable(String),
    share       Decimal(76, 38),
    credit      Decimal(76, 38) COMMENT 'base currency for amount metrics, the share for counts',
    amount      Nullable(Decimal(76, 38)) COMMENT 'the whole deal, in its own currency',
    currency    LowCardinality(Nullable(String)),
    rate        Nullable(Decimal(76, 38)) COMMENT 'base units per unit of currency at time',
    ingest_time DateTime64(3, 'UTC') COMMENT 'when the pipeline accepted it (Kafka timestamp)'
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(time)
ORDER BY (rep_id, metric, time, source, id);

-- One row per `spm reconcile` run: every scope's figures of a period recomputed from this
-- history against the live API; details holds the differences as a JSON array.
CREATE TABLE IF NOT EXISTS reconciliations
(
    run_id      String,
    period      LowCardinality(String),
    started_at  DateTime64(3, 'UTC'),
    finished_at DateTime64(3, 'UTC'),
    events      UInt64 COMMENT 'accepted events read from history',
    figures     UInt32 COMMENT 'figures (scope, id, metric) compared',
    differences UInt32,
    details     String COMMENT 'JSON array of {scope, id, metric, history, live}'
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(finished_at)
ORDER BY (period, finished_at, run_id);

-- A roster change's effective instant as sent (effective_from keeps only its date), so the
-- roster rebuilt from history (explain, reconcile) moves a rep at the same instant as the
-- worker's mirror does. NULL for rows written before this migration and for teams.
ALTER TABLE roster_history
    ADD COLUMN IF NOT EXISTS effective_at Nullable(DateTime64(6, 'UTC'));
