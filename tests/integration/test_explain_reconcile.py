"""Explain and reconcile on the real stack: a worker with its ClickHouse sink (embedded chDB)
takes the exactness scenario (duplicates, amendments, retractions, splits, transfers).

Every explanation's total must equal the live API's figure (and the recomputation) for every
rep, team and the company, metric and period, and every line must name an accepted event;
``spm reconcile`` must find nothing, then — after an event is injected around the pipeline
into the worker's internal re-routing topic (counted live, never stored in history) — report
the scopes it changed and exit 1. The tests share one worker and run in file order: the
corruption comes after the clean checks, the look into the stopped worker's chDB last.
"""

# ruff: noqa: F811  (tests take the imported module fixture ``live`` by name)
from __future__ import annotations

import csv
import io
import json
from dataclasses import replace
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from streams.chclient import close_clients, get_client
from streams.engine.catalog import MetricCatalog
from streams.pipeline.kafka import partition_for
from tests.integration.harness import Worker, spm, wait_caught_up
from tests.integration.test_history_api import (  # noqa: F401  (the module's worker fixture)
    Live,
    live,
    ok,
    wait_published,
    wait_sink_caught_up,
)
from tests.integration.test_pipeline import raw_producer

CATALOG = MetricCatalog.load()
#: Periods checked for every scope and metric: the year, the quarter, both months, weeks
#: around the transfer (the unit property test covers every period type at random).
LABELS = ("2026", "2026-Q4", "2026-10", "2026-11", "2026-W44", "2026-W45", "2026-W47")


def scopes(live: Live) -> list[tuple[str, str]]:
    teams = sorted({t.team_id for t in live.sc.teams})
    return [("rep", r) for r in live.sc.reps] + [("team", t) for t in teams] + [COMPANY]


COMPANY = ("company", "company")


def base(scope: tuple[str, str]) -> str:
    return "/api/v1/company" if scope == COMPANY else f"/api/v1/{scope[0]}s/{scope[1]}"


def explain_all(live: Live, scope: tuple[str, str], limit: int = 1000, **params: Any) -> Any:
    """Every page of an explanation, following ``next_cursor``; (last body, all lines)."""
    lines: list[dict[str, Any]] = []
    while True:
        body = ok(live, f"{base(scope)}/explain", limit=limit, **params)
        lines.extend(body["lines"])
        if body["next_cursor"] is None:
            return body, lines
        params["cursor"] = body["next_cursor"]


def test_every_explanation_totals_the_live_figure(live: Live) -> None:
    checked = with_lines = 0
    counting = live.counting
    for scope in scopes(live):
        for label in LABELS:
            progress = ok(live, f"{base(scope)}/progress", period=label)["metrics"]
            for metric in CATALOG.names:
                body, lines = explain_all(live, scope, metric=metric, period=label)
                live_value = Decimal(progress[metric]["value"])
                assert Decimal(body["total"]) == live_value, (scope, metric, label)
                want = live.expected.get((*scope, metric, label))
                assert live_value == (want.value if want else 0), (scope, metric, label)
                assert body["contributions"] == len(lines)
                counted = [line for line in lines if line["counted"]]
                assert body["counted"] == len(counted)
                assert sum((Decimal(x["value"]) for x in counted), Decimal(0)) == live_value
                for line in lines:  # each names the copy of its key that counts
                    ref = line["event"]
                    event = counting[(ref["source"], ref["id"])]
                    assert (event.type, event.time) == (
                        ref["type"],
                        datetime.fromisoformat(ref["time"]),
                    )
                    assert line["status"] in ("counted", "superseded", "retracted")
                    assert line["reason"]
                checked += 1
                with_lines += bool(lines)
    assert checked == len(scopes(live)) * len(LABELS) * len(CATALOG.names)
    assert with_lines > checked // 2


def test_explanations_as_of_a_day_total_the_live_figure_as_of_that_day(live: Live) -> None:
    for scope in scopes(live):
        for as_of in ("2026-10-20", "2026-11-10T12:00:00+01:00"):
            progress = ok(live, f"{base(scope)}/progress", period="2026-Q4", as_of=as_of)
            for metric in ("revenue", "calls", "deals_won"):
                body, lines = explain_all(live, scope, metric=metric, period="2026-Q4", as_of=as_of)
                assert body["as_of_day"] == progress["as_of_day"]
                want = Decimal(progress["metrics"][metric]["value"])
                assert Decimal(body["total"]) == want, (scope, metric, as_of)
                cut = datetime.fromisoformat(body["as_of"])
                assert all(datetime.fromisoformat(x["event"]["time"]) < cut for x in lines)


def test_explanations_show_superseded_and_retracted_deals_and_page_by_cursor(
    live: Live,
) -> None:
    _, company = explain_all(live, COMPANY, metric="revenue", period="2026-Q4")
    statuses = {line["status"] for line in company}
    assert statuses == {"counted", "superseded", "retracted"}, statuses
    retracted = next(line for line in company if line["status"] == "retracted")
    assert retracted["by"]["type"] in ("deal.lost", "deal.reopened")
    assert "retracted by" in retracted["reason"]
    rewon = next(line for line in company if line["replaces"] and line["counted"])
    assert " re-won on " in rewon["reason"]
    _, paged = explain_all(live, COMPANY, limit=7, metric="revenue", period="2026-Q4")
    assert paged == company


def test_explain_rejects_bad_parameters_as_json_4xx(live: Live) -> None:
    rep = live.sc.reps[0]
    cases = [
        (f"/api/v1/reps/{rep}/explain", {"metric": "bogus"}, 400, "metric"),
        (f"/api/v1/reps/{rep}/explain", {"period": "2026-Q9"}, 400, "period"),
        (f"/api/v1/reps/{rep}/explain", {"as_of": "yesterday"}, 400, "as_of"),
        (f"/api/v1/reps/{rep}/explain", {"limit": "0"}, 400, "limit"),
        (f"/api/v1/reps/{rep}/explain", {"cursor": "[1]"}, 400, "cursor"),
        ("/api/v1/reps/nobody/explain", {}, 404, "rep_id"),
        ("/api/v1/teams/no-such-team/explain", {}, 404, "team_id"),
    ]
    for path, params, status, field in cases:
        response = live.worker.get(path, **params)
        assert response.status_code == status, (path, params, response.text)
        assert response.json()["error"]
        assert response.json().get("field") == field, (path, params, response.text)


def test_spm_explain_prints_a_table_and_csv_that_add_up(live: Live) -> None:
    rep = live.sc.reps[1]
    figure = ok(live, f"/api/v1/reps/{rep}/progress", period="2026-Q4")["metrics"]["revenue"]
    table = spm(live.settings, "explain", rep, "--metric", "revenue", "--period", "2026-Q4")
    assert table.returncode == 0, table.stdout + table.stderr
    assert f"rep {rep} · revenue · 2026-Q4: total {figure['value']}" in table.stdout
    result = spm(live.settings, "explain", rep, "--period", "2026-Q4", "--csv")
    assert result.returncode == 0, result.stderr
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert rows and all(row["rep_id"] == rep for row in rows)
    counted = sum(Decimal(r["value"]) for r in rows if r["status"] == "counted")
    assert counted == Decimal(figure["value"])
    both = spm(live.settings, "explain", rep, "--team", "emea")
    assert both.returncode == 2 and "exactly one" in both.stderr


def test_reconcile_after_the_scenario_finds_no_difference(live: Live) -> None:
    result = spm(live.settings, "reconcile", "--period", "2026-Q4")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 differences" in result.stdout
    assert "reconciles" in result.stderr  # the worker holding chDB ran it


def test_reconcile_names_the_scopes_of_a_corrupted_live_state(live: Live) -> None:
    """An event the pipeline never accepted, injected into the internal re-routing topic:
    the worker counts it, the history never sees it."""
    rep = live.sc.reps[2]
    model = next(e for e in live.accepted.values() if e.type == "call.completed")
    forged = replace(model, source="forged", id="injected-1", rep_id=rep, data={"rep_id": rep})
    key = forged.partition_key
    with raw_producer(live.settings) as producer:
        producer.send(
            live.settings.topic("events"),
            forged.to_json(),
            key=key.encode(),
            partition=partition_for(key, live.settings.partitions),
        )
        producer.flush()
    wait_caught_up(live.settings, worker=live.worker)
    wait_published(live.settings, live.worker)
    result = spm(live.settings, "reconcile", "--period", "2026-Q4")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "0 differences" not in result.stdout
    rows = {
        tuple(cell.strip() for cell in line.split("│")[1:-1])
        for line in result.stdout.splitlines()
        if line.count("│") == 6
    }
    differing = {(scope, scope_id, metric) for scope, scope_id, metric, _, _ in rows}
    teams = {r.team_id for r in live.sc.roster if r.rep_id == rep}  # old or new team
    assert ("rep", rep, "calls") in differing, result.stdout
    assert ("company", "company", "calls") in differing, result.stdout
    assert any(("team", t, "calls") in differing for t in teams), result.stdout
    assert {metric for _, _, metric in differing} == {"calls"}


def test_reconciliations_are_recorded_for_the_board(live: Live) -> None:
    wait_sink_caught_up(live.settings, live.worker)
    live.worker.stop()
    close_clients()
    try:
        rows = (
            get_client(live.settings)
            .query("SELECT period, differences, details FROM reconciliations ORDER BY finished_at")
            .result_rows
        )
    finally:
        close_clients()
    assert [(period, n > 0) for period, n, _ in rows] == [("2026-Q4", False), ("2026-Q4", True)]
    details = json.loads(rows[-1][2])
    assert {d["metric"] for d in details} == {"calls"}
    assert all(Decimal(d["live"]) == Decimal(d["history"]) + 1 for d in details)


def test_reconcile_reads_a_free_history_store_itself(live: Live, tmp_path: Path) -> None:
    """No worker holds the chDB path: without a live API there is no verdict (exit 2); with
    a worker that keeps no history (``SPM_HISTORY_SINK=false``, state restored from Kafka) the
    command reads the store itself and still finds the injected event."""
    live.worker.stop()  # (already stopped by the test before, in file order)
    close_clients()
    down = spm(live.settings, "reconcile", "--period", "2026-Q4", "--settle", "0")
    assert down.returncode == 2, down.stdout + down.stderr
    assert "no verdict" in down.stderr
    settings = live.settings.model_copy(update={"history_sink": False})
    worker = Worker(settings, tmp_path / "no-sink.log").start()
    try:
        wait_caught_up(settings, worker=worker)
        found = spm(settings, "reconcile", "--period", "2026-Q4", "--settle", "0")
    finally:
        worker.stop()
    assert found.returncode == 1, found.stdout + found.stderr
    assert "is held by" not in found.stderr
    assert "differences" in found.stdout and live.sc.reps[2] in found.stdout
