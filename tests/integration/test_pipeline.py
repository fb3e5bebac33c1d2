"""The pipeline on the real stack: figures from the API equal a from-scratch recomputation.

A worker process — configured as shipped, history sink included — consumes a generated stream
full of duplicates, conflicting copies of one (source, id) (another rep, day, type, deal or
amount; a deal event re-sent as an activity), shuffles, amendments, retractions, splits,
transfers, quota changes and malformed messages, keyed like the producer keys them or not
keyed at all; once it has caught up (consumer offsets, not sleeps) every rep's, team's and the
company's figures for every period with data must equal ``streams.engine.recompute`` over the
same events, exactly. Crashes, a broker restart and restarts are ``test_crash_matrix.py``'s.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from streams.engine.errors import Invalid
from streams.engine.events import Event
from streams.engine.money import decimal_text
from streams.engine.quotas import QuotaBook
from streams.engine.recompute import recompute
from streams.engine.roster import Roster
from streams.kafka_clients import new_client
from streams.producer import EventProducer
from streams.rules import Rules
from streams.settings import Settings
from streams.topics import ensure_topics
from tests.integration import scenario
from tests.integration.harness import Worker, wait_caught_up, worker_settings


@pytest.fixture
def settings(stack: Settings, unique_prefix: str, tmp_path: Path) -> Settings:
    s = worker_settings(stack, unique_prefix, tmp_path)
    ensure_topics(s)  # the reference data is published before the worker starts
    return s


@pytest.fixture
def worker(settings: Settings, tmp_path: Path) -> Iterator[Worker]:
    w = Worker(settings, tmp_path / "worker.log")
    yield w
    w.stop()


def publish_reference(settings: Settings, sc: scenario.Scenario) -> None:
    with EventProducer(settings) as producer:
        producer.publish_teams(sc.teams)
        producer.publish_roster(sc.roster)
        producer.publish_quotas(sc.quotas)


def raw_producer(settings: Settings) -> KafkaProducer:
    return new_client(KafkaProducer, settings, acks="all", linger_ms=5)


def reference_books(sc: scenario.Scenario) -> tuple[Roster, QuotaBook]:
    roster, quotas = Roster(), QuotaBook()
    for t in sc.teams:
        roster.set_team(t.team_id, t.name, t.parent_id)
    for r in sc.roster:
        roster.set_assignment(r.rep_id, r.name, r.team_id, r.effective_from)
    for q in sc.quotas:
        quotas.set(q.scope, q.scope_id, q.metric, q.period, q.target, q.effective_from)
    return roster, quotas


def expected_figures(
    settings: Settings, sc: scenario.Scenario, *, cut: datetime | None = None
) -> dict[tuple[str, ...], Any]:
    """The recomputed figures at ``scenario.AS_OF``; with ``cut`` (the end of a day), as the
    API's ``as_of`` of that day answers: at the cut, credit dated before it."""
    rules = Rules.from_settings(settings)
    events = []
    for raw in sc.events:
        decoded = rules.decoder.decode(raw)
        assert not isinstance(decoded, Invalid), decoded
        events.append(decoded)
    roster, quotas = reference_books(sc)
    return recompute(
        events,
        roster,
        quotas,
        rules.calendar,
        rules.catalog,
        rules.rates,
        rules.thresholds,
        cut or scenario.AS_OF,
        before=cut,
    )


def assert_api_equals_recompute(worker: Worker, sc: scenario.Scenario) -> int:
    """Compare every (scope, id, period) the recomputation knows; returns the count compared."""
    expected = expected_figures(worker.settings, sc, cut=scenario.AS_OF_CUT)
    by_request: dict[tuple[str, str, str], dict[str, Any]] = {}
    for (scope, scope_id, metric, label), figures in expected.items():
        by_request.setdefault((scope, scope_id, label), {})[metric] = figures.to_dict()
    paths = {
        "rep": "/api/v1/reps/{}/progress",
        "team": "/api/v1/teams/{}/progress",
        "company": "/api/v1/company/progress",
    }
    mismatches = []
    for (scope, scope_id, label), want in sorted(by_request.items()):
        response = worker.get(
            paths[scope].format(scope_id), period=label, as_of=scenario.AS_OF.isoformat()
        )
        assert response.status_code == 200, (scope, scope_id, label, response.text)
        got = response.json()["metrics"]
        for metric, figures in want.items():
            if got[metric] != figures:
                mismatches.append((scope, scope_id, label, metric, figures, got[metric]))
    by_scope: dict[str, int] = {}
    for m in mismatches:
        by_scope[m[0]] = by_scope.get(m[0], 0) + 1
    assert not mismatches, f"{len(mismatches)} mismatches {by_scope}, first: {mismatches[:3]}"
    return len(expected)


def dead_letters(settings: Settings) -> list[Any]:
    consumer = new_client(
        KafkaConsumer,
        settings,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        isolation_level="read_committed",
        consumer_timeout_ms=3000,
    )
    topic = settings.topic("activity.dlq")
    partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
    consumer.assign(partitions)
    consumer.seek_to_beginning(*partitions)
    records = list(consumer)
    consumer.close()
    return records


def assert_dead_lettered(settings: Settings, sc: scenario.Scenario) -> None:
    letters = {r.value: dict(r.headers) for r in dead_letters(settings)}
    for raw, code in sc.malformed:
        assert raw in letters, f"not dead-lettered: {raw[:60]!r}"
        headers = letters[raw]
        assert headers["spm-error-code"].decode() == code, (raw[:60], headers)
        assert headers["spm-error-message"]
        assert headers["spm-source-topic"].decode() == settings.topic("activity")
    assert len(letters) == len(sc.malformed)


def test_figures_equal_recomputation(settings: Settings, worker: Worker) -> None:
    sc = scenario.generate(seed=11)
    decode = Rules.from_settings(settings).decoder.decode
    accepted = [e for e in map(decode, sc.events) if isinstance(e, Event)]
    every_conflict = {"rep", "day", "type", "deal", "amount", "deal/activity"}
    assert scenario.conflict_kinds(accepted) == every_conflict
    publish_reference(settings, sc)
    worker.start()
    with raw_producer(settings) as producer:
        messages = sc.events + [raw for raw, _ in sc.malformed]
        for raw in messages:
            producer.send(settings.topic("activity"), raw)
        producer.flush()
    wait_caught_up(settings, worker=worker)
    compared = assert_api_equals_recompute(worker, sc)
    assert compared > 1000
    assert_leaderboard_equals_recompute(worker, sc)
    assert_dead_lettered(settings, sc)


def assert_leaderboard_equals_recompute(worker: Worker, sc: scenario.Scenario) -> None:
    """The revenue leaderboard of the quarter ranks reps by the recomputed values."""
    expected = expected_figures(worker.settings, sc, cut=scenario.AS_OF_CUT)
    values = {
        rep: expected[("rep", rep, "revenue", "2026-Q4")].value
        if ("rep", rep, "revenue", "2026-Q4") in expected
        else 0
        for rep in sc.reps
    }
    ranking = sorted(values, key=lambda rep: (-values[rep], rep))
    body = worker.get(
        "/api/v1/leaderboard",
        metric="revenue",
        period="2026-Q4",
        limit="5",
        as_of=scenario.AS_OF.isoformat(),
    ).json()
    assert [e["rep_id"] for e in body["entries"]] == ranking[:5]
    assert [e["value"] for e in body["entries"]] == [decimal_text(values[r]) for r in ranking[:5]]
    assert [e["rank"] for e in body["entries"]] == [1, 2, 3, 4, 5]


def test_kcat_raw_bytes_are_counted_or_dead_lettered(settings: Settings, worker: Worker) -> None:
    sc = scenario.generate(seed=5, activities=20, deals=5)
    publish_reference(settings, sc)
    worker.start()
    rep = sc.reps[0]
    good = json.dumps(
        scenario._event("call.completed", 1, scenario.START, {"rep_id": rep}, "kcat.test")
    )
    lines = f"{good}\nnot json at all\n".encode()
    subprocess.run(
        ["kcat", "-P", "-b", settings.kafka_bootstrap, "-t", settings.topic("activity")],
        input=lines,
        check=True,
        timeout=30,
    )
    wait_caught_up(settings, worker=worker)
    body = worker.get(
        f"/api/v1/reps/{rep}/progress", period="2026-10-01", as_of=scenario.AS_OF.isoformat()
    ).json()
    assert body["metrics"]["calls"]["value"] == "1"
    letters = dead_letters(settings)
    assert [r.value for r in letters] == [b"not json at all"]
    assert dict(letters[0].headers)["spm-error-code"] == b"not_json"


def test_api_errors_are_json_4xx(settings: Settings, worker: Worker) -> None:
    sc = scenario.generate(seed=3, activities=10, deals=2)
    publish_reference(settings, sc)
    worker.start()
    cases = [
        ("/api/v1/reps/nobody/progress", {}, 404),
        ("/api/v1/reps/{rep}/progress", {"period": "2026-Q9"}, 400),
        ("/api/v1/reps/{rep}/progress", {"as_of": "yesterday"}, 400),
        ("/api/v1/leaderboard", {"metric": "bogus"}, 400),
        ("/api/v1/leaderboard", {"limit": "0"}, 400),
        ("/api/v1/leaderboard", {"team": "no-such-team"}, 404),
        ("/api/v1/teams/no-such-team/progress", {}, 404),
    ]
    for path, params, status in cases:
        response = worker.get(path.format(rep=sc.reps[0]), **params)
        assert response.status_code == status, (path, params, response.text)
        assert "error" in response.json()


def test_metrics_and_health_answer(settings: Settings, worker: Worker) -> None:
    sc = scenario.generate(seed=3, activities=10, deals=2)
    publish_reference(settings, sc)
    worker.start()
    health = worker.get("/healthz")
    assert health.status_code == 200 and health.json()["reference_loaded"] is True
    body = health.json()
    assert body["tables_restored"] is True and body["partitions"] == [0, 1, 2, 3]
    assert set(body["state"]["entries"]) >= {"rep_days", "dedupe_ids", "deals", "team_buckets"}
    exposition = worker.get("/metrics")
    assert exposition.status_code == 200, exposition.text
    assert exposition.headers["content-type"].startswith("text/plain")
    assert "spm_worker_up" in exposition.text
