"""Contract v1: what is accepted, and the exact reason for everything that is not."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from streams.engine.catalog import MetricCatalog
from streams.engine.errors import Invalid
from streams.engine.events import Decoder, Event, Split
from streams.engine.money import Rates

from .conftest import cloud_event, raw


@pytest.fixture
def decoder(catalog: MetricCatalog, rates: Rates) -> Decoder:
    return Decoder(catalog, rates)


def test_deal_won_is_decoded_with_time_in_utc_and_base_amount(decoder: Decoder) -> None:
    data = {
        "rep_id": "alice",
        "deal_id": "D-1",
        "amount": "200.00",
        "currency": "EUR",
        "splits": [{"rep_id": "bob", "share": 0.25}, {"rep_id": "alice", "share": "0.75"}],
    }
    event = decoder.decode(raw(cloud_event(data=data)))
    assert isinstance(event, Event)
    assert event.time == datetime(2026, 11, 27, 9, 0, tzinfo=UTC)
    assert event.amount == Decimal("200.00")
    # shipped table: EUR = 1.09 USD from 2026-01-01
    assert event.amount_base == Decimal("218.0000")
    assert event.splits == (Split("bob", Decimal("0.25")), Split("alice", Decimal("0.75")))
    assert event.key == ("crm://acme", "evt-1")
    assert event.partition_key == "10:crm://acme\x1fevt-1"  # every copy of the key meets


def test_activity_partitions_by_idempotency_key_and_has_no_deal_fields(decoder: Decoder) -> None:
    doc = cloud_event(type="call.completed", data={"rep_id": "bob", "duration_s": 61.5})
    event = decoder.decode(raw(doc))
    assert isinstance(event, Event)
    assert event.partition_key == "10:crm://acme\x1fevt-1"
    assert (event.deal_id, event.amount, event.splits) == (None, None, None)
    assert not decoder.ignored(event)


def test_canonical_json_round_trips(decoder: Decoder) -> None:
    data = {
        "rep_id": "alice",
        "deal_id": "D-1",
        "amount": "PLACEHOLDER",
        "currency": "GBP",
        "splits": [{"rep_id": "a", "share": "0.5"}, {"rep_id": "b", "share": "0.5"}],
        "note": "é",
    }
    payload = raw(cloud_event(data=data)).replace(b'"PLACEHOLDER"', b"1E3")
    event = decoder.decode(payload)
    assert isinstance(event, Event)
    wire = event.to_json()
    assert b'"amount":"1000"' in wire  # plain decimal text, never 1E+3
    assert b'"time":"2026-11-27T09:00:00+00:00"' in wire
    assert Event.from_json(wire) == event


def test_numbers_stay_exact_decimals_from_their_literal_text(decoder: Decoder) -> None:
    payload = _deal(amount="AMOUNT", ratio="RATIO").replace(b'"AMOUNT"', b"0.10")
    event = decoder.decode(payload.replace(b'"RATIO"', b"0.1000000000000000000001"))
    assert isinstance(event, Event) and event.data is not None
    assert repr(event.amount) == "Decimal('0.10')"  # never the float 0.1
    assert repr(event.data["ratio"]) == "Decimal('0.1000000000000000000001')"
    wire = event.to_json()
    assert b'"ratio":0.1000000000000000000001' in wire  # written as read, not via float
    assert repr(Event.from_json(wire).data) == repr(event.data)


@pytest.mark.parametrize(
    "wire",
    [
        b'{"source": "x"}',
        b"not json",
        Event("s", "i", "t", datetime(2026, 1, 1, tzinfo=UTC), "r").to_json().replace(b"+00", b""),
        b'{"source":"s","id":"i","type":"t","time":"2026-01-01T00:00:00+00:00","rep_id":"r",'
        b'"deal_id":null,"amount":"ten","currency":null,"amount_base":null,"splits":null,'
        b'"data":{}}',
    ],
)
def test_from_json_refuses_garbage(wire: bytes) -> None:
    with pytest.raises(ValueError):
        Event.from_json(wire)


def test_unknown_types_are_kept_but_ignored_unless_strict(
    catalog: MetricCatalog, rates: Rates
) -> None:
    doc = raw(cloud_event(type="sms.sent", data={"rep_id": "a"}))
    lenient = Decoder(catalog, rates).decode(doc)
    assert isinstance(lenient, Event)
    assert Decoder(catalog, rates).ignored(lenient)
    strict = Decoder(catalog, rates, strict=True).decode(doc)
    assert strict == Invalid("unknown_type", strict.message, "type")  # type: ignore[union-attr]


def test_retractions_are_not_ignored(decoder: Decoder) -> None:
    event = decoder.decode(raw(cloud_event(type="deal.lost", data={"rep_id": "a", "deal_id": "D"})))
    assert isinstance(event, Event)
    assert not decoder.ignored(event)
    assert event.partition_key == "10:crm://acme\x1fevt-1"


def test_copy_digest_tells_copies_apart_by_what_they_count_for(decoder: Decoder) -> None:
    """Copies differing in rep, type, day, deal or amount are different copies; copies
    differing only in ``data`` extras, below the millisecond (the history's precision) or in
    the time zone they were written in are one copy."""

    def digest(**overrides: object) -> int:
        data = {"rep_id": "alice", "deal_id": "D-1", "amount": "200.00", "currency": "EUR"}
        doc = cloud_event(data=data | overrides.pop("data", {}), **overrides)
        event = decoder.decode(raw(doc))
        assert isinstance(event, Event)
        return event.copy_digest

    same = digest()
    assert digest(data={"note": "re-sent"}) == same
    assert digest(time="2026-11-27T10:00:00.0004+01:00") == same
    assert digest(data={"amount": "200"}) == same  # equal amounts print alike
    for different in (
        digest(data={"rep_id": "bob"}),
        digest(data={"deal_id": "D-2"}),
        digest(data={"amount": "201"}),
        digest(time="2026-11-28T10:00:00+01:00"),
        digest(type="deal.lost"),
    ):
        assert different != same


def _code(decoder: Decoder, payload: bytes) -> tuple[str, str]:
    result = decoder.decode(payload)
    assert isinstance(result, Invalid), result
    return result.code, result.path


def _deal(**data: object) -> bytes:
    base = {"rep_id": "alice", "deal_id": "D-1", "amount": "10", "currency": "USD"}
    base.update(data)
    return raw(cloud_event(data=base))


@pytest.mark.parametrize(
    ("payload", "code", "path"),
    [
        (b"\xff\xfe", "not_utf8", ""),
        (b'{"id": ', "not_json", ""),
        (b'{"amount": NaN}', "not_json", ""),
        (b"[1, 2]", "schema", ""),
        (raw(cloud_event(specversion="0.3")), "schema", "specversion"),
        (raw(cloud_event(id="")), "schema", "id"),
        (raw(cloud_event(id="x" * 129)), "schema", "id"),
        (raw(cloud_event(source="")), "schema", "source"),
        (raw({k: v for k, v in cloud_event().items() if k != "time"}), "schema", "time"),
        (raw(cloud_event(data=[])), "schema", "data"),
        (raw(cloud_event(id="", type=5)), "schema", "type"),  # jsonschema's best_match
        (raw(cloud_event(data={"x": 1})), "schema", "data.deal_id"),
        (_deal(splits=[{"rep_id": 5, "share": 1}, 7]), "schema", "data.splits[1]"),
        (b'{"id": "\\ud800"}', "not_json", ""),  # a lone surrogate cannot be written back
        (raw(cloud_event(type="email.sent", data={"x": 1})), "schema", "data.rep_id"),
        (raw(cloud_event(type="email.sent", data={"rep_id": ""})), "schema", "data.rep_id"),
        (
            raw(cloud_event(data={"rep_id": "a", "amount": "1", "currency": "USD"})),
            "schema",
            "data.deal_id",
        ),
        (raw(cloud_event(type="deal.reopened", data={"rep_id": "a"})), "schema", "data.deal_id"),
        (_deal(currency="usd"), "schema", "data.currency"),
        (_deal(splits=[{"rep_id": "a"}]), "schema", "data.splits[0].share"),
        (_deal(splits=[]), "schema", "data.splits"),
        (raw(cloud_event(time="2026-11-27T10:00:00")), "bad_time", "time"),
        (raw(cloud_event(time="27/11/2026 10:00 +01:00")), "bad_time", "time"),
        (raw(cloud_event(time="2026-02-30T10:00:00Z")), "bad_time", "time"),
        (_deal(amount="-5"), "bad_amount", "data.amount"),
        (_deal(amount=-5), "bad_amount", "data.amount"),
        (_deal(amount="1e3"), "bad_amount", "data.amount"),
        (_deal(amount="ten"), "bad_amount", "data.amount"),
        (
            _deal(splits=[{"rep_id": "a", "share": "0.5"}, {"rep_id": "b", "share": "0.4"}]),
            "bad_splits",
            "data.splits",
        ),
        (
            _deal(splits=[{"rep_id": "a", "share": "0.5"}, {"rep_id": "a", "share": "0.5"}]),
            "bad_splits",
            "data.splits",
        ),
        (
            _deal(splits=[{"rep_id": "a", "share": "1.5"}, {"rep_id": "b", "share": "-0.5"}]),
            "bad_splits",
            "data.splits[0].share",
        ),
        (
            _deal(splits=[{"rep_id": "a", "share": 0}, {"rep_id": "b", "share": 1}]),
            "bad_splits",
            "data.splits[0].share",
        ),
        (_deal(currency="XYZ"), "unknown_currency", "data.currency"),
    ],
)
def test_every_rejection_has_its_code_and_field(
    decoder: Decoder, payload: bytes, code: str, path: str
) -> None:
    assert _code(decoder, payload) == (code, path)


def test_size_limit_comes_first(catalog: MetricCatalog, rates: Rates) -> None:
    small = Decoder(catalog, rates, max_bytes=100)
    payload = raw(cloud_event(data={"rep_id": "a" * 200}))
    assert _code(small, payload) == ("too_large", "")
    assert isinstance(Decoder(catalog, rates).decode(b"x" * 70_000), Invalid)
    assert Decoder(catalog, rates).decode(b"x" * 70_000).code == "too_large"  # type: ignore[union-attr]


def test_splits_summing_to_one_only_after_rounding_are_rejected(decoder: Decoder) -> None:
    thirds = [{"rep_id": r, "share": "0.3333333333333333333333333333"} for r in "abc"]
    assert _code(decoder, _deal(splits=thirds))[0] == "bad_splits"
    exact = [
        {"rep_id": "a", "share": "0.3333"},
        {"rep_id": "b", "share": "0.3333"},
        {"rep_id": "c", "share": "0.3334"},
    ]
    assert isinstance(decoder.decode(_deal(splits=exact)), Event)


def test_decoding_never_raises_on_odd_json(decoder: Decoder) -> None:
    deep, huge = b"[" * 5000 + b"]" * 5000, b'{"id": ' + b"9" * 5000 + b"}"
    for payload in (b"null", b"1", b'"x"', b"{}", b'{"data": {"rep_id": 5}}', b"[" * 5000, deep,
                    huge, b"\xef\xbb\xbf{}"):  # fmt: skip
        assert isinstance(decoder.decode(payload), Invalid)


@pytest.mark.parametrize(
    "payload",
    [
        # the UTC instant would leave datetime's range
        raw(cloud_event(time="0001-01-01T00:00:00+05:30")),
        raw(cloud_event(time="9999-12-31T23:59:59-05:00")),
        # too large to convert to the base currency exactly
        _deal(currency="EUR", amount="AMOUNT").replace(b'"AMOUNT"', b"1E999999999"),
    ],
)
def test_decoding_never_raises_at_the_edges_of_time_and_amount(
    decoder: Decoder, payload: bytes
) -> None:
    assert isinstance(decoder.decode(payload), Invalid)
