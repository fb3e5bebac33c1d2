"""The Faust agents: an event's way from the input topic to the live quota tables.

Each agent folds a batch of messages (``take_events``) with the engine's functions and writes
each table key it changed. State is idempotent and order-free by construction (see
``streams.engine.contributions`` and ``streams.engine.credit``): every contribution is keyed
and versioned, so a message processed twice — after a crash, a rebalance or a producer retry —
changes nothing the second time, and the figures equal a from-scratch recomputation whatever
the delivery order.

1. ``ingest``  spm.activity → validate → spm.activity.dlq (with the reason) or spm.events.
2. ``ledger``  spm.events → deal ledger (``deals`` table) → rep contributions → spm.credits,
   keyed by rep.
3. ``reps``    spm.credits → rep book (``rep-contributions`` table) → each change rolled up to
   the rep's team lineage at event time and the company → spm.team-credits, keyed by team
   (the repartition by team), plus progress, alerts and gauges of the reps.
4. ``teams``   spm.team-credits → team/company book (``team-contributions`` table) → progress,
   alerts and gauges of teams and the company.
A timer sends ``tick`` messages to every owned partition of spm.credits and spm.team-credits,
so pace, which falls as time passes without events, is re-evaluated and alerted on too.
Every message a stage produces while processing an event joins that event's partition's
transaction (``processing`` below and ``streams.transactions``); sends use ``force=True`` so
Faust publishes them at once, in that context, rather than attaching them to the event's offset
and publishing them later from the commit, outside any event. Each batch runs inside
``batches.batch()``, so no commit splits a batch's table writes from its messages.
"""

from __future__ import annotations

import json
import time
import weakref
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import structlog
from aiokafka.partitioner import DefaultPartitioner
from faust.streams import _current_event
from faust.types import EventT
from faust.types.enums import ProcessingGuarantee

from streams import local_state, metrics
from streams.app import app, settings
from streams.engine.catalog import DEAL_TYPES
from streams.engine.contributions import Change, Contribution, ContributionBook
from streams.engine.credit import (
    COMPANY,
    Credit,
    activity_contributions,
    deal_contributions,
    team_contributions,
    team_scope,
)
from streams.engine.errors import Invalid
from streams.engine.events import Event
from streams.engine.ledger import DealState, merge
from streams.engine.pace import Figures
from streams.engine.periods import Period
from streams.live import LiveViews
from streams.reference import ReferenceData, ReferenceMirror
from streams.rules import Rules
from streams.sinks.clickhouse import ClickHouseSink
from streams.transactions import batches

log = structlog.get_logger(__name__)

rules = Rules.from_settings(settings)
reference = ReferenceData()
mirror = ReferenceMirror(settings, reference)
app.service(mirror)  # type: ignore[arg-type]  # Faust types it for classes; instances work
views = LiveViews(rules.calendar, rules.catalog, rules.thresholds, reference)
#: History: its own consumer group, so ClickHouse trouble never slows the agents down.
history_sink = ClickHouseSink(settings)
if settings.history_sink:
    app.service(history_sink)  # type: ignore[arg-type]

activity_topic = app.topic(settings.topic("activity"))
dlq_topic = app.topic(settings.topic("activity.dlq"))
events_topic = app.topic(settings.topic("events"))
credits_topic = app.topic(settings.topic("credits"))
team_credits_topic = app.topic(settings.topic("team-credits"))
progress_topic = app.topic(settings.topic("progress"))
alerts_topic = app.topic(settings.topic("alerts"))

# The durable state. Contribution tables are keyed "<scope id><SEP><contribution key>"; the live
# books in ``views`` are their in-memory mirrors, rebuilt from them after a restart/rebalance.
deals_table = app.Table("deals", key_type=bytes)
reps_table = app.Table("rep-contributions", key_type=bytes)
teams_table = app.Table("team-contributions", key_type=bytes)
status_table = app.Table("alert-status", key_type=bytes, value_type=bytes)

SEP = "\x1f"


@contextmanager
def processing(message: EventT) -> Iterator[None]:
    """Make ``message`` Faust's current event while a batch writes the keys it touched.

    Faust writes a table change to the changelog partition of the event being processed;
    ``take_events`` batches leave none current, so each write names its message.
    """
    token = _current_event.set(weakref.ref(message))
    try:
        yield
    finally:
        _current_event.reset(token)


def _encode(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def _header(value: Any) -> bytes:
    return str(value).encode()


# --- 1. ingest ---------------------------------------------------------------------------------


@app.agent(activity_topic)
async def ingest(stream: Any) -> None:
    """Validate every input message; dead-letter the bad ones with their original bytes."""
    async for batch in stream.take_events(settings.batch_size, within=settings.batch_within):
        async with batches.batch():
            for event in batch:
                with processing(event):
                    await _ingest_one(event)


async def _ingest_one(event: EventT) -> None:
    """Dead-letter a bad message with its reason, or forward the event keyed by its entity."""
    message = event.message
    raw = message.value if message.value is not None else b""
    decoded = rules.decoder.decode(raw)
    if isinstance(decoded, Invalid):
        metrics.EVENTS_REJECTED.labels(decoded.code).inc()
        headers = [
            *(message.headers or []),
            ("spm-error-code", _header(decoded.code)),
            ("spm-error-message", _header(decoded.message)),
            ("spm-error-path", _header(decoded.path)),
            ("spm-source-topic", _header(message.topic)),
            ("spm-source-partition", _header(message.partition)),
            ("spm-source-offset", _header(message.offset)),
        ]
        await dlq_topic.send(force=True, key=message.key, value=raw, headers=headers)
        return
    metrics.EVENT_TIME_LAG.observe(max(0.0, time.time() - decoded.time.timestamp()))
    await events_topic.send(
        force=True,
        key=decoded.partition_key.encode(),
        value=decoded.to_json(),
        headers=[("spm-type", decoded.type.encode())],
    )


# --- 2. ledger ---------------------------------------------------------------------------------


@app.agent(events_topic)
async def ledger(stream: Any) -> None:
    """Merge deal events into the ledger; turn accepted events into rep contributions."""
    async for batch in stream.take_events(settings.batch_size, within=settings.batch_within):
        await mirror.ready.wait()
        async with batches.batch():
            for message, (rep_id, key, contribution) in _rep_credits(batch):
                with processing(message):
                    await credits_topic.send(
                        force=True,
                        key=rep_id.encode(),
                        value=_credit_message(rep_id, key, contribution),
                    )


def _credit_message(scope_id: str, key: str, c: Contribution) -> bytes:
    return _encode({"scope": scope_id, "key": key, "c": c.to_dict()})


def _rep_credits(batch: Sequence[EventT]) -> list[tuple[EventT, Credit]]:
    """The rep contributions of a batch, each with the message it comes from (whose
    transaction it joins); each touched deal's ledger entry is written once."""
    catalog = rules.catalog
    before: dict[str, DealState | None] = {}
    after: dict[str, DealState] = {}
    last: dict[str, EventT] = {}
    result: list[tuple[EventT, Credit]] = []
    for message in batch:
        event = Event.from_json(message.value)
        if event.type in DEAL_TYPES and event.deal_id is not None:
            deal_id = event.deal_id
            if deal_id not in before:
                stored = deals_table.get(deal_id.encode())
                before[deal_id] = DealState.from_dict(stored) if stored else None
            after[deal_id] = merge(after.get(deal_id, before[deal_id]), event)
            last[deal_id] = message
        elif catalog.counts(event.type):
            result.extend((message, c) for c in activity_contributions(event, catalog))
            metrics.QUOTAS.record_activity(event.rep_id, event.time.timestamp())
        else:
            metrics.EVENTS_IGNORED.labels(metrics.IGNORED_TYPES(event.type)).inc()
            continue
        metrics.EVENTS_PROCESSED.labels(event.type).inc()
    for deal_id, state in after.items():
        if state == before[deal_id]:
            continue
        with processing(last[deal_id]):
            deals_table[deal_id.encode()] = state.to_dict()
        result.extend(
            (last[deal_id], c) for c in deal_contributions(deal_id, before[deal_id], state, catalog)
        )
    return result


# --- 3. reps and 4. teams ------------------------------------------------------------------------


@dataclass
class Applied:
    """What one batch did to a book."""

    changes: list[Change] = field(default_factory=list)
    #: Book key → a message of its partition (the transaction its outputs join).
    touched: dict[str, EventT] = field(default_factory=dict)
    #: Book keys whose every period is to be published again (after a restart).
    replay: set[str] = field(default_factory=set)
    #: A tick or flush message came: publish what is pending now.
    flush_now: bool = False


class BookKeeper:
    """Applies credit messages to a live book and its durable table, in that order per key.

    The rep and the team stage differ only in book, table, topic and scope naming; the rep
    stage also rolls its changes up to the team stage. Tick messages touch every scope of
    their partition; a ``full`` tick (sent after the book was rebuilt) replays all periods.
    """

    def __init__(
        self,
        name: str,
        book: str,
        table: Any,
        topic: Any,
        scope_of: Callable[[str], tuple[str, str]],
        universe: Callable[[], Iterable[str]],
    ) -> None:
        self.name = name
        self.book_attr = book
        self.table = table
        self.topic = topic
        #: Book key → (scope, scope id) as the API and metrics name it.
        self.scope_of = scope_of
        #: Every book key the roster knows (evaluated on ticks even without contributions).
        self.universe = universe
        self.stale = True

    @property
    def book(self) -> ContributionBook:
        book: ContributionBook = getattr(views, self.book_attr)
        return book

    def rebuild(self) -> None:
        """Reload the book from the table after a restart or a rebalance."""
        book = ContributionBook(rules.calendar)
        for raw_key, value in self.table.items():
            scope_id, key = raw_key.decode().split(SEP, 1)
            book.put(scope_id, key, Contribution.from_dict(value))
        setattr(views, self.book_attr, book)
        self.stale = False
        log.info("book rebuilt", table=self.name, keys=len(self.table))

    def apply(self, batch: Sequence[EventT]) -> Applied:
        applied = Applied()
        put = self.book.put
        for message in batch:
            body = json.loads(message.value)
            if "flush" in body:
                applied.flush_now = True
                continue
            if "tick" in body:
                applied.flush_now = True
                for key in self._owned(message.message.partition):
                    applied.touched.setdefault(key, message)
                    if body.get("full"):
                        applied.replay.add(key)
                continue
            change = put(body["scope"], body["key"], Contribution.from_dict(body["c"]))
            if change is not None:
                with processing(message):
                    self.table[f"{body['scope']}{SEP}{body['key']}".encode()] = body["c"]
                applied.changes.append(change)
                applied.touched[change.scope_id] = message
        metrics.TABLE_KEYS.labels(self.name).set(len(self.table))
        return applied

    async def ensure_fresh(self) -> None:
        """Rebuild a stale book, drop the gauges of scopes now owned elsewhere, and ask every
        owned partition for a full tick (which republishes what this worker owns)."""
        if not self.stale:
            return
        self.rebuild()
        owned = self.partitions()
        every = list(range(self.partition_count()))
        mine = {self.scope_of(k)[0] for k in self.universe()}
        metrics.QUOTAS.forget_where(
            lambda scope, scope_id: (
                scope in mine
                and _partitioner(self.book_key(scope, scope_id).encode(), every, every) not in owned
            )
        )
        await send_ticks([self.topic], full=True)

    def book_key(self, scope: str, scope_id: str) -> str:
        if scope == "rep":
            return scope_id
        return team_scope(scope_id) if scope == "team" else COMPANY

    def partitions(self) -> set[int]:
        name = self.topic.get_topic_name()
        return {tp.partition for tp in app.consumer.assignment() if tp.topic == name}

    def partition_count(self) -> int:
        return app.consumer.topic_partitions(self.topic.get_topic_name()) or settings.partitions

    def _owned(self, partition: int) -> list[str]:
        """The book keys (on the roster or with data) that hash to ``partition``."""
        every = list(range(self.partition_count()))
        keys = set(self.universe()) | set(self.book.scopes())
        return [k for k in keys if _partitioner(k.encode(), every, every) == partition]


class Publisher:
    """Coalesces what batches touched and publishes it at most every ``publish_interval``.

    A hot scope (a team, the company) is touched by nearly every batch; its figures are
    recomputed, recorded on spm.progress and checked for alerts once per interval instead,
    covering every (metric, period) that changed meanwhile. Ticks flush at once.
    """

    def __init__(self, keeper: BookKeeper) -> None:
        self.keeper = keeper
        #: book key → (a message of its partition, changed (metric, period label) pairs)
        self.pending: dict[str, tuple[EventT, set[tuple[str, str]]]] = {}
        self.last_flush = 0.0

    async def publish(self, applied: Applied) -> None:
        self._note(applied)
        due = time.monotonic() - self.last_flush >= settings.publish_interval
        if self.pending and (due or applied.flush_now):
            await self._flush()

    def _note(self, applied: Applied) -> None:
        labels_at = rules.calendar.labels_at
        book = self.keeper.book
        for book_key, message in applied.touched.items():
            entry = self.pending.get(book_key)
            self.pending[book_key] = (message, entry[1] if entry else set())
        for change in applied.changes:
            changed = self.pending[change.scope_id][1]
            for c in (change.old, change.new):
                if c is not None:
                    changed.update((c.metric, label) for label in labels_at(c.time))
        for book_key in applied.replay:
            changed = self.pending[book_key][1]
            for metric in book.metrics(book_key):
                changed.update((metric, label) for label in book.labels(book_key, metric))

    async def _flush(self) -> None:
        self.last_flush = time.monotonic()
        pending, self.pending = self.pending, {}
        now = datetime.now(UTC)
        current = views.current_periods(now)
        for book_key, (message, changed) in sorted(pending.items()):
            with processing(message):
                await _publish_scope(self.keeper, book_key, changed, current, now)


def _scope_of(scope_id: str) -> tuple[str, str]:
    """``team:<id>`` → ("team", id); ``company:company`` → ("company", "company")."""
    scope, _, rest = scope_id.partition(":")
    return scope, rest


_partitioner = DefaultPartitioner()
rep_keeper = BookKeeper(
    "rep-contributions",
    "reps",
    reps_table,
    credits_topic,
    scope_of=lambda rep_id: ("rep", rep_id),
    universe=lambda: reference.roster.reps(),
)
team_keeper = BookKeeper(
    "team-contributions",
    "teams",
    teams_table,
    team_credits_topic,
    scope_of=_scope_of,
    universe=lambda: [team_scope(t) for t in reference.roster.teams()] + [COMPANY],
)
rep_publisher = Publisher(rep_keeper)
team_publisher = Publisher(team_keeper)


@app.agent(credits_topic)
async def reps(stream: Any) -> None:
    """Keep rep contributions; roll each change up to the rep's team lineage at event time."""
    async for batch in stream.take_events(settings.batch_size, within=settings.batch_within):
        await mirror.ready.wait()
        async with batches.batch():
            await rep_keeper.ensure_fresh()
            applied = rep_keeper.apply(batch)
            roster = reference.roster
            for change in applied.changes:
                with processing(applied.touched[change.scope_id]):
                    for scope_id, key, c in team_contributions(change, change.key, roster):
                        await team_credits_topic.send(
                            force=True,
                            key=scope_id.encode(),
                            value=_credit_message(scope_id, key, c),
                        )
            await rep_publisher.publish(applied)


@app.agent(team_credits_topic)
async def teams(stream: Any) -> None:
    """Keep team and company contributions (scope ids ``team:<id>`` and ``company:company``)."""
    async for batch in stream.take_events(settings.batch_size, within=settings.batch_within):
        await mirror.ready.wait()
        async with batches.batch():
            await team_keeper.ensure_fresh()
            await team_publisher.publish(team_keeper.apply(batch))


# --- progress, alerts, metrics -------------------------------------------------------------------


async def _publish_scope(
    keeper: BookKeeper,
    book_key: str,
    changed: set[tuple[str, str]],
    current: tuple[Period, ...],
    now: datetime,
) -> None:
    """One scope: progress records for changed periods; gauges and alerts for current ones."""
    scope, scope_id = keeper.scope_of(book_key)
    key = f"{scope}:{scope_id}"
    for metric, label in sorted(changed):
        period = rules.calendar.parse(label)
        if isinstance(period, Invalid):
            continue
        f = views.figures(scope, scope_id, metric, period, now)
        record = {
            "scope": scope,
            "id": scope_id,
            "metric": metric,
            "period": label,
            "period_type": period.type,
            "as_of": now.isoformat(),
            **f.to_dict(),
        }
        await progress_topic.send(force=True, key=key.encode(), value=_encode(record))
    team = reference.roster.team_at(scope_id, now) if scope == "rep" else None
    if scope == "rep":
        name = reference.roster.rep_name(scope_id) or scope_id
        metrics.QUOTAS.set_rep_info(scope_id, name, team or "")
    for period in current:
        for metric in rules.catalog.names:
            f = views.figures(scope, scope_id, metric, period, now)
            metrics.QUOTAS.publish(scope, scope_id, metric, period.type, f.to_dict(), team)
            await _maybe_alert(scope, scope_id, team, metric, period.label, f, now)


async def _maybe_alert(
    scope: str,
    scope_id: str,
    team: str | None,
    metric: str,
    label: str,
    f: Figures,
    now: datetime,
) -> None:
    """Publish a status transition (on_track ↔ at_risk ↔ behind) once per change."""
    if f.status is None:
        return
    key = f"{scope}:{scope_id}:{metric}:{label}"
    previous = status_table.get(key.encode())
    previous_status = previous.decode() if previous else None
    if previous_status == f.status:
        return
    status_table[key.encode()] = f.status.encode()
    if previous_status is None and f.status == "on_track":
        return  # first evaluation: nothing to act on
    figures = f.to_dict()
    alert = {
        "alert_id": f"{key}:{now.isoformat()}",
        "scope": scope,
        "id": scope_id,
        "name": reference.roster.rep_name(scope_id) if scope == "rep" else None,
        "team_id": team if scope == "rep" else (scope_id if scope == "team" else None),
        "metric": metric,
        "period": label,
        "from_status": previous_status,
        "to_status": f.status,
        **{k: figures[k] for k in ("value", "target", "pace", "gap")},
        "at": now.isoformat(),
    }
    metrics.ALERTS_EMITTED.labels(scope, f.status).inc()
    await alerts_topic.send(force=True, key=f"{scope}:{scope_id}".encode(), value=_encode(alert))


async def send_ticks(topics: Iterable[Any], full: bool = False) -> None:
    """Send a tick to every owned partition of ``topics``."""
    await send_control(topics, {"tick": datetime.now(UTC).isoformat(), "full": full})


async def send_control(topics: Iterable[Any], control: dict[str, Any]) -> None:
    """Send a control message (tick, flush) to every owned partition of ``topics``.

    They go through the plain (non-transactional) producer: they carry no data, a lost or
    repeated one is harmless, and they must not wait for a partition's next transaction.
    """
    body = _encode(control)
    names = {topic.get_topic_name() for topic in topics}
    for tp in sorted(app.consumer.assignment()):
        if tp.topic in names:
            await app.producer.send(tp.topic, None, body, tp.partition, None, None)


@app.timer(interval=settings.publish_interval)
async def flush_pending() -> None:
    """Make sure what a stage holds back is published, and a stale book rebuilt, even when no
    further input arrives: a ``flush`` message lets the stage do it inside a transaction."""
    for keeper, publisher in ((rep_keeper, rep_publisher), (team_keeper, team_publisher)):
        if keeper.stale or publisher.pending:
            await send_control([keeper.topic], {"flush": True})


@app.timer(interval=settings.alert_interval)
async def tick() -> None:
    """Ask the rep and team stages to re-evaluate their scopes: pace falls as time passes."""
    await send_ticks([credits_topic, team_credits_topic])


@app.timer(interval=5.0)
async def consumer_lag() -> None:
    """Export how far behind the end of each owned partition this worker is."""
    consumer = app.consumer
    for tp in consumer.assignment():
        position = await consumer.position(tp)
        if position is not None:
            lag = max(0, consumer.highwater(tp) - position)
            metrics.CONSUMER_LAG.labels(tp.topic, str(tp.partition)).set(lag)


@app.on_rebalance_complete.connect
async def _on_rebalance(sender: Any, /, *args: Any, signal: Any = None, **kwargs: Any) -> None:
    """Partitions moved: the books are rebuilt from the tables before the next batch.

    Faust sends this signal, then resumes the stream partitions and seeks them to their
    committed offsets while the fetcher is already delivering. Records delivered in between
    throw its read-offset bookkeeping off: a re-fetched range is dropped as "already read"
    (never acknowledged: the partition stalls) or skipped as a gap (acknowledged unprocessed:
    events are lost). Stopping the flow here closes that window; Faust resumes it after the seek.
    """
    app.consumer.stop_flow()
    rep_keeper.stale = True
    team_keeper.stale = True
    metrics.CONSUMER_LAG.clear()
    metrics.WORKER_UP.set(1)


@app.on_worker_init.connect
def _on_worker_init(sender: Any, /, *args: Any, signal: Any = None, **kwargs: Any) -> None:
    # Not ``app.in_transaction``: a cached property that is False until the worker has started,
    # so reading it here would switch exactly-once off for good.
    exactly_once = app.conf.processing_guarantee == ProcessingGuarantee.EXACTLY_ONCE
    local_state.open_tables(Path(app.conf.tabledir), exactly_once)


@app.on_before_shutdown.connect
async def _on_shutdown(sender: Any, /, *args: Any, signal: Any = None, **kwargs: Any) -> None:
    metrics.WORKER_UP.set(0)
    local_state.close_tables(Path(app.conf.tabledir))
