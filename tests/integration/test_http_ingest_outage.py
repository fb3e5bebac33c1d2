"""HTTP ingest through a broker outage: 503 while Kafka does not acknowledge, and nothing that
was answered 202 lost or counted twice.

The broker is a private one (conftest's ``private_broker``): stopping it touches no other test.
"""

from __future__ import annotations

import time
from pathlib import Path

import httpx

from streams.settings import Settings
from streams.topics import ensure_topics
from tests.integration import scenario
from tests.integration.harness import Worker, wait_caught_up, worker_settings
from tests.integration.test_pipeline import assert_api_equals_recompute, publish_reference
from tools import stack
from tools.settings import StackSettings

BATCH = "application/cloudevents-batch+json"


def test_broker_outage_answers_503_and_loses_nothing_answered_202(
    private_broker: StackSettings, unique_prefix: str, tmp_path: Path
) -> None:
    base = Settings(kafka_bootstrap=f"127.0.0.1:{private_broker.kafka_port}")
    settings = worker_settings(base, unique_prefix, tmp_path, ingest_timeout=2.0)
    ensure_topics(settings)
    sc = scenario.generate(seed=31, activities=300, deals=40)
    publish_reference(settings, sc)
    chunks = [sc.events[i::3] for i in range(3)]
    worker = Worker(settings, tmp_path / "worker.log").start()

    def send(client: httpx.Client, raws: list[bytes]) -> httpx.Response:
        body = b"[" + b",".join(raws) + b"]"
        url = f"{worker.url}/api/v1/events"
        return client.post(url, headers={"Content-Type": BATCH}, content=body)

    try:
        with httpx.Client(timeout=30) as client:
            assert send(client, chunks[0]).status_code == 202
            stack.down(private_broker)
            started = time.monotonic()
            refused = send(client, chunks[1])
            assert refused.status_code == 503, refused.text
            assert time.monotonic() - started < settings.ingest_timeout + 5
            assert refused.headers["Retry-After"] and "harmless" in refused.json()["error"]
            stack.up(private_broker)
            deadline = time.monotonic() + 90
            while (answer := send(client, chunks[1])).status_code != 202:
                assert answer.status_code == 503 and time.monotonic() < deadline, answer.text
                time.sleep(float(answer.headers["Retry-After"]))
            assert all(r["status"] == "accepted" for r in answer.json()["results"])
            assert send(client, chunks[2]).status_code == 202
        wait_caught_up(settings, worker=worker, timeout=180)
        assert_api_equals_recompute(worker, sc)  # every event answered 202, counted once
    finally:
        worker.stop()
