"""What one batch does: count every message in its partition's tally, then write.

A batch holds messages of five co-partitioned topics: input events (``activity``), events that
arrived in the wrong partition (``events``), deal event copies (``deal-copies``), deal credits
(``credits``) and buckets (``buckets``). Per partition the tally applies them in order; then, in
this order, the batch

1. sends its effects (deal event copies, deal credits, buckets, dead letters, re-routed events)
   and waits for the broker to acknowledge them,
2. writes the tally's changed records to its changelog and waits again,

and only then are its input messages acknowledged (committed later by Faust). A crash before
(2) replays input whose effects are re-sent; a crash between (1) and (2) replays input into a
tally that lacks it, which counts it once. Either way the result is the same, because every
message between stages is versioned state and a repeated event re-sends what it caused.

A partition restored again while a batch was at work on it (a rebalance) may have been read
before that batch's records were written: that batch's messages of the partition are left
unacknowledged, so Faust delivers them again after its seek and the new tally counts them.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
import structlog

from streams import metrics
from streams.engine.catalog import DEAL_TYPES
from streams.engine.errors import Invalid
from streams.engine.events import Event
from streams.engine.tally import (
    MALFORMED,
    BucketState,
    CopyState,
    CreditState,
    Effects,
    Tally,
    claim_records,
)
from streams.pipeline.outputs import Outputs, Pending, settle
from streams.pipeline.partitions import Owned, Partitions
from streams.pipeline.publishing import Publisher
from streams.rules import Rules

log = structlog.get_logger(__name__)

#: How often (in batches of a partition) ids past the duplicate window are dropped.
EXPIRE_EVERY = 64


@dataclass
class Seen:
    """What a batch counted, for the metrics: exported once per batch, not per event."""

    processed: Counter[str] = field(default_factory=Counter)
    ignored: Counter[str] = field(default_factory=Counter)
    #: copies of an idempotency key that did not count (the same again, or a losing one)
    not_counted: int = 0

    def export(self) -> None:
        for event_type, n in self.processed.items():
            metrics.EVENTS_PROCESSED.labels(event_type).inc(n)
        for event_type, n in self.ignored.items():
            metrics.EVENTS_IGNORED.labels(metrics.IGNORED_TYPES(event_type)).inc(n)
        if self.not_counted:
            metrics.EVENT_COPIES_NOT_COUNTED.inc(self.not_counted)


class Stage:
    """Applies batches to the owned tallies and writes their effects."""

    def __init__(
        self, rules: Rules, partitions: Partitions, outputs: Outputs, publisher: Publisher
    ) -> None:
        self.rules = rules
        self.partitions = partitions
        self.outputs = outputs
        self.publisher = publisher
        self.topics = outputs.topics
        #: One writer per tally: batches and roster follow-ups take turns.
        self._lock = asyncio.Lock()

    async def process(self, batch: Sequence[Any]) -> set[int]:
        """Apply ``batch`` (Faust events) and write its effects; returns, once all is durable,
        the partitions whose messages may be acknowledged."""
        by_partition: dict[int, list[Any]] = defaultdict(list)
        for event in batch:
            by_partition[event.message.partition].append(event.message)
        async with self._lock:
            return await self._run(by_partition)

    async def follow_roster(self) -> None:
        """Re-attribute the owned partitions that have seen no batch since the roster changed
        (a batch does it first thing): a late transfer shows without waiting for traffic."""
        async with self._lock:
            stale: dict[int, list[Any]] = {
                p: [] for p, owned in self.partitions.owned.items() if owned.tally.roster_changed
            }
            if stale:
                await self._run(stale)

    async def _run(self, by_partition: dict[int, list[Any]]) -> set[int]:
        sent: Pending = []
        written: list[tuple[Owned, Effects]] = []
        seen = Seen()
        for p, messages in sorted(by_partition.items()):
            owned = await self.partitions.get(p)
            if owned is None:
                continue  # revoked meanwhile: never committed here, the new owner replays it
            fx = Effects()
            tally = owned.tally
            tally.next_batch(fx)
            for message in messages:
                sent.extend(await self._apply(tally, message, fx, seen))
            if tally.seq % EXPIRE_EVERY == 0:
                tally.expire(fx)
            if fx.claims:  # rare (a scope's first bucket of a month): durable before sends
                await settle(await self.outputs.records(tally, claim_records(fx.claims)))
            sent.extend(await self.outputs.effects(tally, fx))
            written.append((owned, fx))
        await settle(sent)
        seen.export()
        records: Pending = []
        for owned, fx in written:
            records.extend(await self.outputs.records(owned.tally, fx.records))
            self.publisher.note(owned, fx.figures)
        await settle(records)
        return {
            owned.tally.partition
            for owned, _ in written
            if self.partitions.owned.get(owned.tally.partition) is owned
        }

    async def _apply(self, tally: Tally, message: Any, fx: Effects, seen: Seen) -> Pending:
        """Apply one message; returns the sends it caused directly (dead letter, re-route)."""
        topic = message.topic
        try:
            if topic == self.topics.activity:
                return await self._input(tally, message, fx, seen)
            if topic == self.topics.events:
                self._event(tally, Event.from_json(message.value), message, fx, seen)
            elif topic == self.topics.copies:
                tally.deal_copy(CopyState.from_dict(orjson.loads(message.value)), fx)
            elif topic == self.topics.credits:
                tally.credit(CreditState.from_dict(orjson.loads(message.value)), fx)
            elif topic == self.topics.buckets:
                tally.bucket(BucketState.from_dict(orjson.loads(message.value)), fx)
        except MALFORMED as exc:
            # Internal topics carry our own output: a malformed message is a bug to see, not a
            # reason to stop counting for everyone.
            metrics.EVENTS_REJECTED.labels("internal").inc()
            log.error(
                "malformed internal message",
                topic=topic,
                partition=message.partition,
                offset=message.offset,
                error=repr(exc),
            )
        return []

    async def _input(self, tally: Tally, message: Any, fx: Effects, seen: Seen) -> Pending:
        raw = message.value if message.value is not None else b""
        decoded = self.rules.decoder.decode(raw)
        if isinstance(decoded, Invalid):
            metrics.EVENTS_REJECTED.labels(decoded.code).inc()
            source = (message.topic, message.partition, message.offset)
            return [
                await self.outputs.dead_letter(
                    decoded, message.key, raw, message.headers or (), source
                )
            ]
        home = self.outputs.partition_of(decoded.partition_key)
        if home != message.partition:
            metrics.EVENTS_REROUTED.inc()
            return [await self.outputs.reroute(decoded, home)]
        self._event(tally, decoded, message, fx, seen)
        return []

    def _event(self, tally: Tally, event: Event, message: Any, fx: Effects, seen: Seen) -> None:
        if not tally.admit(event, int(message.timestamp * 1000), fx):
            seen.not_counted += 1
        if event.type not in DEAL_TYPES and not self.rules.catalog.counts(event.type):
            seen.ignored[event.type] += 1
            return
        seen.processed[event.type] += 1
        metrics.EVENT_TIME_LAG.observe(max(0.0, time.time() - event.time.timestamp()))
