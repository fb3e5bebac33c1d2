"""Helpers of the tests that feed the pipeline's input topics: events, reading topics back."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from kafka import KafkaConsumer, TopicPartition

from streams.settings import Settings


@dataclass(frozen=True)
class Message:
    """One record read back (headers as a dict: the tests never repeat a header)."""

    key: bytes | None
    value: bytes
    headers: dict[str, bytes]
    partition: int


def read_topic(settings: Settings, name: str) -> list[Message]:
    """Every message of a topic, from the beginning to the end offsets seen now."""
    consumer = KafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, enable_auto_commit=False)
    try:
        topic = settings.topic(name)
        tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        assert tps, f"topic {topic} does not exist"
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        ends = consumer.end_offsets(tps)
        found: list[Message] = []
        deadline = time.monotonic() + 30
        while any(consumer.position(tp) < ends[tp] for tp in tps):
            assert time.monotonic() < deadline, f"could not read {topic} to its end"
            for tp, records in consumer.poll(timeout_ms=500).items():
                found.extend(
                    Message(r.key, r.value, dict(r.headers or []), tp.partition)
                    for r in records
                    if r.offset < ends[tp]
                )
        return found
    finally:
        consumer.close()


def event(event_id: str, rep: str = "r1", **data: Any) -> dict[str, Any]:
    """A CloudEvent: a call, or a ``deal.won`` when ``deal_id`` is among the data fields."""
    return {
        "specversion": "1.0",
        "id": event_id,
        "source": "crm.test",
        "type": "deal.won" if "deal_id" in data else "call.completed",
        "time": "2026-11-27T10:00:00+01:00",
        "data": {"rep_id": rep, **data},
    }
