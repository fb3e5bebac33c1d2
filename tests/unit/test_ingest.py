"""The CloudEvents HTTP binding of ``POST /api/v1/events``: modes, binary headers, batches and
per-event verdicts (the HTTP and Kafka ends are ``tests/integration/test_http_ingest.py``'s)."""

from __future__ import annotations

import json

import pytest

from streams.ingest import (
    BATCH,
    STRUCTURED,
    Mode,
    Refused,
    binary_event,
    content_mode,
    events_of,
    judge,
    results,
)
from streams.rules import Rules
from streams.settings import Settings

CALL = {
    "specversion": "1.0",
    "id": "c-1",
    "source": "dialer",
    "type": "call.completed",
    "time": "2026-11-27T10:00:00+01:00",
    "data": {"rep_id": "r1"},
}
HEADERS = [
    ("Content-Type", "application/json"),
    ("ce-specversion", "1.0"),
    ("ce-id", "c-1"),
    ("ce-source", "dialer"),
    ("ce-type", "call.completed"),
    ("ce-time", "2026-11-27T10:00:00+01:00"),
]


def refusal(call: object) -> tuple[int, str]:
    assert isinstance(call, Refused)
    return call.status, call.field


@pytest.mark.parametrize(
    ("content_type", "mode"),
    [
        (STRUCTURED, Mode.STRUCTURED),
        ("Application/CloudEvents+JSON; charset=UTF-8", Mode.STRUCTURED),
        (f'{BATCH}; charset="utf-8"', Mode.BATCH),
        ("application/json", Mode.BINARY),
        ("application/vnd.crm+json; charset=utf-8", Mode.BINARY),
    ],
)
def test_the_content_type_picks_the_mode(content_type: str, mode: Mode) -> None:
    assert content_mode(content_type) is mode


@pytest.mark.parametrize(
    "content_type",
    [
        None,
        "",
        "text/plain",
        "application/cloudevents+avro",
        f"{BATCH}x",
        f"{STRUCTURED}; charset=latin-1",
    ],
)
def test_other_content_types_are_415(content_type: str | None) -> None:
    with pytest.raises(Refused) as refused:
        content_mode(content_type)
    assert refusal(refused.value) == (415, "Content-Type")


def test_binary_mode_is_the_structured_event_with_the_body_as_data_byte_for_byte() -> None:
    body = b' {"rep_id": "r1", "score": 0.10} \n'
    raw = binary_event(HEADERS, body)
    assert json.loads(raw) == CALL | {
        "datacontenttype": "application/json",
        "data": {"rep_id": "r1", "score": 0.1},
    }
    assert raw.endswith(b'"data":{"rep_id": "r1", "score": 0.10}}')  # the number as sent


def test_binary_header_values_are_unquoted_then_percent_decoded() -> None:
    headers = [*HEADERS[:2], ("ce-id", "caf%C3%A9%20%221%22"), ("CE-Source", '"a \\"b\\""')]
    doc = json.loads(binary_event(headers, b"{}"))
    assert (doc["id"], doc["source"]) == ('café "1"', 'a "b"')


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        (("ce-id", "again"), "ce-id"),
        (("ce-datacontenttype", "application/json"), "ce-datacontenttype"),
        (("ce-data", "{}"), "ce-data"),
        (("ce-x_y", "1"), "ce-x_y"),
        (("ce-subject", "%C0%A0"), "ce-subject"),  # overlong UTF-8
    ],
)
def test_bad_binary_headers_are_400(extra: tuple[str, str], field: str) -> None:
    with pytest.raises(Refused) as refused:
        binary_event([*HEADERS, extra], b"{}")
    assert refusal(refused.value) == (400, field)


def test_binary_mode_needs_specversion_and_json_data() -> None:
    with pytest.raises(Refused) as refused:
        binary_event([h for h in HEADERS if h[0] != "ce-specversion"], b"{}")
    assert refusal(refused.value) == (400, "ce-specversion")
    with pytest.raises(Refused) as refused:
        binary_event(HEADERS, b'{"rep_id": "r1"')
    assert refusal(refused.value) == (400, "body")
    assert "data" not in json.loads(binary_event(HEADERS, b""))  # the decoder will say so


def test_a_batch_is_its_elements_as_sent() -> None:
    body = b'[ {"id": "a",  "x": 1.50} ,42,\n"s" ]'
    assert events_of(Mode.BATCH, [], body, 3) == [b'{"id": "a",  "x": 1.50}', b"42", b'"s"']
    assert events_of(Mode.BATCH, [], b"[]", 3) == []
    for bad, status in ((b"{}", 400), (b"[1,", 400), (b"\xff", 400), (b"[1,2,3,4]", 413)):
        with pytest.raises(Refused) as refused:
            events_of(Mode.BATCH, [], bad, 3)
        assert refusal(refused.value) == (status, "body")


def test_verdicts_and_results_follow_the_decoder() -> None:
    decoder = Rules.from_settings(Settings()).decoder
    deal = CALL | {
        "id": "w-1",
        "type": "deal.won",
        "data": {"rep_id": "r1", "deal_id": "D-1", "amount": "5", "currency": "USD"},
    }
    raws = [json.dumps(CALL).encode(), json.dumps(CALL | {"data": {}}).encode(), b"7"]
    raws.append(json.dumps(deal).encode())
    verdicts = judge(raws, decoder)
    keys = [getattr(v, "key", None) for v in verdicts]  # by idempotency key, as producers key
    assert keys == [b"6:dialer\x1fc-1", None, None, b"6:dialer\x1fw-1"]
    assert results(verdicts)["results"] == [
        {"index": 0, "id": "c-1", "status": "accepted"},
        {"index": 1, "id": "c-1", "status": "rejected", "code": "schema",
         "path": "data.rep_id", "message": "'rep_id' is required"},
        {"index": 2, "id": None, "status": "rejected", "code": "schema", "path": "",
         "message": "must be an object, not a number"},
        {"index": 3, "id": "w-1", "status": "accepted"},
    ]  # fmt: skip
