"""The one ClickHouse client factory: every module gets its client here, so only this module
knows the DSN, and nothing else knows whether history lives in embedded chDB or on a server.

``settings.clickhouse_dsn`` is ``chdb:///abs/path`` (embedded chDB, the default) or
``http(s)://user:pass@host:port/db``; clickhouse-connect 1.12 opens both from the DSN (an
https:// server with the TLS settings too, :func:`https_options`).
chDB lets a process open one path only (and only one process may open it), so clients are
cached per DSN: the worker, its sink and its API share one engine handle. A process claims a
chDB path with a lock file beside it before opening it, so a second process (another worker,
``spm db sink``) is told in plain words who holds it instead of chDB's opaque start-up error.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import clickhouse_connect
from clickhouse_connect.driver import Client
from clickhouse_connect.driver.exceptions import ClickHouseError
from filelock import FileLock, Timeout

from streams.settings import Settings

_clients: dict[str, Client] = {}
_claims: dict[str, FileLock] = {}
_lock = threading.Lock()


class ChdbPathBusy(ClickHouseError):
    """Another process holds the embedded chDB path (one process per path)."""


def get_client(settings: Settings) -> Client:
    """The process's client for ``settings.clickhouse_dsn`` (created on first use)."""
    dsn = settings.clickhouse_dsn
    with _lock:
        client = _clients.get(dsn)
        if client is None:
            path = chdb_path(dsn)
            if path is not None:
                _claim(path)
            client = clickhouse_connect.get_client(dsn=dsn, **https_options(settings))
            _clients[dsn] = client
        return client


def https_options(settings: Settings) -> dict[str, Any]:
    """clickhouse-connect's arguments for an https:// server: TLS itself, whether to check the
    server's certificate, and against which CA file (without one, the system's CAs).

    ``secure`` is not redundant: clickhouse-connect 1.12 takes TLS from the port (8443, 443),
    not from the DSN's scheme, so an https:// URL on another port would go out in plain HTTP.
    """
    if urlsplit(settings.clickhouse_dsn).scheme != "https":
        return {}
    options: dict[str, Any] = {"secure": True, "verify": settings.clickhouse_verify}
    if settings.clickhouse_ca_file is not None:
        options["ca_cert"] = str(settings.clickhouse_ca_file)
    return options


def chdb_path(dsn: str) -> str | None:
    """The directory of an embedded chDB DSN, None for a ClickHouse server."""
    parts = urlsplit(dsn)
    return parts.path if parts.scheme == "chdb" else None


def _claim(path: str) -> None:
    """Hold ``<path>.lock`` for the life of the process (the OS releases it on any exit)."""
    if path in _claims:
        return
    lock_file = Path(f"{path.rstrip('/')}.lock")
    lock_file.parent.mkdir(parents=True, exist_ok=True)
    claim = FileLock(lock_file, timeout=0)
    try:
        claim.acquire()
    except Timeout:
        raise ChdbPathBusy(
            f"the embedded history store {path} is open in another process (a worker with "
            "SPM_HISTORY_SINK=true, or `spm db sink`); chDB allows one process per path. With "
            "several workers, share a ClickHouse server (SPM_CLICKHOUSE_URL=http://...) or "
            "give each process its own path."
        ) from None
    _claims[path] = claim


def close_clients() -> None:
    """Close every cached client and release the chDB paths (another may then open them)."""
    with _lock:
        for client in _clients.values():
            client.close()
        _clients.clear()
        for claim in _claims.values():
            claim.release()
        _claims.clear()


def shown_dsn(settings: Settings) -> str:
    """The DSN for messages and logs, its password masked."""
    parts = urlsplit(settings.clickhouse_dsn)
    if parts.password is None:
        return settings.clickhouse_dsn
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))
