"""The hand-written decoder against the one it replaced: ``json.loads`` and ``jsonschema``.

For every document (valid ones from hypothesis-jsonschema, realistic events, near misses
with fields removed or retyped, arbitrary JSON, damaged bytes) both must agree: the same
``Event`` field by field, or the same rejection code and field path. So the schema checks
accept exactly what ``schemas/event.v1.schema.json``'s structural keywords accept, and report
what ``best_match`` reported.

The schema also states the value rules JSON Schema can express (time syntax, amount >= 0, 0 <
share <= 1), which the decoder reports with their own codes (``bad_time``, ``bad_amount``,
``bad_splits``) in its semantic stage; the last property checks that both reject the same
documents, except for reasons beyond JSON Schema.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterator
from dataclasses import fields
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from functools import reduce
from operator import getitem
from pathlib import Path
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis_jsonschema import from_schema
from jsonschema import Draft202012Validator
from jsonschema.exceptions import best_match

from streams.engine.catalog import DEAL_TYPES, DEAL_WON, RETRACTION_TYPES, MetricCatalog
from streams.engine.errors import Invalid
from streams.engine.events import Decoder, Event
from streams.engine.money import Rates

SCHEMA = json.loads(
    (Path(__file__).parents[3] / "schemas" / "event.v1.schema.json").read_text(encoding="utf-8")
)
VALIDATOR = Draft202012Validator(SCHEMA)
DECODERS = {
    strict: Decoder(MetricCatalog.load(), Rates.load(None, "USD"), strict=strict)
    for strict in (False, True)
}
PROPERTY = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
MANY = settings(PROPERTY, max_examples=1000)  # cheap examples, rare interactions


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


#: The schema's value rules, by the field they constrain: the decoder's semantic codes.
SEMANTIC_FIELDS = {"time": "bad_time", "amount": "bad_amount", "share": "bad_splits"}
VALUE_KEYWORDS = frozenset({"pattern", "minimum", "exclusiveMinimum", "maximum"})


def semantic_code(error: Any) -> str | None:
    """The decoder's code for a schema error on a value rule; None for a structural one."""
    at = list(error.absolute_path)
    if error.validator in VALUE_KEYWORDS and at and at[-1] in SEMANTIC_FIELDS:
        return SEMANTIC_FIELDS[at[-1]]
    return None


def parse_json(raw: bytes) -> Any:
    return json.loads(raw.decode("utf-8"), parse_float=Decimal, parse_constant=_no_constant)


def reference_decode(decoder: Decoder, raw: bytes) -> Event | Invalid:
    """The decoder as it was: ``json.loads`` with Decimal floats, then ``jsonschema``'s
    ``best_match`` over the structural keywords; the semantic rules (not replaced) are the
    decoder's own.

    One difference is intended: strings with a lone surrogate escape (``"\\ud800"``) are not
    JSON here either. The old decoder took them, and then ``Event.to_json`` raised.
    """
    if len(raw) > decoder.max_bytes:
        return Invalid("too_large", "")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return Invalid("not_utf8", f"not UTF-8 at byte {exc.start}")
    try:
        doc = json.loads(text, parse_float=Decimal, parse_constant=_no_constant)
        json.dumps(doc, ensure_ascii=False, default=str).encode()
    except (ValueError, RecursionError) as exc:  # UnicodeEncodeError is a ValueError
        return Invalid("not_json", str(exc))
    error = best_match(e for e in VALIDATOR.iter_errors(doc) if semantic_code(e) is None)
    if error is None:
        return decoder._semantic(doc)
    at = list(error.absolute_path)
    if error.validator == "required":
        at.append(next(k for k in error.validator_value if k not in error.instance))
    path = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in at).lstrip(".")
    return Invalid("schema", error.message, path)


def assert_same(raw: bytes, strict: bool = False) -> Event | Invalid:
    decoder = DECODERS[strict]
    got, want = decoder.decode(raw), reference_decode(decoder, raw)
    if isinstance(want, Event):
        assert isinstance(got, Event), (got, raw)
        for field in fields(Event):  # repr: 0.10 stays Decimal('0.10'), never 0.1 or a float
            name = field.name
            assert repr(getattr(got, name)) == repr(getattr(want, name)), (name, raw)
    else:
        assert isinstance(got, Invalid), (want, raw)
        assert (got.code, got.path) == (want.code, want.path), (got, want, raw)
        if want.code not in ("schema", "not_json"):  # their wording is the decoder's own
            assert got.message == want.message
    return got


_ENCODE = msgspec.json.Encoder(decimal_format="number")  # Decimal as its literal: 0.10, 1E+3


def encode(doc: object, ascii_only: bool = False) -> bytes:
    """JSON bytes, with Decimals as number literals; optionally with \\u escapes only."""
    text = _ENCODE.encode(doc).decode()
    if ascii_only:  # non-ASCII only occurs inside strings; json.dumps gives surrogate pairs
        text = re.sub(r"[^\x00-\x7f]", lambda m: json.dumps(m.group())[1:-1], text)
    return text.encode()


# --- strategies -------------------------------------------------------------------------------
decimal_literals = st.from_regex(
    r"-?(0|[1-9][0-9]{0,6})(\.[0-9]{1,6})?([eE][+-]?[0-9]{1,2})?", fullmatch=True
).map(Decimal)
edge_values: st.SearchStrategy[Any] = st.sampled_from(  # what each schema keyword turns on
    ["", [], {}, None, 0, True, "1.0", DEAL_WON, *sorted(RETRACTION_TYPES), "USD", "usd",
     "USD\n", "x" * 128, "x" * 129]
)  # fmt: skip
scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(10**19, 10**40)
    | st.floats(allow_nan=False, allow_infinity=False)
    | decimal_literals
    | st.text(max_size=8)
    | edge_values
)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=8,
)
names = st.text(min_size=1, max_size=6) | st.sampled_from(["alice", "bob", "carol", "D-1"])
ids = names | st.text(min_size=127, max_size=129)  # maxLength 128
offsets = st.sampled_from(
    [UTC, timezone(timedelta(hours=5, minutes=30)), timezone(-timedelta(hours=8))]
)
# years 1 and 9999 are left out: parse_instant raises there (test_events.py marks it)
instants = st.datetimes(datetime(2, 1, 1), datetime(9998, 12, 31), timezones=offsets)
times = instants.map(lambda t: t.isoformat()) | st.sampled_from(
    ["2026-11-27T10:00:00Z", "2026-11-27t10:00:00.1234567+01:00", "2026-11-27 10:00:00-00:00",
     "2026-11-27T10:00:00", "2026-02-30T10:00:00Z", "27/11/2026", "2026-11-27T24:00:00Z",
     "2026-13-01T00:00:00Z", "0000-01-01T00:00:00Z", "2026-11-27T10:00:00Z\n",
     "2026-11-27T10:00:00+24:00", "9999-12-31T23:00:00-05:00", "2026-11-27T10:00:60Z",
     "2026-11-27T10:00:00.Z", "\u0662026-11-27T10:00:00Z"]
)  # fmt: skip
amounts = (
    st.decimals(min_value=0, max_value=10**9, places=2).map(str)
    | st.decimals(min_value=-5, max_value=10**9, allow_nan=False, allow_infinity=False)
    | st.integers(-5, 10**30)
    | st.sampled_from(
        ["1e3", "ten", "-0", "-0.00", "0.10", " 1", "1\n", "+1", ".5", "1.", "\u0661"]
    )
)
SHARE_SETS: list[list[Any]] = (
    [["0.5", "0.5"], [Decimal("0.25"), "0.75"], ["0.3333", "0.3333", "0.3334"], [1],
     ["0.5", "0.4"], [Decimal("1.5"), Decimal("-0.5")], [0, 1], ["1/2", "1/2"], ["1.0"], ["01"],
     ["0.5\n", "0.5"], [".5", ".5"], ["-0.5", "1.5"], [Decimal("1E-400"), 1], ["00.50", "0.5"]]
)  # fmt: skip
share_sets = st.sampled_from(SHARE_SETS)


# Strategies are built once, here, not inside the composites below: a strategy built per draw is
# validated per draw, which cost ~15 % of this module's time.
kinds = st.sampled_from([*sorted(DEAL_TYPES), DEAL_WON, "call.completed", "sms.sent"])
currencies = st.sampled_from(["USD", "EUR", "GBP", "XYZ", "usd", "USD\n"])
split_reps = {n: st.lists(names, min_size=n, max_size=n) for n in {len(s) for s in SHARE_SETS}}
extra_data = st.dictionaries(st.text(max_size=4).map("x_".__add__), json_values, max_size=2)
changes = st.sampled_from(["remove", "edge", "any"])


@st.composite
def events(draw: st.DrawFn) -> dict[str, Any]:
    """Documents like producers send: mostly accepted, sometimes semantically off."""
    kind = draw(kinds)
    data: dict[str, Any] = {"rep_id": draw(names)}
    if kind in DEAL_TYPES:
        data["deal_id"] = draw(names)
    if kind == DEAL_WON:
        data["amount"] = draw(amounts)
        data["currency"] = draw(currencies)
        if draw(st.booleans()):
            shares = draw(share_sets)
            reps = draw(split_reps[len(shares)])
            data["splits"] = [{"rep_id": r, "share": s} for r, s in zip(reps, shares, strict=True)]
    data |= draw(extra_data)
    doc = {"specversion": "1.0", "id": draw(ids), "source": draw(names), "type": kind,
           "time": draw(times), "data": data}  # fmt: skip
    if draw(st.booleans()):
        doc["subject"] = draw(names)
    return doc


def _paths(value: Any, at: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """The path of every value in a JSON document, the document's own (``()``) first."""
    yield at
    if isinstance(value, dict | list):
        for key, item in value.items() if isinstance(value, dict) else enumerate(value):
            yield from _paths(item, (*at, key))


def _property_names(schema: Any) -> Iterator[str]:
    if isinstance(schema, dict):
        yield from schema.get("properties", ())
        for sub in schema.values():
            yield from _property_names(sub)
    elif isinstance(schema, list):
        for sub in schema:
            yield from _property_names(sub)


SCHEMA_NAMES = frozenset(_property_names(SCHEMA))


def near_misses(most: int) -> st.SearchStrategy[dict[str, Any]]:
    """Realistic documents with up to ``most`` values removed or replaced, mostly ones the
    schema names: one change shows each keyword's own report; several compete for the path."""

    @st.composite
    def mutated(draw: st.DrawFn) -> dict[str, Any]:
        doc = copy.deepcopy(draw(events()))
        for _ in range(draw(st.integers(1, most))):
            paths = list(_paths(doc))[1:]
            named = [p for p in paths if isinstance(p[-1], int) or p[-1] in SCHEMA_NAMES]
            favour_named = draw(st.integers(0, 3)) > 0  # three times in four
            pool = named if named and favour_named else paths
            at = draw(st.sampled_from(pool))
            parent = reduce(getitem, at[:-1], doc)
            change = draw(changes)
            if change == "remove":
                del parent[at[-1]]
            else:
                parent[at[-1]] = draw(edge_values if change == "edge" else json_values)
        return doc

    return mutated()


# --- properties -------------------------------------------------------------------------------
@settings(PROPERTY, max_examples=150)  # slow to generate
@given(from_schema(SCHEMA), st.none() | times, st.booleans(), st.booleans())
def test_schema_valid_documents(
    doc: dict[str, Any], time: str | None, ascii_only: bool, strict: bool
) -> None:
    if time is not None:
        doc["time"] = time
    result = assert_same(encode(doc, ascii_only), strict)
    assert not (isinstance(result, Invalid) and result.code == "schema")


@MANY
@given(events() | near_misses(1), st.booleans(), st.booleans())
def test_events_and_near_misses(doc: dict[str, Any], ascii_only: bool, strict: bool) -> None:
    assert_same(encode(doc, ascii_only), strict)


@MANY
@given(near_misses(4))
def test_competing_violations(doc: dict[str, Any]) -> None:
    assert_same(encode(doc))


@PROPERTY
@given(json_values)
def test_any_json_value(value: Any) -> None:
    assert_same(encode(value))


@PROPERTY
@given(
    events(),
    st.lists(
        st.tuples(st.integers(0), st.integers(0, 3), st.binary(max_size=3)), min_size=1, max_size=3
    ),
)
def test_damaged_bytes(doc: dict[str, Any], edits: list[tuple[int, int, bytes]]) -> None:
    """Bytes cut out or spliced in: bad UTF-8 and bad JSON are told apart as before."""
    raw = encode(doc)
    for at, cut, splice in edits:
        at %= len(raw) + 1
        raw = raw[:at] + splice + raw[at + cut :]
    assert_same(raw)


_VALID = encode(
    {
        "specversion": "1.0",
        "id": "e",
        "source": "s",
        "type": DEAL_WON,
        "time": "2026-11-27T10:00:00Z",
        "data": {"rep_id": "a", "deal_id": "D", "amount": "AMOUNT", "currency": "USD"},
    }
)
_AMOUNTS = (b"0.10", b"1E3", b"-0", b"-0.0", b"1e400", b"1.5e-400", b"1" * 40, b"1" * 5000,
            b"NaN", b"Infinity", b"-Infinity", b"1.", b"01", b"true", b'"\\u0031\\u0030"',
            b'"\\ud800"', b'"\\ud83d\\ude00"', b"[" * 2000)  # fmt: skip


@pytest.mark.parametrize(
    "raw",
    [
        *(_VALID.replace(b'"AMOUNT"', literal) for literal in _AMOUNTS),
        _VALID.replace(b'"type"', b'"type":"call.completed","type"'),  # duplicates: last wins
        _VALID.replace(b'"time"', b'"type":"call.completed","time"'),
        _VALID.replace(b'"data"', b'"data":{},"data"'),
        b"\xef\xbb\xbf" + _VALID,
        _VALID + b" \n\t",
        _VALID + b"{}",
        b'{"data": {"rep_id": "a"}, "data": 5}',
        b"[" * 2000 + b"]" * 2000,
        b'{"x":' * 900 + b"1" + b"}" * 900,
    ],
)
def test_odd_documents(raw: bytes) -> None:
    assert_same(raw)


#: Rejections for a reason JSON Schema cannot state: dates that do not exist and instants out
#: of datetime's range (their syntax matches), shares not summing to 1 or a rep twice (path
#: ``data.splits``), currencies missing from the rates table.
BEYOND_JSON_SCHEMA = {("bad_time", "time"), ("bad_splits", "data.splits")}


@MANY
@given(events() | near_misses(1) | near_misses(3))
def test_the_schema_rejects_what_the_decoder_rejects(doc: dict[str, Any]) -> None:
    """Producers validating against the published schema are not surprised: a document the
    schema accepts is rejected by the decoder only for a reason beyond JSON Schema, and one it
    rejects is rejected by the decoder, which names a field the schema names too."""
    raw = encode(doc)
    got = DECODERS[False].decode(raw)
    errors = list(VALIDATOR.iter_errors(parse_json(raw)))
    if errors:
        assert isinstance(got, Invalid), (raw, [e.message for e in errors])
        if got.code != "schema" and not _beyond(got):  # a value rule: the same field named
            paths = {_path(e) for e in errors if semantic_code(e) == got.code}
            assert got.path in paths, (got, paths, raw)
    elif isinstance(got, Invalid):
        assert _beyond(got), (got, raw)


def _beyond(invalid: Invalid) -> bool:
    return (invalid.code, invalid.path) in BEYOND_JSON_SCHEMA or invalid.code == "unknown_currency"


def _path(error: Any) -> str:
    at = error.absolute_path
    return "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in at).lstrip(".")
