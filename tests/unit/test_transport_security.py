"""Transport security without a broker: settings refuse half a configuration, every Kafka client
is made by ``streams.kafka_clients``, Faust hands aiokafka the same options, the password stays
out of every text, and an https:// ClickHouse URL speaks TLS checked against the CA file — the
last against a real TLS server (``openssl s_server``; it is no ClickHouse, so the tests look at
the handshake only). The SASL_SSL broker itself is ``tests/integration/test_sasl_ssl.py``'s.
"""

from __future__ import annotations

import ast
import contextlib
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import faust
import pytest
from clickhouse_connect.driver.exceptions import OperationalError
from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth
from pydantic import SecretStr, ValidationError
from urllib3.exceptions import InsecureRequestWarning

from streams.chclient import get_client
from streams.kafka_clients import describe, faust_broker, security_options
from streams.settings import REPO_ROOT, Settings
from tests.certificates import ServerTls, make_ca, make_server_tls
from tools.settings import StackSettings
from tools.stack import render_server_properties

USER, PASSWORD = "spm", "unit-secret-51b2"


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> ServerTls:
    directory = tmp_path_factory.mktemp("tls")
    return make_server_tls(directory, make_ca(directory))


def kafka_settings(protocol: str, tls: ServerTls, mechanism: str = "SCRAM-SHA-512") -> Settings:
    """Complete settings for ``protocol``: SASL ones with a user, TLS ones with the CA."""
    values: dict[str, Any] = {"kafka_security_protocol": protocol}
    if protocol.startswith("SASL_"):
        values |= {
            "kafka_sasl_mechanism": mechanism,
            "kafka_sasl_username": USER,
            "kafka_sasl_password": SecretStr(PASSWORD),
        }
    if protocol.endswith("SSL"):
        values["kafka_ssl_cafile"] = tls.ca
    return Settings(**values)


# --- settings --------------------------------------------------------------------------------

CA = "<the CA file>"  # replaced by the fixture's file: pydantic checks that it exists


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (
            {"kafka_security_protocol": "SASL_SSL"},
            "SPM_KAFKA_SECURITY_PROTOCOL=SASL_SSL needs SPM_KAFKA_SASL_MECHANISM, "
            "SPM_KAFKA_SASL_USERNAME, SPM_KAFKA_SASL_PASSWORD",
        ),
        (
            {
                "kafka_security_protocol": "SASL_PLAINTEXT",
                "kafka_sasl_mechanism": "PLAIN",
                "kafka_sasl_username": USER,
            },
            "SPM_KAFKA_SECURITY_PROTOCOL=SASL_PLAINTEXT needs SPM_KAFKA_SASL_PASSWORD",
        ),
        (
            {"kafka_sasl_username": USER, "kafka_sasl_password": PASSWORD},
            "SPM_KAFKA_SASL_USERNAME, SPM_KAFKA_SASL_PASSWORD set, but "
            "SPM_KAFKA_SECURITY_PROTOCOL=PLAINTEXT uses no SASL",
        ),
        (
            {"kafka_ssl_cafile": CA},
            "SPM_KAFKA_SSL_CAFILE set, but SPM_KAFKA_SECURITY_PROTOCOL=PLAINTEXT uses no TLS",
        ),
        (
            {"kafka_security_protocol": "SSL", "kafka_ssl_cafile": "/no/such/ca.pem"},
            "kafka_ssl_cafile\n  Path does not point to a file",
        ),
        (
            {"kafka_security_protocol": "sasl_ssl"},
            "Input should be 'PLAINTEXT', 'SSL', 'SASL_PLAINTEXT' or 'SASL_SSL'",
        ),
        (
            {"clickhouse_url": "http://ch:8123/spm", "clickhouse_ca_file": CA},
            "SPM_CLICKHOUSE_CA_FILE applies to an https:// SPM_CLICKHOUSE_URL",
        ),
        (
            {
                "clickhouse_url": "https://ch:8443/spm",
                "clickhouse_ca_file": CA,
                "clickhouse_verify": False,
            },
            "SPM_CLICKHOUSE_CA_FILE set, but SPM_CLICKHOUSE_VERIFY=false",
        ),
    ],
)
def test_half_a_configuration_is_refused_with_the_variables_named(
    tls: ServerTls, values: dict[str, Any], message: str
):
    values = {key: tls.ca if value == CA else value for key, value in values.items()}
    with pytest.raises(ValidationError) as refused:
        Settings(**values)
    assert message in str(refused.value)
    assert PASSWORD not in str(refused.value)


def test_the_stacks_sasl_ssl_listener_is_off_by_default_and_whole_when_on(tls: ServerTls):
    assert "SASL" not in render_server_properties(StackSettings(), Path("/data"))
    with pytest.raises(ValidationError) as refused:
        StackSettings(kafka_sasl_ssl_port=29095, kafka_ssl_keystore=tls.keystore)
    assert (
        "SPM_KAFKA_SASL_SSL_PORT needs SPM_KAFKA_SSL_KEYSTORE_PASSWORD, SPM_KAFKA_SASL_USERNAME, "
        "SPM_KAFKA_SASL_PASSWORD" in str(refused.value)
    )


# --- one place makes every client ----------------------------------------------------------------

CLIENTS = {
    "AIOKafkaProducer",
    "AIOKafkaConsumer",
    "AIOKafkaClient",
    "KafkaProducer",
    "KafkaConsumer",
    "KafkaAdminClient",
    "KafkaClient",
}
FACTORY = REPO_ROOT / "streams" / "kafka_clients.py"
#: The stack's readiness probe talks to its own PLAINTEXT listener and imports nothing of the
#: product (so the stack starts while the product does not import).
STACK_PROBE = REPO_ROOT / "tools" / "stack.py"


def direct_clients(path: Path) -> list[str]:
    """Calls in ``path`` that make a Kafka client or a Faust app with a broker themselves."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", None)
        keywords = {keyword.arg for keyword in node.keywords}
        if name in CLIENTS or keywords & {"bootstrap_servers", "broker"}:
            found.append(f"{path.relative_to(REPO_ROOT)}:{node.lineno} {ast.unparse(func)}(…)")
    return found


def test_every_kafka_client_the_project_runs_is_made_by_kafka_clients():
    sources = [
        path
        for folder in ("streams", "tools", "bench")
        for path in sorted((REPO_ROOT / folder).rglob("*.py"))
        if path not in (FACTORY, STACK_PROBE)
    ]
    assert len(sources) > 40
    assert [call for path in sources for call in direct_clients(path)] == []
    assert direct_clients(STACK_PROBE), "the scan no longer sees the one known direct client"


# --- the options each library gets -------------------------------------------------------------


def test_plaintext_adds_only_the_protocol(tls: ServerTls):
    settings = kafka_settings("PLAINTEXT", tls)
    assert security_options(settings) == {"security_protocol": "PLAINTEXT"}
    assert faust_broker(settings) == {
        "broker": "kafka://127.0.0.1:29092",
        "broker_credentials": None,
    }


def test_sasl_ssl_logs_in_and_checks_the_broker_against_the_ca_file_only(tls: ServerTls):
    options = security_options(kafka_settings("SASL_SSL", tls))
    context = options.pop("ssl_context")
    assert options == {
        "security_protocol": "SASL_SSL",
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": USER,
        "sasl_plain_password": PASSWORD,
    }
    assert context.verify_mode is ssl.CERT_REQUIRED and context.check_hostname
    issuers = [dict(entry[0] for entry in ca["subject"]) for ca in context.get_ca_certs()]
    assert issuers == [{"commonName": "spm test ca"}]


def comparable(options: dict[str, Any]) -> dict[str, Any]:
    """Options with each SSL context as the CAs it trusts (contexts are made per client)."""
    return {
        key: value.get_ca_certs() if isinstance(value, ssl.SSLContext) else value
        for key, value in options.items()
        if value is not None
    }


@pytest.mark.parametrize(
    ("protocol", "mechanism"),
    [
        ("PLAINTEXT", ""),
        ("SSL", ""),
        ("SASL_PLAINTEXT", "PLAIN"),
        ("SASL_PLAINTEXT", "SCRAM-SHA-256"),
        ("SASL_SSL", "SCRAM-SHA-512"),
    ],
)
def test_faust_hands_its_aiokafka_clients_the_same_options(
    tls: ServerTls, protocol: str, mechanism: str
):
    """Faust's SASLCredentials carry the SCRAM mechanisms too, and its own conversion
    (used for the worker's consumer and producer) gives back what every other client gets."""
    settings = kafka_settings(protocol, tls, mechanism)
    app = faust.App("transport-security", **faust_broker(settings))
    from_faust = credentials_to_aiokafka_auth(app.conf.broker_credentials, app.conf.ssl_context)
    assert comparable(from_faust) == comparable(security_options(settings))


def test_the_password_stays_out_of_every_text(tls: ServerTls):
    settings = kafka_settings("SASL_SSL", tls)
    credentials = faust_broker(settings)["broker_credentials"]
    texts = [repr(settings), settings.model_dump_json(), describe(settings), repr(credentials)]
    assert all(PASSWORD not in text for text in texts)
    assert describe(settings) == f"SASL_SSL SCRAM-SHA-512 as 'spm' with CA file {tls.ca}"


# --- ClickHouse over https -----------------------------------------------------------------------


@pytest.fixture
def tls_server(tls: ServerTls) -> Iterator[int]:
    """``openssl s_server`` with the CA-signed certificate on a free port; yields the port."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])
    cmd = ["openssl", "s_server", "-accept", f"127.0.0.1:{port}", "-www", "-quiet"]
    server = subprocess.Popen(
        [*cmd, "-cert", str(tls.cert), "-key", str(tls.key)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline and server.poll() is None, "no s_server"
                time.sleep(0.05)
        yield port
    finally:
        server.terminate()
        server.wait(10)


def https_settings(port: int, **values: Any) -> Settings:
    """Settings for an https:// server on a port that does not say TLS (not 8443 or 443);
    short timeouts in the URL, as s_server never answers a query."""
    query = "connect_timeout=2&send_receive_timeout=1&query_retries=0"
    return Settings(clickhouse_url=f"https://spm:pw@127.0.0.1:{port}/spm?{query}", **values)


def test_an_https_clickhouse_is_checked_against_the_ca_file(
    tls: ServerTls, tls_server: int, tmp_path: Path
):
    refused = [
        https_settings(tls_server, clickhouse_ca_file=make_ca(tmp_path, "foreign")),
        https_settings(tls_server),  # the system's CAs do not know the test's CA
    ]
    for settings in refused:
        with pytest.raises(OperationalError, match="CERTIFICATE_VERIFY_FAILED"):
            get_client(settings)
    unchecked = pytest.warns(InsecureRequestWarning)
    handshaken = [
        (https_settings(tls_server, clickhouse_ca_file=tls.ca), contextlib.nullcontext()),
        (https_settings(tls_server, clickhouse_verify=False), unchecked),
    ]
    for settings, warned in handshaken:
        with warned, pytest.raises(OperationalError) as failed:  # s_server is no ClickHouse
            get_client(settings)
        assert "SSL" not in str(failed.value)  # past the handshake, in HTTPS
        assert f"(https://127.0.0.1:{tls_server})" in str(failed.value)
