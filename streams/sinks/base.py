"""A batching Kafka → store sink that loses no row and never holds up the live agents.

The sink is a ``mode.Service`` with its own ``AIOKafkaConsumer`` in its own consumer group
(``read_committed``, no auto-commit), so it can run inside the Faust worker
(``app.service``) or on its own, and a slow or failing store only makes *its* lag grow.

Delivery is at least once, made exact by the store: offsets are committed only after the
rows of every message before them were written, and a crash between the write and the commit
re-delivers messages whose rows the store collapses by their natural key (see
``schemas/clickhouse``). A failed write is retried with exponential backoff (tenacity) until
it succeeds or the service stops; mapping and writing run on one worker thread, so parsing a
batch or a blocking driver never stalls the event loop.

Subclasses say how messages become rows (:meth:`BatchingSink.map_batch`), how rows are
written (:meth:`BatchingSink.write`) and, when they hold rows back on purpose, which offsets
must not be committed yet (:meth:`BatchingSink.held_offsets`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeAlias

import structlog
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.abc import ConsumerRebalanceListener
from aiokafka.errors import CommitFailedError, IllegalStateError
from mode import Service
from tenacity import AsyncRetrying, RetryCallState, wait_exponential

from streams.kafka_clients import new_client
from streams.metrics import SINK_BATCH_ROWS, SINK_FAILURES, SINK_LAG, SINK_ROWS_WRITTEN
from streams.settings import Settings

Row: TypeAlias = Sequence[Any]
RowsByTable: TypeAlias = dict[str, list[Row]]

log = structlog.get_logger(__name__)


class WriteAborted(Exception):
    """A write was still failing when the service was asked to stop; nothing was committed."""


class BatchingSink(Service):
    """Consume ``topics``; write rows per ``batch_rows`` messages or ``batch_seconds``."""

    wait_for_shutdown = True  # stop() waits for the loop's last flush and commit
    prepare_label = "prepare"  # the failure metric's label for failed prepare() attempts

    def __init__(
        self,
        *,
        settings: Settings,
        group_id: str,
        topics: Sequence[str],
        batch_rows: int,
        batch_seconds: float,
        retry_max_seconds: float = 30.0,
        stop_flush_seconds: float = 10.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.settings = settings  # the consumer's brokers and transport security
        self.group_id = group_id
        self.topics = tuple(topics)
        self.batch_rows = batch_rows
        self.batch_seconds = batch_seconds
        self.retry_max_seconds = retry_max_seconds
        self.stop_flush_seconds = stop_flush_seconds
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"{group_id}-io")
        self._consumer: AIOKafkaConsumer | None = None
        self._buffer: list[ConsumerRecord] = []
        self._committed: dict[TopicPartition, int] = {}
        self.prepared = asyncio.Event()  # set once prepare() succeeded (health, tests)
        self._rewind_needed = False

    # --- what a concrete sink provides (map_batch and write run on the worker thread) ------
    def map_batch(self, records: Sequence[ConsumerRecord], *, final: bool) -> RowsByTable:
        """Rows per table for ``records`` plus any held-back rows now due (all if ``final``)."""
        raise NotImplementedError

    def write(self, table: str, rows: list[Row]) -> None:
        """Write ``rows`` to ``table``; raise on failure (the batch is retried whole)."""
        raise NotImplementedError

    def held_offsets(self) -> Mapping[TopicPartition, int]:
        """Per partition, the offset of the oldest message whose rows are held back unwritten."""
        return {}

    def prepare(self) -> None:
        """Runs before the first batch, retried like a write (e.g. schema, warm state)."""

    # --- service life cycle ------------------------------------------------------------------
    async def on_start(self) -> None:
        self._consumer = new_client(
            AIOKafkaConsumer,
            self.settings,
            group_id=self.group_id,
            client_id=self.group_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            isolation_level="read_committed",
        )
        await self._consumer.start()
        self._consumer.subscribe(self.topics, listener=_ForgetRevoked(self))
        log.info("sink.started", group=self.group_id, topics=self.topics)

    async def on_shutdown(self) -> None:
        if self._consumer is not None:
            await self._consumer.stop()
        self._executor.shutdown(wait=True)

    async def run_in_worker(self, fn: Any, *args: Any) -> Any:
        """Run ``fn(*args)`` on the sink's one worker thread."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    @Service.task
    async def _consume(self) -> None:
        try:
            await self._retry(self.prepare_label, self.prepare)
            self.prepared.set()
            last_flush = time.monotonic()
            while not self.should_stop:
                try:
                    if await self._step(last_flush):
                        last_flush = time.monotonic()
                except WriteAborted:
                    raise
                except Exception as exc:
                    # Kafka trouble: never crash the worker; read again from the last commit.
                    SINK_FAILURES.labels("consume").inc()
                    log.error("sink.consume_failed", group=self.group_id, error=repr(exc))
                    self._rewind_needed = True
                    await self.sleep(self.batch_seconds)
            await self._flush(give_up_at=time.monotonic() + self.stop_flush_seconds)
        except WriteAborted as exc:
            log.warning("sink.stopped_uncommitted", group=self.group_id, error=str(exc))
        finally:
            self.set_shutdown()

    async def _step(self, last_flush: float) -> bool:
        """Fetch what arrived; flush when the batch is full or old enough (True if flushed)."""
        assert self._consumer is not None
        if self._rewind_needed:
            await self._rewind()
        wait = max(0.0, self.batch_seconds - (time.monotonic() - last_flush))
        batches = await self._consumer.getmany(
            timeout_ms=int(wait * 1000) + 1,
            max_records=max(1, self.batch_rows - len(self._buffer)),
        )
        for records in batches.values():
            self._buffer.extend(records)
        full = len(self._buffer) >= self.batch_rows
        if not full and time.monotonic() - last_flush < self.batch_seconds:
            return False
        await self._flush()
        return True

    async def _rewind(self) -> None:
        """Forget unwritten messages and seek back to the committed offsets."""
        assert self._consumer is not None
        self._buffer.clear()
        for tp in self._consumer.assignment():
            offset = await self._consumer.committed(tp)
            if offset is None:
                await self._consumer.seek_to_beginning(tp)
            else:
                self._consumer.seek(tp, offset)
        self._rewind_needed = False

    # --- one batch -----------------------------------------------------------------------------
    async def _flush(self, *, give_up_at: float | None = None) -> None:
        """Write the buffered messages' rows, then commit. ``give_up_at`` (monotonic) marks the
        final flush: it releases every held row and stops retrying at that time."""
        final = give_up_at is not None
        records, self._buffer = self._buffer, []
        rows_by_table: RowsByTable = await self.run_in_worker(
            lambda: self.map_batch(records, final=final)
        )
        for table, rows in rows_by_table.items():
            if rows:
                await self._retry(table, self.write, table, rows, give_up_at=give_up_at)
                SINK_ROWS_WRITTEN.labels(table).inc(len(rows))
                SINK_BATCH_ROWS.observe(len(rows))
        await self._commit()
        self._report_lag()

    async def _retry(
        self, what: str, fn: Callable[..., None], *args: Any, give_up_at: float | None = None
    ) -> None:
        """Run ``fn`` on the worker thread until it succeeds; give up (WriteAborted, nothing
        committed) when the service stops or, for the final flush, at ``give_up_at``."""

        def count_failure(state: RetryCallState) -> None:
            SINK_FAILURES.labels(what).inc()
            error = state.outcome.exception() if state.outcome else None
            log.warning(
                "sink.write_failed", what=what, attempt=state.attempt_number, error=repr(error)
            )

        def give_up(state: RetryCallState) -> bool:
            return time.monotonic() >= give_up_at if give_up_at is not None else self.should_stop

        retrying = AsyncRetrying(
            wait=wait_exponential(multiplier=0.1, max=self.retry_max_seconds),
            stop=give_up,
            after=count_failure,
            sleep=asyncio.sleep if give_up_at is not None else self.sleep,
            retry_error_callback=lambda state: _abort(what, state),
        )
        await retrying(self.run_in_worker, fn, *args)

    async def _commit(self) -> None:
        """Commit every assigned partition's position (all its messages were just written, and
        the position also steps over transaction markers), except where rows are held back."""
        assert self._consumer is not None
        held = self.held_offsets()
        offsets = {}
        for tp in self._consumer.assignment():
            position = await self._consumer.position(tp)
            offsets[tp] = min(position, held.get(tp, position))
        changed = {tp: o for tp, o in offsets.items() if self._committed.get(tp) != o}
        if not changed:
            return
        try:
            await self._consumer.commit(changed)
        except (CommitFailedError, IllegalStateError) as exc:
            # A rebalance took the partitions; their messages come again and collapse.
            log.warning("sink.commit_failed", group=self.group_id, error=repr(exc))
            return
        self._committed.update(changed)

    def _report_lag(self) -> None:
        assert self._consumer is not None
        lag: dict[str, int] = dict.fromkeys(self.topics, 0)
        for tp in self._consumer.assignment():
            end = self._consumer.last_stable_offset(tp)
            done = self._committed.get(tp)
            if end is not None and done is not None:
                lag[tp.topic] = lag.get(tp.topic, 0) + max(0, end - done)
        for topic, messages in lag.items():
            SINK_LAG.labels(topic).set(messages)

    def forget(self, partitions: Sequence[TopicPartition]) -> None:
        """Drop buffered messages of revoked partitions: their new owner reads them again."""
        lost = set(partitions)
        self._buffer = [r for r in self._buffer if TopicPartition(r.topic, r.partition) not in lost]
        for tp in lost:
            self._committed.pop(tp, None)


def _abort(what: str, state: RetryCallState) -> None:
    error = state.outcome.exception() if state.outcome else None
    raise WriteAborted(f"{what} still failed when stopping: {error!r}")


class _ForgetRevoked(ConsumerRebalanceListener):
    def __init__(self, sink: BatchingSink) -> None:
        self.sink = sink

    async def on_partitions_revoked(self, revoked: Sequence[TopicPartition]) -> None:
        self.sink.forget(revoked)

    async def on_partitions_assigned(self, assigned: Sequence[TopicPartition]) -> None:
        """Nothing to load: positions resume from the committed offsets."""
