"""The one ClickHouse client factory: every module gets its client here, so only this module
knows the DSN, and nothing else knows whether history lives in embedded chDB or on a server.

``settings.clickhouse_dsn`` is ``chdb:///abs/path`` (embedded chDB, the default) or
``http(s)://user:pass@host:port/db``; clickhouse-connect 1.12 opens both from the DSN alone.
chDB lets a process open one path only (and only one process may open it), so clients are
cached per DSN: the worker, its sink and its API share one engine handle.
"""

from __future__ import annotations

import threading
from urllib.parse import urlsplit, urlunsplit

import clickhouse_connect
from clickhouse_connect.driver import Client

from streams.settings import Settings

_clients: dict[str, Client] = {}
_lock = threading.Lock()


def get_client(settings: Settings) -> Client:
    """The process's client for ``settings.clickhouse_dsn`` (created on first use)."""
    dsn = settings.clickhouse_dsn
    with _lock:
        client = _clients.get(dsn)
        if client is None:
            client = clickhouse_connect.get_client(dsn=dsn)
            _clients[dsn] = client
        return client


def close_clients() -> None:
    """Close every cached client, releasing the chDB path (another path may then be opened)."""
    with _lock:
        for client in _clients.values():
            client.close()
        _clients.clear()


def shown_dsn(settings: Settings) -> str:
    """The DSN for messages and logs, its password masked."""
    parts = urlsplit(settings.clickhouse_dsn)
    if parts.password is None:
        return settings.clickhouse_dsn
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))
