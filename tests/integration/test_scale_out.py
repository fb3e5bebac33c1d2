"""Two workers on one app give the figures one worker gives, from whichever is asked.

The workers share the topics and the consumer group; each holds half of the partitions,
answers its own scopes and forwards the others to their owner; the leaderboard gathers both
halves. Each scope's Prometheus series is exported by exactly one of them. One worker runs
the history sink on its embedded chDB path; the other leaves it alone (one process per path).
Losing a worker and a rolling restart are ``test_failover.py``'s.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from streams.engine.scopes import scope_key
from streams.pipeline.kafka import partition_for
from streams.settings import Settings
from streams.topics import ensure_topics
from tests.integration import scenario
from tests.integration.harness import Worker, wait_caught_up, wait_settled, worker_settings
from tests.integration.test_pipeline import (
    assert_api_equals_recompute,
    assert_dead_lettered,
    assert_leaderboard_equals_recompute,
    publish_reference,
    raw_producer,
)

#: Series that name one scope: each must come from the one worker that owns the scope.
SCOPE_SERIES = ("spm_quota_", "spm_rep_info", "spm_rep_last_activity_timestamp_seconds")


def pair_settings(stack: Settings, prefix: str, tmp: Path) -> tuple[Settings, Settings]:
    """Two workers of one app: the first runs the history sink on its chDB path, the second
    points at the same path without a sink (as `spm db sink` beside N workers would)."""
    first = worker_settings(stack, prefix, tmp / "w1")
    second = worker_settings(
        stack, prefix, tmp / "w2", clickhouse_url=first.clickhouse_url, history_sink=False
    )
    return first, second


@pytest.fixture
def pair(stack: Settings, unique_prefix: str, tmp_path: Path) -> Iterator[list[Worker]]:
    first, second = pair_settings(stack, unique_prefix, tmp_path)
    ensure_topics(first)
    workers = [Worker(first, tmp_path / "w1.log"), Worker(second, tmp_path / "w2.log")]
    yield workers
    for worker in workers:
        worker.stop()


def scope_series(worker: Worker) -> set[tuple[str, tuple[tuple[str, str], ...]]]:
    """The per-scope series of a worker's /metrics: (sample name, labels)."""
    text = worker.get("/metrics").text
    return {
        (sample.name, tuple(sorted(sample.labels.items())))
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name.startswith(SCOPE_SERIES)
    }


def assert_each_series_exported_once(workers: list[Worker], reps: list[str]) -> None:
    """No series in two workers' /metrics, and every rep's info in exactly one."""
    exported = [scope_series(worker) for worker in workers]
    for i, mine in enumerate(exported):
        for theirs in exported[i + 1 :]:
            assert not mine & theirs, sorted(mine & theirs)[:5]
    every = set().union(*exported)
    infos = [dict(labels)["rep"] for name, labels in every if name == "spm_rep_info"]
    assert sorted(infos) == sorted(reps)


def test_two_workers_answer_every_figure_exactly_from_either(pair: list[Worker]) -> None:
    first, second = pair
    sc = scenario.generate(seed=21)
    publish_reference(first.settings, sc)
    for worker in pair:
        worker.spawn()
    wait_settled(pair, first.settings.partitions)
    halves = [set(w.get("/healthz").json()["partitions"]) for w in pair]
    assert all(halves), halves  # both hold partitions: answers really cross workers

    with raw_producer(first.settings) as producer:
        for raw in sc.events + [raw for raw, _ in sc.malformed]:
            producer.send(first.settings.topic("activity"), raw)
        producer.flush()
    wait_caught_up(first.settings, worker=first)

    for worker in pair:
        assert assert_api_equals_recompute(worker, sc) > 1000
        assert_leaderboard_equals_recompute(worker, sc)
        board = worker.get("/api/v1/leaderboard", period="2026-Q4", limit="1000").json()
        assert board["partial"] is False and board["partitions"] == [0, 1, 2, 3]
        assert sorted(e["rep_id"] for e in board["entries"]) == sorted(sc.reps)
    assert_dead_lettered(first.settings, sc)
    wait_published(pair, sc.reps)
    # History lives on the first worker's chDB path; the second cannot open it and says so.
    assert first.get("/api/v1/history/alerts").status_code == 200
    refused = second.get("/api/v1/history/alerts")
    assert refused.status_code == 503 and "error" in refused.json(), refused.text


def wait_published(workers: list[Worker], reps: list[str], timeout: float = 30.0) -> None:
    """The publisher exports on its interval: wait for it, then check the series' owners."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            assert_each_series_exported_once(workers, reps)
            return
        except AssertionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(1.0)


def test_a_worker_that_does_not_hold_a_partition_never_answers_from_empty_books(
    pair: list[Worker],
) -> None:
    first, second = pair
    sc = scenario.generate(seed=4, activities=50, deals=10)
    publish_reference(first.settings, sc)
    for worker in pair:
        worker.spawn()
    wait_settled(pair, first.settings.partitions)
    first.kill()
    # Until the group notices (session timeout), the dead worker still owns its partitions:
    # the survivor answers 503 with Retry-After for their scopes, never a 200 from its books.
    held = set(second.get("/healthz").json()["partitions"])
    assert held != {0, 1, 2, 3}
    for rep in sc.reps:
        response = second.get(f"/api/v1/reps/{rep}/progress", period="2026-Q4")
        if partition_for(scope_key(("rep", rep)), first.settings.partitions) in held:
            assert response.status_code == 200, response.text
        else:
            assert response.status_code == 503, response.text
            assert response.headers["Retry-After"] and "error" in response.json()
    board = second.get("/api/v1/leaderboard", period="2026-Q4").json()
    assert board["partial"] is True
    assert board["missing_partitions"] == sorted({0, 1, 2, 3} - held)


def test_a_second_worker_with_a_sink_on_the_same_chdb_path_refuses_to_start(
    stack: Settings, unique_prefix: str, tmp_path: Path
) -> None:
    first, _ = pair_settings(stack, unique_prefix, tmp_path)
    second = worker_settings(
        stack, unique_prefix, tmp_path / "w2", clickhouse_url=first.clickhouse_url
    )
    ensure_topics(first)
    holder = Worker(first, tmp_path / "w1.log")
    refused = Worker(second, tmp_path / "w2.log")
    try:
        holder.start()
        refused.spawn()
        assert refused.process is not None
        assert refused.process.wait(60) != 0
        log = refused.log_tail()
        assert "open in another process" in log and "SPM_CLICKHOUSE_URL" in log, log
        assert httpx.get(f"{holder.url}/healthz", timeout=5).status_code == 200
    finally:
        holder.stop()
        refused.stop()
