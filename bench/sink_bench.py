"""Sink throughput: input CloudEvents, decoded as the worker does → rows → inserts into chDB.

Measures the ClickHouse sink's own path (``ClickHouseSink.map_batch`` + ``write``, the code the
service runs on its worker thread) on a fresh embedded chDB, without Kafka in the loop, and
prints rows/s by wall clock and per CPU second of this process (engine threads included),
which stays meaningful on a busy machine. The goal is ≥ 100,000 rows/s batched. Bounded by
``--duration`` seconds and ``--max-rows``.

    .venv/bin/python bench/sink_bench.py --duration 20 --batch 5000
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from aiokafka import ConsumerRecord

from streams.chclient import close_clients, get_client
from streams.settings import Settings
from streams.sinks.clickhouse import ClickHouseSink

T0 = datetime(2026, 10, 1, tzinfo=UTC)


def messages(topic: str, count: int, start: int) -> list[ConsumerRecord]:
    """``count`` input CloudEvents as Kafka delivers them (one in ten a won deal with splits)."""
    out = []
    for n in range(start, start + count):
        rep = f"r{n % 1000}"
        at = (T0 + timedelta(seconds=n)).isoformat()
        if n % 10 == 0:
            doc = {
                "id": f"deal-{n}",
                "source": "crm",
                "type": "deal.won",
                "data": {
                    "rep_id": rep,
                    "deal_id": f"d{n}",
                    "amount": "1250.50",
                    "currency": "EUR",
                    "splits": [{"rep_id": rep, "share": "0.6"}, {"rep_id": "r0", "share": "0.4"}],
                },
            }
        else:
            doc = {
                "id": f"call-{n}",
                "source": "dialer",
                "type": "call.completed",
                "data": {"rep_id": rep, "duration_seconds": 95, "outcome": "connected"},
            }
        value = json.dumps({"specversion": "1.0", "time": at, **doc}).encode()
        out.append(
            ConsumerRecord(topic, n % 4, n, 1_790_000_000_000 + n, 0, rep.encode(), value,
                           None, len(rep), len(value), ())
        )  # fmt: skip
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=20.0, help="seconds to run at most")
    parser.add_argument("--batch", type=int, default=5000, help="rows per insert")
    parser.add_argument("--max-rows", type=int, default=2_000_000, help="rows to write at most")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(clickhouse_url=f"chdb://{Path(tmp) / 'clickhouse'}")
        sink = ClickHouseSink(settings)
        sink.prepare()
        topic = settings.topic("activity")
        batches = [messages(topic, args.batch, i * args.batch) for i in range(20)]
        written = mapped_s = insert_s = 0.0
        deadline = time.monotonic() + args.duration
        started, cpu_started = time.perf_counter(), time.process_time()
        n = 0
        while time.monotonic() < deadline and written < args.max_rows:
            records = batches[n % len(batches)]  # repeats collapse: same (source, id)
            t0 = time.perf_counter()
            rows = sink.map_batch(records, final=False)["activity_events"]
            t1 = time.perf_counter()
            sink.write("activity_events", rows)
            t2 = time.perf_counter()
            mapped_s, insert_s = mapped_s + t1 - t0, insert_s + t2 - t1
            written += len(rows)
            n += 1
        elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu_started
        query = "SELECT count() FROM activity_events FINAL"
        stored = get_client(settings).query(query).result_rows[0][0]
        close_clients()
    print(f"rows written:   {int(written):,} in {n} batches of {args.batch} ({elapsed:.1f}s)")
    print(f"mapping:        {written / mapped_s:,.0f} rows/s")
    print(f"inserting:      {written / insert_s:,.0f} rows/s")
    print(f"sink path:      {written / elapsed:,.0f} rows/s wall (goal >= 100,000)")
    print(f"sink path:      {written / cpu:,.0f} rows per CPU second")
    print(f"distinct rows:  {int(stored):,}")


if __name__ == "__main__":
    main()
