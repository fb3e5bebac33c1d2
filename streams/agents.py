"""The Faust agents: an event's way from the input topic to the live quota tables.

Each agent folds a batch of messages (``take_events``) with the engine's functions and writes
each table key it changed. State is idempotent and order-free by construction (see
``streams.engine.contributions`` and ``streams.engine.postings``): every contribution is keyed
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
"""

from __future__ import annotations

import json
import time
import weakref
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import structlog
from aiokafka.partitioner import DefaultPartitioner
from faust.streams import _current_event
from faust.types import EventT

from streams import metrics
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

log = structlog.get_logger(__name__)

rules = Rules.from_settings(settings)
reference = ReferenceData()
mirror = app.service(ReferenceMirror(settings, reference))
views = LiveViews(rules.calendar, rules.catalog, rules.thresholds, reference)
#: History: its own consumer group, so ClickHouse trouble never slows the agents down.
history_sink = app.service(ClickHouseSink(settings))

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
        await dlq_topic.send(key=message.key, value=raw, headers=headers)
        return
    metrics.EVENT_TIME_LAG.observe(max(0.0, time.time() - decoded.time.timestamp()))
    await events_topic.send(
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
        for message, (rep_id, key, contribution) in _rep_credits(batch):
            with processing(message):
                await credits_topic.send(
                    key=rep_id.encode(), value=_credit_message(rep_id, key, contribution)
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


class BookKeeper:
    """Applies credit messages to a live book and its durable table, in that order per key.

    The rep and the team stage differ only in book, table, topic and scope naming; the rep
    stage also rolls its changes up to the team stage.
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
        #: Every book key that exists for the roster (re-evaluated on ticks).
        self.universe = universe
        self.stale = True

    @property
    def book(self) -> ContributionBook:
        return getattr(views, self.book_attr)  # type: ignore[no-any-return]

    def rebuild(self) -> None:
        """Reload the book from the table after a restart or a rebalance."""
        book = ContributionBook(rules.calendar)
        for raw_key, value in self.table.items():
            scope_id, key = raw_key.decode().split(SEP, 1)
            book.put(scope_id, key, Contribution.from_dict(value))
        setattr(views, self.book_attr, book)
        self.stale = False
        log.info("book rebuilt", table=self.name, keys=len(self.table))

    def apply(self, batch: Sequence[EventT]) -> tuple[list[Change], dict[str, EventT]]:
        """Apply a batch: the changes, and each touched book key with the message that
        touched it (a tick touches every key of its partition)."""
        if self.stale:
            self.rebuild()
        put = self.book.put
        changes: list[Change] = []
        touched: dict[str, EventT] = {}
        for message in batch:
            body = json.loads(message.value)
            if "tick" in body:
                for key in self._owned(message.message.partition):
                    touched.setdefault(key, message)
                continue
            change = put(body["scope"], body["key"], Contribution.from_dict(body["c"]))
            if change is not None:
                with processing(message):
                    self.table[f"{body['scope']}{SEP}{body['key']}".encode()] = body["c"]
                changes.append(change)
                touched[change.scope_id] = message
        metrics.TABLE_KEYS.labels(self.name).set(len(self.table))
        return changes, touched

    def _owned(self, partition: int) -> list[str]:
        """The book keys that hash to ``partition`` of this stage's topic."""
        count = app.consumer.topic_partitions(self.topic.get_topic_name()) or settings.partitions
        every = list(range(count))
        return [k for k in self.universe() if _partitioner(k.encode(), every, every) == partition]


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


@app.agent(credits_topic)
async def reps(stream: Any) -> None:
    """Keep rep contributions; roll each change up to the rep's team lineage at event time."""
    async for batch in stream.take_events(settings.batch_size, within=settings.batch_within):
        await mirror.ready.wait()
        changes, touched = rep_keeper.apply(batch)
        roster = reference.roster
        for change in changes:
            with processing(touched[change.scope_id]):
                for scope_id, key, contribution in team_contributions(change, change.key, roster):
                    await team_credits_topic.send(
                        key=scope_id.encode(), value=_credit_message(scope_id, key, contribution)
                    )
        await publish(rep_keeper, touched, changes)


@app.agent(team_credits_topic)
async def teams(stream: Any) -> None:
    """Keep team and company contributions (scope ids ``team:<id>`` and ``company:company``)."""
    async for batch in stream.take_events(settings.batch_size, within=settings.batch_within):
        await mirror.ready.wait()
        changes, touched = team_keeper.apply(batch)
        await publish(team_keeper, touched, changes)


# --- progress, alerts, metrics -------------------------------------------------------------------


async def publish(keeper: BookKeeper, touched: dict[str, EventT], changes: list[Change]) -> None:
    """Publish the figures of what a batch touched: progress records, status alerts, gauges.

    Progress goes out for every (metric, period) a change fell in; alerts and gauges for the
    current periods only (the ones a manager can still act on).
    """
    if not touched:
        return
    now = datetime.now(UTC)
    changed: dict[str, set[tuple[str, str]]] = {}
    for change in changes:
        labels = changed.setdefault(change.scope_id, set())
        for c in (change.old, change.new):
            if c is not None:
                labels.update((c.metric, label) for label in rules.calendar.labels_at(c.time))
    current = views.current_periods(now)
    for book_key, message in sorted(touched.items()):
        with processing(message):
            await _publish_scope(keeper, book_key, changed.get(book_key, set()), current, now)


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
        await progress_topic.send(key=key.encode(), value=_encode(record))
    team = reference.roster.team_at(scope_id, now) if scope == "rep" else None
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
    await alerts_topic.send(key=f"{scope}:{scope_id}".encode(), value=_encode(alert))


@app.timer(interval=settings.alert_interval)
async def tick() -> None:
    """Ask the rep and team stages to re-evaluate their scopes: pace falls as time passes.

    Ticks go through the plain (non-transactional) producer: they carry no data, a lost or
    repeated tick is harmless, and they must not wait for a partition's next transaction.
    """
    body = _encode({"tick": datetime.now(UTC).isoformat()})
    names = {credits_topic.get_topic_name(), team_credits_topic.get_topic_name()}
    for tp in sorted(app.consumer.assignment()):
        if tp.topic in names:
            await app.producer.send(tp.topic, None, body, tp.partition, None, None)


@app.on_rebalance_complete.connect
async def _on_rebalance(sender: Any, **kwargs: Any) -> None:
    """Partitions moved: rebuild the books from the tables, drop gauges of scopes we lost."""
    rep_keeper.stale = True
    team_keeper.stale = True
    metrics.QUOTAS.forget_where(lambda scope, scope_id: True)
    metrics.WORKER_UP.set(1)
