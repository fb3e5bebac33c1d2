"""Exactly-once that holds across a repartition: one Kafka transaction per *source* partition.

Faust's transaction manager picks the transactional producer of a message by the partition
it is sent *to*. When an agent reading partition 2 of one topic sends to partition 0 of
another, the send joins the transaction of partition 0, which commits on partition 0's
schedule: a crash in between commits the input offset of partition 2 while aborting the
output, and the output is lost. It also commits offsets without first draining the buffer
of table changelog writes, so a crash can keep an offset and lose the state it produced.

This manager fixes both, the way Kafka Streams does it: every keyed message produced while an
event is processed joins the transaction of that event's partition (its topic group and
partition number), and the changelog buffer is flushed into the open transactions before
offsets are committed with them. Table changelog writes name their partition, which is the
source partition of the event that made them, so they keep Faust's routing; with all consumed
topics in one co-partitioned group they land in that event's transaction. Sends made outside
any event (timers) keep Faust's behaviour too.

Faust commits from a timer, concurrently with the agents. A commit that lands in the middle
of a batch splits an event's effects over two transactions: its table write in the one that
commits, the message that write stands for in the next. After a crash the replayed event
finds the write "already done" and the message is lost. So a commit waits, through
:data:`batches`, until no batch is being processed, and holds new ones back until it is done;
offsets are only acknowledged after their batch, so a crash can repeat work (which the
idempotent stages absorb) but never lose it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Mapping
from contextlib import asynccontextmanager
from typing import Any

from faust.streams import current_event
from faust.transport.consumer import TransactionManager
from faust.types import TP, AppT
from faust.types.tuples import RecordMetadata

#: Seconds a commit waits for the changelog buffer to drain.
DRAIN_TIMEOUT = 30.0


class BatchGate:
    """Keeps transaction boundaries between batches: many batches at once, or one commit."""

    def __init__(self) -> None:
        self._active = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self._open = asyncio.Event()
        self._open.set()
        self._commit = asyncio.Lock()

    @asynccontextmanager
    async def batch(self) -> AsyncIterator[None]:
        """Process one batch: its table writes and messages all join the same transactions."""
        while not self._open.is_set():
            await self._open.wait()
        self._active += 1
        self._idle.clear()
        try:
            yield
        finally:
            self._active -= 1
            if not self._active:
                self._idle.set()

    @asynccontextmanager
    async def between_batches(self) -> AsyncIterator[None]:
        """Wait for the batches under way to finish; hold new ones back until the block ends."""
        async with self._commit:
            self._open.clear()
            try:
                while self._active:
                    await self._idle.wait()
                yield
            finally:
                self._open.set()


#: The worker's gate: agents enter it per batch, commits wait for it.
batches = BatchGate()


class SourcePartitionTransactions(TransactionManager):
    """Faust's ``TransactionManager`` with sends bound to the source partition's transaction."""

    async def send(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        partition: int | None,
        timestamp: float | None,
        headers: Any,
        *,
        transactional_id: str | None = None,
    ) -> Awaitable[RecordMetadata]:
        event = current_event()
        if event is None or partition is not None:
            # No event, or a table changelog write, whose partition *is* the source partition
            # of the event that made it (it may be flushed from the buffer while another
            # partition's event is current): the destination partition's transaction.
            return await super().send(topic, key, value, partition, timestamp, headers)
        source = event.message.tp
        group = self.app.assignor.group_for_topic(source.topic)
        destination = self.consumer.key_partition(topic, key, partition)
        return await self.producer.send(
            topic,
            key,
            value,
            destination,
            timestamp,
            headers,
            transactional_id=f"{self.app.conf.id}-{group}-{source.partition}",
        )

    async def commit(self, offsets: Mapping[TP, int], start_new_transaction: bool = True) -> bool:
        # Changelog writes wait in Faust's producer buffer; they must be in the transaction
        # that commits the offsets of the events that made them. Faust's ``flush`` gives up
        # after 0.1 s without progress, so drain until empty, and refuse to commit otherwise
        # (the worker then restarts from the last commit instead of losing state).
        async with batches.between_batches():
            buffer = self.app.producer.buffer
            deadline = time.monotonic() + DRAIN_TIMEOUT
            while buffer.size and time.monotonic() < deadline:
                await buffer.flush()
            if buffer.size:
                raise RuntimeError(f"{buffer.size} changelog writes not sent in {DRAIN_TIMEOUT}s")
            return await super().commit(offsets, start_new_transaction=start_new_transaction)


def install(app: AppT) -> None:
    """Make ``app`` use :class:`SourcePartitionTransactions` (before the worker starts)."""
    app.transport.TransactionManager = SourcePartitionTransactions  # type: ignore[misc]
