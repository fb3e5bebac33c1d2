"""Local table state is only trusted after a clean shutdown when processing exactly once.

RocksDB keeps every table write at once, also those of a transaction that a crash then
aborts; Faust would restart from that state, which is ahead of the committed offsets, and the
replayed events would find their work "already done" and never re-send what the aborted
transaction lost. As Kafka Streams does, a worker that did not shut down cleanly drops its
local tables and restores them from the changelogs, which hold committed writes only.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import structlog

log = structlog.get_logger(__name__)

MARKER = "clean-shutdown"


def open_tables(tabledir: Path, exactly_once: bool) -> None:
    """Call before the tables open."""
    marker = tabledir / MARKER
    clean = marker.exists()
    marker.unlink(missing_ok=True)
    if exactly_once and not clean and tabledir.exists():
        shutil.rmtree(tabledir)
        log.warning("unclean shutdown: local tables dropped, restoring from changelogs")


def close_tables(tabledir: Path) -> None:
    """Call once the worker has stopped cleanly."""
    tabledir.mkdir(parents=True, exist_ok=True)
    (tabledir / MARKER).touch()
