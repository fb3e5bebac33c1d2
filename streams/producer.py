"""Publishing to the pipeline's input topics: activity events, quotas, roster and teams.

Events are validated with the engine's own ``Decoder`` before they leave the process, so a
caller (CLI, demo, integration) hears about a bad event at once instead of finding it later
in the dead-letter topic; the original bytes are what is sent, never a re-serialisation.
Quotas, reps and teams go to compacted topics keyed so that the latest row per key wins.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from types import TracebackType
from typing import Any, Self

import structlog
from kafka import KafkaProducer
from kafka.producer.future import FutureRecordMetadata

from streams.engine.errors import Invalid
from streams.engine.events import Decoder, Event
from streams.engine.imports import QuotaRow, RosterRow, TeamRow
from streams.engine.instants import format_instant
from streams.engine.money import decimal_text
from streams.kafka_clients import new_client
from streams.rules import Rules
from streams.settings import Settings

log = structlog.get_logger(__name__)

Record = tuple[bytes, bytes]
"""A (key, value) pair as it goes on the wire."""


class DeliveryError(RuntimeError):
    """The broker did not acknowledge some messages (after the client's own retries)."""


def encode_event(event: bytes | dict[str, Any]) -> bytes:
    """Bytes of an event given as bytes (kept as is) or as a JSON-able dict."""
    if isinstance(event, bytes):
        return event
    return json.dumps(event, separators=(",", ":"), ensure_ascii=False).encode()


@dataclass(frozen=True, slots=True)
class EventLine:
    """One accepted line of an event batch: its line number, original bytes and decoding."""

    line: int
    raw: bytes
    event: Event


def read_event_lines(
    lines: Iterable[str], decoder: Decoder
) -> tuple[list[EventLine], list[Invalid]]:
    """Validate a batch of events, one per line; blank lines are skipped but still counted.

    Rejections follow the CSV imports' convention (``path`` "line N", message starting with
    it) with the field the decoder blamed, so one error format serves every batch command.
    """
    accepted: list[EventLine] = []
    errors: list[Invalid] = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        raw = line.strip().encode()
        decoded = decoder.decode(raw)
        if isinstance(decoded, Invalid):
            field = f" (at {decoded.path})" if decoded.path else ""
            message = f"line {number}: {decoded.message}{field}"
            errors.append(Invalid(decoded.code, message, f"line {number}"))
        else:
            accepted.append(EventLine(number, raw, decoded))
    return accepted, errors


def _json(value: object) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def _instant(value: datetime | None) -> str | None:
    return None if value is None else format_instant(value)


def quota_record(row: QuotaRow) -> Record:
    """``spm.quotas``: key ``"scope|scope_id|metric|period|effective_from"`` (JSON string)."""
    effective = _instant(row.effective_from)
    key = "|".join((row.scope, row.scope_id, row.metric, row.period, effective or ""))
    value = {
        "scope": row.scope,
        "scope_id": row.scope_id,
        "metric": row.metric,
        "period": row.period,
        "target": decimal_text(row.target),
        "effective_from": effective,
    }
    return _json(key), _json(value)


def rep_record(row: RosterRow) -> Record:
    """``spm.roster`` rep row: key ``"rep|<rep_id>|<effective_from or ''>"`` (JSON string)."""
    effective = _instant(row.effective_from)
    value = {
        "kind": "rep",
        "rep_id": row.rep_id,
        "name": row.name,
        "team_id": row.team_id,
        "effective_from": effective,
    }
    return _json(f"rep|{row.rep_id}|{effective or ''}"), _json(value)


def team_record(row: TeamRow) -> Record:
    """``spm.roster`` team row: key ``"team|<team_id>"`` (JSON string)."""
    value = {"kind": "team", "team_id": row.team_id, "name": row.name, "parent_id": row.parent_id}
    return _json(f"team|{row.team_id}"), _json(value)


class EventProducer:
    """A Kafka producer for the pipeline's inputs (acks=all, idempotent, lingering batches).

    Sends are asynchronous; ``flush`` waits for them and raises ``DeliveryError`` if the
    broker refused any, so a command that returns normally has really published.
    """

    def __init__(self, settings: Settings, decoder: Decoder | None = None) -> None:
        self.settings = settings
        self.decoder = decoder or Rules.from_settings(settings).decoder
        self._failures: list[Exception] = []
        self._kafka = new_client(
            KafkaProducer,
            settings,
            client_id=f"{settings.app_id}-producer",
            acks="all",
            enable_idempotence=True,
            linger_ms=settings.producer_linger_ms,
            max_request_size=max(1_048_576, 2 * settings.max_event_bytes),
        )

    # --- activity events ------------------------------------------------------------------
    def send_event(self, event: bytes | dict[str, Any]) -> Invalid | None:
        """Validate and send one event; the rejection when it would be dead-lettered."""
        raw = encode_event(event)
        decoded = self.decoder.decode(raw)
        if isinstance(decoded, Invalid):
            return decoded
        self.send_valid(raw, decoded)
        return None

    def send_valid(self, raw: bytes, event: Event) -> None:
        """Send bytes already decoded to ``event``, keyed by its partition key."""
        self.send_raw(raw, key=event.partition_key.encode())

    def send_raw(
        self,
        raw: bytes,
        key: bytes | None = None,
        headers: list[tuple[str, bytes]] | None = None,
    ) -> None:
        """Send bytes to the activity topic unchecked (dead-letter replays, fault tests)."""
        self._send(self.settings.topic("activity"), key, raw, headers)

    # --- reference data -------------------------------------------------------------------
    def publish_quotas(self, rows: Iterable[QuotaRow]) -> int:
        return self._publish("quotas", map(quota_record, rows))

    def publish_roster(self, rows: Iterable[RosterRow]) -> int:
        return self._publish("roster", map(rep_record, rows))

    def publish_teams(self, rows: Iterable[TeamRow]) -> int:
        return self._publish("roster", map(team_record, rows))

    def _publish(self, topic: str, records: Iterable[Record]) -> int:
        count = 0
        for key, value in records:
            self._send(self.settings.topic(topic), key, value, None)
            count += 1
        return count

    # --- delivery -------------------------------------------------------------------------
    def _send(
        self,
        topic: str,
        key: bytes | None,
        value: bytes,
        headers: list[tuple[str, bytes]] | None,
    ) -> None:
        future: FutureRecordMetadata = self._kafka.send(
            topic, value=value, key=key, headers=headers
        )
        future.add_errback(self._failed, topic)

    def _failed(self, topic: str, exc: Exception) -> None:
        log.error("producer.delivery_failed", topic=topic, error=str(exc))
        self._failures.append(exc)

    def flush(self, timeout: float | None = None) -> None:
        """Wait for every pending send; raise ``DeliveryError`` if any was refused."""
        self._kafka.flush(timeout=timeout)
        if self._failures:
            failures, self._failures = self._failures, []
            raise DeliveryError(f"{len(failures)} message(s) not delivered: {failures[0]}")

    def close(self) -> None:
        self._kafka.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            if exc_type is None:
                self.flush()
        finally:
            self.close()
