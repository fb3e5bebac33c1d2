"""The event contract v1: decode untrusted CloudEvents into ``Event`` values, or say why not.

Decoding is ordered cheapest-first (size, UTF-8 and JSON in one pass, JSON Schema, then the
semantic checks a schema cannot express) and never raises: every rejection is an ``Invalid``
value that the pipeline routes to the DLQ with its code and field path. Accepted events
travel on ``spm.events`` in the canonical JSON of ``Event.to_json`` so later stages need no
re-validation and amounts stay exact decimal strings.

``schemas/event.v1.schema.json`` is checked by hand-written code rather than a JSON Schema
library: a generic validator costs ten times the rest of decoding on the hot path. The checks
mirror the schema's structural keywords one for one and report the field ``jsonschema``'s
``best_match`` would; the schema's value rules (time syntax, amount >= 0, 0 < share <= 1) are
the semantic stage's, with their own codes. ``tests/unit/engine/test_decoder_schema.py``
proves both against ``jsonschema``, and that the schema rejects every event the decoder
rejects for a reason JSON Schema can state.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, localcontext
from hashlib import blake2b
from typing import Any, NamedTuple

import msgspec

from streams.engine.catalog import DEAL_TYPES, DEAL_WON, RETRACTION_TYPES, MetricCatalog
from streams.engine.errors import Invalid
from streams.engine.instants import epoch_us, format_instant, parse_instant
from streams.engine.money import Rates, decimal_text, parse_decimal

_SEP = "\x1f"


@dataclass(frozen=True, slots=True)
class Split:
    """A rep's share of a won deal's credit (0 < share <= 1)."""

    rep_id: str
    share: Decimal


@dataclass(frozen=True, slots=True)
class Event:
    """An accepted event. ``time`` is UTC; deal fields are None for activities."""

    source: str
    id: str
    type: str
    time: datetime
    rep_id: str
    deal_id: str | None = None
    amount: Decimal | None = None
    currency: str | None = None
    amount_base: Decimal | None = None
    splits: tuple[Split, ...] | None = None
    data: dict[str, Any] | None = None

    @property
    def key(self) -> tuple[str, str]:
        """The idempotency key: a second event with the same pair changes nothing."""
        return (self.source, self.id)

    @property
    def partition_key(self) -> str:
        """Every event by its idempotency key: all copies of one ``(source, id)`` meet in one
        partition, the only place that can decide which of them counts."""
        return f"{len(self.source)}:{self.source}{_SEP}{self.id}"

    @property
    def copy_digest(self) -> int:
        """Which copy of an idempotency key counts: the one with the smallest digest. It is
        taken over what the copy counts for (type, time to the millisecond as the history
        keeps it, rep, deal, amount, currency, splits), so it does not depend on arrival order
        or on the rates in force, and copies differing only in ``data`` are one copy. 48 bits
        keep sums of digests (deal versions) exact in JSON."""
        splits = (
            ""
            if self.splits is None
            else ";".join(f"{s.rep_id}={decimal_text(s.share)}" for s in self.splits)
        )
        text = _SEP.join(
            (
                self.type,
                str(epoch_us(self.time) // 1000),
                self.rep_id,
                self.deal_id or "",
                "" if self.amount is None else decimal_text(self.amount),
                self.currency or "",
                splits,
            )
        )
        return int.from_bytes(blake2b(text.encode(), digest_size=6).digest(), "big")

    def to_json(self) -> bytes:
        """Canonical JSON for ``spm.events``: amounts as plain decimal strings, time in UTC,
        numbers in ``data`` written exactly as they were read."""
        return _WRITE.encode(
            _Canonical(
                source=self.source,
                id=self.id,
                type=self.type,
                time=format_instant(self.time),
                rep_id=self.rep_id,
                deal_id=self.deal_id,
                amount=None if self.amount is None else decimal_text(self.amount),
                currency=self.currency,
                amount_base=None if self.amount_base is None else decimal_text(self.amount_base),
                splits=None
                if self.splits is None
                else [_CanonicalSplit(s.rep_id, decimal_text(s.share)) for s in self.splits],
                data=self.data if self.data is not None else {},
            )
        )

    @classmethod
    def from_json(cls, raw: bytes) -> Event:
        """Read the canonical form back. It is our own output, so a malformed message is a bug
        upstream and raises ``ValueError`` rather than being silently skipped."""
        try:
            wire = _READ_CANONICAL.decode(raw)
            time = parse_instant(wire.time)
            if time is None:
                raise ValueError(f"bad time {wire.time!r}")
            return cls(
                source=wire.source,
                id=wire.id,
                type=wire.type,
                time=time,
                rep_id=wire.rep_id,
                deal_id=wire.deal_id,
                amount=None if wire.amount is None else Decimal(wire.amount),
                currency=wire.currency,
                amount_base=None if wire.amount_base is None else Decimal(wire.amount_base),
                splits=None
                if wire.splits is None
                else tuple(Split(s.rep_id, Decimal(s.share)) for s in wire.splits),
                data=wire.data,
            )
        except (ArithmeticError, msgspec.DecodeError, RecursionError) as exc:
            raise ValueError(f"not a canonical event: {exc}") from exc


class _CanonicalSplit(msgspec.Struct):
    rep_id: str
    share: str


class _Canonical(msgspec.Struct):
    """The ``spm.events`` wire form; typed so that reading it back is one validated pass."""

    source: str
    id: str
    type: str
    time: str
    rep_id: str
    deal_id: str | None
    amount: str | None
    currency: str | None
    amount_base: str | None
    splits: list[_CanonicalSplit] | None
    data: dict[str, Any]


# JSON numbers with a fraction or exponent become Decimal from their literal text (0.1 stays
# exactly 0.1, as with json.loads(parse_float=Decimal)); NaN and Infinity are not JSON.
_READ = msgspec.json.Decoder(float_hook=Decimal)
_READ_CANONICAL = msgspec.json.Decoder(_Canonical, float_hook=Decimal)
_WRITE = msgspec.json.Encoder(decimal_format="number")


class Decoder:
    """Validates raw messages against contract v1."""

    __slots__ = ("catalog", "max_bytes", "rates", "strict")

    def __init__(
        self, catalog: MetricCatalog, rates: Rates, *, strict: bool = False, max_bytes: int = 65536
    ) -> None:
        self.catalog = catalog
        self.rates = rates
        self.strict = strict
        self.max_bytes = max_bytes

    def ignored(self, event: Event) -> bool:
        """Kept in history but counted toward no metric."""
        return not self.catalog.counts(event.type)

    def decode(self, raw: bytes) -> Event | Invalid:
        if len(raw) > self.max_bytes:
            return Invalid("too_large", f"{len(raw)} bytes > limit {self.max_bytes}")
        try:
            doc = _READ.decode(raw)
        except (msgspec.DecodeError, RecursionError) as exc:
            return _unreadable(raw, exc)
        violations = _violations(doc)
        if violations:
            return _schema_invalid(max(violations, key=_relevance))
        return self._semantic(doc)

    def _semantic(self, doc: dict[str, Any]) -> Event | Invalid:
        event_type: str = doc["type"]
        if self.strict and not self.catalog.known(event_type):
            return Invalid(
                "unknown_type", f"event type {event_type!r} counts toward no metric", "type"
            )
        time = parse_instant(doc["time"])
        if time is None:
            return Invalid("bad_time", f"not an RFC 3339 time with offset: {doc['time']!r}", "time")
        data: dict[str, Any] = doc["data"]
        deal_id = data.get("deal_id") if event_type in DEAL_TYPES else None
        amount = currency = amount_base = splits = None
        if event_type == DEAL_WON:
            amount = parse_decimal(data["amount"])
            if amount is None or amount < 0:
                return Invalid(
                    "bad_amount",
                    f"amount must be a decimal >= 0: {data['amount']!r}",
                    "data.amount",
                )
            parsed = _splits(data.get("splits"))
            if isinstance(parsed, Invalid):
                return parsed
            splits = parsed
            currency = data["currency"]
            converted = self.rates.to_base(amount, currency, time)
            if isinstance(converted, Invalid):
                return converted
            amount_base = converted
        return Event(
            source=doc["source"],
            id=doc["id"],
            type=event_type,
            time=time,
            rep_id=data["rep_id"],
            deal_id=deal_id,
            amount=amount,
            currency=currency,
            amount_base=amount_base,
            splits=splits,
            data=data,
        )


def _unreadable(raw: bytes, error: Exception) -> Invalid:
    """The parser rejects bad UTF-8 too: tell it from bad JSON, as the contract checks it first."""
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return Invalid("not_utf8", f"not UTF-8 at byte {exc.start}")
    return Invalid("not_json", f"not JSON: {error}")


def _splits(raw: list[dict[str, Any]] | None) -> tuple[Split, ...] | Invalid | None:
    if raw is None:
        return None
    splits = []
    for i, item in enumerate(raw):
        share = parse_decimal(item["share"])
        if share is None or share <= 0 or share > 1:
            return Invalid(
                "bad_splits",
                f"share must be a decimal in (0, 1]: {item['share']!r}",
                f"data.splits[{i}].share",
            )
        splits.append(Split(item["rep_id"], share))
    if len({s.rep_id for s in splits}) != len(splits):
        return Invalid("bad_splits", "a rep appears twice in splits", "data.splits")
    with localcontext() as ctx:
        ctx.prec = 200  # shares must sum to exactly 1, not to 1 after rounding
        total = sum((s.share for s in splits), Decimal(0))
    if total != 1:
        return Invalid("bad_splits", f"shares sum to {total}, not 1", "data.splits")
    return tuple(splits)


# --- schemas/event.v1.schema.json, keyword for keyword -----------------------------------------


class _Violation(NamedTuple):
    """One way a document breaks the schema, where ``jsonschema`` reports it."""

    at: tuple[str | int, ...]  # the failing value (jsonschema's ``absolute_path``)
    untyped: bool  # the value lacks its subschema's "type", or there is none: ranks first
    message: str
    missing: str = ""  # of a "required" error: the first missing property, shown in the path


_Check = Callable[[Any], tuple[_Violation, ...]]
_OK: tuple[_Violation, ...] = ()
_KINDS = {dict: "an object", list: "an array", str: "a string", int: "a number",
          Decimal: "a number", bool: "a boolean", type(None): "null"}  # fmt: skip


def _relevance(v: _Violation) -> tuple[int, tuple[str | int, ...], bool]:
    """``jsonschema.exceptions.relevance``: the shallowest error, then the greatest path, then
    an untyped one; ``max`` keeps the first of equals, as ``best_match`` does."""
    return (-len(v.at), v.at, v.untyped)


def _schema_invalid(v: _Violation) -> Invalid:
    at = (*v.at, v.missing) if v.missing else v.at
    path = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in at).lstrip(".")
    return Invalid("schema", v.message, path)


def _wrong_type(value: object, expected: str) -> tuple[_Violation, ...]:
    return (_Violation((), True, f"must be {expected}, not {_KINDS[type(value)]}"),)


def _inside(key: str | int, violations: tuple[_Violation, ...]) -> list[_Violation]:
    return [v._replace(at=(key, *v.at)) for v in violations]


def _string(
    *, non_empty: bool = False, max_length: int | None = None, pattern: str | None = None
) -> _Check:
    """``{"type": "string"}`` with ``minLength: 1``, ``maxLength``, ``pattern`` (re.search)."""
    regex = None if pattern is None else re.compile(pattern)

    def check(value: Any) -> tuple[_Violation, ...]:
        if not isinstance(value, str):
            return _wrong_type(value, "a string")
        if non_empty and not value:
            return (_Violation((), False, "must not be empty"),)
        if max_length is not None and len(value) > max_length:
            return (_Violation((), False, f"must be at most {max_length} characters long"),)
        if regex is not None and not regex.search(value):
            return (_Violation((), False, f"must match {pattern}"),)
        return _OK

    return check


def _const(expected: str) -> _Check:
    def check(value: Any) -> tuple[_Violation, ...]:
        return _OK if value == expected else (_Violation((), True, f"must be {expected!r}"),)

    return check


def _string_or_number(value: Any) -> tuple[_Violation, ...]:
    """``{"type": ["string", "number"]}``: booleans are not numbers."""
    if isinstance(value, str | int | Decimal) and not isinstance(value, bool):
        return _OK
    return _wrong_type(value, "a string or a number")


def _array(min_items: int, items: _Check) -> _Check:
    def check(value: Any) -> tuple[_Violation, ...]:
        if not isinstance(value, list):
            return _wrong_type(value, "an array")
        found = []
        if len(value) < min_items:
            found.append(_Violation((), False, f"must have at least {min_items} item(s)"))
        for i, item in enumerate(value):
            if errors := items(item):
                found += _inside(i, errors)
        return tuple(found)

    return check


def _object(required: tuple[str, ...], properties: dict[str, _Check], typed: bool = True) -> _Check:
    """``{"type": "object", "required", "properties"}``; without "type" (``typed=False``) it
    passes anything but an object, and its "required" errors rank as untyped."""

    required_set = frozenset(required)
    checks = tuple(properties.items())

    def check(value: Any) -> tuple[_Violation, ...]:
        if not isinstance(value, dict):
            return _wrong_type(value, "an object") if typed else _OK
        found: list[_Violation] = []
        if not value.keys() >= required_set:
            missing = next(name for name in required if name not in value)
            found.append(_Violation((), not typed, f"{missing!r} is required", missing))
        for name, sub in checks:
            if name in value and (errors := sub(value[name])):
                found += _inside(name, errors)
        return tuple(found)

    return check


_NON_EMPTY = _string(non_empty=True)
_TEXT = _string()
_EVENT = _object(
    ("specversion", "id", "source", "type", "time", "data"),
    {
        "specversion": _const("1.0"),
        "id": _string(non_empty=True, max_length=128),
        "source": _NON_EMPTY,
        "type": _NON_EMPTY,
        "time": _TEXT,
        "subject": _TEXT,
        "datacontenttype": _TEXT,
        "dataschema": _TEXT,
        "data": _object(("rep_id",), {"rep_id": _NON_EMPTY, "deal_id": _NON_EMPTY}),
    },
)
# "allOf": what "then" adds for the event types its "if" names
_RETRACTION = _object((), {"data": _object(("deal_id",), {}, typed=False)}, typed=False)
_BY_TYPE: dict[str, _Check] = {
    DEAL_WON: _object(
        (),
        {
            "data": _object(
                ("deal_id", "amount", "currency"),
                {
                    "amount": _string_or_number,
                    "currency": _string(pattern="^[A-Z]{3}$"),
                    "splits": _array(
                        1,
                        _object(
                            ("rep_id", "share"),
                            {"rep_id": _NON_EMPTY, "share": _string_or_number},
                        ),
                    ),
                },
                typed=False,
            )
        },
        typed=False,
    ),
    **dict.fromkeys(RETRACTION_TYPES, _RETRACTION),
}


def _violations(doc: Any) -> tuple[_Violation, ...]:
    """Every way ``doc`` breaks the schema; none when it conforms."""
    found = _EVENT(doc)
    kind = doc.get("type") if isinstance(doc, dict) else None
    then = _BY_TYPE.get(kind) if isinstance(kind, str) else None
    return found if then is None else found + then(doc)
