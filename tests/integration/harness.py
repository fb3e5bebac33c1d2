"""Running a real worker process against the local stack, and knowing when it has caught up.

Catching up is decided from consumer-group offsets, never from sleeps: every partition of the
pipeline's topics must have its committed offset at the end of the data (a transaction's
commit marker after the last record does not count as unprocessed data).
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition
from pydantic import SecretStr

from streams.kafka_clients import new_client
from streams.rules import Rules
from streams.settings import REPO_ROOT, Settings

PIPELINE_TOPICS = ("activity", "events", "deal-copies", "credits", "buckets")
#: One client for the tests' API requests and health polls: a new client (``httpx.get``) costs
#: ~20 ms of CPU (it builds a TLS context), a pooled request ~0.3 ms; a worker start polls
#: ``/healthz`` ~50 times. A pooled connection the worker closed (or died with) is not reused.
HTTP = httpx.Client(timeout=30)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def worker_settings(stack: Settings, prefix: str, tmp: Path, **overrides: Any) -> Settings:
    """Settings of a test worker: its own topics, group, data dir, web port and chDB path."""
    values: dict[str, Any] = {
        "topic_prefix": prefix,
        "app_id": prefix,
        "web_port": free_port(),
        "data_dir": tmp / "worker",
        "clickhouse_url": f"chdb://{tmp / 'clickhouse'}",
        "alert_interval": 3600.0,
        # celebrations go nowhere unless a test asks (the shared Alertmanager is not theirs)
        "alertmanager_url": "",
    }
    values.update(overrides)
    return stack.model_copy(update=values)


def settings_env(settings: Settings) -> dict[str, str]:
    """The SPM_* environment that makes a child process build exactly ``settings``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SPM_")}
    for name, value in settings.model_dump().items():
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        elif isinstance(value, list):
            value = json.dumps(value)  # what pydantic-settings reads back for a list
        if value is not None:
            env[f"SPM_{name.upper()}"] = str(value)
    return env


class Worker:
    """A ``faust -A streams.worker worker`` child process (the README's command)."""

    def __init__(self, settings: Settings, log_path: Path) -> None:
        self.settings = settings
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None
        self.url = f"http://127.0.0.1:{settings.web_port}"

    def start(self, timeout: float = 90.0) -> Worker:
        self.spawn()
        self.wait_healthy(timeout)
        return self

    def spawn(self) -> None:
        """Start the process without waiting for it (to kill it during start-up)."""
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "faust", "-A", "streams.worker", "worker", "-l", "info"],
            cwd=REPO_ROOT,
            env=settings_env(self.settings),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def wait_healthy(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._check_alive()
            try:
                if HTTP.get(f"{self.url}/healthz", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        raise AssertionError(f"worker not healthy after {timeout}s\n{self.log_tail()}")

    def _check_alive(self) -> None:
        if self.process is not None and self.process.poll() is not None:
            raise AssertionError(f"worker exited with {self.process.returncode}\n{self.log_tail()}")

    def kill(self) -> None:
        """SIGKILL: no shutdown hooks, no final commit — a crash."""
        assert self.process is not None
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.kill()

    def get(self, path: str, **params: Any) -> httpx.Response:
        self._check_alive()
        return HTTP.get(f"{self.url}{path}", params=params)

    def log_tail(self, lines: int = 60) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])


def _pending(consumer: KafkaConsumer, tp: TopicPartition, offset: int, end: int) -> bool:
    """Whether committed data lies in ``[offset, end)``: read it with read_committed.

    Commit/abort markers and aborted records occupy offsets but are not data, so the committed
    offset of a caught-up group can stay below the end offset.
    """
    if offset >= end:
        return False
    consumer.assign([tp])
    consumer.seek(tp, offset)
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        if consumer.poll(timeout_ms=200).get(tp):
            return True
        if consumer.position(tp) >= end:
            return False
    return True  # stuck below the end: an open transaction is still to be read


def wait_caught_up(
    settings: Settings,
    topics: Iterable[str] = PIPELINE_TOPICS,
    timeout: float = 240.0,
    worker: Worker | None = None,
    group: str | None = None,
) -> None:
    """Wait until the worker's group (or ``group``, e.g. the sink's) has committed past every
    data record of ``topics``.

    Stages feed each other, so the check must pass twice in a row with unchanged end offsets.
    """
    names = [settings.topic(t) for t in topics]
    group = group or settings.app_id
    admin = new_client(KafkaAdminClient, settings)
    consumer = new_client(
        KafkaConsumer,
        settings,
        enable_auto_commit=False,
        isolation_level="read_committed",
    )
    try:
        deadline = time.monotonic() + timeout
        previous: dict[TopicPartition, int] | None = None
        behind: dict[TopicPartition, tuple[int, int]] = {}
        while time.monotonic() < deadline:
            if worker is not None:
                worker._check_alive()
            tps = [
                TopicPartition(t, p) for t in names for p in consumer.partitions_for_topic(t) or ()
            ]
            ends = consumer.end_offsets(tps)
            committed = admin.list_group_offsets(group).get(group, {})
            behind = {}
            for tp in tps:
                done = committed.get(tp)
                offset = done.offset if done is not None else 0
                if _pending(consumer, tp, offset, ends[tp]):
                    behind[tp] = (offset, ends[tp])
            if not behind and previous == ends:
                return
            previous = ends if not behind else None
            time.sleep(0.5)
        tail = worker.log_tail() if worker is not None else ""
        raise AssertionError(f"{group} did not catch up in {timeout}s: {behind}\n{tail}")
    finally:
        consumer.close()
        admin.close()


def wait_settled(workers: list[Worker], partitions: int, timeout: float = 120.0) -> float:
    """Wait until every worker is healthy and together they hold each partition exactly once;
    returns the seconds it took."""
    started = time.monotonic()
    held: dict[str, Any] = {}
    while time.monotonic() - started < timeout:
        held = {}
        for worker in workers:
            worker._check_alive()
            try:
                answer = HTTP.get(f"{worker.url}/healthz", timeout=2)
            except httpx.HTTPError:
                break
            if answer.status_code != 200:
                break
            held[worker.url] = answer.json()["partitions"]
        else:
            every = sorted(p for owned in held.values() for p in owned)
            if every == list(range(partitions)):
                return time.monotonic() - started
        time.sleep(0.3)
    raise AssertionError(f"workers did not settle in {timeout}s: {held}")


def prove_reconciled(settings: Settings, worker: Worker, timeout: float = 120.0) -> None:
    """Once the worker's sink has stored the input, ``spm reconcile`` of the current quarter
    finds the live figures equal to the history's recomputation (exit 0) and records the run,
    so the boards' "Last reconciled" has a row."""
    wait_caught_up(
        settings,
        topics=("activity", "roster"),
        timeout=timeout,
        worker=worker,
        group=f"{settings.app_id}-sink",
    )
    quarter = Rules.from_settings(settings).calendar.current("quarter", datetime.now(UTC))
    proof = spm(settings, "reconcile", "--period", quarter.label, timeout=timeout)
    assert proof.returncode == 0, proof.stdout + proof.stderr


def spm(
    settings: Settings,
    *args: str,
    stdin: str | None = None,
    timeout: float = 180.0,
    **env: str,
) -> subprocess.CompletedProcess[str]:
    """The ``spm`` command users run (the entry point installed beside this Python) with
    ``settings`` in its environment; a wide terminal so tables are not wrapped."""
    return subprocess.run(
        [str(Path(sys.executable).with_name("spm")), *args],
        cwd=REPO_ROOT,
        env={**settings_env(settings), "COLUMNS": "250", **env},
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def duration_seconds(duration: str) -> float:
    """A Prometheus/Alertmanager duration such as ``5s`` or ``1m30s``."""
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}
    parts = re.findall(r"(\d+)(ms|s|m|h|d)", duration)
    if not parts or "".join(n + u for n, u in parts) != duration:
        raise ValueError(f"unsupported duration {duration!r}")
    return sum(int(n) * units[u] for n, u in parts)
