"""Transport security on a real broker: every client the worker and the CLI run goes through a
SASL_SSL listener, authenticated with SCRAM and checking the broker against the test's CA.

The broker is a private stack (free loopback ports, stopped after the module) whose SASL_SSL
listener has a key and certificate made here with ``openssl`` and a SCRAM user created by
``kafka-storage format --add-scram``. Its PLAINTEXT listener (the stack's own probe) is not
used by any client below.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from kafka import KafkaAdminClient
from pydantic import SecretStr

from streams.kafka_clients import BrokerRefused, check_accepted, new_client
from streams.producer import EventProducer
from streams.settings import Settings
from streams.topics import ensure_topics
from tests.certificates import ServerTls, make_ca, make_server_tls
from tests.integration import scenario
from tests.integration.feeding import event
from tests.integration.harness import Worker, free_port, wait_caught_up, worker_settings
from tests.integration.test_cli import spm
from tests.integration.test_pipeline import (
    assert_api_equals_recompute,
    assert_dead_lettered,
    publish_reference,
    raw_producer,
)
from tools import stack
from tools.settings import StackSettings

USER, PASSWORD = "spm-worker", "scram-secret-7f3a"
WRONG_PASSWORD = "not-the-password-9c1e"
#: A refused login must end a worker or a command within this many seconds.
REFUSAL_BOUND = 30.0


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> ServerTls:
    directory = tmp_path_factory.mktemp("tls")
    return make_server_tls(directory, make_ca(directory))


@pytest.fixture(scope="module")
def secure_broker(tmp_path_factory: pytest.TempPathFactory, tls: ServerTls) -> Iterator[int]:
    """A private broker with a SASL_SSL listener; yields that listener's port."""
    settings = StackSettings(
        var_dir=tmp_path_factory.mktemp("stack"),
        kafka_port=free_port(),
        kafka_controller_port=free_port(),
        kafka_sasl_ssl_port=free_port(),
        prometheus_port=free_port(),
        alertmanager_port=free_port(),
        kafka_ssl_keystore=tls.keystore,
        kafka_ssl_keystore_password=SecretStr(tls.keystore_password),
        kafka_sasl_username=USER,
        kafka_sasl_password=SecretStr(PASSWORD),
    )
    try:
        stack.up(settings)
    except stack.StackError as exc:
        pytest.fail(f"the SASL_SSL broker could not start: {exc}", pytrace=False)
    assert settings.kafka_sasl_ssl_port is not None
    yield settings.kafka_sasl_ssl_port
    stack.down(settings)


@pytest.fixture(scope="module")
def secure(secure_broker: int, tls: ServerTls) -> Settings:
    """Settings of a client of the SASL_SSL listener: SCRAM-SHA-512, the test's CA."""
    return Settings(
        kafka_bootstrap=f"127.0.0.1:{secure_broker}",
        kafka_security_protocol="SASL_SSL",
        kafka_sasl_mechanism="SCRAM-SHA-512",
        kafka_sasl_username=USER,
        kafka_sasl_password=SecretStr(PASSWORD),
        kafka_ssl_cafile=tls.ca,
    )


def test_figures_through_sasl_ssl_equal_the_recomputation(secure: Settings, tmp_path: Path):
    """Faust's consumer, the pipeline's producer and readers, the reference mirror, the sink,
    the CLI producer and the admin all log in; the figures are exact."""
    settings = worker_settings(secure, "tls", tmp_path)
    ensure_topics(settings)
    sc = scenario.generate(seed=23, activities=800, deals=100)
    publish_reference(settings, sc)
    worker = Worker(settings, tmp_path / "worker.log")
    try:
        worker.start()
        with raw_producer(settings) as producer:
            for raw in sc.events + [raw for raw, _ in sc.malformed]:
                producer.send(settings.topic("activity"), raw)
            producer.flush()
        wait_caught_up(settings, worker=worker)
        assert assert_api_equals_recompute(worker, sc) > 500
        assert_dead_lettered(settings, sc)
        wait_caught_up(settings, ["activity"], worker=worker, group=f"{settings.app_id}-sink")
    finally:
        worker.stop()
    assert PASSWORD not in worker.log_path.read_text()


def test_a_wrong_password_ends_the_worker_and_the_cli_with_the_reason(
    secure: Settings, tmp_path: Path
):
    wrong = worker_settings(secure, "tls-wrong", tmp_path).model_copy(
        update={"kafka_sasl_password": SecretStr(WRONG_PASSWORD)}
    )
    worker = Worker(wrong, tmp_path / "worker.log")
    started = time.monotonic()
    worker.spawn()
    assert worker.process is not None
    assert worker.process.wait(timeout=REFUSAL_BOUND) != 0
    said = worker.log_tail()
    assert f"spm worker: Kafka at {secure.kafka_bootstrap}: the broker refused SASL_SSL" in said
    assert "invalid credentials with SASL mechanism SCRAM-SHA-512" in said
    assert WRONG_PASSWORD not in said

    done = spm(wrong, "emit", json.dumps(event("wrong-1")))
    assert done.returncode == 2, done.stderr
    assert "invalid credentials with SASL mechanism SCRAM-SHA-512" in done.stderr
    assert WRONG_PASSWORD not in done.stdout + done.stderr
    assert time.monotonic() - started < REFUSAL_BOUND


@pytest.mark.parametrize("mechanism", ["SCRAM-SHA-256", "PLAIN"])
def test_the_other_mechanisms_log_in(secure: Settings, mechanism: str):
    settings = secure.model_copy(update={"kafka_sasl_mechanism": mechanism})
    check_accepted(settings)
    admin = new_client(KafkaAdminClient, settings)
    try:
        assert isinstance(admin.list_topics(), list)
    finally:
        admin.close()


def test_plaintext_and_foreign_ca_clients_cannot_read_the_listener(
    secure: Settings, tls: ServerTls, tmp_path: Path
):
    settings = secure.model_copy(update={"topic_prefix": "tls-read"})
    ensure_topics(settings)
    with EventProducer(settings) as producer:
        assert producer.send_event(event("read-1")) is None
    topic = settings.topic("activity")

    def kcat(*security: str) -> subprocess.CompletedProcess[bytes]:
        """kcat reads the topic; its librdkafka (2.0.2 on Debian 12) logs in with PLAIN only:
        librdkafka before 2.6.1 sends a SCRAM proof Kafka 4 rejects (librdkafka#4895)."""
        cmd = ["kcat", "-C", "-b", settings.kafka_bootstrap, "-t", topic, "-e", "-m", "5"]
        return subprocess.run([*cmd, *security], capture_output=True, timeout=30, check=False)

    logged_in = kcat(
        *("-X", "security.protocol=SASL_SSL", "-X", "sasl.mechanisms=PLAIN"),
        *("-X", f"sasl.username={USER}", "-X", f"sasl.password={PASSWORD}"),
        *("-X", f"ssl.ca.location={tls.ca}"),
    )
    assert b'"read-1"' in logged_in.stdout, logged_in.stderr
    plaintext = kcat()
    assert plaintext.returncode != 0 and b"read-1" not in plaintext.stdout

    in_the_clear = Settings(kafka_bootstrap=settings.kafka_bootstrap)
    with pytest.raises(BrokerRefused, match=r"refused PLAINTEXT: .* connection was dropped"):
        check_accepted(in_the_clear)
    foreign = secure.model_copy(update={"kafka_ssl_cafile": make_ca(tmp_path, "foreign")})
    with pytest.raises(BrokerRefused, match="CERTIFICATE_VERIFY_FAILED"):
        check_accepted(foreign)
