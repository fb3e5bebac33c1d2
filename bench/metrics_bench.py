"""``/metrics`` of a worker holding many reps: series count and scrape time.

Fills the worker's own series (:data:`streams.metrics.QUOTAS` and the registry of Faust's
sensor metrics, the process collectors and the pipeline-health series) the way the publisher
does — every catalog metric and period type of every rep, team and the company is *published*,
and the series budget decides what is exported — then scrapes them over HTTP on loopback and
reports the median and worst of ``--scrapes`` scrapes.

    .venv/bin/python bench/metrics_bench.py --reps 10000 --teams 100
    SPM_METRICS_EXPORTED=revenue,deals_won,calls,emails,meetings,proposals \\
    SPM_METRICS_PERIOD_TYPES=day,week,month,quarter,year .venv/bin/python bench/metrics_bench.py
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from threading import Thread
from typing import Any

import httpx

from streams import metrics
from streams.engine.catalog import MetricCatalog
from streams.engine.pace import Thresholds
from streams.engine.periods import PERIOD_TYPES
from streams.settings import Settings

FIGURES = {
    "value": "61250.5",
    "target": "100000",
    "attainment": "0.612505",
    "expected": "0.5",
    "pace": "1.22501",
    "projection": "122501",
    "gap": "38749.5",
    "status": "on_track",
}


def fill(reps: int, teams: int, figures: dict[str, str] = FIGURES) -> None:
    settings = Settings()
    catalog = MetricCatalog.load(settings.catalog_path).names
    metrics.configure_quotas(
        settings.metrics_exported, settings.metrics_period_types, catalog, Thresholds()
    )
    quotas = metrics.QUOTAS
    scopes = [("rep", f"rep-{n:05d}", f"team-{n % teams:03d}") for n in range(reps)]
    scopes += [("team", f"team-{n:03d}", None) for n in range(teams)]
    scopes.append(("company", "company", None))
    for scope, scope_id, team in scopes:
        if scope == "rep":
            assert team is not None
            quotas.set_rep_info(scope_id, f"Rep {scope_id}", team)
            quotas.record_activity(scope_id, time.time())
        for metric in catalog:
            for period_type in PERIOD_TYPES:
                quotas.publish(scope, scope_id, metric, period_type, figures, team)


class Route(BaseHTTPRequestHandler):
    """``/metrics`` as the worker's route answers it: ``metrics.render()``."""

    def do_GET(self) -> None:
        body = metrics.render()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; version=0.0.4")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def quota_series(text: str) -> int:
    prefixes = ("spm_quota_", "spm_rep_info", "spm_rep_last_activity")
    return sum(line.startswith(prefixes) for line in text.splitlines())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--reps", type=int, default=10_000)
    parser.add_argument("--teams", type=int, default=100)
    parser.add_argument("--scrapes", type=int, default=20)
    parser.add_argument("--output", help="also write the result JSON here")
    args = parser.parse_args()

    started = time.perf_counter()
    fill(args.reps, args.teams)
    filled = time.perf_counter() - started
    server = ThreadingHTTPServer(("127.0.0.1", 0), Route)
    port = server.server_address[1]
    Thread(target=server.serve_forever, daemon=True).start()
    seconds, changed, size, text = [], [], 0, ""
    try:
        with httpx.Client(timeout=30) as client:
            for n in range(args.scrapes):
                # every other scrape follows a change of every figure (the worst case: all
                # scopes' lines are rendered again)
                if n % 2:
                    fill(args.reps, args.teams, FIGURES | {"value": f"61250.{n}"})
                t0 = time.perf_counter()
                response = client.get(f"http://127.0.0.1:{port}/metrics")
                (changed if n % 2 else seconds).append(time.perf_counter() - t0)
                response.raise_for_status()
                text, size = response.text, len(response.content)
    finally:
        server.shutdown()
    series = sum(1 for line in text.splitlines() if line and not line.startswith("#"))
    scoped = quota_series(text)
    result: dict[str, Any] = {
        "reps": args.reps,
        "teams": args.teams,
        "metrics_exported": os.environ.get("SPM_METRICS_EXPORTED", "default"),
        "metrics_period_types": os.environ.get("SPM_METRICS_PERIOD_TYPES", "default"),
        "series_total": series,
        "series_per_scope_total": scoped,
        "series_per_rep": (scoped - (args.teams + 1) * per_team(text)) / args.reps,
        "series_per_team": per_team(text),
        "bytes": size,
        "scrape_s_median": round(statistics.median(seconds), 4),
        "scrape_s_max": round(max(seconds), 4),
        "scrape_after_all_changed_s_median": round(statistics.median(changed), 4),
        "scrape_after_all_changed_s_max": round(max(changed), 4),
        "scrapes": args.scrapes,
        "fill_s": round(filled, 1),
        "loadavg_1m": os.getloadavg()[0],
    }
    line = json.dumps(result)
    print(line)
    if args.output:
        with open(args.output, "w") as out:
            out.write(line + "\n")


def per_team(text: str) -> int:
    return sum(
        line.startswith("spm_quota_") and 'id="team-000"' in line for line in text.splitlines()
    )


if __name__ == "__main__":
    main()
