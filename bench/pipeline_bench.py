"""Pipeline benchmark on the local stack: one worker against a bare aiokafka consumer.

1. Throughput: ``spm.activity`` of a fresh prefix is pre-filled with N generated events; a
   bare aiokafka consumer reads them (the ceiling on this machine), then a worker (exactly-once,
   RocksDB, as configured) processes them; the worker's time runs from its start to the moment
   its group has committed past every record of every pipeline topic.
2. Latency: at a steady rate, events of one probe rep are produced and the rep's progress API
   is polled until it reflects each one; p50/p99 of produce → visible.
3. Memory: the worker's RSS after loading a roster and quotas of ``--rss-reps`` reps × every
   metric and counting one event per rep.

Run ``python bench/pipeline_bench.py --help``; ``make bench`` runs every bench with
``--duration``. Figures go to the issue notes, not to timed tests.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

from aiokafka import AIOKafkaConsumer
from kafka import KafkaProducer

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from streams.engine.imports import QuotaRow, RosterRow, TeamRow
from streams.producer import EventProducer
from streams.rules import Rules
from streams.settings import Settings
from streams.stack import up
from streams.topics import ensure_topics
from tests.integration.harness import Worker, wait_caught_up, worker_settings


def fresh(base: Settings, tmp: Path) -> Settings:
    prefix = f"b{uuid.uuid4().hex[:8]}"
    (tmp / prefix).mkdir(parents=True)
    settings = worker_settings(base, prefix, tmp / prefix, alert_interval=3600.0)
    ensure_topics(settings)
    return settings


def events(n: int, reps: list[str], seed: int = 1) -> list[bytes]:
    """Activities and deals spread over reps and the current quarter."""
    start = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    out = []
    for i in range(n):
        rep = reps[i % len(reps)]
        when = (start - timedelta(minutes=i % 50_000)).isoformat()
        if i % 20 == 0:
            data = {"rep_id": rep, "deal_id": f"D{i}", "amount": "1000.50", "currency": "USD"}
            kind = "deal.won"
        else:
            data, kind = {"rep_id": rep}, "call.completed"
        out.append(
            json.dumps(
                {
                    "specversion": "1.0",
                    "id": f"b{seed}-{i}",
                    "source": "bench",
                    "type": kind,
                    "time": when,
                    "data": data,
                }
            ).encode()
        )
    return out


def org(settings: Settings, reps: int) -> list[str]:
    rules = Rules.from_settings(settings)
    now = datetime.now(UTC)
    ids = [f"rep-{i:05d}" for i in range(reps)]
    teams = [f"team-{i:03d}" for i in range(max(1, reps // 10))]
    with EventProducer(settings, rules.decoder) as producer:
        producer.publish_teams([TeamRow("region", "Region", None)])
        producer.publish_teams([TeamRow(t, t, "region") for t in teams])
        producer.publish_roster(
            [RosterRow(r, r, teams[i % len(teams)], None) for i, r in enumerate(ids)]
        )
        producer.publish_quotas(
            QuotaRow(
                "rep", r, metric, rules.calendar.current("quarter", now).label, Decimal(100), None
            )
            for r in ids
            for metric in rules.catalog.names
        )
    return ids


def produce(settings: Settings, payloads: list[bytes]) -> None:
    producer = KafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap, linger_ms=20, batch_size=256_000
    )
    for raw in payloads:
        producer.send(settings.topic("activity"), raw)
    producer.flush()
    producer.close()


async def bare_consume(settings: Settings, n: int) -> float:
    consumer = AIOKafkaConsumer(
        settings.topic("activity"),
        bootstrap_servers=settings.kafka_bootstrap,
        group_id=f"{settings.app_id}-bare",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    seen, t0 = 0, time.perf_counter()
    try:
        while seen < n:
            batch = await consumer.getmany(timeout_ms=1000, max_records=10_000)
            seen += sum(len(records) for records in batch.values())
    finally:
        await consumer.stop()
    return n / (time.perf_counter() - t0)


def throughput(base: Settings, tmp: Path, n: int, timeout: float) -> dict[str, float]:
    settings = fresh(base, tmp)
    reps = org(settings, 100)
    produce(settings, events(n, reps))
    bare = asyncio.run(bare_consume(settings, n))
    worker = Worker(settings, tmp / f"{settings.app_id}.log")
    t0 = time.perf_counter()
    worker.start()
    try:
        wait_caught_up(settings, timeout=timeout, worker=worker)
        rate = n / (time.perf_counter() - t0)
    finally:
        worker.stop()
    return {
        "events": n,
        "worker_events_per_s": rate,
        "bare_consumer_events_per_s": bare,
        "ratio": rate / bare,
    }


def latency(base: Settings, tmp: Path, rate: float, seconds: float) -> dict[str, float]:
    settings = fresh(base, tmp)
    reps = org(settings, 10)
    worker = Worker(settings, tmp / f"{settings.app_id}.log").start()
    producer = KafkaProducer(bootstrap_servers=settings.kafka_bootstrap, linger_ms=0)
    label = Rules.from_settings(settings).calendar.current("quarter", datetime.now(UTC)).label
    samples: list[float] = []
    try:
        deadline = time.monotonic() + seconds
        i = 0
        while time.monotonic() < deadline:
            now = datetime.now(UTC)
            raw = json.dumps(
                {
                    "specversion": "1.0",
                    "id": f"lat-{i}",
                    "source": "bench",
                    "type": "call.completed",
                    "time": now.isoformat(),
                    "data": {"rep_id": reps[0]},
                }
            ).encode()
            t0 = time.perf_counter()
            producer.send(settings.topic("activity"), raw)
            producer.flush()
            while time.perf_counter() - t0 < 30:
                body = worker.get(f"/api/v1/reps/{reps[0]}/progress", period=label).json()
                if Decimal(body["metrics"]["calls"]["value"]) >= i + 1:
                    samples.append(time.perf_counter() - t0)
                    break
            i += 1
            time.sleep(max(0.0, 1 / rate - (time.perf_counter() - t0)))
    finally:
        producer.close()
        worker.stop()
    samples.sort()
    return {
        "samples": len(samples),
        "p50_ms": 1000 * statistics.median(samples),
        "p99_ms": 1000 * samples[min(len(samples) - 1, int(0.99 * len(samples)))],
    }


def _rss_mb(worker: Worker) -> float:
    assert worker.process is not None
    status = Path(f"/proc/{worker.process.pid}/status").read_text()
    return (
        int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmRSS")))
        / 1024
    )


def rss(base: Settings, tmp: Path, reps: int, timeout: float) -> dict[str, object]:
    """RSS once the roster and quotas of ``reps`` reps are loaded, and after one event per
    rep has been counted (or ``timeout`` ran out, which the result says)."""
    settings = fresh(base, tmp)
    ids = org(settings, reps)
    worker = Worker(settings, tmp / f"{settings.app_id}.log").start(timeout=timeout)
    try:
        loaded = _rss_mb(worker)
        produce(settings, events(reps, ids, seed=2))
        try:
            wait_caught_up(settings, timeout=timeout, worker=worker)
            caught_up = True
        except AssertionError:
            caught_up = False
        counted = _rss_mb(worker)
    finally:
        worker.stop()
    metrics = len(Rules.from_settings(settings).catalog.names)
    return {
        "reps": reps,
        "metrics": metrics,
        "rss_mb_reference_loaded": loaded,
        "rss_mb_after_events": counted,
        "caught_up": caught_up,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=5_000, help="pre-filled events")
    parser.add_argument("--rate", type=float, default=5.0, help="latency probe events per s")
    parser.add_argument("--duration", type=float, default=20.0, help="latency probe seconds")
    parser.add_argument("--rss-reps", type=int, default=10_000, help="reps for the RSS figure")
    parser.add_argument("--timeout", type=float, default=300.0, help="bound of each phase")
    args = parser.parse_args()
    base = Settings()
    up(base)
    with tempfile.TemporaryDirectory(prefix="spm-bench-") as tmp_name:
        tmp = Path(tmp_name)
        print("throughput", throughput(base, tmp, args.events, args.timeout), flush=True)
        print("latency", latency(base, tmp, args.rate, args.duration), flush=True)
        print("rss", rss(base, tmp, args.rss_reps, args.timeout), flush=True)


if __name__ == "__main__":
    main()
