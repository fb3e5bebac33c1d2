"""Fixtures of the integration tests: the real local stack, started once and then reused.

The stack stays up after the session so the next run starts in a second; `make stack-down`
stops it. A part that cannot start fails the tests with the reason (never a skip).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from filelock import FileLock
from kafka import KafkaAdminClient

from streams.settings import Settings
from tests.integration.harness import free_port
from tools import stack as local_stack
from tools.settings import StackSettings


@pytest.fixture(scope="session")
def stack_settings(tmp_path_factory: pytest.TempPathFactory) -> StackSettings:
    """The local stack's ports and dirs, the stack running (started here unless it runs).

    Once per run, also when pytest-xdist runs it in several processes: ``up`` reloads a
    running Prometheus and Alertmanager, and a reload while the worker on the scraped port
    comes up can drop the resolution of ``SpmWorkerDown`` on its way to Alertmanager, which
    then holds back the quota alerts ``test_dashboards_live.py`` waits for (for minutes).
    """
    settings = StackSettings()
    if os.environ.get("PYTEST_XDIST_WORKER") is None:
        _up(settings)
        return settings
    run_dir = tmp_path_factory.getbasetemp().parent  # shared by the run's xdist workers
    with FileLock(run_dir / "stack-up.lock"):
        done = run_dir / "stack-up.done"
        if not done.exists():
            _up(settings)
            done.touch()
    return settings


def _up(settings: StackSettings) -> None:
    try:
        local_stack.up(settings)
    except local_stack.StackError as exc:
        pytest.fail(f"the local stack could not start: {exc}", pytrace=False)


@pytest.fixture(scope="session")
def stack(stack_settings: StackSettings) -> Settings:
    """Product settings for the running local stack (its broker, the scraped web port)."""
    return Settings(
        kafka_bootstrap=stack_settings.kafka_bootstrap, web_port=stack_settings.web_port
    )


@pytest.fixture(scope="session")
def kafka_admin(stack: Settings) -> Iterator[KafkaAdminClient]:
    admin = KafkaAdminClient(bootstrap_servers=stack.kafka_bootstrap, client_id="spm-tests")
    yield admin
    admin.close()


@pytest.fixture
def unique_prefix(kafka_admin: KafkaAdminClient) -> Iterator[str]:
    """A fresh topic prefix / app id (``t<8 hex>``); its topics are deleted after the test.

    Use as ``Settings(topic_prefix=unique_prefix, app_id=unique_prefix)`` so tests sharing the
    broker never see each other's topics, groups or changelogs.
    """
    yield from _fresh_prefix(kafka_admin)


@pytest.fixture(scope="module")
def module_prefix(kafka_admin: KafkaAdminClient) -> Iterator[str]:
    """``unique_prefix`` for a module's shared workers: deleted after the module."""
    yield from _fresh_prefix(kafka_admin)


def _fresh_prefix(kafka_admin: KafkaAdminClient) -> Iterator[str]:
    prefix = f"t{uuid.uuid4().hex[:8]}"
    yield prefix
    leftovers = [topic for topic in kafka_admin.list_topics() if topic.startswith(prefix)]
    if leftovers:
        kafka_admin.delete_topics(leftovers)


def _private_stack(tmp_path: Path, **values: Any) -> Iterator[StackSettings]:
    """A stack of the test's own on free ports (``values`` say which parts, or other ports),
    stopped after."""
    ports = {
        "kafka_port": free_port(),
        "kafka_controller_port": free_port(),
        "prometheus_port": free_port(),
        "alertmanager_port": free_port(),
        "alertmanager_webhook_port": free_port(),
        "web_port": free_port(),
    }
    settings = StackSettings(var_dir=tmp_path / "stack", **(ports | values))
    try:
        local_stack.up(settings)
    except local_stack.StackError as exc:
        pytest.fail(f"the private stack could not start: {exc}", pytrace=False)
    yield settings
    local_stack.down(settings)


@pytest.fixture
def private_broker(tmp_path: Path) -> Iterator[StackSettings]:
    """A broker of our own (its own KRaft node): for tests that stop or restart the broker
    without touching any other test."""
    yield from _private_stack(tmp_path, stack_parts={"kafka"})


@pytest.fixture
def private_monitoring(stack_settings: StackSettings, tmp_path: Path) -> Iterator[StackSettings]:
    """A Prometheus scraping its own worker port and an Alertmanager posting to its own webhook
    port, beside the shared broker (``kafka_bootstrap`` is its address): for tests that wait for
    alerts without touching any other test. Such a test keeps to a topic prefix of its own."""
    yield from _private_stack(
        tmp_path, stack_parts={"alertmanager", "prometheus"}, kafka_port=stack_settings.kafka_port
    )
