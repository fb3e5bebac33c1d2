"""``POST /api/v1/events``: CloudEvents over HTTP into ``spm.activity``, acknowledged by Kafka.

A thin adapter, HTTP ↔ decoder ↔ producer. The CloudEvents HTTP binding (1.0.2) in its three
modes is turned into the bytes the Kafka path carries (one structured-mode JSON event per
message); each is judged by the pipeline's own ``Decoder``; the valid ones are sent with the
worker's acknowledged producer (``acks=all``, idempotent), keyed like ``EventProducer`` keys
them, and the answer waits for every acknowledgement:

* binary: ``ce-*`` headers (quoted-string unescaped, then percent-decoded) are the attributes,
  ``Content-Type`` is ``datacontenttype`` and the body, verbatim, is ``data``;
* structured (``application/cloudevents+json``): the body, verbatim;
* batch (``application/cloudevents-batch+json``): each element of the array, verbatim.

``202 {"results": [...]}`` has one entry per event, accepted or rejected with the decoder's
code, path and message; a rejected event is never written anywhere (the caller has the reason).
A body that is not JSON, or not of the mode's shape, is 400; too large or too many events 413;
an unknown content type 415. Kafka not acknowledging within ``SPM_INGEST_TIMEOUT`` is 503 with
Retry-After: some events may have been written, and posting them again is harmless because the
pipeline counts an event ``(source, id)`` once. The hand-written binding keeps the caller's
bytes (a re-serialisation could change a number), leaves every attribute check to the decoder
(one set of error codes for Kafka and HTTP) and handles batches, which the SDK does not.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any, cast
from urllib.parse import unquote_to_bytes

import msgspec
import structlog
from aiohttp import web as aiohttp_web
from aiokafka.errors import KafkaError
from faust.web import Request, Response

from streams.engine.errors import Invalid
from streams.engine.events import Decoder
from streams.pipeline.kafka import Producer
from streams.web import ApiView

log = structlog.get_logger(__name__)

STRUCTURED = "application/cloudevents+json"
BATCH = "application/cloudevents-batch+json"
#: Attribute names are lower-case ASCII letters and digits (CloudEvents 1.0 "Attribute Naming").
_ATTRIBUTE = re.compile(r"[a-z0-9]+")
_QUOTED_PAIR = re.compile(r"\\(.)")


class Mode(Enum):
    BINARY = "binary"
    STRUCTURED = "structured"
    BATCH = "batch"


class Refused(Exception):
    """The request as a whole cannot be read as events: answered ``status {"error", "field"}``."""

    def __init__(self, status: int, message: str, field: str) -> None:
        super().__init__(message)
        self.status, self.message, self.field = status, message, field


@dataclass(frozen=True, slots=True)
class Accepted:
    """An event to send: its place in the request, id, bytes and partition key."""

    index: int
    id: str
    raw: bytes
    key: bytes


@dataclass(frozen=True, slots=True)
class Rejected:
    """An event not to send, and why (``id`` as the event claims it, if it does)."""

    index: int
    id: str | None
    reason: Invalid


Verdict = Accepted | Rejected


def content_mode(content_type: str | None) -> Mode:
    """The binding's mode from ``Content-Type``; binary mode only for JSON data, since the
    contract's ``data`` is a JSON object."""
    if not content_type:
        raise Refused(
            415, f"Content-Type is required ({STRUCTURED}, {BATCH} or JSON data)", "Content-Type"
        )
    media, _, parameters = content_type.partition(";")
    media = media.strip().lower()
    charset = _parameter(parameters, "charset")
    if charset is not None and charset.lower() not in ("utf-8", "utf8"):
        raise Refused(415, f"events are UTF-8, not {charset}", "Content-Type")
    if media.startswith("application/cloudevents-batch"):
        if media != BATCH:
            raise Refused(415, f"batches are {BATCH}, not {media}", "Content-Type")
        return Mode.BATCH
    if media.startswith("application/cloudevents"):
        if media != STRUCTURED:
            raise Refused(415, f"structured events are {STRUCTURED}, not {media}", "Content-Type")
        return Mode.STRUCTURED
    if media == "application/json" or media.endswith("+json"):
        return Mode.BINARY
    raise Refused(
        415, f"{media}: binary mode needs JSON data (application/json or */*+json)", "Content-Type"
    )


def _parameter(parameters: str, name: str) -> str | None:
    for item in parameters.split(";"):
        key, _, value = item.partition("=")
        if key.strip().lower() == name:
            return value.strip().strip('"')
    return None


def events_of(
    mode: Mode, headers: Iterable[tuple[str, str]], body: bytes, max_events: int
) -> list[bytes]:
    """The events of a request, each as the bytes one Kafka message would carry."""
    if mode is Mode.BATCH:
        try:
            elements = msgspec.json.decode(body, type=list[msgspec.Raw])
        except msgspec.ValidationError:
            raise Refused(400, "a batch is a JSON array of events", "body") from None
        except msgspec.DecodeError as exc:
            raise Refused(400, f"not JSON: {exc}", "body") from None
        if len(elements) > max_events:
            raise Refused(413, f"{len(elements)} events > limit {max_events} a request", "body")
        return [bytes(element) for element in elements]
    if mode is Mode.STRUCTURED:
        return [_json(body)]
    return [binary_event(headers, body)]


def _json(body: bytes) -> bytes:
    """``body`` without surrounding whitespace, if it is one JSON value."""
    try:
        return bytes(msgspec.json.decode(body, type=msgspec.Raw))
    except msgspec.DecodeError as exc:
        raise Refused(400, f"not JSON: {exc}", "body") from None


def binary_event(headers: Iterable[tuple[str, str]], body: bytes) -> bytes:
    """The structured form of a binary-mode event: ``ce-*`` headers as attributes, the
    Content-Type as ``datacontenttype``, the body as ``data``. Missing attributes are left for
    the decoder to name, except ``specversion``, without which nothing marks a CloudEvent."""
    document: dict[str, Any] = {}
    content_type = ""
    for name, value in headers:
        lowered = name.lower()
        if lowered == "content-type":
            content_type = value
        if not lowered.startswith("ce-"):
            continue
        attribute = lowered[3:]
        if not _ATTRIBUTE.fullmatch(attribute) or attribute in ("data", "datacontenttype"):
            raise Refused(400, f"{name} is not an attribute header of binary mode", name)
        if attribute in document:
            raise Refused(400, f"{name} appears twice", name)
        document[attribute] = _header_value(name, value)
    if "specversion" not in document:
        raise Refused(
            400,
            f"binary mode needs ce-specversion and the other ce-* headers "
            f"(a whole event in the body is {STRUCTURED})",
            "ce-specversion",
        )
    document["datacontenttype"] = content_type
    if body.strip():
        document["data"] = msgspec.Raw(_json(body))
    return msgspec.json.encode(document)


def _header_value(name: str, value: str) -> str:
    """RFC 7230 quoted-string unescaping, then one round of strict UTF-8 percent-decoding."""
    if len(value) >= 2 and value[0] == value[-1] == '"':
        value = _QUOTED_PAIR.sub(r"\1", value[1:-1])
    try:
        return unquote_to_bytes(value).decode("utf-8")
    except UnicodeError:
        raise Refused(400, f"{name} is not percent-encoded UTF-8", name) from None


class _Claim(msgspec.Struct):
    id: Any = None


def judge(events: Sequence[bytes], decoder: Decoder) -> list[Verdict]:
    """Each event accepted (with its partition key) or rejected (with the decoder's reason)."""
    verdicts: list[Verdict] = []
    for index, raw in enumerate(events):
        decoded = decoder.decode(raw)
        if isinstance(decoded, Invalid):
            verdicts.append(Rejected(index, _claimed_id(raw), decoded))
        else:
            verdicts.append(Accepted(index, decoded.id, raw, decoded.partition_key.encode()))
    return verdicts


def _claimed_id(raw: bytes) -> str | None:
    """The ``id`` a rejected event gives itself, if it gives a string one."""
    try:
        claimed = msgspec.json.decode(raw, type=_Claim).id
    except (msgspec.DecodeError, RecursionError):
        return None
    return claimed if isinstance(claimed, str) else None


def results(verdicts: Sequence[Verdict]) -> dict[str, Any]:
    """The 202 body: one entry per event, in request order."""
    entries: list[dict[str, Any]] = []
    for v in verdicts:
        if isinstance(v, Accepted):
            entries.append({"index": v.index, "id": v.id, "status": "accepted"})
        else:
            why = {"code": v.reason.code, "path": v.reason.path, "message": v.reason.message}
            entries.append({"index": v.index, "id": v.id, "status": "rejected", **why})
    return {"results": entries}


async def read_body(request: Request, limit: int) -> bytes:
    """The body, refused with 413 as soon as it is known to exceed ``limit`` bytes."""
    stream = cast(aiohttp_web.Request, request)
    if stream.content_length is not None and stream.content_length > limit:
        raise Refused(413, f"{stream.content_length} bytes > limit {limit}", "body")
    body = bytearray()
    async for chunk in stream.content.iter_chunked(1 << 16):
        body += chunk
        if len(body) > limit:
            raise Refused(413, f"more than the limit of {limit} bytes", "body")
    return bytes(body)


async def publish(
    producer: Producer, topic: str, accepted: Sequence[Accepted], timeout: float
) -> str | None:
    """Send ``accepted`` and wait for every acknowledgement: ``None``, or why not. Nothing is
    cancelled at the deadline (``asyncio.wait``): sends handed to the producer may still land."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    late = f"Kafka did not acknowledge the events within {timeout:g} s"
    try:
        async with asyncio.timeout_at(deadline):
            acks = [await producer.send(topic, a.raw, key=a.key) for a in accepted]
    except TimeoutError:
        return late
    except KafkaError as exc:
        return f"Kafka did not take the events: {exc!r}"
    if not acks:
        return None
    done, pending = await asyncio.wait(acks, timeout=max(0.0, deadline - loop.time()))
    for ack in pending:
        ack.add_done_callback(_failure)
    failures = [f for f in map(_failure, done) if f is not None]
    if failures:
        return f"Kafka did not take the events: {failures[0]!r}"
    return late if pending else None


def _failure(ack: asyncio.Future[Any]) -> BaseException | None:
    """Why a done send failed, if it did; asking marks it handled (no "never retrieved")."""
    return asyncio.CancelledError() if ack.cancelled() else ack.exception()


class Events(ApiView):
    async def post(self, request: Request) -> Response:
        rt = self.runtime
        settings = rt.settings
        try:
            mode = content_mode(request.headers.get("Content-Type"))
            body = await read_body(request, settings.ingest_max_bytes)
            events = events_of(mode, request.headers.items(), body, settings.ingest_max_events)
        except Refused as refused:
            return self.error(refused.status, refused.message, field=refused.field)
        verdicts = judge(events, rt.rules.decoder)
        accepted = [v for v in verdicts if isinstance(v, Accepted)]
        if accepted and not rt.producer.started:
            return self.unavailable("the Kafka producer has not started yet")
        topic = rt.outputs.topics.activity
        problem = await publish(rt.producer, topic, accepted, settings.ingest_timeout)
        if problem is not None:
            log.warning("ingest.unacknowledged", events=len(accepted), problem=problem)
            return self.unavailable(
                f"{problem}; some may have been written: posting them again is harmless "
                "(an event's (source, id) is counted once)"
            )
        return self.json(results(verdicts), status=202)


def register(app: Any) -> None:
    """Attach ``POST /api/v1/events`` to ``app``."""
    app.page("/api/v1/events")(Events)
