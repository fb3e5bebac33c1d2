"""The admin API: quota, roster and team imports and dead-letter replay, over HTTP.

Thin adapters over what ``spm quotas|roster|teams import`` and ``spm dlq replay`` run, with
their rules: a CSV (``Content-Type: text/csv``) is parsed whole with the engine; a bad row is
answered 400 naming its line and nothing is published, unless ``skip_bad=true`` (the CLI's
``--skip-bad``); what is published has been acknowledged by Kafka (acks=all) before the answer.
Both use the CLI's ``EventProducer`` in a thread (kafka-python blocks). Only tokens with the
``admin`` scope reach these views (``streams.auth``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any, ClassVar, cast

import structlog
from aiohttp import web as aiohttp_web
from faust.web import Request, Response
from faust.web.exceptions import ValidationError
from kafka.errors import KafkaError

from streams.dlq import ReplayReport, replay_dead_letters
from streams.engine.errors import Invalid
from streams.engine.events import Decoder
from streams.producer import DeliveryError, EventProducer
from streams.reference_imports import IMPORTS, ReferenceImport
from streams.settings import Settings
from streams.web import ApiView

log = structlog.get_logger(__name__)

CSV = "text/csv"
MAX_CSV_BYTES = 64 << 20
MAX_ERRORS_SHOWN = 50


def _flag(request: Request, name: str) -> bool:
    value = request.query.get(name, "false")
    if value not in ("true", "false"):
        raise ValidationError(f"{name} must be true or false", field=name)
    return value == "true"


def _integer(request: Request, name: str, minimum: int) -> int | None:
    raw: str | None = request.query.get(name)
    if raw is None:
        return None
    if not raw.isdecimal() or int(raw) < minimum:
        raise ValidationError(f"{name} must be an integer ≥ {minimum}", field=name)
    return int(raw)


async def _body(request: aiohttp_web.Request, limit: int) -> bytes | None:
    """The request body, or None as soon as it is known to exceed ``limit`` bytes."""
    if request.content_length is not None and request.content_length > limit:
        return None
    body = bytearray()
    async for chunk in request.content.iter_chunked(1 << 16):
        body += chunk
        if len(body) > limit:
            return None
    return bytes(body)


def _row_errors(errors: Sequence[Invalid]) -> list[dict[str, str]]:
    return [{"code": e.code, "path": e.path, "message": e.message} for e in errors]


def _publish(
    settings: Settings, decoder: Decoder, kind: ReferenceImport[Any], rows: list[Any]
) -> int:
    """Blocking: publish and wait for every acknowledgement (``DeliveryError`` if refused)."""
    with EventProducer(settings, decoder) as producer:
        return kind.publish(producer, rows)


def _replay(settings: Settings, decoder: Decoder, **options: Any) -> ReplayReport:
    with EventProducer(settings, decoder) as producer:
        return replay_dead_letters(producer, **options)


class AdminView(ApiView):
    def kafka_failed(self, what: str, exc: Exception) -> Response:
        log.warning("admin.kafka_failed", what=what, error=str(exc))
        return self.unavailable(f"Kafka did not take the {what}: {exc}")


class CsvImport(AdminView):
    """``POST /api/v1/admin/<kind>``: the CSV of ``spm <kind> import``."""

    kind: ClassVar[ReferenceImport[Any]]

    async def post(self, request: Request) -> Response:
        rt = self.runtime
        settings: Settings = rt.settings
        stream = cast(aiohttp_web.Request, request)
        if stream.content_type != CSV:
            return self.error(415, f"send the CSV with Content-Type: {CSV}", field="Content-Type")
        skip_bad = _flag(request, "skip_bad")
        body = await _body(stream, MAX_CSV_BYTES)
        if body is None:
            return self.error(413, f"the CSV is larger than {MAX_CSV_BYTES} bytes", field="body")
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError as exc:
            return self.error(400, f"the CSV is not UTF-8 (byte {exc.start})", field="body")
        kind = self.kind
        rows, errors = kind.parse(text, rt.rules)
        shown = _row_errors(errors[:MAX_ERRORS_SHOWN])
        if errors and not skip_bad:
            reason = f"{len(errors)} bad {kind.noun}: nothing published"
            message = f"{reason} (skip_bad=true publishes the rest)"
            return self.error(400, message, field="body", errors=shown)
        if not rows:
            message = f"no valid {kind.noun}: nothing published"
            return self.error(400, message, field="body", errors=shown)
        try:
            published = await asyncio.to_thread(_publish, settings, rt.rules.decoder, kind, rows)
        except (DeliveryError, KafkaError) as exc:
            return self.kafka_failed(kind.noun, exc)
        topic = settings.topic(kind.topic)
        log.info("admin.imported", kind=kind.noun, published=published, skipped=len(errors))
        return self.json(
            {"published": published, "topic": topic, "skipped": len(errors), "errors": shown}
        )


class DeadLetterReplay(AdminView):
    """``POST /api/v1/admin/dlq/replay[?since_offset=&limit=&dry_run=]``: ``spm dlq replay``.
    One replay at a time per worker (they share one consumer group's progress)."""

    def __post_init__(self) -> None:
        self.running = asyncio.Lock()  # Faust makes one instance per route

    async def post(self, request: Request) -> Response:
        rt = self.runtime
        options = {
            "since_offset": _integer(request, "since_offset", 0),
            "limit": _integer(request, "limit", 1),
            "dry_run": _flag(request, "dry_run"),
        }
        if self.running.locked():
            busy = "a dead-letter replay is already running on this worker"
            return self.error(409, busy, field=None)
        async with self.running:
            try:
                report = await asyncio.to_thread(_replay, rt.settings, rt.rules.decoder, **options)
            except ValueError as exc:  # the topic does not exist
                return self.unavailable(str(exc))
            except (DeliveryError, KafkaError) as exc:
                return self.kafka_failed("replayed letters", exc)
        body = {
            "topic": rt.settings.topic("activity.dlq"),
            "read": report.read,
            "replayed": report.replayed,
            "still_failing": len(report.failing),
            "reasons": dict(report.reasons().most_common()),
            "dry_run": options["dry_run"],
        }
        return self.json(body)


def register(app: Any) -> None:
    """Attach the admin routes to ``app``."""
    for name, kind in IMPORTS.items():
        view = type(f"{name.title()}Import", (CsvImport,), {"kind": kind})
        app.page(f"/api/v1/admin/{name}")(view)
    app.page("/api/v1/admin/dlq/replay")(DeadLetterReplay)
