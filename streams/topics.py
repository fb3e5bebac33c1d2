"""The topics of the pipeline: names, partition counts, configs, and their creation.

The broker runs with automatic topic creation off, so the worker (and tests, and the CLI before
it produces) create them here, idempotently.
"""

from __future__ import annotations

from kafka.admin import KafkaAdminClient, NewTopic
from kafka.errors import TopicAlreadyExistsError

from streams.kafka_clients import new_client
from streams.settings import Settings

_COMPACTED = {"cleanup.policy": "compact"}

#: Short topic names → (partitions or None for ``settings.partitions``, extra topic configs).
#: Internal topics carry the same partition count so keys stay co-partitioned.
TOPICS: dict[str, tuple[int | None, dict[str, str]]] = {
    "activity": (None, {}),
    "activity.dlq": (None, {}),
    "events": (None, {}),
    "deal-copies": (None, _COMPACTED),
    "credits": (None, _COMPACTED),
    "buckets": (None, _COMPACTED),
    "tally-changelog": (None, _COMPACTED),
    "progress": (None, {}),
    "alerts": (None, {}),
    "quotas": (1, _COMPACTED),
    "roster": (1, _COMPACTED),
}


def ensure_topics(settings: Settings) -> list[str]:
    """Create the app's topics (auto-creation is off on the broker); returns the created names."""
    admin = new_client(KafkaAdminClient, settings, client_id="spm-admin")
    try:
        existing = set(admin.list_topics())
        wanted = [
            NewTopic(
                settings.topic(name),
                num_partitions=partitions or settings.partitions,
                replication_factor=1,
                topic_configs=configs,
            )
            for name, (partitions, configs) in TOPICS.items()
            if settings.topic(name) not in existing
        ]
        created: list[str] = []
        for topic in wanted:
            try:
                admin.create_topics([topic])
                created.append(topic.name)
            except TopicAlreadyExistsError:
                pass
        return created
    finally:
        admin.close()
