"""Quotas and roster as global tables: every worker mirrors the whole compacted topics.

Targets and team membership are read on every figure, by every worker, for keys of every
partition, so each worker keeps a full copy (a global table). Faust's own ``GlobalTable`` warns
of recovery loops with several app instances, so the mirror is a small service of our own: an
aiokafka consumer without a group, assigned every partition, reading from the beginning and
then following the topics. It feeds the engine's ``QuotaBook`` and ``Roster``; ``ready`` is set
once the backlog that existed at start-up has been read, and agents wait for it before they
count anything (credit must go to the team the rep belonged to, which needs the roster).
"""

from __future__ import annotations

import asyncio
import json
from datetime import datetime
from decimal import Decimal
from typing import Any

import structlog
from aiokafka import AIOKafkaConsumer, TopicPartition
from mode import Service

from streams.engine.quotas import QuotaBook
from streams.engine.roster import Roster
from streams.kafka_clients import new_client
from streams.settings import Settings

log = structlog.get_logger(__name__)


def _time(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def _key(raw: bytes | None) -> str:
    """Keys are plain strings; a JSON-encoded string key is accepted too."""
    text = (raw or b"").decode()
    return json.loads(text) if text.startswith('"') else text


class ReferenceData:
    """The quotas and the roster as of the records read so far (pure bookkeeping, no I/O)."""

    def __init__(self) -> None:
        self.quotas = QuotaBook()
        self.roster = Roster()
        #: Bumped on every applied record, so readers can cache derived answers.
        self.version = 0

    def apply_quota(self, key: str, value: dict[str, Any] | None) -> None:
        if value is None:
            scope, scope_id, metric, period, effective_from = key.split("|")
            self.quotas.remove(scope, scope_id, metric, period, _time(effective_from))
        else:
            self.quotas.set(
                value["scope"],
                value["scope_id"],
                value["metric"],
                value["period"],
                Decimal(str(value["target"])),
                _time(value.get("effective_from")),
            )
        self.version += 1

    def apply_roster(self, value: dict[str, Any] | None) -> None:
        if value is None:  # a deleted roster record: history stays as it was
            return
        if value["kind"] == "team":
            self.roster.set_team(
                value["team_id"], value.get("name") or value["team_id"], value.get("parent_id")
            )
        else:
            self.roster.set_assignment(
                value["rep_id"],
                value.get("name") or value["rep_id"],
                value["team_id"],
                _time(value.get("effective_from")),
            )
        self.version += 1


class ReferenceMirror(Service):
    """Follows ``spm.quotas`` and ``spm.roster`` into a :class:`ReferenceData`."""

    def __init__(self, settings: Settings, data: ReferenceData, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.settings = settings
        self.data = data
        self.ready = asyncio.Event()
        self._quotas = settings.topic("quotas")
        self._roster = settings.topic("roster")
        self._consumer: AIOKafkaConsumer | None = None

    async def on_start(self) -> None:
        consumer = new_client(
            AIOKafkaConsumer,
            self.settings,
            enable_auto_commit=False,
            isolation_level="read_committed",
            auto_offset_reset="earliest",
        )
        await consumer.start()
        partitions = [
            TopicPartition(topic, p)
            for topic in (self._quotas, self._roster)
            for p in sorted(consumer.partitions_for_topic(topic) or {0})
        ]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        self._consumer = consumer
        self._backlog = await consumer.end_offsets(partitions)

    async def on_stop(self) -> None:
        if self._consumer is not None:
            await self._consumer.stop()

    @Service.task
    async def _follow(self) -> None:
        consumer = self._consumer
        assert consumer is not None
        while not self.should_stop:
            batches = await consumer.getmany(timeout_ms=200, max_records=5000)
            for tp, records in batches.items():
                for record in records:
                    self._apply(tp.topic, record.key, record.value)
            if not self.ready.is_set() and await self._caught_up(consumer):
                log.info("reference data loaded", version=self.data.version)
                self.ready.set()

    async def _caught_up(self, consumer: AIOKafkaConsumer) -> bool:
        for tp, end in self._backlog.items():
            if await consumer.position(tp) < end:
                return False
        return True

    def _apply(self, topic: str, key: bytes | None, value: bytes | None) -> None:
        try:
            record = json.loads(value) if value else None
            if topic == self._quotas:
                self.data.apply_quota(_key(key), record)
            else:
                self.data.apply_roster(record)
        except (ValueError, KeyError, TypeError, ArithmeticError) as exc:
            # Reference topics are written by our importers, which validate; a foreign bad
            # record is logged and skipped rather than stopping every worker.
            log.error("bad reference record", topic=topic, key=key, error=str(exc))
