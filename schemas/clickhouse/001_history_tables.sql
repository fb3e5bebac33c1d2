-- History tables: everything the pipeline accepted or rejected, as written by the ClickHouse
-- sink (streams/sinks/clickhouse.py). The sink delivers at least once, so every table is a
-- ReplacingMergeTree whose sorting key is the row's natural identity: a re-delivered message
-- collapses into the row it repeats. Duplicates remain visible until a merge, so exact queries
-- (streams/history.py) read with FINAL or with duplicate-insensitive aggregates (argMax).
-- Kafka timestamps, not insert times, fill the time columns, so a repeat is byte-identical.
-- Money and figures are Decimal(76, 38): the engine computes in 28 significant digits (a
-- converted amount may carry 26 decimals), and this type holds every such value exactly, so
-- history equals the live tables to the last digit.

-- Accepted events from topic spm.events (canonical JSON of streams.engine.events.Event).
-- Partitioned by month of event time; an event's time never changes, so its duplicates
-- always land in the same partition, where ReplacingMergeTree collapses them.
CREATE TABLE IF NOT EXISTS activity_events
(
    source          LowCardinality(String),
    id              String,
    type            LowCardinality(String),
    time            DateTime64(3, 'UTC'),
    rep_id          String,
    deal_id         Nullable(String),
    amount          Nullable(Decimal(76, 38)),
    currency        LowCardinality(Nullable(String)),
    amount_base     Nullable(Decimal(76, 38)),
    splits          Nullable(String) COMMENT 'JSON array of {"rep_id","share"}',
    data            String COMMENT 'the original CloudEvents data object, JSON',
    ingest_time     DateTime64(3, 'UTC') COMMENT 'when the pipeline accepted it (Kafka timestamp)',
    kafka_partition UInt32,
    kafka_offset    UInt64
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(time)
ORDER BY (source, id);

-- Dead letters from topic spm.activity.dlq: the original bytes verbatim plus the reason.
-- Identity is the rejected message's own position, so a re-delivered dead letter collapses.
CREATE TABLE IF NOT EXISTS rejected_events
(
    source_topic     LowCardinality(String),
    source_partition Int32,
    source_offset    Int64,
    error_code       LowCardinality(String),
    error_message    String,
    error_path       String,
    key              Nullable(String),
    value            String COMMENT 'the original message bytes, verbatim',
    headers          Map(String, String) COMMENT 'the original headers',
    rejected_at      DateTime64(3, 'UTC') COMMENT 'Kafka timestamp of the dead letter',
    dlq_partition    UInt32,
    dlq_offset       UInt64
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(rejected_at)
ORDER BY (source_topic, source_partition, source_offset);

-- Live figures from topic spm.progress, sampled by the sink: per scope/id/metric/period at
-- most once per snapshot_interval and only when the figures changed; the latest figures are
-- always written eventually, so the newest row per key equals the live table.
CREATE TABLE IF NOT EXISTS progress_snapshots
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
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(as_of)
ORDER BY (scope, id, metric, period, as_of);

-- Status changes from topic spm.alerts; alert_id is unique per change.
CREATE TABLE IF NOT EXISTS alerts
(
    alert_id    String,
    scope       LowCardinality(String),
    id          String,
    name        Nullable(String),
    team_id     Nullable(String),
    metric      LowCardinality(String),
    period      LowCardinality(String),
    from_status LowCardinality(Nullable(String)),
    to_status   LowCardinality(String),
    value       Nullable(Decimal(76, 38)),
    target      Nullable(Decimal(76, 38)),
    pace        Nullable(Decimal(76, 38)),
    gap         Nullable(Decimal(76, 38)),
    at          DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(at)
ORDER BY alert_id;

-- Every change of the compacted topic spm.quotas, tombstones included (deleted = 1), so the
-- quota in force at any past moment can be recovered after compaction dropped it from Kafka.
CREATE TABLE IF NOT EXISTS quota_history
(
    key             String,
    scope           LowCardinality(String),
    scope_id        String,
    metric          LowCardinality(String),
    period          LowCardinality(String),
    target          Nullable(Decimal(76, 38)),
    effective_from  Nullable(Date),
    deleted         UInt8,
    recorded_at     DateTime64(3, 'UTC') COMMENT 'Kafka timestamp of the change',
    kafka_partition UInt32,
    kafka_offset    UInt64
)
ENGINE = ReplacingMergeTree
ORDER BY (key, kafka_partition, kafka_offset);

-- Every change of the compacted topic spm.roster: rep rows (rep_id, team_id, name,
-- effective_from) and team rows (team_id, name, parent_id), tombstones as deleted = 1.
CREATE TABLE IF NOT EXISTS roster_history
(
    key             String,
    kind            LowCardinality(String),
    rep_id          Nullable(String),
    team_id         Nullable(String),
    name            Nullable(String),
    parent_id       Nullable(String),
    effective_from  Nullable(Date),
    deleted         UInt8,
    recorded_at     DateTime64(3, 'UTC') COMMENT 'Kafka timestamp of the change',
    kafka_partition UInt32,
    kafka_offset    UInt64
)
ENGINE = ReplacingMergeTree
ORDER BY (key, kafka_partition, kafka_offset);
