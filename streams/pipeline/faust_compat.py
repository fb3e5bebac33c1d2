"""The one place that works around Faust behaviour (checked against faust-streaming 0.15.3).

After a rebalance Faust sends ``on_rebalance_complete``, resumes the assigned partitions,
seeks them to their committed offsets (``Consumer.perform_seek``) and only then resumes the
flow. Records fetched while the flow is stopped are dropped undelivered, yet the fetch
position moves past them; the seek is what brings them back. Two gaps remain, both closed
here with public extension points only:

* With the fetcher running during the seek, its read-offset bookkeeping goes wrong (a
  re-fetched range dropped as "already read", or skipped as a gap: acknowledged, never
  processed). Stopping the flow when ``on_rebalance_complete`` arrives keeps it quiet until
  the seek (``hold_flow_until_seek``).
* The seek is aiokafka's ``seek_to_committed``, which leaves alone a partition whose
  committed offset is missing or 0: a partition that changes hands before its first commit
  lost the records dropped in that window (measured in the rolling-restart matrix: ~80
  records of each such partition). ``SeekingConsumer.perform_seek`` also sends those
  partitions back to their beginning; re-reading is harmless, every stage is idempotent.
  ``use_seeking_transport`` installs it through the app's public ``transport`` setter. The
  seek goes through ``seek_wait``, which runs in the consumer's own thread: Faust's ``seek``
  changes aiokafka's fetcher from the calling thread, and the fetcher, iterating its records
  in its thread at that moment, raised ``KeyError`` and stopped the worker (seen in the
  failover matrix once a topic had many never-committed partitions).
"""

from __future__ import annotations

from typing import Any, ClassVar

import faust
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import ConsumerT


def hold_flow_until_seek(app: faust.App) -> None:
    app.consumer.stop_flow()


class SeekingConsumer(faust_aiokafka.Consumer):
    """Faust's aiokafka consumer whose post-rebalance seek also covers never-committed
    partitions."""

    async def perform_seek(self) -> None:
        await super().perform_seek()
        committed = await self.seek_to_committed()
        fresh = [tp for tp, offset in committed.items() if not offset]
        if fresh:
            await self.seek_wait(await self.earliest_offsets(*fresh))


class SeekingTransport(faust_aiokafka.Transport):
    Consumer: ClassVar[type[ConsumerT]] = SeekingConsumer


def use_seeking_transport(app: faust.App) -> None:
    """Give ``app`` the transport of :class:`SeekingConsumer` (call before it starts)."""
    urls: Any = app.conf.broker_consumer
    app.transport = SeekingTransport(urls, app)
