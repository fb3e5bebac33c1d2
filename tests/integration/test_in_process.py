"""The agent in-process, through the app factory, on the real broker.

``create_app(settings)`` builds a worker's app; the test starts it inside its own event loop
(no subprocess, no web server needed), feeds the generated scenario — half keyed as the
producer keys events, half unkeyed — and reads figures from the app's live views. A second
app with the same id then restores every partition from Kafka alone (changelog, credits,
buckets) and must hold exactly the same figures: what a new owner sees after a crash. Records
of those topics that no tally wrote are planted first: restoring skips them.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kafka import KafkaProducer

from streams.app import create_app
from streams.engine.errors import Invalid
from streams.settings import Settings
from streams.topics import ensure_topics
from tests.integration import scenario
from tests.integration.harness import wait_caught_up, worker_settings
from tests.integration.test_crash_matrix import produce
from tests.integration.test_pipeline import expected_figures, publish_reference

TIMEOUT = 120.0


async def _until(predicate: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + TIMEOUT
    while not predicate():
        assert time.monotonic() < deadline, f"not within {TIMEOUT}s: {what}"
        await asyncio.sleep(0.1)


def _figures(app: Any, keys: list[tuple[str, str, str, str]]) -> dict[tuple[str, ...], Any]:
    views, calendar = app.runtime.views, app.runtime.rules.calendar
    got = {}
    for scope, scope_id, metric, label in keys:
        period = calendar.parse(label)
        assert not isinstance(period, Invalid)
        got[(scope, scope_id, metric, label)] = views.figures(
            (scope, scope_id), metric, period, scenario.AS_OF
        )
    return got


async def _run(settings: Settings, sc: scenario.Scenario) -> None:
    expected = expected_figures(settings, sc)
    keys = sorted(expected)
    app = create_app(settings)
    app.finalize()
    await app.start()
    try:
        await _until(lambda: app.runtime.partitions.assigned_once, "partitions assigned")
        await asyncio.to_thread(produce, settings, sc.events, random.Random(7))
        await asyncio.to_thread(wait_caught_up, settings)
        await _until(lambda: app.runtime.partitions.ready, "partitions restored")
        live = _figures(app, keys)
    finally:
        await app.stop()
    assert live == {k: expected[k] for k in keys}

    restored_app = create_app(settings)
    restored_app.finalize()
    await restored_app.start()
    try:
        await _until(
            lambda: (
                restored_app.runtime.partitions.assigned_once
                and restored_app.runtime.partitions.ready
                and len(restored_app.runtime.partitions.owned) == settings.partitions
            ),
            "every partition restored by the second app",
        )
        restored = _figures(restored_app, keys)
    finally:
        await restored_app.stop()
    assert restored == live


def test_in_process_app_counts_exactly_and_a_new_owner_restores_the_same(
    stack: Settings, unique_prefix: str, tmp_path: Path
) -> None:
    settings = worker_settings(stack, unique_prefix, tmp_path, history_sink=False)
    ensure_topics(settings)
    sc = scenario.generate(seed=31, activities=600, deals=80)
    publish_reference(settings, sc)
    plant_malformed_state(settings)
    asyncio.run(_run(settings, sc))


def plant_malformed_state(settings: Settings) -> None:
    """Records no tally wrote (or an older format): a restore skips them and counts on."""
    producer = KafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all")
    try:
        for p, short in enumerate(("tally-changelog", "credits", "buckets")):
            for value in (b"not json", b'{"scope": ["team", "x"], "day": "2026-11-02"}'):
                producer.send(settings.topic(short), value, key=b"k", partition=p)
        producer.flush(timeout=30)
    finally:
        producer.close()
