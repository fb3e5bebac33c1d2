"""Real embedded chDB in a temporary directory per test (one engine path per process, so
every fixture closes the factory's clients before and after)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from aiokafka import ConsumerRecord
from clickhouse_connect.driver import Client

from streams.chclient import close_clients, get_client
from streams.migrations import migrate
from streams.settings import Settings
from streams.sinks.clickhouse import COLUMNS, Row


def chdb_settings(path: Path) -> Settings:
    return Settings(clickhouse_url=f"chdb://{path}")


@pytest.fixture
def open_chdb() -> Iterator[Callable[[Path], Client]]:
    """Opens (through the one factory) an un-migrated chDB at a path; closes all at the end."""
    close_clients()

    def open_(path: Path) -> Client:
        close_clients()
        return get_client(chdb_settings(path))

    yield open_
    close_clients()


@pytest.fixture
def ch(open_chdb: Callable[[Path], Client], tmp_path: Path) -> Client:
    """A migrated, empty history database."""
    client = open_chdb(tmp_path / "clickhouse")
    migrate(client)
    return client


def insert_twice(client: Client, table: str, rows: list[Row]) -> None:
    """Insert ``rows`` in two separate inserts: every row is duplicated in another part, as a
    re-delivery would leave it until a merge."""
    for _ in range(2):
        client.insert(table, rows, column_names=COLUMNS[table])


def record(
    topic: str,
    value: bytes | None,
    *,
    key: bytes | None = None,
    partition: int = 0,
    offset: int = 0,
    at: datetime = datetime(2026, 11, 27, 10, tzinfo=UTC),
    headers: tuple[tuple[str, bytes], ...] = (),
) -> ConsumerRecord:
    """A Kafka message as aiokafka delivers it."""
    return ConsumerRecord(
        topic=topic,
        partition=partition,
        offset=offset,
        timestamp=int(at.timestamp() * 1000),
        timestamp_type=0,
        key=key,
        value=value,
        checksum=None,
        serialized_key_size=len(key or b""),
        serialized_value_size=len(value or b""),
        headers=headers,
    )
