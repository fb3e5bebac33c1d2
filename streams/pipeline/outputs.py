"""Where a partition's effects go: deal credits, buckets, changelog records, dead letters.

Every key is chosen so that a compacted topic keeps exactly the state it stands for: a deal
event copy per (deal, idempotency key) in the deal's partition, a credit per (rep, deal) in the
rep's partition, a bucket per (scope, origin partition, month) in the
scope's partition, a changelog record per state key in the tally's own partition. Values carry
versions, so whatever a topic holds twice or out of order, readers keep the newest.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from streams.engine.errors import Invalid
from streams.engine.events import Event
from streams.engine.scopes import scope_key
from streams.engine.tally import SEP, Effects, Tally, record_doc
from streams.pipeline.kafka import Producer, partition_for
from streams.settings import Settings

Pending = list[asyncio.Future[Any]]


@dataclass(frozen=True)
class TopicNames:
    """Full names of the pipeline's topics for one settings' prefix."""

    activity: str
    dlq: str
    events: str
    copies: str
    credits: str
    buckets: str
    changelog: str
    progress: str
    alerts: str

    @classmethod
    def of(cls, settings: Settings) -> TopicNames:
        t = settings.topic
        return cls(
            t("activity"),
            t("activity.dlq"),
            t("events"),
            t("deal-copies"),
            t("credits"),
            t("buckets"),
            t("tally-changelog"),
            t("progress"),
            t("alerts"),
        )


class Outputs:
    """Sends effects through the pipeline's own producer; returns the broker futures."""

    def __init__(self, settings: Settings, producer: Producer) -> None:
        self.topics = TopicNames.of(settings)
        self.partitions = settings.partitions
        self.producer = producer

    def partition_of(self, key: str) -> int:
        return partition_for(key, self.partitions)

    async def effects(self, tally: Tally, fx: Effects) -> Pending:
        """Deal event copies to the deals' partitions, credits to the reps' and this
        partition's buckets to the scopes'."""
        send = self._send_state
        topics = self.topics
        pending: Pending = []
        for copy in fx.copies:
            key = f"{copy.deal_id}{SEP}{copy.key}"
            pending.append(await send(topics.copies, copy.to_dict(), key, copy.deal_id))
        for credit in fx.credits:
            key = f"{credit.rep_id}{SEP}{credit.deal_id}"
            pending.append(await send(topics.credits, credit.to_dict(), key, credit.rep_id))
        for scope, month in sorted(fx.buckets):
            home = scope_key(scope)
            key = f"{home}{SEP}{tally.partition}{SEP}{month}"
            doc = tally.out_bucket(scope, month).to_dict()
            pending.append(await send(topics.buckets, doc, key, home))
        return pending

    async def _send_state(
        self, topic: str, doc: dict[str, Any], key: str, home: str
    ) -> asyncio.Future[Any]:
        """One state message, keyed for compaction, to the partition of ``home``'s key."""
        return await self.producer.send(
            topic, orjson.dumps(doc), key=key.encode(), partition=self.partition_of(home)
        )

    async def records(self, tally: Tally, records: dict[str, Any]) -> Pending:
        """Changelog records of the tally's partition, stamped with its current version."""
        stamp = [tally.epoch, tally.seq]
        return [
            await self.producer.send(
                self.topics.changelog,
                orjson.dumps({"v": stamp, **record_doc(record)}),
                key=key.encode(),
                partition=tally.partition,
            )
            for key, record in records.items()
        ]

    async def dead_letter(
        self,
        invalid: Invalid,
        key: bytes | None,
        value: bytes,
        headers: Iterable[tuple[str, bytes]],
        source: tuple[str, int, int],
    ) -> asyncio.Future[Any]:
        """The original bytes, key and headers plus the reason and where the message was."""
        topic, partition, offset = source
        reason = [
            ("spm-error-code", invalid.code),
            ("spm-error-message", invalid.message),
            ("spm-error-path", invalid.path),
            ("spm-source-topic", topic),
            ("spm-source-partition", str(partition)),
            ("spm-source-offset", str(offset)),
        ]
        return await self.producer.send(
            self.topics.dlq,
            value,
            key=key,
            headers=[*headers, *((name, str(v).encode()) for name, v in reason)],
        )

    async def reroute(self, event: Event, partition: int) -> asyncio.Future[Any]:
        """An event that arrived in another partition than its key's, to its own."""
        return await self.producer.send(
            self.topics.events,
            event.to_json(),
            key=event.partition_key.encode(),
            partition=partition,
            headers=[("spm-type", event.type.encode())],
        )


async def settle(pending: Sequence[asyncio.Future[Any]]) -> None:
    """Wait until the broker acknowledged every send (a failure raises)."""
    if pending:
        await asyncio.gather(*pending)
