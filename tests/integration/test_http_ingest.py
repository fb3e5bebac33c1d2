"""HTTP ingest end to end: ``POST /api/v1/events`` on a real worker and the real broker.

A generated scenario is posted in the three CloudEvents modes (binary, structured, batch) mixed
with malformed events: every rejected event comes back with its code and path and reaches no
topic (not even the DLQ), every accepted one lands in ``activity`` keyed like the producer keys
it, and the API's figures equal the recomputation — again after everything is posted twice.
Refused requests (400/413/415) write nothing; ``spm emit --http`` posts through the endpoint.
A broker outage is ``test_http_ingest_outage.py``'s (its own module: a private broker).
"""

from __future__ import annotations

import dataclasses
import json
import random
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from kafka import KafkaAdminClient

from streams.engine.errors import Invalid
from streams.engine.money import DEFAULT_RATES
from streams.rules import Rules
from streams.settings import Settings
from streams.topics import ensure_topics
from tests.integration import scenario
from tests.integration.feeding import event, read_topic
from tests.integration.harness import Worker, wait_caught_up, worker_settings
from tests.integration.test_cli import jsonl, spm
from tests.integration.test_pipeline import (
    assert_api_equals_recompute,
    dead_letters,
    publish_reference,
)

STRUCTURED = "application/cloudevents+json"
BATCH = "application/cloudevents-batch+json"
JSON_DATA = "application/json; charset=utf-8"
MAX_EVENTS = 150
SCENARIO = scenario.generate(seed=21, activities=500, deals=70)
#: An accepted event whose id needs percent-encoding in binary mode.
UNICODE_ID = 'café "one"'
UNICODE_EVENT = json.dumps(
    scenario._event("call.completed", 0, scenario.START, {"rep_id": SCENARIO.reps[0]}, "bin.test")
    | {"id": UNICODE_ID}
).encode()

Expected = tuple[str, str] | None
"""Of one event: None when it must be accepted, else the (code, path) of its rejection."""


@dataclasses.dataclass(frozen=True)
class Post:
    """One request, what each of its events must get, and the accepted events' bytes that
    must reach Kafka unchanged (structured and batch modes carry them as they are)."""

    headers: list[tuple[str, str]]
    body: bytes
    expected: list[Expected]
    verbatim: tuple[bytes, ...] = ()


def structured(raw: bytes, expected: Expected = None) -> Post:
    return Post([("Content-Type", STRUCTURED)], raw, [expected], () if expected else (raw,))


def binary_headers(doc: dict[str, Any]) -> list[tuple[str, str]]:
    """``doc``'s attributes as binary-mode headers, percent-encoded more than needed (the
    receiver must accept that), the source as an RFC 7230 quoted string."""
    headers = [("Content-Type", JSON_DATA)]
    for name, value in doc.items():
        if name == "source":
            headers.append(("ce-source", '"' + value.replace('"', '\\"') + '"'))
        elif name != "data":
            headers.append((f"ce-{name}", quote(str(value), safe="")))
    return headers


def binary(doc: dict[str, Any], expected: Expected = None) -> Post:
    return Post(binary_headers(doc), json.dumps(doc["data"]).encode(), [expected])


def batch(events: list[tuple[bytes, Expected]]) -> Post:
    raws = [raw for raw, _ in events]
    verbatim = tuple(raw for raw, expected in events if expected is None)
    return Post(
        [("Content-Type", BATCH)], b"[" + b", ".join(raws) + b"]", [e for _, e in events], verbatim
    )


def reason(rules: Rules, raw: bytes) -> tuple[str, str]:
    """The decoder's own verdict on a malformed event (what Kafka input would get)."""
    decoded = rules.decoder.decode(raw)
    assert isinstance(decoded, Invalid), raw[:80]
    return decoded.code, decoded.path


def scenario_posts(rules: Rules, seed: int) -> list[Post]:
    """The scenario's events, about a tenth binary and a tenth structured, the rest in batches
    of 100 with the scenario's malformed JSON events and hand-made bad ones among them."""
    rng = random.Random(seed)
    good = next(d for d in map(json.loads, SCENARIO.events) if d["type"] == "call.completed")
    bad = [raw for raw, code in SCENARIO.malformed if code not in ("not_utf8", "not_json")]
    bad += [
        b"42",
        json.dumps(good | {"id": "x" * 129}).encode(),
        json.dumps(good).encode().replace(b'"rep_id": "', b'"rep_id": "\xff'),  # not UTF-8
    ]
    posts = [
        binary(json.loads(UNICODE_EVENT)),
        binary(good | {"source": ""}, ("schema", "source")),
        binary({k: v for k, v in good.items() if k != "type"}, ("schema", "type")),
        binary(good | {"time": "2026-11-01 10:00"}, ("bad_time", "time")),
        structured(json.dumps(good | {"data": {}}).encode(), ("schema", "data.rep_id")),
    ]
    batched: list[tuple[bytes, Expected]] = [(raw, reason(rules, raw)) for raw in bad]
    for raw in SCENARIO.events:
        roll = rng.random()
        if roll < 0.1:
            posts.append(binary(json.loads(raw)))
        elif roll < 0.2:
            posts.append(structured(raw))
        else:
            batched.append((raw, None))
    rng.shuffle(batched)
    posts += [batch(batched[i : i + 100]) for i in range(0, len(batched), 100)]
    rng.shuffle(posts)
    return posts


def post_all(url: str, posts: list[Post]) -> list[dict[str, Any]]:
    """Every event's result, each checked against what it must get."""
    found = []
    with httpx.Client(timeout=30) as client:
        for p in posts:
            answer = client.post(f"{url}/api/v1/events", headers=p.headers, content=p.body)
            assert answer.status_code == 202, (p.headers, p.body[:200], answer.text)
            results = answer.json()["results"]
            assert [r["index"] for r in results] == list(range(len(p.expected)))
            for result, expected in zip(results, p.expected, strict=True):
                if expected is None:
                    assert result["status"] == "accepted", (result, p.body[:200])
                else:
                    assert result["status"] == "rejected", (result, expected)
                    assert (result["code"], result["path"]) == expected, result
                    assert result["message"]
            found += results
    return found


def identities(docs: list[dict[str, Any]]) -> Counter[tuple[str, str]]:
    return Counter((d["source"], d["id"]) for d in docs)


@pytest.fixture(scope="module")
def worker(
    stack: Settings, kafka_admin: KafkaAdminClient, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Worker]:
    """One worker for the module's tests on the shared broker; its topics are deleted after."""
    prefix = f"t{uuid.uuid4().hex[:8]}"
    tmp = tmp_path_factory.mktemp("ingest")
    settings = worker_settings(stack, prefix, tmp, ingest_max_events=MAX_EVENTS)
    ensure_topics(settings)
    publish_reference(settings, SCENARIO)
    w = Worker(settings, tmp / "worker.log").start()
    yield w
    w.stop()
    kafka_admin.delete_topics([t for t in kafka_admin.list_topics() if t.startswith(prefix)])


def test_every_mode_counts_exactly_rejects_with_reasons_and_reposting_changes_nothing(
    worker: Worker,
) -> None:
    settings = worker.settings
    rules = Rules.from_settings(settings)
    posts = scenario_posts(rules, seed=4)
    results = post_all(worker.url, posts)
    assert sum(r["status"] == "accepted" for r in results) == len(SCENARIO.events) + 1
    assert UNICODE_ID in {r["id"] for r in results}
    codes = {r["code"] for r in results if r["status"] == "rejected"}
    assert codes == {code for _, code in SCENARIO.malformed} - {"not_json"}

    messages = read_topic(settings, "activity")
    assert dead_letters(settings) == []  # a rejected event is answered, not dead-lettered
    docs = [json.loads(m.value) for m in messages]
    assert identities(docs) == identities(
        [json.loads(r) for r in SCENARIO.events] + [json.loads(UNICODE_EVENT)]
    )
    for m in messages:
        decoded = rules.decoder.decode(m.value)
        assert not isinstance(decoded, Invalid), m.value[:80]
        assert m.key == decoded.partition_key.encode()  # keyed as streams.producer keys
    assert {m.value for m in messages} >= {raw for p in posts for raw in p.verbatim}
    from_binary = next(d for d in docs if d["id"] == UNICODE_ID)
    assert (from_binary["source"], from_binary["datacontenttype"]) == ("bin.test", JSON_DATA)

    assert post_all(worker.url, posts) == results  # the same answers, event for event
    wait_caught_up(settings, worker=worker)
    assert len(read_topic(settings, "activity")) == 2 * len(messages)  # written twice...
    expected = dataclasses.replace(SCENARIO, events=[*SCENARIO.events, UNICODE_EVENT])
    assert assert_api_equals_recompute(worker, expected) > 500  # ...counted once
    assert dead_letters(settings) == []


def test_refused_requests_write_nothing(worker: Worker) -> None:
    settings = worker.settings
    before = len(read_topic(settings, "activity"))
    good = event("refused-1") | {"type": "note.created"}
    raw = json.dumps(good).encode()
    data = json.dumps(good["data"]).encode()
    headers = binary_headers(good)
    limit = settings.ingest_max_bytes
    cases: list[tuple[list[tuple[str, str]], bytes, int, str]] = [
        ([("Content-Type", STRUCTURED)], b"{not json", 400, "body"),
        ([("Content-Type", STRUCTURED)], b"\xff\xfe not utf-8", 400, "body"),
        ([("Content-Type", BATCH)], raw, 400, "body"),  # not an array
        ([("Content-Type", BATCH)], b"[" + raw, 400, "body"),
        ([("Content-Type", "application/json")], data, 400, "ce-specversion"),
        (headers, b"{oops", 400, "body"),
        ([*headers, ("ce-datacontenttype", "application/json")], data, 400, "ce-datacontenttype"),
        ([*headers, ("ce-id", "again")], data, 400, "ce-id"),  # two ce-id
        ([*headers[:2], ("ce-id", "%C0%A0")], data, 400, "ce-id"),  # overlong UTF-8
        ([("Content-Type", BATCH)], b"[" + b" " * limit + b"]", 413, "body"),
        ([("Content-Type", BATCH)], b"[" + b",".join([raw] * (MAX_EVENTS + 1)) + b"]", 413, "body"),
        ([("Content-Type", "text/plain")], raw, 415, "Content-Type"),
        ([("Content-Type", "application/cloudevents+xml")], raw, 415, "Content-Type"),
        ([("Content-Type", "application/cloudevents-batch+avro")], raw, 415, "Content-Type"),
        ([("Content-Type", f"{STRUCTURED}; charset=latin-1")], raw, 415, "Content-Type"),
        ([], raw, 415, "Content-Type"),
    ]
    url = f"{worker.url}/api/v1/events"
    with httpx.Client(timeout=30) as client:
        for request_headers, body, status, field in cases:
            answer = client.post(url, headers=request_headers, content=body)
            assert answer.status_code == status, (request_headers, body[:60], answer.text)
            assert answer.json()["field"] == field and answer.json()["error"], answer.text
        chunked = client.post(
            url,
            headers={"Content-Type": BATCH},
            content=iter([b" "] * 2 + [b"[" + b" " * limit + b"]"]),
        )
        assert chunked.status_code == 413, chunked.text  # no Content-Length: counted as read
        empty = client.post(url, headers={"Content-Type": BATCH}, content=b"[]")
        assert (empty.status_code, empty.json()) == (202, {"results": []})
        assert client.get(url).status_code == 405
    assert len(read_topic(settings, "activity")) == before


def test_spm_emit_http_posts_batches_and_prints_each_result(worker: Worker, tmp_path: Path) -> None:
    """The CLI validates with its own rules (here: rates that know ZAR), the worker with its
    own (they do not): the worker's rejection is reported per line and exits 1."""
    rates = tmp_path / "rates.csv"
    rates.write_text(DEFAULT_RATES.read_text() + "ZAR,0.055,2000-01-01\n")
    env = {"SPM_RATES_PATH": str(rates), "SPM_INGEST_MAX_EVENTS": "2"}  # two requests
    lines = [
        event("cli-1") | {"type": "note.created"},
        event("cli-2", deal_id="CLI-D1", amount="100", currency="ZAR"),
        event("cli-3") | {"type": "note.created"},
    ]
    file = tmp_path / "events.jsonl"
    file.write_text(jsonl(*lines, "{oops"))
    settings = worker.settings

    refused = spm(settings, "emit", "--http", worker.url, str(file), **env)
    assert refused.returncode == 2 and "not_json: line 4:" in refused.stderr, refused.stderr
    assert refused.stdout == ""

    result = spm(
        settings, "emit", "--http", worker.url, "--token", "t", "--skip-bad", str(file), **env
    )
    assert result.returncode == 1, result.stderr
    printed = [json.loads(line) for line in result.stdout.splitlines()]
    assert [(p["line"], p["id"], p["status"]) for p in printed] == [
        (1, "cli-1", "accepted"),
        (2, "cli-2", "rejected"),
        (3, "cli-3", "accepted"),
    ]
    assert printed[1]["code"] == "unknown_currency" and "ZAR" in printed[1]["message"]
    assert "sent 3 events" in result.stderr and "2 accepted, 1 rejected" in result.stderr
    sent = [json.loads(m.value)["id"] for m in read_topic(settings, "activity")]
    assert sent.count("cli-1") == 1 and "cli-2" not in sent

    again = spm(settings, "emit", "--http", worker.url, "-", stdin=jsonl(lines[0]))
    assert again.returncode == 0 and json.loads(again.stdout)["status"] == "accepted"
    nobody = spm(settings, "emit", "--http", "http://127.0.0.1:9", json.dumps(lines[0]))
    assert nobody.returncode == 2 and "0 accepted before" in nobody.stderr
