"""Plain aiokafka I/O the pipeline owns: an acknowledged producer and partition reads.

The pipeline's outputs and its changelog go through this producer, not Faust's, so a batch can
wait for the broker's acknowledgement of everything it wrote before its input is acknowledged:
that order, and data whose re-delivery is harmless, is what exactness rests on.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.partitioner import murmur2
from mode import Service

from streams.kafka_clients import new_client
from streams.settings import Settings


def partition_for(key: str, partitions: int) -> int:
    """The partition Kafka's default partitioner picks for ``key`` (murmur2, as Java's)."""
    return (murmur2(key.encode()) & 0x7FFFFFFF) % partitions


class Producer(Service):
    """An idempotent producer with ``acks=all``; ``send`` returns the broker's future."""

    def __init__(self, settings: Settings, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.settings = settings
        self._producer: AIOKafkaProducer | None = None

    async def on_start(self) -> None:
        self._producer = new_client(
            AIOKafkaProducer,
            self.settings,
            acks="all",
            enable_idempotence=True,
            linger_ms=5,
            max_batch_size=1 << 20,
            max_request_size=8 << 20,
        )
        await self._producer.start()

    async def on_stop(self) -> None:
        if self._producer is not None:
            await self._producer.stop()

    async def send(
        self,
        topic: str,
        value: bytes | None,
        *,
        key: bytes | None = None,
        partition: int | None = None,
        headers: Sequence[tuple[str, bytes]] | None = None,
    ) -> asyncio.Future[Any]:
        assert self._producer is not None, "producer not started"
        return await self._producer.send(
            topic, value, key=key, partition=partition, headers=list(headers or ()) or None
        )


@asynccontextmanager
async def partition_reader(settings: Settings) -> AsyncIterator[AIOKafkaConsumer]:
    """A group-less consumer for ``read_partition`` (one per restore, not one per topic)."""
    consumer = new_client(
        AIOKafkaConsumer,
        settings,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_partition_fetch_bytes=8 << 20,
    )
    await consumer.start()
    try:
        yield consumer
    finally:
        await consumer.stop()


async def read_partition(
    consumer: AIOKafkaConsumer, topic: str, partition: int, max_records: int = 20_000
) -> AsyncIterator[list[ConsumerRecord]]:
    """Every record of one partition from its beginning up to its end at the call, in order."""
    tp = TopicPartition(topic, partition)
    consumer.assign([tp])
    await consumer.seek_to_beginning(tp)
    end = (await consumer.end_offsets([tp]))[tp]
    while await consumer.position(tp) < end:
        batch = await consumer.getmany(tp, timeout_ms=500, max_records=max_records)
        records = [r for r in batch.get(tp, []) if r.offset < end]
        if records:
            yield records
