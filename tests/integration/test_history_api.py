"""The history API and ``spm replay`` on the real stack: a worker with its ClickHouse sink
(embedded chDB) takes a generated scenario; the tests run once its agents and its sink have
caught up (consumer-group offsets, not sleeps).

The endpoints must show what the worker published (the newest ``spm.progress`` record of each
figure, the ``spm.alerts`` records, the dead letters); the ClickHouse totals must equal a
from-scratch recomputation (``streams.engine.recompute``), which also holds the worker to
having published its final figures. One worker serves the module; the last tests stop it
(SIGTERM: the sink flushes) to open its chDB path here and in ``spm replay``, so they come last.
"""

from __future__ import annotations

import json
import subprocess
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition

from streams import history
from streams.chclient import close_clients, get_client
from streams.engine.errors import Invalid
from streams.engine.events import Event
from streams.engine.pace import Figures
from streams.kafka_clients import new_client
from streams.rules import Rules
from streams.settings import Settings
from streams.sinks.clickhouse import ROUTES
from streams.topics import ensure_topics
from tests.integration import scenario
from tests.integration.feeding import read_topic
from tests.integration.harness import Worker, spm, wait_caught_up, worker_settings
from tests.integration.test_pipeline import (
    assert_api_equals_recompute,
    expected_figures,
    publish_reference,
    raw_producer,
)

HISTORY_TOPICS = (*ROUTES, "progress")  # everything the sink consumes
FigureKey = tuple[str, ...]  # scope, id, metric, period label


@dataclass
class Live:
    settings: Settings
    worker: Worker
    sc: scenario.Scenario
    expected: dict[FigureKey, Figures]  # the recomputation
    published: dict[FigureKey, dict[str, Any]]  # the newest spm.progress record per figure
    #: distinct accepted events by (source, id, copy digest): conflicting copies apart
    accepted: dict[tuple[str, str, int], Event]

    @property
    def counting(self) -> dict[tuple[str, str], Event]:
        """The copy of each (source, id) that counts (the smallest digest)."""
        copies = sorted(self.accepted.values(), key=lambda e: -e.copy_digest)
        return {e.key: e for e in copies}


@pytest.fixture(scope="module")
def live(
    stack: Settings, kafka_admin: KafkaAdminClient, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Live]:
    """A worker that has taken the scenario, its agents and its sink caught up."""
    tmp = tmp_path_factory.mktemp("history")
    prefix = f"t{uuid.uuid4().hex[:8]}"  # as ``unique_prefix``, for the whole module
    # Held snapshots reach ClickHouse (and the sink commits past them) within a second.
    settings = worker_settings(
        stack, prefix, tmp, snapshot_interval=0.5, sink_batch_seconds=0.5, publish_interval=0.5
    )
    ensure_topics(settings)
    worker = Worker(settings, tmp / "worker.log")
    try:
        sc = scenario.generate(seed=41, activities=300, deals=40)
        publish_reference(settings, sc)
        worker.start()
        with raw_producer(settings) as producer:
            for raw in sc.events + [raw for raw, _ in sc.malformed]:
                producer.send(settings.topic("activity"), raw)
            producer.flush()
        wait_caught_up(settings, worker=worker)
        wait_published(settings, worker)
        wait_sink_caught_up(settings, worker)
        yield Live(
            settings,
            worker,
            sc,
            expected_figures(settings, sc),
            newest_progress(settings),
            accepted_events(settings, sc),
        )
    finally:
        worker.stop()
        close_clients()
        kafka_admin.delete_topics([t for t in kafka_admin.list_topics() if t.startswith(prefix)])


def wait_published(settings: Settings, worker: Worker, quiet: float = 3.0) -> None:
    """The publisher writes progress on its interval after the batches: wait until the
    progress topic has not grown for ``quiet`` seconds (several intervals)."""
    consumer = new_client(KafkaConsumer, settings)
    try:
        topic = settings.topic("progress")
        tps = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        deadline = time.monotonic() + 120
        ends, since = consumer.end_offsets(tps), time.monotonic()
        while time.monotonic() - since < quiet:
            assert time.monotonic() < deadline, f"progress still growing\n{worker.log_tail()}"
            time.sleep(0.5)
            now = consumer.end_offsets(tps)
            if now != ends:
                ends, since = now, time.monotonic()
    finally:
        consumer.close()


def wait_sink_caught_up(settings: Settings, worker: Worker | None = None) -> None:
    wait_caught_up(settings, HISTORY_TOPICS, worker=worker, group=f"{settings.app_id}-sink")


def accepted_events(settings: Settings, sc: scenario.Scenario) -> dict[tuple[str, str, int], Event]:
    decoder = Rules.from_settings(settings).decoder
    events = {}
    for raw in sc.events:
        event = decoder.decode(raw)
        assert not isinstance(event, Invalid), event
        events[copy_key(event)] = event
    return events


def copy_key(event: Event) -> tuple[str, str, int]:
    return (event.source, event.id, event.copy_digest)


@pytest.fixture(scope="module")
def stopped(live: Live) -> Live:
    """The worker stopped by SIGTERM (its sink flushed and released the chDB path)."""
    wait_sink_caught_up(live.settings, live.worker)
    live.worker.stop()
    assert live.worker.process is not None and live.worker.process.returncode is not None
    return live


def newest_progress(settings: Settings) -> dict[FigureKey, dict[str, Any]]:
    newest: dict[FigureKey, dict[str, Any]] = {}
    for value in committed_values(settings, "progress"):
        doc = json.loads(value)
        key = (doc["scope"], doc["id"], doc["metric"], doc["period"])
        if key not in newest or instant(doc["as_of"]) >= instant(newest[key]["as_of"]):
            newest[key] = doc
    return newest


def published(live: Live, scope: str, scope_id: str, metric: str, label: str) -> dict[str, Any]:
    return live.published[(scope, scope_id, metric, label)]


def number(text: str | None) -> Decimal | None:
    return None if text is None else Decimal(text)


def instant(text: str) -> datetime:
    return datetime.fromisoformat(text)


def millis(text: str) -> datetime:
    """An instant as ClickHouse keeps it (DateTime64(3))."""
    t = instant(text)
    return t.replace(microsecond=t.microsecond // 1000 * 1000)


def ok(live: Live, path: str, **params: Any) -> Any:
    response = live.worker.get(path, **params)
    assert response.status_code == 200, (path, params, response.text)
    return response.json()


def final_teams(sc: scenario.Scenario) -> dict[str, str]:
    """Each rep's team after the last roster change."""
    teams: dict[str, tuple[datetime, str]] = {}
    for row in sc.roster:
        since = row.effective_from or datetime.min.replace(tzinfo=UTC)
        if row.rep_id not in teams or since >= teams[row.rep_id][0]:
            teams[row.rep_id] = (since, row.team_id)
    return {rep: team for rep, (_, team) in teams.items()}


def committed_values(settings: Settings, name: str) -> list[bytes]:
    """The committed (read_committed) values of a topic, read until it stays quiet."""
    consumer = KafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap,
        enable_auto_commit=False,
        isolation_level="read_committed",
        consumer_timeout_ms=2000,
    )
    try:
        topic = settings.topic(name)
        tps = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        return [record.value for record in consumer]
    finally:
        consumer.close()


# --- the endpoints ------------------------------------------------------------------------------
def assert_cumulative(live: Live, scope: str, scope_id: str, metric: str, label: str) -> None:
    path = f"/api/v1/history/{scope}s/{scope_id}/cumulative"
    body = ok(live, path, metric=metric, period=label)
    want = published(live, scope, scope_id, metric, label)
    assert (body["scope"], body["id"], body["metric"], body["period"]) == (
        scope,
        scope_id,
        metric,
        label,
    )
    days = [date.fromisoformat(d["day"]) for d in body["days"]]
    start = date.fromisoformat(body["start"][:10])
    assert days == [start + timedelta(days=i) for i in range(len(days))], "days not consecutive"
    recorded = [d for d in body["days"] if d["value"] is not None]
    assert recorded, f"no snapshot of {scope} {scope_id} {metric} {label}"
    assert millis(recorded[-1]["as_of"]) == millis(want["as_of"])
    assert number(recorded[-1]["value"]) == number(want["value"])
    assert number(recorded[-1]["target"]) == number(want["target"])
    assert want["target"] is not None, "pick a figure with a target"
    for day in recorded:  # the target line rises through the period up to the target
        assert Decimal(0) <= Decimal(day["expected"]) <= Decimal(day["target"])


def test_cumulative_lines_end_at_the_published_figures(live: Live) -> None:
    rep = live.sc.reps[1]  # the rep whose Q4 revenue target was raised mid-period
    assert_cumulative(live, "rep", rep, "revenue", "2026-Q4")
    assert_cumulative(live, "rep", rep, "calls", "2026-11")
    assert_cumulative(live, "team", "emea-north", "revenue", "2026-Q4")
    assert_cumulative(live, "team", "emea", "calls", "2026-11")


def test_period_over_period_has_both_periods_figures(live: Live) -> None:
    rep = live.sc.reps[2]
    body = ok(
        live,
        "/api/v1/history/period-over-period",
        scope="rep",
        id=rep,
        metric="calls",
        period="2026-11",
    )
    current = published(live, "rep", rep, "calls", "2026-11")
    assert number(body["current"]["value"]) == number(current["value"])
    assert millis(body["current"]["as_of"]) == millis(current["as_of"])
    assert body["previous"]["period"] == "2026-10"
    previous = published(live, "rep", rep, "calls", "2026-10")
    assert number(body["previous"]["final"]["value"]) == number(previous["value"])
    company = ok(
        live,
        "/api/v1/history/period-over-period",
        scope="company",
        metric="calls",
        period="2026-Q4",
    )
    want = published(live, "company", "company", "calls", "2026-Q4")
    assert number(company["current"]["value"]) == number(want["value"])
    assert number(company["current"]["target"]) == number(want["target"]) == Decimal(2500)


def test_leaderboard_ranks_reps_by_their_newest_value(live: Live) -> None:
    body = ok(live, "/api/v1/history/leaderboard", metric="revenue", period="2026-Q4", limit=5)
    revenue = {
        key[1]: Decimal(doc["value"])
        for key, doc in live.published.items()
        if key[0] == "rep" and key[2:] == ("revenue", "2026-Q4")
    }
    entries = body["entries"]
    assert [e["rank"] for e in entries] == [1, 2, 3, 4, 5]
    assert [number(e["value"]) for e in entries] == sorted(revenue.values(), reverse=True)[:5]
    assert all(number(e["value"]) == revenue[e["rep_id"]] for e in entries)

    team = ok(
        live, "/api/v1/history/leaderboard", metric="revenue", period="2026-Q4", team="amer-east"
    )
    members = {rep for rep, t in final_teams(live.sc).items() if t == "amer-east"}
    assert {e["rep_id"] for e in team["entries"]} == members & set(revenue)
    assert {e["team_id"] for e in team["entries"]} == {"amer-east"}


def test_alert_history_is_the_alerts_topic(live: Live) -> None:
    published = {
        json.loads(v)["alert_id"]: json.loads(v) for v in committed_values(live.settings, "alerts")
    }
    assert published, "the scenario raised no alert: nothing to compare"
    body = ok(live, "/api/v1/history/alerts", limit=1000)
    assert {a["alert_id"] for a in body["alerts"]} == set(published)
    times = [a["at"] for a in body["alerts"]]
    assert times == sorted(times, reverse=True), "not newest first"
    one = next(iter(published.values()))
    scoped = ok(live, "/api/v1/history/alerts", scope=one["scope"], id=one["id"], limit=1000)
    assert {a["alert_id"] for a in scoped["alerts"]} == {
        i for i, a in published.items() if (a["scope"], a["id"]) == (one["scope"], one["id"])
    }
    assert ok(live, "/api/v1/history/alerts", limit=2)["alerts"] == body["alerts"][:2]
    later = ok(live, "/api/v1/history/alerts", since="2299-01-01T00:00:00Z")
    assert later["alerts"] == []


def test_rejected_counts_every_dead_letter_by_reason(live: Live) -> None:
    body = ok(live, "/api/v1/history/rejected")
    want = Counter(code for _, code in live.sc.malformed)
    assert {r["error_code"]: r["events"] for r in body["reasons"]} == want
    assert all(r["example"] for r in body["reasons"])
    assert ok(live, "/api/v1/history/rejected", since="2299-01-01T00:00:00Z")["reasons"] == []


def read_event_pages(live: Live, **params: Any) -> tuple[list[dict[str, Any]], int]:
    """Every page of /api/v1/history/events, following the ``after`` cursor; (events, pages)."""
    limit = 37
    events: list[dict[str, Any]] = []
    pages = 0
    while True:
        response = live.worker.get("/api/v1/history/events", limit=limit, **params)
        assert response.status_code == 200, response.text
        assert response.headers["content-type"].startswith("application/x-ndjson")
        page = [json.loads(line) for line in response.text.splitlines()]
        events.extend(page)
        pages += 1
        if len(page) < limit:
            return events, pages
        params["after"] = json.dumps([page[-1]["time"], page[-1]["source"], page[-1]["id"]])


def test_event_pages_hold_every_accepted_event_once_in_time_order(live: Live) -> None:
    events, pages = read_event_pages(live)
    assert pages > 5
    read = [Event.from_json(json.dumps(doc).encode()) for doc in events]
    keys = [copy_key(e) for e in read]
    assert len(keys) == len(set(keys)) == len(live.accepted)  # conflicting copies each once
    assert len(keys) > len({e.key for e in read})
    for event in read:
        assert event == live.accepted[copy_key(event)]
    order = [(Event.from_json(json.dumps(e).encode()).time, e["source"], e["id"]) for e in events]
    assert order == sorted(order)

    since = "2026-11-01T00:00:00+00:00"
    later, _ = read_event_pages(live, since=since)
    cut = datetime.fromisoformat(since)
    assert {copy_key(Event.from_json(json.dumps(e).encode())) for e in later} == {
        k for k, e in live.accepted.items() if e.time >= cut
    }


def test_bad_parameters_are_json_4xx(live: Live) -> None:
    rep = live.sc.reps[0]
    cases: list[tuple[str, dict[str, str], int, str | None]] = [
        (f"/api/v1/history/reps/{rep}/cumulative", {"metric": "bogus"}, 400, "metric"),
        (f"/api/v1/history/reps/{rep}/cumulative", {"period": "2026-Q9"}, 400, "period"),
        ("/api/v1/history/reps/nobody/cumulative", {}, 404, "rep_id"),
        ("/api/v1/history/teams/no-such-team/cumulative", {}, 404, "team_id"),
        ("/api/v1/history/teams/emea/cumulative", {"period": ""}, 400, "period"),
        ("/api/v1/history/period-over-period", {"id": rep}, 400, "scope"),
        ("/api/v1/history/period-over-period", {"scope": "galaxy", "id": rep}, 400, "scope"),
        ("/api/v1/history/period-over-period", {"scope": "rep"}, 400, "id"),
        ("/api/v1/history/period-over-period", {"scope": "company", "id": "acme"}, 400, "id"),
        ("/api/v1/history/period-over-period", {"scope": "rep", "id": "nobody"}, 404, "id"),
        (
            "/api/v1/history/period-over-period",
            {"scope": "rep", "id": rep, "metric": "bogus"},
            400,
            "metric",
        ),
        ("/api/v1/history/leaderboard", {"metric": "bogus"}, 400, "metric"),
        ("/api/v1/history/leaderboard", {"limit": "0"}, 400, "limit"),
        ("/api/v1/history/leaderboard", {"limit": "²"}, 400, "limit"),
        ("/api/v1/history/leaderboard", {"limit": "1001"}, 400, "limit"),
        ("/api/v1/history/leaderboard", {"period": "Q4"}, 400, "period"),
        ("/api/v1/history/leaderboard", {"team": "no-such-team"}, 404, "team"),
        ("/api/v1/history/alerts", {"since": "yesterday"}, 400, "since"),
        ("/api/v1/history/alerts", {"since": "2026-11-01T10:00"}, 400, "since"),
        ("/api/v1/history/alerts", {"scope": "galaxy"}, 400, "scope"),
        ("/api/v1/history/alerts", {"id": rep}, 400, "scope"),
        ("/api/v1/history/alerts", {"limit": "-1"}, 400, "limit"),
        ("/api/v1/history/rejected", {"since": "2026-13-01T00:00:00Z"}, 400, "since"),
        ("/api/v1/history/events", {"after": "nonsense"}, 400, "after"),
        ("/api/v1/history/events", {"after": '["2026-11-01T00:00:00Z", "s"]'}, 400, "after"),
        ("/api/v1/history/events", {"after": '["noon", "s", "i"]'}, 400, "after"),
        ("/api/v1/history/events", {"limit": "0"}, 400, "limit"),
        ("/api/v1/history/events", {"limit": "10001"}, 400, "limit"),
        ("/api/v1/history/events", {"since": "soon"}, 400, "since"),
    ]
    for path, params, status, field in cases:
        response = live.worker.get(path, **params)
        assert response.status_code == status, (path, params, response.text)
        body = response.json()
        assert body["error"], (path, params, body)
        assert body.get("field") == field, (path, params, body)


# --- spm replay, failing early ----------------------------------------------------------------
def spm_replay(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    return spm(settings, "replay", *args, timeout=120)


def test_replay_with_an_unreachable_api_fails_clearly(stack: Settings) -> None:
    result = spm_replay(stack, "--api", "http://127.0.0.1:9")
    assert result.returncode == 2, result.stdout + result.stderr
    assert "worker API at http://127.0.0.1:9 failed" in result.stderr
    assert "nothing replayed" in result.stderr
    assert "replayed" not in result.stdout


def test_replay_without_history_fails_clearly(stack: Settings, tmp_path: Path) -> None:
    settings = stack.model_copy(update={"clickhouse_url": f"chdb://{tmp_path / 'nothing'}"})
    result = spm_replay(settings)
    assert result.returncode == 2
    assert f"no chDB history at {tmp_path / 'nothing'}" in result.stderr
    assert not (tmp_path / "nothing").exists()


# --- the worker's final word, and a replay into it --------------------------------------------
def test_newest_published_progress_equals_recomputation(live: Live) -> None:
    """The worker's last word on every figure is the final one (what history keeps)."""
    unpublished = {k: f.value for k, f in live.expected.items() if k not in live.published}
    assert all(value == 0 for value in unpublished.values()), unpublished  # nothing to say
    stale = [
        (key, str(want.value), live.published[key]["value"], live.published[key]["as_of"])
        for key, want in sorted(live.expected.items())
        if key in live.published
        and (number(live.published[key]["value"]), number(live.published[key]["target"]))
        != (want.value, want.target)
    ]
    assert not stale, f"{len(stale)} figures last published stale, e.g. {stale[:3]}"


def test_replay_while_the_worker_holds_chdb_reads_its_api_and_changes_nothing(
    live: Live,
) -> None:
    before = ok(live, "/api/v1/history/rejected")
    sent_before = len(read_topic(live.settings, "activity"))
    since = datetime(2026, 11, 10, tzinfo=UTC)  # a part of the history: the worker is slow
    again = [e for e in live.accepted.values() if e.time >= since]
    result = spm_replay(live.settings, "--since", since.isoformat())
    assert result.returncode == 0, result.stdout + result.stderr
    assert "is held by process" in result.stderr, result.stderr
    assert live.worker.url in result.stderr
    assert f"replayed {len(again)} events from the worker API" in result.stdout, result.stdout
    assert len(read_topic(live.settings, "activity")) == sent_before + len(again)
    wait_caught_up(live.settings, worker=live.worker)
    assert_api_equals_recompute(live.worker, live.sc)
    wait_sink_caught_up(live.settings, live.worker)
    assert ok(live, "/api/v1/history/rejected") == before
    events, _ = read_event_pages(live)
    assert len(events) == len(live.accepted), "the history holds a replayed event twice"


# --- with the worker stopped -----------------------------------------------------------------
def test_clickhouse_totals_equal_recomputation(stopped: Live) -> None:
    close_clients()  # one chDB path per process
    try:
        rows = history.latest_progress(get_client(stopped.settings))
    finally:
        close_clients()
    stored = {(r["scope"], r["id"], r["metric"], r["period"]): r for r in rows}
    # Figures nothing ever counted toward (a target, no event) are never published.
    missing = {k: f.value for k, f in stopped.expected.items() if k not in stored}
    assert all(value == 0 for value in missing.values()), missing
    mismatches = [
        {
            "key": key,
            "recomputed": (str(want.value), None if want.target is None else str(want.target)),
            "clickhouse": (stored[key]["value"], stored[key]["target"]),
            "newest_published": stopped.published[key]["value"],
        }
        for key, want in sorted(stopped.expected.items())
        if key in stored
        and (number(stored[key]["value"]), number(stored[key]["target"]))
        != (want.value, want.target)
    ]
    assert not mismatches, f"{len(mismatches)} of {len(stored)} differ, e.g. {mismatches[:3]}"
    extra = {key: r["value"] for key, r in stored.items() if key not in stopped.expected}
    assert all(number(value) == 0 for value in extra.values()), extra
    assert len(stopped.expected) > 100


def test_replay_from_the_history_store_into_a_fresh_prefix(
    stopped: Live, unique_prefix: str
) -> None:
    fresh = stopped.settings.model_copy(
        update={"topic_prefix": unique_prefix, "app_id": unique_prefix}
    )
    result = spm_replay(fresh, "--since", "2026-11-01T00:00:00+00:00")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "held by" not in result.stderr
    cut = datetime(2026, 11, 1, tzinfo=UTC)
    want = {k: e for k, e in stopped.accepted.items() if e.time >= cut}
    assert f"replayed {len(want)} events from chdb://" in result.stdout, result.stdout
    decoder = Rules.from_settings(fresh).decoder
    replayed = {}
    for message in read_topic(fresh, "activity"):
        event = decoder.decode(message.value)
        assert not isinstance(event, Invalid), (event, message.value)
        assert message.key == event.partition_key.encode()
        replayed[copy_key(event)] = event
    assert replayed == want
