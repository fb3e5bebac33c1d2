"""EventProducer on the real broker: what is validated, how it is keyed, refusals surface."""

from __future__ import annotations

import json

import pytest
from kafka import KafkaAdminClient
from kafka.admin import NewTopic

from streams.producer import DeliveryError, EventProducer
from streams.settings import Settings
from tests.integration.feeding import event, read_topic


def test_send_event_validates_keys_and_sends_the_original_bytes(
    stack: Settings, unique_prefix: str, kafka_admin: KafkaAdminClient
) -> None:
    settings = stack.model_copy(update={"topic_prefix": unique_prefix, "app_id": unique_prefix})
    kafka_admin.create_topics([NewTopic(settings.topic("activity"), 2, 1)])
    spaced = json.dumps(event("p1", rep="r3"), indent=1).encode()  # sent as is, not re-encoded
    with EventProducer(settings) as producer:
        assert producer.send_event(spaced) is None
        assert producer.send_event(event("p2", deal_id="D-4", amount=12, currency="GBP")) is None
        rejected = producer.send_event(event("p3", deal_id="D-5", amount="-1", currency="GBP"))
        assert rejected is not None and rejected.code == "bad_amount"
        assert rejected.path == "data.amount"
    sent = read_topic(settings, "activity")
    assert {m.key: m.value for m in sent} == {
        b"8:crm.test\x1fp1": spaced,  # keyed by idempotency key
        b"8:crm.test\x1fp2": json.dumps(
            event("p2", deal_id="D-4", amount=12, currency="GBP"), separators=(",", ":")
        ).encode(),
    }


def test_a_refused_send_raises_at_flush(
    stack: Settings, unique_prefix: str, kafka_admin: KafkaAdminClient
) -> None:
    settings = stack.model_copy(update={"topic_prefix": unique_prefix, "app_id": unique_prefix})
    small = NewTopic(settings.topic("activity"), 1, 1, topic_configs={"max.message.bytes": "300"})
    kafka_admin.create_topics([small])
    big = event("p9", rep="r1", note="x" * 1000)
    producer = EventProducer(settings)
    try:
        assert producer.send_event(big) is None  # valid: the broker is the one refusing it
        with pytest.raises(DeliveryError, match="1 message"):
            producer.flush(timeout=30)
        producer.flush(timeout=30)  # the failure was reported once
    finally:
        producer.close()
