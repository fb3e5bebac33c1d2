"""HTTP ingest load: ``POST /api/v1/events`` on loopback, figures to report, not a timed test.

A real worker (the integration harness's ``Worker``, configured as shipped, on its own topic
prefix against the broker of ``make stack-up``) takes CloudEvents batches of ``--batch`` events
(unique ids, ≈ 5 % won deals, the rest calls, e-mails and meetings of ``--reps`` reps) from
``--clients`` concurrent keep-alive clients for ``--duration`` seconds or ``--max-requests``
requests, whichever comes first; the first ``--warmup`` seconds are not counted. Every answer
must be 202 with every event accepted (anything else is counted in ``errors``). Reported:
requests/s and events/s by wall clock, the latency of a request (send → 202, i.e. including
Kafka's ``acks=all``) at p50/p90/p99/max, and the worker's CPU seconds — the worker also runs
its pipeline on what it ingests, and the clients share the machine with it.

Progress goes to stderr; the last stdout line is one JSON object (``--output`` also writes it).
Run from the repository root::

    PYTHONPATH=. .venv/bin/python bench/ingest_bench.py --duration 20 --clients 8 --batch 100
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from kafka import KafkaAdminClient

from streams.engine.imports import RosterRow, TeamRow
from streams.kafka_clients import new_client
from streams.producer import EventProducer
from streams.settings import Settings
from streams.topics import ensure_topics
from tests.integration.harness import Worker, worker_settings

BATCH = "application/cloudevents-batch+json"
KINDS = ("call.completed", "call.completed", "email.sent", "meeting.held")


@dataclass
class Tally:
    """What the clients saw after the warm-up (``warm``) until ``end`` (monotonic seconds)."""

    warm: float
    end: float
    requests: int = 0  # sent, warm-up included: bounded by --max-requests
    latencies: list[float] = field(default_factory=list)
    events: int = 0
    errors: int = 0
    first_error: str | None = None


def batch_body(client: int, request: int, size: int, reps: int, now: datetime) -> bytes:
    """``size`` events with ids no other request uses."""
    events = []
    for i in range(size):
        n = (request * size + i) * 7919 + client
        rep = f"rep-{n % reps:04d}"
        at = (now - timedelta(seconds=n % 86_400)).isoformat()
        data: dict[str, Any] = {"rep_id": rep}
        kind = KINDS[n % len(KINDS)]
        if n % 20 == 0:
            kind = "deal.won"
            data |= {"deal_id": f"d-{client}-{request}-{i}", "amount": "1250.50", "currency": "EUR"}
        events.append(
            {
                "specversion": "1.0",
                "id": f"bench-{client}-{request}-{i}",
                "source": "bench.ingest",
                "type": kind,
                "time": at,
                "data": data,
            }
        )
    return json.dumps(events).encode()


async def client_loop(client: int, url: str, args: argparse.Namespace, tally: Tally) -> None:
    now = datetime.now(UTC)
    async with httpx.AsyncClient(timeout=60, headers={"Content-Type": BATCH}) as http:
        request = 0
        while time.monotonic() < tally.end and tally.requests < args.max_requests:
            body = batch_body(client, request, args.batch, args.reps, now)
            request += 1
            tally.requests += 1
            started = time.monotonic()
            try:
                answer = await http.post(url, content=body)
                ok = answer.status_code == 202 and all(
                    r["status"] == "accepted" for r in answer.json()["results"]
                )
                problem = None if ok else f"{answer.status_code} {answer.text[:200]}"
            except httpx.HTTPError as exc:
                problem = repr(exc)
            if started < tally.warm:
                continue
            if problem is None:
                tally.latencies.append(time.monotonic() - started)
                tally.events += args.batch
            else:
                tally.errors += 1
                tally.first_error = tally.first_error or problem


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process (``/proc/<pid>/stat``), 0 where there is no /proc."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def quantile(values: list[float], q: int) -> float | None:
    """The q-th percentile, in milliseconds."""
    if len(values) < 2:
        return None
    return round(statistics.quantiles(values, n=100, method="inclusive")[q - 1] * 1000, 1)


def publish_roster(settings: Settings, reps: int) -> None:
    with EventProducer(settings) as producer:
        producer.publish_teams([TeamRow("bench", "Bench", None)])
        producer.publish_roster(
            RosterRow(f"rep-{i:04d}", f"Rep {i}", "bench", None) for i in range(reps)
        )


async def load(url: str, args: argparse.Namespace, pid: int) -> tuple[Tally, float, float]:
    """The clients' tally, the seconds measured and the worker's CPU seconds in them."""
    start = time.monotonic()
    tally = Tally(warm=start + args.warmup, end=start + args.warmup + args.duration)
    clients = asyncio.gather(*(client_loop(c, url, args, tally) for c in range(args.clients)))
    await asyncio.sleep(args.warmup)
    cpu = cpu_seconds(pid)
    await clients
    return tally, time.monotonic() - tally.warm, cpu_seconds(pid) - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=20.0, help="seconds measured")
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds not measured first")
    parser.add_argument("--clients", type=int, default=8, help="concurrent clients")
    parser.add_argument("--batch", type=int, default=100, help="events per request")
    parser.add_argument("--max-requests", type=int, default=20_000, help="requests at most")
    parser.add_argument("--reps", type=int, default=200, help="reps the events are spread over")
    parser.add_argument("--output", type=Path, help="also write the JSON result here")
    args = parser.parse_args()

    prefix = f"bench{uuid.uuid4().hex[:6]}"
    with tempfile.TemporaryDirectory() as tmp:
        settings = worker_settings(Settings(), prefix, Path(tmp))
        ensure_topics(settings)
        publish_roster(settings, args.reps)
        worker = Worker(settings, Path(tmp) / "worker.log").start()
        assert worker.process is not None
        try:
            print(f"loading {worker.url} for {args.duration:g} s …", file=sys.stderr)
            url = f"{worker.url}/api/v1/events"
            tally, elapsed, cpu = asyncio.run(load(url, args, worker.process.pid))
        finally:
            worker.stop()
            admin = new_client(KafkaAdminClient, settings)
            admin.delete_topics([t for t in admin.list_topics() if t.startswith(prefix)])
            admin.close()
    requests = len(tally.latencies)
    result = {
        "bench": "ingest",
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
        "clients": args.clients,
        "batch": args.batch,
        "seconds": round(elapsed, 2),
        "requests": requests,
        "events": tally.events,
        "errors": tally.errors,
        "first_error": tally.first_error,
        "requests_per_s": round(requests / elapsed, 1),
        "events_per_s": round(tally.events / elapsed),
        "latency_ms": {f"p{q}": quantile(tally.latencies, q) for q in (50, 90, 99)}
        | {"max": round(max(tally.latencies, default=0) * 1000, 1)},
        "worker_cpu_s": round(cpu, 1),
        "events_per_worker_cpu_s": round(tally.events / cpu) if cpu else None,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "loadavg_1m_at_end": round(os.getloadavg()[0], 2),
    }
    line = json.dumps(result)
    if args.output:
        args.output.write_text(json.dumps(result, indent=2) + "\n")
    print(line)


if __name__ == "__main__":
    main()
