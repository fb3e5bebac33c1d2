"""Engine throughput: ``Engine.apply_batch`` on pre-decoded events, then decode + apply.

Measures the pure quota engine alone (no Kafka, no Faust), in batches of ``--batch`` events as
the pipeline's agent takes them: dedupe, deal ledger merge, deal credits and team buckets
between the partitions' tallies, period sums of day buckets. The
stream is realistic for a sales org: 400 reps in 40 teams under 4 regions, mostly activities,
one event in ten about a deal (wins, some with splits, amended wins, losses), 1 % re-sends,
times spread over a quarter.
Decoding raw bytes (``Decoder.decode``: parse, contract checks, conversion) is measured on its
own and together with ``apply``, on ``--decode-events`` of them. Each phase is bounded by
``--duration`` seconds.

    .venv/bin/python bench/engine_bench.py --events 200000 --decode-events 200000
"""

from __future__ import annotations

import argparse
import gc
import json
import random
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from streams.engine.catalog import MetricCatalog
from streams.engine.engine import Engine
from streams.engine.events import Decoder, Event
from streams.engine.money import Rates
from streams.engine.periods import Calendar

T0 = datetime(2026, 10, 1, tzinfo=UTC)
QUARTER_S = 92 * 86_400
ACTIVITIES = ("call.completed", "call.completed", "email.sent", "email.sent", "meeting.held",
              "proposal.sent", "sms.sent")  # fmt: skip


def build_engine(calendar: Calendar) -> Engine:
    engine = Engine(calendar, MetricCatalog.load(), Rates.load(None, "USD"))
    for region in range(4):
        engine.roster.set_team(f"region{region}", f"Region {region}", None)
    for team in range(40):
        engine.roster.set_team(f"team{team}", f"Team {team}", f"region{team % 4}")
    for rep in range(400):
        engine.roster.set_assignment(f"r{rep}", f"Rep {rep}", f"team{rep % 40}", None)
        if rep % 10 == 0:  # a transfer mid-quarter
            engine.roster.set_assignment(
                f"r{rep}", f"Rep {rep}", f"team{(rep + 1) % 40}", T0 + timedelta(days=45)
            )
    return engine


def cloud_events(count: int, seed: int = 7) -> list[dict[str, object]]:
    """``count`` CloudEvents documents (as producers send them)."""
    rnd = random.Random(seed)
    docs: list[dict[str, object]] = []
    for n in range(count):
        if docs and rnd.random() < 0.01:
            docs.append(docs[rnd.randrange(len(docs))])  # a re-send
            continue
        rep = f"r{rnd.randrange(400)}"
        at = (T0 + timedelta(seconds=rnd.randrange(QUARTER_S))).isoformat()
        if rnd.random() < 0.1:
            deal = f"d{rnd.randrange(count // 30 + 1)}"  # several events per deal
            kind = rnd.choices(("deal.won", "deal.lost", "deal.reopened"), (8, 1.5, 0.5))[0]
            data: dict[str, object] = {"rep_id": rep, "deal_id": deal}
            if kind == "deal.won":
                data |= {"amount": f"{rnd.randrange(100, 100_000)}.{rnd.randrange(100):02d}",
                         "currency": rnd.choice(("USD", "USD", "EUR", "GBP"))}  # fmt: skip
                if rnd.random() < 0.3:
                    other = f"r{rnd.randrange(400)}"
                    if other != rep:
                        data["splits"] = [{"rep_id": rep, "share": "0.6"},
                                          {"rep_id": other, "share": "0.4"}]  # fmt: skip
            docs.append({"specversion": "1.0", "id": f"crm-{n}", "source": "crm://acme",
                         "type": kind, "time": at, "data": data})  # fmt: skip
        else:
            docs.append({"specversion": "1.0", "id": f"act-{n}", "source": "dialer",
                         "type": rnd.choice(ACTIVITIES), "time": at,
                         "data": {"rep_id": rep, "duration_s": rnd.randrange(600)}})  # fmt: skip
    return docs


def run(
    label: str, batches: list[list[Any]], step: Callable[[Any], object], duration: float
) -> None:
    """``step(batch)`` for each batch until done or ``duration`` is over; prints events/s."""
    gc.collect()
    deadline = time.monotonic() + duration
    started, cpu = time.perf_counter(), time.process_time()
    done = 0
    for batch in batches:
        step(batch)
        done += len(batch)
        if time.monotonic() > deadline:
            break
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu
    print(f"{label:<28} {done:>9,} events  {wall:7.2f} s  {done / wall:>11,.0f} events/s"
          f"  ({done / cpu:,.0f} per CPU s)")  # fmt: skip


def batched(items: list[Any], size: int) -> list[list[Any]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200_000, help="events for apply")
    parser.add_argument("--decode-events", type=int, default=200_000, help="events to decode")
    parser.add_argument("--duration", type=float, default=60.0, help="seconds per phase at most")
    parser.add_argument("--tz", default="Europe/Berlin", help="organisation time zone")
    parser.add_argument("--batch", type=int, default=2000, help="events per batch")
    parser.add_argument(
        "--state-events", type=int, default=0, help="also report the state after this many"
    )
    args = parser.parse_args()

    calendar = Calendar(args.tz)
    docs = cloud_events(args.events)
    raws = [json.dumps(d).encode() for d in docs]
    decoder = Decoder(MetricCatalog.load(), Rates.load(None, "USD"))
    events = [e for e in map(decoder.decode, raws) if isinstance(e, Event)]
    assert len(events) == len(raws), "the generated stream must be valid"
    print(f"engine bench: {len(events):,} events, tz {args.tz}, 400 reps / 40 teams / 4 regions")

    engine = build_engine(calendar)
    arrivals = [(e, 0) for e in events]
    run(
        "Engine.apply_batch (decoded)",
        batched(arrivals, args.batch),
        engine.apply_batch,
        args.duration,
    )
    total = engine.value("company", "company", "revenue", "2026-Q4")
    print(f"  company revenue 2026-Q4 = {total}, duplicates {engine.duplicates},"
          f" ignored {engine.ignored}")  # fmt: skip
    n = len(events)
    print(f"  messages between partitions per event: buckets {len(engine.bucket_log) / n:.2f},"
          f" credits {len(engine.credit_log) / n:.2f},"
          f" deal copies {len(engine.copy_log) / n:.2f}")  # fmt: skip
    report_reattribution(engine)

    fresh = build_engine(Calendar(args.tz))

    def decode_apply(batch: list[bytes]) -> None:
        decoded = (decoder.decode(raw) for raw in batch)
        fresh.apply_batch((e, 0) for e in decoded if isinstance(e, Event))

    def decode(batch: list[bytes]) -> None:
        for raw in batch:
            decoder.decode(raw)

    some = batched(raws[: args.decode_events], args.batch)
    run("decode + apply (bytes)", some, decode_apply, args.duration)
    run("decode only", some, decode, args.duration)
    if args.state_events:
        report_state(args.state_events, args.batch, decoder, args.tz)


def report_reattribution(engine: Engine) -> None:
    """A late roster import (40 reps moved, effective at the quarter's start) makes every
    partition attribute its rep-days and credits again at the next batch: its cost."""
    for rep in range(0, 400, 10):
        engine.roster.set_assignment(f"r{rep}", f"Rep {rep}", f"team{(rep + 7) % 40}", T0)
    held = sum(len(t.rep_days) + len(t.credits) for t in engine.tallies)
    started = time.perf_counter()
    engine.apply_batch([])
    wall = time.perf_counter() - started
    print(f"{'re-attribution (late roster)':<28} {held:>9,} rep-days and credits"
          f"  {wall:7.2f} s, messages included")  # fmt: skip


def report_state(count: int, batch: int, decoder: Decoder, tz: str) -> None:
    """The tallies' state after ``count`` events, per part: entries and the bytes of its JSON
    as the changelog and the compacted topics hold it. Only the duplicate window's ids grow
    with the number of events."""
    engine = build_engine(Calendar(tz))
    for chunk in range(0, count, 100_000):
        docs = cloud_events(min(100_000, count - chunk), seed=chunk)
        for doc in docs:  # distinct ids per chunk
            doc["id"] = f"{doc['id']}-{chunk}"
        decoded = [decoder.decode(json.dumps(d).encode()) for d in docs]
        events = [(e, 0) for e in decoded if isinstance(e, Event)]
        for part in batched(events, batch):
            engine.apply_batch(part)
    parts: dict[str, dict[str, int]] = {}

    def add(name: str, entries: int, size: int) -> None:
        held = parts.setdefault(name, {"entries": 0, "bytes": 0})
        held["entries"] += entries
        held["bytes"] += size

    for tally in engine.tallies:
        for rd in tally.rep_days.values():
            doc = rd.to_dict()
            ids = len(orjson.dumps(doc["ids"])) if doc["ids"] else 0
            add("rep_days", 1, len(orjson.dumps(doc)) - ids)
            add("dedupe_ids", len(rd.ids or ()), ids)
        for deal in tally.deals.values():
            add("deals", 1, len(orjson.dumps(deal.to_dict())))
        for (rep, deal_id), credit in tally.credits.items():
            doc = {"rep": rep, "deal": deal_id, "v": credit.version, "day": credit.day,
                   "values": {m: str(a) for m, a in credit.values.items()}}  # fmt: skip
            add("deal_credits", 1, len(orjson.dumps(doc)))
        for bucket in tally.buckets.values():
            add("team_buckets", len(bucket.days), len(orjson.dumps(bucket.to_dict())))
    total = sum(p["bytes"] for p in parts.values())
    print(json.dumps({"state_events": count, "state_mb": round(total / 2**20, 1), "parts": parts}))


if __name__ == "__main__":
    main()
