"""The demo (``python -m tools.demo run``, what ``make demo`` shows) on the real broker.

It runs as a user would, from the repository root, then the topics are read back to see what
was published; the dead-letter count on screen is checked against transactional writes.
"""

from __future__ import annotations

import subprocess
import sys

import pytest
from kafka import KafkaProducer

from streams.settings import Settings
from streams.topics import ensure_topics
from tests.integration.feeding import read_topic
from tests.integration.harness import free_port, settings_env
from tools.demo import DeadLetterCounter
from tools.settings import REPO_ROOT


@pytest.fixture
def settings(stack: Settings, unique_prefix: str) -> Settings:
    s = stack.model_copy(update={"topic_prefix": unique_prefix, "app_id": unique_prefix})
    ensure_topics(s)
    return s


def demo(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tools.demo", *args],
        cwd=REPO_ROOT,
        env={**settings_env(settings), "COLUMNS": "200"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_demo_without_a_worker_keeps_sending_and_exits_1(settings: Settings) -> None:
    silent = settings.model_copy(update={"web_port": free_port()})
    result = demo(
        silent,
        "run", "--duration", "3", "--rate", "20", "--no-backfill",
        "--regions", "1", "--teams-per-region", "1", "--reps-per-team", "3",
    )  # fmt: skip
    assert result.returncode == 1, result.stderr
    assert f"http://127.0.0.1:{silent.web_port}/api/v1/leaderboard" in result.stdout
    assert "does not answer" in result.stdout and "never answered" in result.stdout
    assert "published 3 teams, 3 reps" in result.stdout
    live = read_topic(settings, "activity")
    assert 40 <= len(live) <= 70  # about 3 s at 20 events/s
    roster = read_topic(settings, "roster")
    assert len(roster) == 6


def test_demo_counts_dead_letters_not_the_offsets_of_transaction_markers(
    settings: Settings,
) -> None:
    counter = DeadLetterCounter(settings)
    producer = KafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap,
        transactional_id=f"{settings.app_id}-dlq-writer",
    )
    producer.init_transactions()
    for letter in (b"first", b"second"):  # as the worker writes them: one transaction each
        producer.begin_transaction()
        producer.send(settings.topic("activity.dlq"), letter, partition=0)
        producer.commit_transaction()
    producer.close()
    seen = [counter.count() for _ in range(10)]  # each count polls up to 0.2 s
    counter.close()
    assert seen[-1] == 2, seen
