"""The pipeline in one process: partitioned tallies and the state messages between them.

Events go to the tally of their idempotency key's partition, which judges the key's copies and
counts activities; deal event copies go to the deal's partition, deal credits to the rep's
partition and buckets to the scope's partition, exactly as the streaming
pipeline routes them over Kafka (``streams.pipeline``). Backfills, the benchmark and the
tests use it to get the pipeline's figures without Kafka; ``recompute`` is the independent
reference it is checked against. ``deliver`` may repeat or drop-and-repeat messages to model
re-delivery, and ``restore`` models a crash and a new owner restoring a partition.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from datetime import datetime
from decimal import Decimal
from typing import Any

from streams.engine.catalog import DEAL_TYPES, MetricCatalog
from streams.engine.errors import Invalid
from streams.engine.events import Event
from streams.engine.money import Rates
from streams.engine.pace import Figures, Thresholds, figures
from streams.engine.periods import Calendar
from streams.engine.quotas import QuotaBook
from streams.engine.roster import Roster
from streams.engine.scopes import Scope, scope_key
from streams.engine.tally import (
    BucketState,
    CopyState,
    CreditState,
    Effects,
    Tally,
    claim_records,
    record_doc,
)

FigureKey = tuple[str, str, str, str]  # scope, scope_id, metric, period label
DAY_MS = 86_400_000


@dataclass
class Messages:
    """Messages between partitions in flight: deal event copies, credits, buckets."""

    copies: list[CopyState] = field(default_factory=list)
    credits: list[CreditState] = field(default_factory=list)
    buckets: list[BucketState] = field(default_factory=list)


def crc_partitioner(partitions: int) -> Callable[[str], int]:
    """A stable key → partition function (Kafka uses murmur2; any stable hash models it)."""
    return lambda key: zlib.crc32(key.encode()) % partitions


class Engine:
    """Live figures for every rep, team and the company (scope id ``company``)."""

    def __init__(
        self,
        calendar: Calendar,
        catalog: MetricCatalog,
        rates: Rates,
        thresholds: Thresholds | None = None,
        *,
        partitions: int = 4,
        window_days: int = 30,
        roster: Roster | None = None,
        quotas: QuotaBook | None = None,
    ) -> None:
        self.calendar = calendar
        self.catalog = catalog
        self.rates = rates
        self.thresholds = thresholds or Thresholds()
        self.roster = roster if roster is not None else Roster()
        self.quotas = quotas if quotas is not None else QuotaBook()
        self.window_ms = window_days * DAY_MS
        self.partition_of = crc_partitioner(partitions)
        self.tallies = [self._tally(p) for p in range(partitions)]
        #: Durable records per partition, as the changelog would hold them (newest per key).
        self.records: list[dict[str, dict[str, Any]]] = [{} for _ in range(partitions)]
        #: Claim records, kept apart: they are durable before a batch sends anything, so a
        #: crash that loses a batch's other records keeps them.
        self.claims: list[dict[str, dict[str, Any]]] = [{} for _ in range(partitions)]
        #: Every message sent between partitions, as the compacted topics keep them.
        self.copy_log: list[CopyState] = []
        self.credit_log: list[CreditState] = []
        self.bucket_log: list[BucketState] = []
        self.ignored = 0

    def _tally(self, p: int, epoch: int = 1) -> Tally:
        return Tally(
            p, self.calendar, self.catalog, self.roster, window_ms=self.window_ms, epoch=epoch
        )

    # --- feeding ---------------------------------------------------------------------------
    def apply(self, event: Event, arrival_ms: int = 0) -> set[tuple[Scope, str, str]]:
        """Apply one accepted event and deliver everything it causes; returns the changed
        (scope, metric, day) figures."""
        return self.apply_batch([(event, arrival_ms)])

    def apply_batch(self, events: Iterable[tuple[Event, int]]) -> set[tuple[Scope, str, str]]:
        """One batch of events, then the messages it causes, delivered in order. An empty
        batch after a roster change re-attributes the past, as the worker's timer does."""
        effects = [Effects() for _ in self.tallies]
        for tally, fx in zip(self.tallies, effects, strict=True):
            tally.next_batch(fx)
        for event, arrival_ms in events:
            p = self.partition_of(event.partition_key)
            self.tallies[p].admit(event, arrival_ms, effects[p])
            if event.type not in DEAL_TYPES and not self.catalog.counts(event.type):
                self.ignored += 1
        return self._settle(effects)

    def _settle(self, effects: list[Effects]) -> set[tuple[Scope, str, str]]:
        changed: set[tuple[Scope, str, str]] = set()
        self.deliver(self.emit(effects, changed), changed)
        return changed

    def emit(self, effects: list[Effects], changed: set[tuple[Scope, str, str]]) -> Messages:
        """Persist each partition's records and collect the messages its effects send."""
        sent = Messages()
        for p, fx in enumerate(effects):
            self.claims[p].update(claim_records(fx.claims))
            self.records[p].update((k, record_doc(r)) for k, r in fx.records.items())
            sent.copies.extend(fx.copies)
            sent.credits.extend(fx.credits)
            for scope, month in sorted(fx.buckets):
                bucket = self.tallies[p].out_bucket(scope, month)
                days = {day: dict(values) for day, values in bucket.days.items()}  # as sent
                sent.buckets.append(replace(bucket, days=days))
            changed |= fx.figures
        self.copy_log.extend(sent.copies)
        self.credit_log.extend(sent.credits)
        self.bucket_log.extend(sent.buckets)
        return sent

    def deliver(self, sent: Messages, changed: set[tuple[Scope, str, str]]) -> None:
        """Deliver deal event copies (which cause credits), credits (which cause buckets),
        then buckets, until nothing is in flight."""
        while sent.copies or sent.credits or sent.buckets:
            effects = [Effects() for _ in self.tallies]
            for tally, fx in zip(self.tallies, effects, strict=True):
                tally.next_batch(fx)
            for copy in sent.copies:
                p = self.partition_of(copy.deal_id)
                self.tallies[p].deal_copy(copy, effects[p])
            for credit in sent.credits:
                p = self.partition_of(credit.rep_id)
                self.tallies[p].credit(credit, effects[p])
            for bucket in sent.buckets:
                p = self.partition_of(scope_key(bucket.scope))
                self.tallies[p].bucket(bucket, effects[p])
            sent = self.emit(effects, changed)

    def restore(self, p: int) -> None:
        """Partition ``p`` as a new owner restores it: changelog records, the credits and
        buckets addressed to it (newest per key), a new epoch, every bucket sent again."""
        old = self.tallies[p]
        tally = self.tallies[p] = self._tally(p, epoch=old.epoch + 1)
        tally.seq = old.seq
        for key, doc in (self.claims[p] | self.records[p]).items():
            tally.load(key, doc)
        tally.loaded()
        sink = Effects()
        for credit in self.credit_log:
            if self.partition_of(credit.rep_id) == p:
                tally.credit(credit, sink)
        for bucket in self.bucket_log:
            if self.partition_of(scope_key(bucket.scope)) == p:
                tally.bucket(bucket, sink)
        effects = [Effects() for _ in self.tallies]
        tally.next_batch(effects[p])
        tally.resend_all(effects[p])
        self._settle(effects)

    # --- reading ---------------------------------------------------------------------------
    @property
    def duplicates(self) -> int:
        """Activities delivered again and not counted again."""
        return sum(t.duplicates for t in self.tallies)

    def tally_of(self, scope: Scope) -> Tally:
        return self.tallies[self.partition_of(scope_key(scope))]

    def value(self, scope: str, scope_id: str, metric: str, label: str) -> Decimal:
        return self.tally_of((scope, scope_id)).value((scope, scope_id), metric, label)

    def figures(
        self,
        scope: str,
        scope_id: str,
        metric: str,
        label: str,
        as_of: datetime,
        through_day: str | None = None,
    ) -> Figures:
        """Figures at ``as_of``; with ``through_day``, the value counts only the period's days
        up to that day (as the API's ``as_of`` does)."""
        period = self.calendar.parse(label)
        if isinstance(period, Invalid):
            raise ValueError(period.message)
        target = self.quotas.target(scope, scope_id, metric, period, as_of, self.roster)
        expected = self.calendar.expected(period, as_of)
        s = (scope, scope_id)
        tally = self.tally_of(s)
        value = (
            tally.value(s, metric, label)
            if through_day is None
            else tally.value_through(s, metric, period, through_day)
        )
        return figures(value, target, expected, self.thresholds, closed=as_of >= period.end)

    def keys(self) -> Iterator[FigureKey]:
        """Every (scope, id, metric, label) holding data in the partition that owns it."""
        for tally in self.tallies:
            for scope in tally.scopes():
                if self.tally_of(scope) is not tally:
                    continue
                for metric in self.catalog.names:
                    for label in tally.labels(scope, metric):
                        yield scope[0], scope[1], metric, label
