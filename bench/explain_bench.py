"""Explain and reconcile against a large history: N stored events in a fresh embedded chDB.

Fills chDB through the sink's own row mapping (``accepted_rows``: the event row and its credit
rows), N events over 2026-Q4 for 1,000 reps in 20 teams (one in ten a won deal, a quarter of
those split, one in fifty deals re-won, one in fifty lost), plus one hot rep with 10,000 calls
and 200 deals in the quarter. Then measures, in this process:

* reconcile: the history side of ``spm reconcile`` for the quarter (read every event the
  quarter's figures depend on, rebuild the roster, recompute every scope) and the comparison,
  with the live figures taken from the recomputation itself (no worker runs here, so the
  ~1,000 progress requests of a real run are not included);
* explain: what ``GET /api/v1/reps/<hot>/explain?metric=calls`` does per request (history
  reads, explanation, first page of 100 as JSON), repeated; p50/p99 in ms.

    .venv/bin/python bench/explain_bench.py --events 100000 --explains 100
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
from aiokafka import ConsumerRecord

from streams import credit_history, reconcile
from streams.chclient import close_clients, get_client
from streams.engine.imports import RosterRow, TeamRow
from streams.engine.periods import Period
from streams.engine.recompute import values
from streams.migrations import migrate
from streams.producer import rep_record, team_record
from streams.rules import Rules
from streams.settings import Settings
from streams.sinks.clickhouse import COLUMNS, accepted_rows, roster_row
from streams.web_explain import line_json

Q4 = datetime(2026, 10, 1, tzinfo=UTC)
SPAN = 90 * 86400
HOT = "rep-hot"
BATCH = 50_000


def _record(topic: str, value: bytes, n: int, key: bytes | None = None) -> ConsumerRecord:
    return ConsumerRecord(
        topic, 0, n, 1_790_000_000_000 + n, 0, key, value, None, 0, len(value), ()
    )


def _event(n: int, rng: random.Random, rep: str) -> dict[str, Any]:
    at = (Q4 + timedelta(seconds=rng.randrange(SPAN))).isoformat()
    roll = rng.random()
    if roll < 0.1:
        deal = f"D{n}" if roll > 0.004 else f"D{n - 1}"  # some re-wins of the previous deal
        data: dict[str, Any] = {
            "rep_id": rep,
            "deal_id": deal,
            "amount": f"{rng.randrange(100, 50_000)}.{rng.randrange(100):02d}",
            "currency": rng.choice(["USD", "EUR", "GBP"]),
        }
        if rng.random() < 0.25:
            data["splits"] = [
                {"rep_id": rep, "share": "0.6"},
                {"rep_id": f"rep-{rng.randrange(1000)}", "share": "0.4"},
            ]
        kind = "deal.won"
    elif roll < 0.102:
        data, kind = {"rep_id": rep, "deal_id": f"D{n - 3}"}, "deal.lost"
    else:
        data, kind = {"rep_id": rep}, rng.choice(["call.completed", "email.sent", "meeting.held"])
    return {"specversion": "1.0", "id": f"e{n}", "source": "bench", "type": kind, "time": at,
            "data": data}  # fmt: skip


def fill(client: Any, rules: Rules, count: int, seed: int = 1) -> None:
    rng = random.Random(seed)
    to_rows = accepted_rows(rules)
    teams = [
        TeamRow(f"team-{t}", f"Team {t}", None if t < 4 else f"team-{t % 4}") for t in range(20)
    ]
    reps = [RosterRow(f"rep-{r}", f"Rep {r}", f"team-{r % 20}", None) for r in range(1000)]
    reps.append(RosterRow(HOT, "Hot Rep", "team-7", None))
    reference = [team_record(t) for t in teams] + [rep_record(r) for r in reps]
    client.insert(
        "roster_history",
        [roster_row(_record("spm.roster", v, i, k)) for i, (k, v) in enumerate(reference)],
        column_names=COLUMNS["roster_history"],
    )
    hot = [(HOT, "call")] * 10_000 + [(HOT, "deal")] * 200
    tables: dict[str, list[Any]] = {"activity_events": [], "credits": []}
    for n in range(count + len(hot)):
        if n < len(hot):
            rep, what = hot[n]
            doc = _event(n, rng, rep)
            if what == "call":
                doc["type"], doc["data"] = "call.completed", {"rep_id": rep}
        else:
            doc = _event(n, rng, f"rep-{rng.randrange(1000)}")
        for table, rows in to_rows(_record("spm.activity", orjson.dumps(doc), n)).items():
            tables[table].extend(rows)
        if len(tables["activity_events"]) >= BATCH:
            _flush(client, tables)
    _flush(client, tables)


def _flush(client: Any, tables: dict[str, list[Any]]) -> None:
    for table, rows in tables.items():
        if rows:
            client.insert(table, rows, column_names=COLUMNS[table])
            rows.clear()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--explains", type=int, default=100)
    parser.add_argument("--out", type=Path, help="write the figures as JSON here")
    args = parser.parse_args()
    rules = Rules.from_settings(Settings())
    period = rules.calendar.parse("2026-Q4")
    assert isinstance(period, Period)
    with tempfile.TemporaryDirectory() as tmp:
        close_clients()
        client = get_client(Settings(clickhouse_url=f"chdb://{Path(tmp) / 'ch'}"))
        migrate(client)
        t0 = time.perf_counter()
        fill(client, rules, args.events)
        filled = time.perf_counter() - t0

        t0 = time.perf_counter()
        events = credit_history.period_events(client, period)
        roster = credit_history.roster(client)
        recomputed = values(events, roster, rules.calendar, rules.catalog)
        live = {}
        for (scope, scope_id, metric, label), value in recomputed.items():
            if label == period.label:
                live.setdefault((scope, scope_id), {})[metric] = value
        first_pass = time.perf_counter() - t0

        t0, c0 = time.perf_counter(), time.process_time()
        result = reconcile.reconcile(client, rules, period, lambda s, i: live.get((s, i)))
        reconcile_s, reconcile_cpu = time.perf_counter() - t0, time.process_time() - c0
        assert not result.differences

        timings = []
        lines = 0
        c0 = time.process_time()
        for _ in range(args.explains):
            t0 = time.perf_counter()
            found = credit_history.explanation(client, rules, ("rep", HOT), "calls", period)
            page, _ = found.page(None, 100)
            json.dumps([line_json(line) for line in page])
            timings.append((time.perf_counter() - t0) * 1000)
            lines = len(found.lines)
        explain_cpu_ms = (time.process_time() - c0) * 1000 / max(1, args.explains)
        close_clients()
    timings.sort()
    figures = {
        "stored_events": args.events + 10_200,
        "fill_seconds": round(filled, 1),
        "events_read_for_q4": len(events),
        "reconcile_seconds": round(reconcile_s, 2),
        "reconcile_cpu_seconds": round(reconcile_cpu, 2),
        "recompute_seconds_first_pass": round(first_pass, 2),
        "figures_compared": result.figures,
        "explain_contributions": lines,
        "explain_requests": len(timings),
        "explain_p50_ms": round(statistics.median(timings), 1),
        "explain_p99_ms": round(timings[max(0, int(len(timings) * 0.99) - 1)], 1),
        "explain_mean_cpu_ms": round(explain_cpu_ms, 1),
        "loadavg_1m_at_end": os.getloadavg()[0],
    }
    print(json.dumps(figures, indent=2))
    if args.out:
        args.out.write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
