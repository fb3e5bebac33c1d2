"""Sink throughput: canonical ``spm.events`` messages → rows → batched inserts into chDB.

Measures the ClickHouse sink's own path (``ClickHouseSink.map_batch`` + ``write``, the code the
service runs on its worker thread) on a fresh embedded chDB, without Kafka in the loop, and
prints rows/s by wall clock and per CPU second of this process (engine threads included),
which stays meaningful on a busy machine. The goal is ≥ 100,000 rows/s batched. Bounded by
``--duration`` seconds and ``--max-rows``.

    .venv/bin/python bench/sink_bench.py --duration 20 --batch 5000
"""

from __future__ import annotations

import argparse
import tempfile
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

from aiokafka import ConsumerRecord

from streams.clickhouse import close_clients, get_client
from streams.engine.events import Event, Split
from streams.settings import Settings
from streams.sinks.clickhouse import ClickHouseSink

T0 = datetime(2026, 10, 1, tzinfo=UTC)


def messages(topic: str, count: int, start: int) -> list[ConsumerRecord]:
    """``count`` canonical events as Kafka delivers them (one in ten a won deal with splits)."""
    out = []
    for n in range(start, start + count):
        rep = f"r{n % 1000}"
        if n % 10 == 0:
            event = Event(
                source="crm", id=f"deal-{n}", type="deal.won", time=T0 + timedelta(seconds=n),
                rep_id=rep, deal_id=f"d{n}", amount=Decimal("1250.50"), currency="EUR",
                amount_base=Decimal("1346.73846153846153846153846"),
                splits=(Split(rep, Decimal("0.6")), Split("r0", Decimal("0.4"))),
                data={"rep_id": rep, "deal_id": f"d{n}", "amount": "1250.50", "currency": "EUR"},
            )  # fmt: skip
        else:
            event = Event(
                source="dialer", id=f"call-{n}", type="call.completed",
                time=T0 + timedelta(seconds=n), rep_id=rep,
                data={"rep_id": rep, "duration_seconds": 95, "outcome": "connected"},
            )  # fmt: skip
        value = event.to_json()
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
        topic = settings.topic("events")
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
