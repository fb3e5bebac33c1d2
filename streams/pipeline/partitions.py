"""The partitions this worker owns: their tallies, restored from Kafka when assigned.

A tally's durable state is three compacted topics' partition ``p``: its own changelog
(rep-days, deal ledgers, alert statuses, milestones celebrated), the deal credits addressed to
its reps and the buckets addressed to its scopes. Restoring reads all three from the beginning
and keeps the newest version per key, takes a new epoch (written before anything else, so
everything this owner sends supersedes what an earlier one sent) and sends every bucket again
under it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import orjson
import structlog
from aiokafka import AIOKafkaConsumer, ConsumerRecord

from streams.engine.tally import (
    MALFORMED,
    BucketState,
    CreditState,
    Effects,
    Tally,
    claim_records,
)
from streams.pipeline.kafka import partition_reader, read_partition
from streams.pipeline.outputs import Outputs, settle
from streams.reference import ReferenceData
from streams.rules import Rules
from streams.settings import Settings

log = structlog.get_logger(__name__)

EPOCH_KEY = "e"
STATUS_KIND = "s"
MILESTONE_KIND = "c"
_DAY_MS = 86_400_000
T = TypeVar("T")


@dataclass
class Owned:
    """One owned partition: its tally, the alert status last published per figure and the
    highest milestone celebrated per figure (``streams.engine.milestones``)."""

    tally: Tally
    statuses: dict[str, str] = field(default_factory=dict)
    milestones: dict[str, int] = field(default_factory=dict)


class Partitions:
    """Owned tallies by partition; ``get`` restores one on first use after an assignment."""

    def __init__(
        self, settings: Settings, rules: Rules, reference: ReferenceData, outputs: Outputs
    ) -> None:
        self.settings = settings
        self.rules = rules
        self.reference = reference
        self.outputs = outputs
        self.owned: dict[int, Owned] = {}
        self.assigned: set[int] = set()
        #: A first assignment arrived (before it, owning nothing is not "ready").
        self.assigned_once = False
        #: Partitions restored since the publisher last asked (their gauges are exported in
        #: full at its next flush: the previous owner has stopped exporting them).
        self.fresh: set[int] = set()
        self._restoring: dict[int, asyncio.Task[Owned]] = {}

    @property
    def ready(self) -> bool:
        """Every assigned partition restored."""
        return self.assigned <= self.owned.keys()

    def assign(self, partitions: set[int]) -> set[int]:
        """Own exactly ``partitions`` from now on; returns those dropped."""
        dropped = (self.owned.keys() | self._restoring.keys()) - partitions
        for p in dropped:
            self.owned.pop(p, None)
            task = self._restoring.pop(p, None)
            if task is not None:
                task.cancel()
        self.assigned = set(partitions)
        return dropped

    async def get(self, p: int) -> Owned | None:
        """The tally of ``p`` (restored first if needed), or None if ``p`` is not ours."""
        if p not in self.assigned:
            return None
        owned = self.owned.get(p)
        if owned is not None:
            return owned
        task = self._restoring.get(p)
        if task is None:
            task = self._restoring[p] = asyncio.ensure_future(self._restore(p))
        try:
            owned = await asyncio.shield(task)
        except asyncio.CancelledError:
            if task.cancelled():  # the restore was abandoned: the partition went elsewhere
                return None
            raise
        finally:
            if task.done() and self._restoring.get(p) is task:
                del self._restoring[p]
        if p not in self.assigned:
            return None
        self.owned[p] = owned
        self.fresh.add(p)
        return owned

    def take_fresh(self) -> set[int]:
        """The partitions restored since the last call."""
        fresh, self.fresh = self.fresh, set()
        return fresh

    async def _restore(self, p: int) -> Owned:
        started = asyncio.get_running_loop().time()
        topics = self.outputs.topics
        tally = Tally(
            p,
            self.rules.calendar,
            self.rules.catalog,
            self.reference.roster,
            window_ms=self.settings.dedupe_window_days * _DAY_MS,
        )
        owned = Owned(tally)
        newest: dict[str, dict[str, Any]] = {}
        malformed: list[tuple[str, str]] = []
        sink = Effects()
        async with partition_reader(self.settings) as consumer:
            async for key, doc in _read(consumer, topics.changelog, p, _changelog_record):
                held = newest.get(key)
                if held is None or doc["v"] >= held["v"]:
                    newest[key] = doc
            for key, doc in newest.items():
                if key.startswith(STATUS_KIND):
                    owned.statuses[key[2:]] = doc[STATUS_KIND]
                elif key.startswith(MILESTONE_KIND):
                    owned.milestones[key[2:]] = doc[MILESTONE_KIND]
                elif key != EPOCH_KEY:
                    malformed.extend(_guarded(tally.load, key, doc))
            if malformed:
                key, error = malformed[0]
                log.error(
                    "malformed changelog records skipped (e.g. of an older format)",
                    partition=p,
                    n=len(malformed),
                    first_key=key,
                    first_error=error,
                )
            tally.loaded()
            credit_of, bucket_of = _parser(CreditState.from_dict), _parser(BucketState.from_dict)
            async for credit in _read(consumer, topics.credits, p, credit_of):
                tally.credit(credit, sink)
            async for bucket in _read(consumer, topics.buckets, p, bucket_of):
                tally.bucket(bucket, sink)
        epoch = max((doc["v"][0] for doc in newest.values()), default=0)
        tally.epoch = epoch + 1
        await settle(await self.outputs.records(tally, {EPOCH_KEY: {}}))
        fx = Effects()
        tally.next_batch(fx)
        tally.resend_all(fx)
        if fx.claims:
            await settle(await self.outputs.records(tally, claim_records(fx.claims)))
        await settle(await self.outputs.effects(tally, fx))
        log.info(
            "partition restored",
            partition=p,
            epoch=tally.epoch,
            seconds=round(asyncio.get_running_loop().time() - started, 3),
            **tally.sizes(),
        )
        return owned

    async def restore_assigned(self) -> None:
        """Restore every assigned partition now, side by side (health turns ok without waiting
        for input; a restore mostly waits for the broker, ~2.5 s each even when empty)."""
        await asyncio.gather(*(self.get(p) for p in sorted(self.assigned)))

    def state_report(self) -> dict[str, Any]:
        """Entries of each part of the owned state, for /healthz and the benchmark."""
        parts: dict[str, int] = {}
        for owned in self.owned.values():
            for name, n in owned.tally.sizes().items():
                parts[name] = parts.get(name, 0) + n
            parts["alert_statuses"] = parts.get("alert_statuses", 0) + len(owned.statuses)
            parts["milestones"] = parts.get("milestones", 0) + len(owned.milestones)
        return {"partitions": sorted(self.owned), "entries": parts}


async def _read(
    consumer: AIOKafkaConsumer, topic: str, p: int, parse: Callable[[ConsumerRecord], T]
) -> AsyncIterator[T]:
    """Every record of a partition that parses; a malformed one (not ours, or of an older
    format) is skipped and counted: the new epoch's re-sent state supersedes it anyway."""
    skipped = 0
    async for records in read_partition(consumer, topic, p):
        for record in records:
            try:
                parsed = parse(record)
            except MALFORMED:
                skipped += 1
                continue
            yield parsed
    if skipped:
        log.error("malformed records skipped on restore", topic=topic, partition=p, n=skipped)


def _changelog_record(record: ConsumerRecord) -> tuple[str, dict[str, Any]]:
    doc = orjson.loads(record.value)
    epoch, seq = doc["v"]
    doc["v"] = [int(epoch), int(seq)]
    return record.key.decode(), doc


def _parser(from_dict: Callable[[dict[str, Any]], T]) -> Callable[[ConsumerRecord], T]:
    return lambda record: from_dict(orjson.loads(record.value))


def _guarded(
    load: Callable[[str, dict[str, Any]], None], key: str, doc: dict[str, Any]
) -> list[tuple[str, str]]:
    """Load one changelog record; a malformed one is left out and returned as (key, error)
    (the restore logs them once, not one line per record)."""
    try:
        load(key, doc)
    except MALFORMED as exc:
        return [(key, repr(exc))]
    return []
