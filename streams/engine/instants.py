"""RFC 3339 instants: the one accepted time syntax, normalised to UTC for ordering."""

from __future__ import annotations

import re
from datetime import UTC, datetime

_RFC3339 = re.compile(
    r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})\Z", re.ASCII
)


def parse_instant(text: str) -> datetime | None:
    """Parse an RFC 3339 timestamp with offset into a UTC datetime; None when malformed.

    A local time without offset is refused: its instant would depend on the reader.
    Fractions beyond microseconds are truncated (datetime's resolution).
    """
    if not _RFC3339.match(text):
        return None
    try:
        return datetime.fromisoformat(text.upper()).astimezone(UTC)
    except (ValueError, OverflowError):  # OverflowError: the UTC instant is past year 1 or 9999
        return None


def format_instant(t: datetime) -> str:
    """The canonical wire form: UTC with ``+00:00`` (``2026-11-27T10:00:00+00:00``)."""
    return t.astimezone(UTC).isoformat()


def epoch_us(t: datetime) -> int:
    """Integer microseconds since the epoch: an exact, JSON-friendly ordering key."""
    delta = t - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
