"""The local stack end to end: Kafka, chDB and Prometheus answer, and up/down survive crashes.

Lifecycle tests run on a second, isolated stack (own var dir, free ports) so they never stop
the shared stack other test sessions may be using.
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka.admin import NewTopic
from kafka.errors import KafkaTimeoutError
from tenacity import Retrying, stop_after_delay, wait_fixed

from streams.chclient import close_clients, get_client
from streams.settings import Settings
from tools import stack as local_stack
from tools.settings import REPO_ROOT, StackSettings

pytestmark = pytest.mark.stack


def _create_topic(admin: KafkaAdminClient, name: str) -> None:
    admin.create_topics([NewTopic(name, 1, 1)], wait_for_metadata=True)


def _round_trip(bootstrap: str, topic: str, group: str, payload: bytes) -> list[tuple]:
    """Produce one message and consume the topic from the start (bounded by 15 s)."""
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    try:
        producer.send(topic, key=b"rep-1", value=payload, headers=[("h", b"1")]).get(timeout=15)
    finally:
        producer.close()
    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=group,
        auto_offset_reset="earliest",
        consumer_timeout_ms=15_000,
    )
    try:
        for message in consumer:
            if message.value == payload:
                return [(message.key, message.value, message.headers)]
        return []
    finally:
        consumer.close()


def _prometheus_lists(settings: StackSettings) -> tuple[set[str], set[str]]:
    """(scrape URLs of job spm-worker, Alertmanager URLs) Prometheus reports, once present."""
    base = f"http://127.0.0.1:{settings.prometheus_port}/api/v1"
    for attempt in Retrying(stop=stop_after_delay(20), wait=wait_fixed(0.5), reraise=True):
        with attempt:
            targets = httpx.get(f"{base}/targets", timeout=5).json()["data"]["activeTargets"]
            managers = httpx.get(f"{base}/alertmanagers", timeout=5).json()["data"]
            worker = {t["scrapeUrl"] for t in targets if t["scrapePool"] == "spm-worker"}
            alertmanagers = {m["url"] for m in managers["activeAlertmanagers"]}
            assert worker
            assert alertmanagers
    return worker, alertmanagers


def test_kafka_round_trip(stack: Settings, kafka_admin: KafkaAdminClient, unique_prefix: str):
    settings = Settings(topic_prefix=unique_prefix, app_id=unique_prefix)
    topic = settings.topic("roundtrip")
    _create_topic(kafka_admin, topic)
    payload = f"hello {unique_prefix}".encode()

    received = _round_trip(stack.kafka_bootstrap, topic, f"{unique_prefix}-g", payload)

    assert received == [(b"rep-1", payload, [("h", b"1")])]


def test_topics_are_not_auto_created(
    stack: Settings, kafka_admin: KafkaAdminClient, unique_prefix: str
):
    topic = f"{unique_prefix}.never-created"
    producer = KafkaProducer(bootstrap_servers=stack.kafka_bootstrap, max_block_ms=2000)
    try:
        with pytest.raises(KafkaTimeoutError):
            producer.send(topic, value=b"x").get(timeout=5)
    finally:
        producer.close(timeout=5)

    assert topic not in kafka_admin.list_topics()


@pytest.fixture
def fresh_clickhouse() -> Iterator[None]:
    """chDB opens one path per process: release any other path before and after the test."""
    close_clients()
    yield
    close_clients()


@pytest.mark.usefixtures("fresh_clickhouse")
def test_clickhouse_round_trip(tmp_path: Path):
    client = get_client(Settings(clickhouse_url=f"chdb://{tmp_path}/ch"))
    client.command("CREATE TABLE probe (id UInt32, name String) ENGINE = MergeTree ORDER BY id")

    client.insert("probe", [[2, "b"], [1, "a"]], column_names=["id", "name"])

    assert client.query("SELECT id, name FROM probe ORDER BY id").result_rows == [
        (1, "a"),
        (2, "b"),
    ]
    assert (tmp_path / "ch").is_dir()


def test_prometheus_scrapes_worker_and_alerts_to_alertmanager(stack_settings: StackSettings):
    worker, alertmanagers = _prometheus_lists(stack_settings)

    assert worker == {f"http://127.0.0.1:{stack_settings.web_port}/metrics"}
    assert alertmanagers == {f"http://127.0.0.1:{stack_settings.alertmanager_port}/api/v2/alerts"}


def test_up_is_idempotent(stack_settings: StackSettings):
    before = {part.name: part.pid for part in local_stack.status(stack_settings)}

    again = local_stack.up(stack_settings)

    assert {part.name: part.pid for part in again} == before
    assert {part.detail for part in again} == {"already running"}
    states = {part.state for part in local_stack.status(stack_settings)}
    assert states == {local_stack.State.RUNNING}


def test_stack_command_line_reports_every_part(stack_settings: StackSettings):
    shown = subprocess.run(
        [sys.executable, "-m", "tools.stack", "status"],
        cwd=REPO_ROOT,
        env={**os.environ, "COLUMNS": "200"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert shown.returncode == 0, shown.stderr
    for part in local_stack.parts(stack_settings):
        assert f"{part.name} " in shown.stdout and part.address in shown.stdout


# --- lifecycle on an isolated stack ----------------------------------------------------------


def _free_ports(count: int) -> list[int]:
    """Free ports from 20000-25999: below the default stack ports (26066, 29090-29095) and the
    kernel's ephemeral range, so no client connection takes one while the stack is down."""
    ports: list[int] = []
    for port in random.sample(range(20000, 26000), 500):
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        ports.append(port)
        if len(ports) == count:
            return ports
    raise AssertionError("no free ports in 20000-25999")


@pytest.fixture(scope="module")
def isolated(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StackSettings]:
    """Settings of a second stack with its own var dir and ports; stopped after the module."""
    kafka, controller, prometheus, alertmanager, web = _free_ports(5)
    settings = StackSettings(
        var_dir=tmp_path_factory.mktemp("isolated-var"),
        kafka_port=kafka,
        kafka_controller_port=controller,
        prometheus_port=prometheus,
        alertmanager_port=alertmanager,
        web_port=web,
        stack_start_timeout=60,
    )
    yield settings
    local_stack.down(settings)


def _pids(settings: StackSettings) -> dict[str, int | None]:
    return {part.name: part.pid for part in local_stack.status(settings)}


def _wait_dead(pid: int) -> None:
    deadline = time.monotonic() + 10
    while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
        with contextlib.suppress(ChildProcessError):  # reap it if up() ran in this process
            os.waitpid(pid, os.WNOHANG)
        time.sleep(0.05)
    assert not Path(f"/proc/{pid}").exists()


def test_cold_up_down_up_keeps_data(isolated: StackSettings):
    started = local_stack.up(isolated)
    assert {part.detail for part in started} == {"started"}
    assert (isolated.var_dir / "kafka" / "data" / "meta.properties").is_file()
    worker, _ = _prometheus_lists(isolated)
    assert worker == {f"http://127.0.0.1:{isolated.web_port}/metrics"}
    admin = KafkaAdminClient(bootstrap_servers=isolated.kafka_bootstrap)
    try:
        _create_topic(admin, "kept.across.restart")
    finally:
        admin.close()
    old_pids = [part.pid for part in started]

    stopped = local_stack.down(isolated)

    assert {part.state for part in stopped} == {local_stack.State.STOPPED}
    assert {part.state for part in local_stack.status(isolated)} == {local_stack.State.STOPPED}
    assert not list((isolated.var_dir / "run").glob("*.pid"))
    for pid in old_pids:
        assert pid is not None
        _wait_dead(pid)

    restarted = local_stack.up(isolated)

    assert {part.detail for part in restarted} == {"started"}
    assert not {part.pid for part in restarted} & set(old_pids)
    admin = KafkaAdminClient(bootstrap_servers=isolated.kafka_bootstrap)
    try:
        assert "kept.across.restart" in admin.list_topics()
    finally:
        admin.close()
    message = _round_trip(isolated.kafka_bootstrap, "kept.across.restart", "g", b"after")
    assert message == [(b"rep-1", b"after", [("h", b"1")])]


def _last_config_load(settings: StackSettings) -> str:
    """When the isolated Prometheus last (re)loaded its configuration."""
    url = f"http://127.0.0.1:{settings.prometheus_port}/api/v1/status/runtimeinfo"
    return str(httpx.get(url, timeout=5).json()["data"]["lastConfigTime"])


def test_up_reloads_a_running_server_only_when_its_config_changed(isolated: StackSettings):
    local_stack.up(isolated)
    loaded = _last_config_load(isolated)
    time.sleep(1.1)  # lastConfigTime has a resolution of one second

    local_stack.up(isolated)

    assert _last_config_load(isolated) == loaded
    moved = isolated.model_copy(update={"web_port": _free_ports(1)[0]})

    local_stack.up(moved)

    assert _last_config_load(moved) != loaded
    worker, _ = _prometheus_lists(moved)
    assert worker == {f"http://127.0.0.1:{moved.web_port}/metrics"}
    local_stack.up(isolated)  # back to the module's configuration


def _crash(settings: StackSettings, name: str) -> int:
    """SIGKILL a part as a crash would, leaving its pid file behind; return the dead pid."""
    pid = _pids(settings)[name]
    assert pid is not None, f"{name} is not running"
    os.killpg(pid, signal.SIGKILL)
    _wait_dead(pid)
    return pid


def test_up_after_crash_restarts_only_the_crashed_part(isolated: StackSettings):
    local_stack.up(isolated)
    before = _pids(isolated)
    kafka_pid = _crash(isolated, "kafka")
    assert (isolated.var_dir / "run" / "kafka.pid").read_text().strip() == str(kafka_pid)
    assert _pids(isolated)["kafka"] is None

    report = {part.name: part for part in local_stack.up(isolated)}

    assert report["kafka"].detail == "started"
    assert report["kafka"].pid not in (None, kafka_pid)
    assert report["prometheus"].pid == before["prometheus"]
    assert report["alertmanager"].pid == before["alertmanager"]


def test_pid_file_naming_an_unrelated_process_is_ignored(isolated: StackSettings):
    local_stack.up(isolated)
    old = _crash(isolated, "alertmanager")
    with subprocess.Popen(["sleep", "60"]) as bystander:
        try:
            (isolated.var_dir / "run" / "alertmanager.pid").write_text(f"{bystander.pid}\n")
            seen = {part.name: part for part in local_stack.status(isolated)}

            report = {part.name: part for part in local_stack.up(isolated)}

            assert seen["alertmanager"].state is local_stack.State.STOPPED
            assert report["alertmanager"].detail == "started"
            assert report["alertmanager"].pid not in (None, old, bystander.pid)
            assert bystander.poll() is None
        finally:
            bystander.kill()


def test_part_that_dies_on_start_is_reported_with_its_log(isolated: StackSettings):
    local_stack.up(isolated)
    _crash(isolated, "alertmanager")
    storage = isolated.var_dir / "alertmanager" / "data"
    shutil.rmtree(storage)
    storage.write_text("a file where Alertmanager wants its storage directory")
    try:
        with pytest.raises(local_stack.StackError) as failure:
            local_stack.up(isolated)
    finally:
        storage.unlink()
    status = {part.name: part.state for part in local_stack.status(isolated)}

    message = str(failure.value)
    assert message.startswith("alertmanager (pid ")
    assert "exited during start-up" in message
    assert str(isolated.var_dir / "log" / "alertmanager.log") in message
    assert "not a directory" in message  # the log tail carries the cause
    assert status["alertmanager"] is local_stack.State.STOPPED
    assert status["kafka"] is local_stack.State.RUNNING


def test_port_held_by_another_process_is_reported_before_any_launch(isolated: StackSettings):
    local_stack.up(isolated)
    _crash(isolated, "alertmanager")
    _crash(isolated, "prometheus")
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", isolated.prometheus_port))
        squatter.listen()

        with pytest.raises(local_stack.StackError) as failure:
            local_stack.up(isolated)
        status = {part.name: part.state for part in local_stack.status(isolated)}

    assert str(failure.value).startswith("prometheus: port in use")
    assert f"127.0.0.1:{isolated.prometheus_port}" in str(failure.value)
    assert status == {
        "kafka": local_stack.State.RUNNING,
        "alertmanager": local_stack.State.STOPPED,  # not launched: the check came first
        "prometheus": local_stack.State.FOREIGN,
    }


def test_down_stops_only_processes_the_stack_started(isolated: StackSettings):
    local_stack.up(isolated)
    _crash(isolated, "alertmanager")
    with subprocess.Popen(["sleep", "60"]) as bystander:
        try:
            (isolated.var_dir / "run" / "alertmanager.pid").write_text(f"{bystander.pid}\n")

            report = {part.name: part for part in local_stack.down(isolated)}

            assert bystander.poll() is None
            assert report["alertmanager"].detail == "was not running"
            assert report["kafka"].detail.startswith("stopped pid ")
            assert report["prometheus"].detail.startswith("stopped pid ")
            assert not list((isolated.var_dir / "run").glob("*.pid"))
        finally:
            bystander.kill()
