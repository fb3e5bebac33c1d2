"""The topology: which topics the one agent reads, and the parts a worker runs.

Topic flow (all co-partitioned, ``SPM_PARTITIONS`` each; Faust assigns partition ``p`` of every
topic to the same worker, which holds tally ``p``)::

    spm.activity ─────┐ (any key)          ┌─> spm.activity.dlq   rejected: original bytes, reason
    spm.events ───────┤ (re-routed events) ├─> spm.events         events in the wrong partition
    spm.deal-copies ──┼──> tally p ────────┼─> spm.deal-copies    a key's counting copy per deal
    spm.credits ──────┤                    ├─> spm.credits        deal credit per (rep, deal)
    spm.buckets ──────┘                    ├─> spm.buckets        buckets per (scope, origin, month)
                                           ├─> spm.tally-changelog  rep-days, keys, deals, claims
                                           └─> spm.progress, spm.alerts, /metrics
    spm.quotas, spm.roster (compacted) ─> every worker's reference mirror

Events are keyed by idempotency key: the partition of ``(source, id)`` judges its copies and
counts activities. An event whose key hashes to the partition it arrived in (the producer
helper, ``spm emit``) is judged where it lands; any other takes one hop through ``spm.events``.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import faust
import structlog
from aiokafka.errors import KafkaError
from tenacity import retry, retry_if_exception_type, wait_exponential

from streams import metrics
from streams.live import LiveViews
from streams.pipeline.kafka import Producer
from streams.pipeline.outputs import Outputs
from streams.pipeline.partitions import Partitions
from streams.pipeline.publishing import Celebrating, Publisher
from streams.pipeline.stage import Stage
from streams.reference import ReferenceData, ReferenceMirror
from streams.rules import Rules
from streams.settings import Settings
from streams.sinks.clickhouse import ClickHouseSink

log = structlog.get_logger(__name__)


@dataclass
class Runtime:
    """Everything a worker runs besides Faust itself; the web views reach it via the app."""

    settings: Settings
    rules: Rules
    reference: ReferenceData
    mirror: ReferenceMirror
    producer: Producer
    outputs: Outputs
    partitions: Partitions
    views: LiveViews
    publisher: Publisher
    stage: Stage


def build(app: faust.App, settings: Settings) -> Runtime:
    """Create the runtime of ``app`` and attach its services, agent and timers."""
    rules = Rules.from_settings(settings)
    metrics.configure_quotas(
        settings.metrics_exported,
        settings.metrics_period_types,
        rules.catalog.names,
        rules.thresholds,
    )
    reference = ReferenceData()
    mirror = ReferenceMirror(settings, reference)
    producer = Producer(settings)
    outputs = Outputs(settings, producer)
    partitions = Partitions(settings, rules, reference, outputs)
    views = LiveViews(
        rules.calendar, rules.catalog, rules.thresholds, reference, partitions, settings.partitions
    )
    publisher = Publisher(views, reference, outputs, Celebrating.from_settings(settings))
    stage = Stage(rules, partitions, outputs, publisher)
    topics = outputs.topics
    runtime = Runtime(
        settings,
        rules,
        reference,
        mirror,
        producer,
        outputs,
        partitions,
        views,
        publisher,
        stage,
    )
    app.service(mirror)  # type: ignore[arg-type]  # Faust types it for classes; instances work
    app.service(producer)  # type: ignore[arg-type]
    if settings.history_sink:
        app.service(ClickHouseSink(settings))  # type: ignore[arg-type]

    source = app.topic(
        topics.activity, topics.events, topics.copies, topics.credits, topics.buckets
    )

    @app.agent(source, name="tally")
    async def tally(stream: Any) -> None:
        """Count batches; acknowledge a batch only once everything it wrote is durable."""
        async for batch in stream.noack_take(settings.batch_size, within=settings.batch_within):
            await mirror.ready.wait()
            done = await _until_durable(stage, batch)
            for event in batch:
                if event.message.partition in done:
                    await stream.ack(event)

    @app.timer(interval=settings.publish_interval)
    @_survives
    async def publish() -> None:
        if mirror.ready.is_set():
            await stage.follow_roster()
            await publisher.flush()

    @app.timer(interval=settings.alert_interval)
    @_survives
    async def tick() -> None:
        if mirror.ready.is_set():
            await publisher.tick()

    @app.timer(interval=5.0)
    @_survives
    async def consumer_lag() -> None:
        consumer = app.consumer
        for tp in consumer.assignment():
            position, highwater = await consumer.position(tp), consumer.highwater(tp)
            if position is not None and highwater is not None:  # unknown just after a rebalance
                lag = max(0, highwater - position)
                metrics.CONSUMER_LAG.labels(tp.topic, str(tp.partition)).set(lag)

    return runtime


def _survives(timer: Callable[[], Awaitable[None]]) -> Callable[[], Awaitable[None]]:
    """A Faust timer that raises stops the whole worker; these only publish what the next run
    publishes again (figures, lag), so a failed run is logged and the next one goes ahead.
    Measured: a partition revoked between ``assignment()`` and ``position()`` did that."""

    @functools.wraps(timer)
    async def run() -> None:
        try:
            await timer()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("timer run failed; the next run retries", timer=timer.__name__)

    return run


@retry(
    retry=retry_if_exception_type(KafkaError),
    wait=wait_exponential(multiplier=0.2, max=5.0),
    before_sleep=lambda state: log.warning(
        "batch not durable yet, retrying", error=repr(state.outcome and state.outcome.exception())
    ),
)
async def _until_durable(stage: Stage, batch: Any) -> set[int]:
    """Process ``batch`` until everything it writes is acknowledged: while the broker is away
    the worker waits instead of dying, and applying a batch again is harmless by design."""
    return await stage.process(batch)
