"""Dead-letter replay: after a catalog or rates fix, the letters that now pass go back in.

Each letter's ORIGINAL bytes are decoded again with the current decoder; those that pass are
re-sent to the activity topic with their original key and headers (the ``spm-`` error
headers dropped, ``spm-replayed-from`` added), the others are reported with today's reason.
Progress is committed in the consumer group ``<app_id>-dlq-replay`` only after the re-sent
messages are acknowledged, so a second run neither loses nor re-submits a letter.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field

import structlog
from kafka import KafkaConsumer, TopicPartition
from kafka.consumer.fetcher import ConsumerRecord
from kafka.structs import OffsetAndMetadata

from streams.engine.errors import Invalid
from streams.kafka_clients import new_client
from streams.producer import EventProducer

log = structlog.get_logger(__name__)

ERROR_HEADER_PREFIXES = ("spm-error-", "spm-source-")
REPLAYED_FROM = "spm-replayed-from"


@dataclass(frozen=True, slots=True)
class StillFailing:
    """A letter that the current decoder still rejects."""

    partition: int
    offset: int
    reason: Invalid


@dataclass
class ReplayReport:
    read: int = 0
    replayed: int = 0
    failing: list[StillFailing] = field(default_factory=list)

    def reasons(self) -> Counter[str]:
        return Counter(f.reason.code for f in self.failing)


def replay_group(app_id: str) -> str:
    return f"{app_id}-dlq-replay"


def replay_dead_letters(
    producer: EventProducer,
    *,
    since_offset: int | None = None,
    limit: int | None = None,
    dry_run: bool = False,
    idle_timeout: float = 10.0,
) -> ReplayReport:
    """Replay the letters not yet replayed (or from ``since_offset`` in every partition).

    Reads up to the end offsets seen at the start (letters arriving meanwhile wait for the
    next run) and at most ``limit`` letters. A dry run sends and commits nothing. Gives up
    with what it has when no letter arrives for ``idle_timeout`` seconds.
    """
    settings = producer.settings
    topic = settings.topic("activity.dlq")
    report = ReplayReport()
    consumer = new_client(
        KafkaConsumer,
        settings,
        group_id=replay_group(settings.app_id),
        client_id=f"{settings.app_id}-dlq-replay",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    try:
        partitions = consumer.partitions_for_topic(topic)
        if not partitions:
            raise ValueError(f"topic {topic} does not exist")
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(tps)
        if since_offset is not None:
            for tp in tps:
                consumer.seek(tp, since_offset)
        ends = consumer.end_offsets(tps)
        done: dict[TopicPartition, int] = {}  # next offset to commit, per partition
        last_progress = time.monotonic()
        while (limit is None or report.read < limit) and any(
            consumer.position(tp) < ends[tp] for tp in tps
        ):
            batches = consumer.poll(timeout_ms=500, max_records=500)
            if not batches:
                if time.monotonic() - last_progress > idle_timeout:
                    log.warning("dlq_replay.idle", topic=topic, read=report.read)
                    break
                continue
            last_progress = time.monotonic()
            for tp, messages in batches.items():
                for message in messages:
                    if message.offset >= ends[tp] or (limit is not None and report.read >= limit):
                        break
                    report.read += 1
                    _replay_one(producer, message, report, dry_run)
                    done[tp] = message.offset + 1
            if limit is not None and report.read >= limit:
                break
        if not dry_run and done:
            producer.flush()
            consumer.commit({tp: OffsetAndMetadata(o, "", -1) for tp, o in done.items()})
    finally:
        consumer.close(autocommit=False)
    log.info(
        "dlq_replay.done",
        read=report.read,
        replayed=report.replayed,
        failing=len(report.failing),
        dry_run=dry_run,
    )
    return report


def _replay_one(
    producer: EventProducer, letter: ConsumerRecord, report: ReplayReport, dry_run: bool
) -> None:
    decoded = producer.decoder.decode(letter.value)
    if isinstance(decoded, Invalid):
        report.failing.append(StillFailing(letter.partition, letter.offset, decoded))
        return
    report.replayed += 1
    if dry_run:
        return
    headers = [(k, v) for k, v in letter.headers or [] if not k.startswith(ERROR_HEADER_PREFIXES)]
    origin = f"{letter.topic}/{letter.partition}/{letter.offset}"
    headers.append((REPLAYED_FROM, origin.encode()))
    producer.send_raw(letter.value, key=letter.key, headers=headers)
