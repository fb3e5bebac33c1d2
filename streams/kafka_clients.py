"""Every Kafka client the project runs is made here, with the bootstrap servers and transport
security of the settings, so no client can reach a broker without them.

That covers the worker's Faust app (:func:`faust_broker`), the pipeline's aiokafka producer
and partition readers, the reference mirror and the history sink, and the kafka-python
producer, consumers and admin of the CLI, the demo and the bench (:func:`new_client`);
``tests/unit/test_transport_security.py`` fails when code elsewhere constructs a client.

aiokafka and kafka-python take transport security under the same option names
(``security_protocol``, ``ssl_context``, ``sasl_mechanism``, ``sasl_plain_username``,
``sasl_plain_password``), so one set of options serves both. Faust takes it as credentials and
turns ``SASLCredentials`` (with the SCRAM mechanisms too) back into these options for its own
aiokafka clients (``faust.transport.drivers.aiokafka.credentials_to_aiokafka_auth``).
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable
from typing import Any, TypeVar

import faust
from aiokafka.conn import create_conn
from aiokafka.errors import KafkaConnectionError as AioKafkaConnectionError
from aiokafka.errors import KafkaError as AioKafkaError
from aiokafka.protocol.metadata import MetadataRequest
from faust.types.auth import CredentialsT
from kafka.errors import KafkaError

from streams.settings import Settings

Client = TypeVar("Client")


class BrokerRefused(KafkaError):
    """A reachable broker refused the connection these settings make (TLS or SASL)."""

    def __str__(self) -> str:  # the message only: kafka-python's errors prefix their class
        return str(self.args[0])


def security_options(settings: Settings) -> dict[str, Any]:
    """The transport-security options of an aiokafka or a kafka-python client."""
    protocol = settings.kafka_security_protocol
    options: dict[str, Any] = {"security_protocol": protocol}
    if protocol.endswith("SSL"):
        # Certificates and host names are checked (the default context's CERT_REQUIRED).
        options["ssl_context"] = ssl.create_default_context(cafile=settings.kafka_ssl_cafile)
    if protocol.startswith("SASL_"):
        assert settings.kafka_sasl_password is not None  # Settings checked the combination
        options["sasl_mechanism"] = settings.kafka_sasl_mechanism
        options["sasl_plain_username"] = settings.kafka_sasl_username
        options["sasl_plain_password"] = settings.kafka_sasl_password.get_secret_value()
    return options


def new_client(
    kind: Callable[..., Client], settings: Settings, *args: Any, **options: Any
) -> Client:
    """``kind(*args, **options)`` connected to the settings' brokers with their security, for
    ``kind`` one of aiokafka's ``AIOKafkaProducer``/``AIOKafkaConsumer`` or kafka-python's
    ``KafkaProducer``/``KafkaConsumer``/``KafkaAdminClient``."""
    return kind(
        *args, bootstrap_servers=settings.kafka_bootstrap, **security_options(settings), **options
    )


def faust_broker(settings: Settings) -> dict[str, Any]:
    """The broker arguments of a ``faust.App``: its URL and its credentials."""
    options = security_options(settings)
    credentials: CredentialsT | None = None
    if "sasl_mechanism" in options:  # SASL_SSL when given a context, else SASL_PLAINTEXT
        credentials = faust.SASLCredentials(
            username=options["sasl_plain_username"],
            password=options["sasl_plain_password"],
            mechanism=options["sasl_mechanism"],
            ssl_context=options.get("ssl_context"),
        )
    elif "ssl_context" in options:
        credentials = faust.SSLCredentials(options["ssl_context"])
    return {"broker": f"kafka://{settings.kafka_bootstrap}", "broker_credentials": credentials}


def check_accepted(settings: Settings, timeout: float = 10.0) -> None:
    """Raise :class:`BrokerRefused`, with the TLS layer's or the broker's reason, when no
    bootstrap server accepts the connection the settings make.

    The clients retry a failed handshake or login until a timeout (kafka-python's is 30 s) and
    then say only that they could not bootstrap; a worker or a command should say why, at once.
    Servers that cannot be reached at all prove nothing here: the clients' own retries wait
    for a broker that is still starting, as they always did.
    """
    refusals = asyncio.run(_refusals(settings, timeout))
    if refusals is not None:
        raise BrokerRefused(f"the broker refused {describe(settings)}: {'; '.join(refusals)}")


async def _refusals(settings: Settings, timeout: float) -> list[str] | None:
    """Each server's refusal, or None when one accepted or one could not be reached."""
    refusals = []
    for server in settings.kafka_bootstrap.split(","):
        host, _, port = server.strip().rpartition(":")
        try:
            async with asyncio.timeout(timeout):
                conn = await create_conn(
                    host.strip("[]"),
                    int(port),
                    request_timeout_ms=int(timeout * 1000),
                    **security_options(settings),
                )
                try:  # a listener that wants SASL first closes the connection on this request
                    await conn.send(MetadataRequest([]))
                finally:
                    conn.close()
            return None
        except (ssl.SSLError, ConnectionResetError, AioKafkaError) as exc:
            refusals.append(f"{server.strip()}: {_reason(exc)}")
        except (OSError, TimeoutError):  # refused or unanswered TCP connection: not up (yet)
            return None
    return refusals


def _reason(exc: Exception) -> str:
    if isinstance(exc, AioKafkaConnectionError | ConnectionResetError):
        return f"the connection was dropped ({exc!r}): a listener of another security protocol?"
    return str(exc)  # aiokafka's errors name themselves; ssl's name the check that failed


def describe(settings: Settings) -> str:
    """The security of the connection in words, for messages: never the password."""
    words: str = settings.kafka_security_protocol
    if settings.kafka_sasl_mechanism and settings.kafka_security_protocol.startswith("SASL_"):
        words += f" {settings.kafka_sasl_mechanism} as {settings.kafka_sasl_username!r}"
    if settings.kafka_ssl_cafile:
        words += f" with CA file {settings.kafka_ssl_cafile}"
    return words
