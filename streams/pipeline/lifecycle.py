"""Rebalances: which tallies this worker holds, and the gauges it stops exporting.

Faust assigns partition ``p`` of every co-partitioned topic to one worker; the tally of ``p``
follows the ``spm.activity`` partition. A revoked partition's tally is dropped at once (its
new owner restores it from Kafka); an assigned one is restored in the background.
"""

from __future__ import annotations

import asyncio
from typing import Any

import faust
import structlog

from streams import metrics
from streams.pipeline import faust_compat
from streams.pipeline.topology import Runtime

log = structlog.get_logger(__name__)


def attach(app: faust.App, runtime: Runtime) -> None:
    topics = runtime.outputs.topics
    pipeline = {topics.activity, topics.events, topics.copies, topics.credits, topics.buckets}
    restoring: set[asyncio.Task[None]] = set()

    def forget(dropped: set[int]) -> None:
        if dropped:
            runtime.publisher.forget(dropped)
            metrics.QUOTAS.forget_where(
                lambda scope, scope_id: runtime.views.partition_of((scope, scope_id)) in dropped
            )

    @app.on_partitions_revoked.connect
    async def _revoked(sender: Any, /, *args: Any, signal: Any = None, **kwargs: Any) -> None:
        lost = {tp.partition for tp in args[0] if tp.topic == topics.activity}
        forget(runtime.partitions.assign(runtime.partitions.assigned - lost))

    @app.on_rebalance_complete.connect
    async def _rebalanced(sender: Any, /, *args: Any, signal: Any = None, **kwargs: Any) -> None:
        faust_compat.hold_flow_until_seek(app)
        assignment = app.consumer.assignment()
        by_topic: dict[str, set[int]] = {}
        for tp in assignment:
            if tp.topic in pipeline:
                by_topic.setdefault(tp.topic, set()).add(tp.partition)
        mine = by_topic.get(topics.activity, set())
        if any(by_topic.get(t, set()) != mine for t in pipeline):
            log.error("assignment is not co-partitioned", assignment=by_topic)
        forget(runtime.partitions.assign(mine))
        runtime.partitions.assigned_once = True
        metrics.CONSUMER_LAG.clear()
        metrics.WORKER_UP.set(1)
        task = asyncio.ensure_future(_restore(runtime))
        restoring.add(task)
        task.add_done_callback(restoring.discard)

    @app.on_before_shutdown.connect
    async def _shutdown(sender: Any, /, *args: Any, signal: Any = None, **kwargs: Any) -> None:
        metrics.WORKER_UP.set(0)


async def _restore(runtime: Runtime) -> None:
    await runtime.mirror.ready.wait()
    try:
        await runtime.partitions.restore_assigned()
    except asyncio.CancelledError:
        raise
    except Exception:  # the agent restores on demand; this only makes health turn ok early
        log.exception("background restore failed")
