"""The one place that works around Faust behaviour (checked against faust-streaming 0.15.3).

After a rebalance Faust sends ``on_rebalance_complete``, then seeks the stream partitions to
their committed offsets and resumes the flow. Two windows lose records unless closed:

* Records fetched while the flow is stopped (from the revocation on) are dropped without
  being delivered, yet the fetch position moves past them; only the seek brings them back.
  Without a seek the fetcher's read-offset bookkeeping also goes wrong (a re-fetched range
  dropped as "already read", or skipped as a gap: acknowledged, never processed). Stopping
  the flow when the signal arrives keeps the fetcher quiet until Faust's own seek.
* That seek is aiokafka's ``seek_to_committed``, which leaves alone a partition whose
  committed offset is missing or 0. A partition newly assigned before anything was committed
  on it is fetched at once, its first records dropped as above, and then read on from where
  the dropped ones ended: they are lost. Measured in the rolling-restart test: ~80 records of
  a partition that changed hands before its first commit. Those partitions are sent back to
  their beginning here (re-reading is harmless: every stage is idempotent).

Only public ``Consumer`` methods are used.
"""

from __future__ import annotations

from typing import cast

import faust
import structlog
from aiokafka.errors import KafkaError
from faust.transport.consumer import Consumer

log = structlog.get_logger(__name__)


async def prepare_seek(app: faust.App) -> None:
    """Hold the flow until Faust's seek, and seek never-committed partitions to their start."""
    consumer = cast(Consumer, app.consumer)  # the concrete class has seek_to_committed
    consumer.stop_flow()
    try:
        committed = await consumer.seek_to_committed()
        fresh = [tp for tp, offset in committed.items() if not offset]
        if fresh:
            for tp, offset in (await consumer.earliest_offsets(*fresh)).items():
                await consumer.seek(tp, offset)
    except KafkaError as exc:  # the assignment changed again: the next rebalance seeks anew
        log.warning("seek before resuming failed", error=repr(exc))
