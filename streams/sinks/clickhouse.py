"""The ClickHouse history sink: every accepted, rejected and derived message, kept for good.

Topic → table (see ``schemas/clickhouse/001_history_tables.sql``)::

    spm.activity      → activity_events     (source, id), the valid events, decoded
                      → credits             (rep_id, metric, time, source, id), their claims
    spm.activity.dlq  → rejected_events     (source_topic, source_partition, source_offset)
    spm.progress      → progress_snapshots  (scope, id, metric, period, as_of), sampled
    spm.alerts        → alerts              (alert_id)
    spm.quotas        → quota_history       (key, kafka_partition, kafka_offset)
    spm.roster        → roster_history      (key, kafka_partition, kafka_offset)

Each table's sorting key is the row's identity, so the at-least-once delivery of
:class:`~streams.sinks.base.BatchingSink` doubles nothing. Time columns come from the
messages (never from the clock) so a re-delivered row is identical to the first.

Progress is sampled (:class:`SnapshotCadence`): per scope/id/metric/period a snapshot is
written only when the figures changed and at most once per ``snapshot_interval``; a change
held back is written when the interval has passed or the sink stops, and its offset is not
committed before, so the newest snapshot always equals the live table eventually.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import orjson
import structlog
from aiokafka import ConsumerRecord, TopicPartition
from clickhouse_connect.driver import Client

from streams.chclient import get_client
from streams.engine.errors import Invalid
from streams.engine.events import Event
from streams.engine.recompute import claims
from streams.engine.roster import as_utc
from streams.migrations import migrate
from streams.rules import Rules
from streams.settings import Settings
from streams.sinks.base import BatchingSink, Row, RowsByTable

log = structlog.get_logger(__name__)

COLUMNS: dict[str, tuple[str, ...]] = {
    "activity_events": (
        "source", "id", "type", "time", "rep_id", "deal_id", "amount", "currency",
        "amount_base", "splits", "data", "ingest_time", "kafka_partition", "kafka_offset",
        "copy",
    ),
    "credits": (
        "rep_id", "metric", "time", "source", "id", "type", "deal_id", "share", "credit",
        "amount", "currency", "rate", "ingest_time", "copy",
    ),
    "rejected_events": (
        "source_topic", "source_partition", "source_offset", "error_code", "error_message",
        "error_path", "key", "value", "headers", "rejected_at", "dlq_partition", "dlq_offset",
    ),
    "progress_snapshots": (
        "scope", "id", "metric", "period", "period_type", "as_of", "value", "target",
        "attainment", "expected", "pace", "projection", "gap", "status",
    ),
    "alerts": (
        "alert_id", "scope", "id", "name", "team_id", "metric", "period", "from_status",
        "to_status", "value", "target", "pace", "gap", "at",
    ),
    "quota_history": (
        "key", "scope", "scope_id", "metric", "period", "target", "effective_from", "deleted",
        "recorded_at", "kafka_partition", "kafka_offset",
    ),
    "roster_history": (
        "key", "kind", "rep_id", "team_id", "name", "parent_id", "effective_from", "deleted",
        "recorded_at", "kafka_partition", "kafka_offset", "effective_at",
    ),
}  # fmt: skip
#: Every progress message, unsampled: the newest figures per key for the boards (migration 013).
COLUMNS["current_figures"] = COLUMNS["progress_snapshots"]

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MILLISECOND = timedelta(milliseconds=1)
DLQ_HEADERS = (
    "spm-error-code",
    "spm-error-message",
    "spm-error-path",
    "spm-source-topic",
    "spm-source-partition",
    "spm-source-offset",
)


# --- value conversions ------------------------------------------------------------------------
def decimal_or_none(text: str | None) -> Decimal | None:
    return None if text is None else Decimal(text)


def instant(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


def epoch_ms(text: str) -> int:
    """An RFC 3339 instant as DateTime64(3) ticks (clickhouse-connect writes ints as they are,
    skipping its per-value datetime conversion: the event table's hot path)."""
    return (datetime.fromisoformat(text) - EPOCH) // _MILLISECOND


def kafka_time(record: ConsumerRecord) -> int:
    """The message's Kafka timestamp, already DateTime64(3) ticks (epoch milliseconds)."""
    return int(record.timestamp)


def date_or_none(text: str | None) -> date | None:
    """An ``effective_from`` (date, or datetime whose date counts) as a Date."""
    return date.fromisoformat(text[:10]) if text else None


def _compact_json(value: Any) -> str:
    return orjson.dumps(value).decode()


# --- topic → row mappings (one message, one row) -----------------------------------------------
def event_row(record: ConsumerRecord) -> Row:
    """A canonical event (``Event.to_json``) as a row, at the message's position."""
    return _event_row(orjson.loads(record.value), record, Event.from_json(record.value).copy_digest)


def accepted_rows(rules: Rules) -> Callable[[ConsumerRecord], RowsByTable]:
    """An input message's event row and its credit rows if it is a valid event; a rejected
    one is the DLQ's to keep. Input is read rather than the worker's re-routing topic, which
    holds only events that arrived in the wrong partition."""

    def rows(record: ConsumerRecord) -> RowsByTable:
        decoded = rules.decoder.decode(record.value if record.value is not None else b"")
        if isinstance(decoded, Invalid):
            return {}
        digest = decoded.copy_digest
        return {
            "activity_events": [_event_row(orjson.loads(decoded.to_json()), record, digest)],
            "credits": credit_rows(decoded, kafka_time(record), rules, digest),
        }

    return rows


def credit_rows(event: Event, ingest_ms: int, rules: Rules, digest: int) -> list[Row]:
    """The event's claims (``recompute.claims``) with its deal's amount, currency and rate, and
    the copy digest of its event row."""
    rate = None
    if event.currency is not None:
        converted = rules.rates.to_base(Decimal(1), event.currency, event.time)
        rate = None if isinstance(converted, Invalid) else converted
    time_ms = (event.time - EPOCH) // _MILLISECOND
    return [
        (
            claim.rep_id,
            claim.metric,
            time_ms,
            event.source,
            event.id,
            event.type,
            event.deal_id,
            claim.share,
            claim.credit,
            event.amount,
            event.currency,
            rate,
            ingest_ms,
            digest,
        )
        for claim in claims(event, rules.catalog)
    ]


def _event_row(doc: dict[str, Any], record: ConsumerRecord, digest: int) -> Row:
    splits = doc["splits"]
    return (
        doc["source"],
        doc["id"],
        doc["type"],
        epoch_ms(doc["time"]),
        doc["rep_id"],
        doc["deal_id"],
        decimal_or_none(doc["amount"]),
        doc["currency"],
        decimal_or_none(doc["amount_base"]),
        None if splits is None else _compact_json(splits),
        _compact_json(doc["data"]),
        kafka_time(record),
        record.partition,
        record.offset,
        digest,
    )


def rejected_row(record: ConsumerRecord) -> Row:
    """A dead letter; without its source headers it is identified by its own position."""
    headers = {name: value.decode("utf-8", "replace") for name, value in record.headers or ()}
    try:
        source = (
            headers["spm-source-topic"],
            int(headers["spm-source-partition"]),
            int(headers["spm-source-offset"]),
        )
    except (KeyError, ValueError):
        source = (record.topic, record.partition, record.offset)
    return (
        *source,
        headers.get("spm-error-code", ""),
        headers.get("spm-error-message", ""),
        headers.get("spm-error-path", ""),
        record.key,
        record.value or b"",
        {name: value for name, value in headers.items() if name not in DLQ_HEADERS},
        kafka_time(record),
        record.partition,
        record.offset,
    )


def progress_row(doc: Mapping[str, Any]) -> Row:
    return (
        doc["scope"],
        doc["id"],
        doc["metric"],
        doc["period"],
        doc["period_type"],
        instant(doc["as_of"]),
        decimal_or_none(doc["value"]),
        *(
            decimal_or_none(doc[name])
            for name in ("target", "attainment", "expected", "pace", "projection", "gap")
        ),
        doc["status"],
    )


def alert_row(record: ConsumerRecord) -> Row:
    doc = orjson.loads(record.value)
    return (
        doc["alert_id"],
        doc["scope"],
        doc["id"],
        doc["name"],
        doc["team_id"],
        doc["metric"],
        doc["period"],
        doc["from_status"],
        doc["to_status"],
        *(decimal_or_none(doc[name]) for name in ("value", "target", "pace", "gap")),
        instant(doc["at"]),
    )


def _text_key(record: ConsumerRecord) -> str:
    """A compacted topic's key, whether sent as a JSON string or as plain text."""
    raw = (record.key or b"").decode()
    try:
        decoded = orjson.loads(raw)
    except ValueError:
        return raw
    return decoded if isinstance(decoded, str) else raw


def quota_row(record: ConsumerRecord) -> Row:
    """A quota change; a tombstone (null value) is kept as ``deleted = 1`` with its key."""
    key = _text_key(record)
    if record.value is None:
        scope, scope_id, metric, period, effective = [*key.split("|"), "", "", "", ""][:5]
        doc: dict[str, Any] = {"scope": scope, "scope_id": scope_id, "metric": metric}
        doc |= {"period": period, "target": None, "effective_from": effective or None}
    else:
        doc = orjson.loads(record.value)
    return (
        key,
        doc["scope"],
        doc["scope_id"],
        doc["metric"],
        doc["period"],
        decimal_or_none(doc["target"]),
        date_or_none(doc["effective_from"]),
        int(record.value is None),
        kafka_time(record),
        record.partition,
        record.offset,
    )


def roster_row(record: ConsumerRecord) -> Row:
    """A rep or team change; a tombstone keeps what its key says (kind, id, effective_from)."""
    key = _text_key(record)
    if record.value is None:
        kind, ident, effective = [*key.split("|"), "", ""][:3]
        doc: dict[str, Any] = {
            "kind": kind,
            f"{kind}_id": ident,
            "effective_from": effective or None,
        }
    else:
        doc = orjson.loads(record.value)
    return (
        key,
        doc["kind"],
        doc.get("rep_id"),
        doc.get("team_id"),
        doc.get("name"),
        doc.get("parent_id"),
        date_or_none(doc.get("effective_from")),
        int(record.value is None),
        kafka_time(record),
        record.partition,
        record.offset,
        _instant_or_none(doc.get("effective_from")),
    )


def _instant_or_none(text: str | None) -> datetime | None:
    """An ``effective_from`` as the mirror reads it: a date is midnight UTC."""
    return None if not text else as_utc(datetime.fromisoformat(text))


#: Short topic name → (table, one message's row); spm.progress goes through SnapshotCadence.
ROUTES: dict[str, tuple[str, Callable[[ConsumerRecord], Row | None]]] = {
    "activity.dlq": ("rejected_events", rejected_row),
    "alerts": ("alerts", alert_row),
    "quotas": ("quota_history", quota_row),
    "roster": ("roster_history", roster_row),
}


# --- progress sampling ---------------------------------------------------------------------------
ProgressKey = tuple[str, str, str, str]  # scope, id, metric, period


@dataclass(slots=True)
class _Held:
    row: Row
    figures: Row
    as_of: datetime
    partition: TopicPartition
    offset: int
    since: float


class SnapshotCadence:
    """Decides which progress messages become snapshots (changed, ≤ 1 per interval per key).

    The interval is measured on the snapshots' own ``as_of`` (so catching up on a backlog
    keeps the history's spacing) and, for a change held back, on the wall clock (so the
    newest figures reach ClickHouse even when no further message comes).
    """

    def __init__(self, interval: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.interval = interval
        self.clock = clock
        self._written: dict[ProgressKey, tuple[Row, datetime]] = {}
        self._held: dict[ProgressKey, _Held] = {}

    def seed(self, latest: Iterable[tuple[ProgressKey, Row, datetime]]) -> None:
        """Start from the newest stored snapshot per key (so a restart writes no repeat). The
        client reads ``as_of`` back naive (UTC); the messages' are aware."""
        for key, figures, as_of in latest:
            self._written[key] = (tuple(figures), as_utc(as_of))

    def offer(self, row: Row, partition: TopicPartition, offset: int) -> Row | None:
        """The row to write now, or None (unchanged, or held until the interval passes)."""
        key: ProgressKey = (row[0], row[1], row[2], row[3])
        figures, as_of = tuple(row[6:]), row[5]
        written = self._written.get(key)
        if written is not None and written[0] == figures:
            self._held.pop(key, None)  # back to what is stored: nothing left to write
            return None
        if written is None or (as_of - written[1]).total_seconds() >= self.interval:
            self._held.pop(key, None)
            self._written[key] = (figures, as_of)
            return row
        held = self._held.get(key)
        since = held.since if held is not None else self.clock()
        self._held[key] = _Held(row, figures, as_of, partition, offset, since)
        return None

    def due(self, *, final: bool) -> list[Row]:
        """Held rows whose wall-clock interval passed (every held row when ``final``)."""
        now = self.clock()
        ready = [k for k, h in self._held.items() if final or now - h.since >= self.interval]
        rows = []
        for key in ready:
            held = self._held.pop(key)
            self._written[key] = (held.figures, held.as_of)
            rows.append(held.row)
        return rows

    def held_offsets(self) -> dict[TopicPartition, int]:
        offsets: dict[TopicPartition, int] = {}
        for held in self._held.values():
            offsets[held.partition] = min(held.offset, offsets.get(held.partition, held.offset))
        return offsets


LATEST_SNAPSHOTS = """
SELECT scope, id, metric, period,
       argMax(tuple(value, target, attainment, expected, pace, `projection`, gap, status), as_of),
       max(as_of)
FROM progress_snapshots
GROUP BY scope, id, metric, period
"""


# --- the sink ------------------------------------------------------------------------------------
class ClickHouseSink(BatchingSink):
    """Writes the six history topics into ClickHouse through the one client factory.

    ``client_provider`` (default ``get_client(settings)``) is asked for the client before
    every insert attempt, so a client that could not connect is retried like a failed insert.
    Before the first batch it applies the migrations (labelled ``schema_migrations`` in the
    failure metric when ClickHouse is down) and reads the newest stored snapshots.
    """

    prepare_label = "schema_migrations"

    def __init__(
        self,
        settings: Settings,
        *,
        client_provider: Callable[[], Client] | None = None,
        **kwargs: Any,
    ) -> None:
        self.client_provider = client_provider or (lambda: get_client(settings))
        self.cadence = SnapshotCadence(settings.snapshot_interval)
        self._routes = {settings.topic(name): route for name, route in ROUTES.items()}
        self.activity_topic = settings.topic("activity")
        self._accepted = accepted_rows(Rules.from_settings(settings))
        self.progress_topic = settings.topic("progress")
        super().__init__(
            settings=settings,
            group_id=f"{settings.app_id}-sink",
            topics=[*self._routes, self.activity_topic, self.progress_topic],
            batch_rows=settings.sink_batch_rows,
            batch_seconds=settings.sink_batch_seconds,
            **kwargs,
        )

    def prepare(self) -> None:
        client = self.client_provider()
        migrate(client)
        rows = client.query(LATEST_SNAPSHOTS).result_rows
        self.cadence.seed(((s, i, m, p), figures, as_of) for s, i, m, p, figures, as_of in rows)
        log.info("sink.snapshots_seeded", keys=len(rows))

    def map_batch(self, records: Sequence[ConsumerRecord], *, final: bool) -> RowsByTable:
        tables: RowsByTable = {table: [] for table in COLUMNS}
        for record in records:
            try:
                if record.topic == self.progress_topic:
                    current = progress_row(orjson.loads(record.value))
                    tables["current_figures"].append(current)
                    row = self.cadence.offer(
                        current,
                        TopicPartition(record.topic, record.partition),
                        record.offset,
                    )
                    if row is not None:
                        tables["progress_snapshots"].append(row)
                elif record.topic == self.activity_topic:
                    for table, rows in self._accepted(record).items():
                        tables[table].extend(rows)
                else:
                    table, row_of = self._routes[record.topic]
                    mapped = row_of(record)
                    if mapped is not None:
                        tables[table].append(mapped)
            except (ValueError, KeyError, TypeError, ArithmeticError) as exc:
                # Our own topics carry our own output: a malformed one is a bug to see, not
                # a reason to stop history for everyone.
                log.error(
                    "sink.malformed_message",
                    topic=record.topic,
                    partition=record.partition,
                    offset=record.offset,
                    error=repr(exc),
                )
        tables["progress_snapshots"].extend(self.cadence.due(final=final))
        return tables

    def write(self, table: str, rows: list[Row]) -> None:
        self.client_provider().insert(table, rows, column_names=COLUMNS[table])

    def held_offsets(self) -> Mapping[TopicPartition, int]:
        return self.cadence.held_offsets()
