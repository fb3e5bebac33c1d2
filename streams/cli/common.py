"""What the commands that publish or read share: their consoles, exit codes and way of failing.

Exit codes: 0 all done, 1 some rows skipped (``--skip-bad``) or letters still failing,
2 nothing done (bad usage, every row rejected, Kafka or ClickHouse unreachable).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import typer
from kafka.errors import KafkaError
from rich.console import Console
from rich.markup import escape

from streams.kafka_clients import check_accepted
from streams.producer import DeliveryError, EventProducer
from streams.settings import Settings
from streams.topics import ensure_topics

console = Console(highlight=False)
error_console = Console(stderr=True, highlight=False, soft_wrap=True)

EXIT_OK, EXIT_SOME_BAD, EXIT_NOTHING_SENT = 0, 1, 2


def fail(message: str) -> typer.Exit:
    """Print ``message`` as an error; raise the result to end the command with exit 2."""
    error_console.print(f"[bold red]{escape(message)}[/bold red]")
    return typer.Exit(EXIT_NOTHING_SENT)


@contextmanager
def kafka_producer(settings: Settings, create_topics: bool = True) -> Iterator[EventProducer]:
    """A producer whose failures (broker down, TLS or login refused, sends refused) exit 2.

    The topics are created first if missing (the broker does not auto-create them), so a
    fresh stack accepts imports before the worker ever ran.
    """
    try:
        check_accepted(settings)  # a refused login or certificate says why, at once
        if create_topics:
            ensure_topics(settings)
        with EventProducer(settings) as producer:
            yield producer
    except (DeliveryError, KafkaError) as exc:
        raise fail(f"Kafka at {settings.kafka_bootstrap} failed: {exc}") from None
