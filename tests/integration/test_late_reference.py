"""Reference data entered late, on the real stack: transfers, hires and quota changes that
arrive after the events they affect, with effective dates in the past, re-attribute the
history without a replay, and the figures equal the recomputation with the final reference.

The worker counts a generated stream while a third of the reps are not on the roster at all
(their credit goes to the team ``unassigned``, shown in ``/healthz``) and no transfer or
mid-period quota change is known. Then the missing roster rows (the reps, and transfers
effective weeks before) and the quota changes are published, and nothing else happens: the
worker's timer re-attributes on its own. Also with the worker killed and replaced just
before or just after: a new owner must empty the buckets the old one attributed elsewhere.
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from tenacity import Retrying, stop_after_delay, wait_fixed

from streams.engine.rollup import UNASSIGNED
from streams.producer import EventProducer
from streams.settings import Settings
from streams.topics import ensure_topics
from tests.integration import scenario
from tests.integration.harness import Worker, wait_caught_up, worker_settings
from tests.integration.test_pipeline import assert_api_equals_recompute, raw_producer


@pytest.fixture
def settings(stack: Settings, unique_prefix: str, tmp_path: Path) -> Settings:
    # A killed worker's partitions move once its session expires: 6 s instead of the default
    # 10 keeps the crash cases short (the takeover itself is test_failover.py's subject).
    s = worker_settings(stack, unique_prefix, tmp_path, session_timeout=6.0)
    ensure_topics(s)
    return s


@pytest.fixture
def workers() -> Iterator[list[Worker]]:
    """The workers a test started, stopped afterwards whatever the outcome."""
    started: list[Worker] = []
    yield started
    for w in started:
        w.stop()


def _unassigned_calls(worker: Worker) -> str:
    response = worker.get(
        f"/api/v1/teams/{UNASSIGNED}/progress", period="2026-Q4", as_of=scenario.AS_OF.isoformat()
    )
    assert response.status_code == 200, response.text
    return str(response.json()["metrics"]["calls"]["value"])


@pytest.mark.parametrize("crash", ["none", "before", "after"])
def test_late_roster_and_quota_changes_re_attribute_history(
    settings: Settings, workers: list[Worker], tmp_path: Path, crash: str
) -> None:
    """``crash``: the worker is SIGKILLed and replaced just before the late reference data is
    published (the new owner restores state attributed with the old roster), or just after
    (it may or may not have re-attributed and sent the result)."""
    sc = scenario.generate(seed=23, activities=1000, deals=150)
    late_reps = set(sc.reps[::3])
    early_roster = [r for r in sc.roster if r.effective_from is None and r.rep_id not in late_reps]
    late_roster = [r for r in sc.roster if r not in early_roster]
    assert any(r.effective_from is not None for r in late_roster)  # transfers in the past
    early_quotas = [q for q in sc.quotas if q.effective_from is None]
    late_quotas = [q for q in sc.quotas if q.effective_from is not None]
    assert late_quotas
    with EventProducer(settings) as producer:
        producer.publish_teams(sc.teams)
        producer.publish_roster(early_roster)
        producer.publish_quotas(early_quotas)
    worker = Worker(settings, tmp_path / "worker.log")
    workers.append(worker)
    worker.start()
    with raw_producer(settings) as producer:
        for raw in sc.events:
            producer.send(settings.topic("activity"), raw)
        producer.flush()
    wait_caught_up(settings, worker=worker)

    health = worker.get("/healthz").json()
    assert health["unassigned_reps"]["count"] == len(late_reps)
    assert set(health["unassigned_reps"]["first"]) == late_reps
    assert int(_unassigned_calls(worker)) > 0

    if crash == "before":
        worker.kill()
    with EventProducer(settings) as producer:
        producer.publish_roster(late_roster)
        producer.publish_quotas(late_quotas)
    if crash == "after":
        time.sleep(random.uniform(0.2, 2.0))
        worker.kill()
    if crash != "none":
        worker = Worker(settings, tmp_path / "replacement.log")
        workers.append(worker)
        worker.start()

    for attempt in Retrying(stop=stop_after_delay(60), wait=wait_fixed(0.5), reraise=True):
        with attempt:
            assert worker.get("/healthz").json()["unassigned_reps"]["count"] == 0
            assert _unassigned_calls(worker) == "0"
    wait_caught_up(settings, worker=worker)
    assert assert_api_equals_recompute(worker, sc) > 1000
