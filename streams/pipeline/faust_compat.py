"""The one place that works around Faust behaviour (checked against faust-streaming 0.15.3).

After a rebalance Faust sends ``on_rebalance_complete``, then resumes the stream partitions
and seeks them to their committed offsets with the fetcher already running. Records fetched
in between throw its read-offset bookkeeping off: a re-fetched range is dropped as "already
read" (the partition never commits again) or skipped as a gap (acknowledged, never
processed). Stopping the consumer flow when the signal arrives closes that window; Faust
calls ``resume_flow`` itself after the seek. Both are public ``Consumer`` methods.
"""

from __future__ import annotations

import faust


def hold_flow_until_seek(app: faust.App) -> None:
    app.consumer.stop_flow()
