"""The event contract v1: decode untrusted CloudEvents into ``Event`` values, or say why not.

Decoding is ordered cheapest-first (size, UTF-8, JSON, JSON Schema, then the semantic checks
a schema cannot express) and never raises: every rejection is an ``Invalid`` value that the
pipeline routes to the DLQ with its code and field path. Accepted events travel on
``spm.events`` in the canonical JSON of ``Event.to_json`` so later stages need no
re-validation and amounts stay exact decimal strings.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, localcontext
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError, best_match

from streams.engine.catalog import DEAL_TYPES, DEAL_WON, MetricCatalog
from streams.engine.errors import Invalid
from streams.engine.instants import format_instant, parse_instant
from streams.engine.money import Rates, decimal_text, parse_decimal

SCHEMA_PATH = Path(__file__).parents[2] / "schemas" / "event.v1.schema.json"


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
        """Deal events by deal (one ledger per partition), activities by rep."""
        if self.type in DEAL_TYPES and self.deal_id is not None:
            return self.deal_id
        return self.rep_id

    def to_json(self) -> bytes:
        """Canonical JSON (see DESIGN.md ``spm.events``): decimals as strings, time in UTC."""
        doc = {
            "source": self.source,
            "id": self.id,
            "type": self.type,
            "time": format_instant(self.time),
            "rep_id": self.rep_id,
            "deal_id": self.deal_id,
            "amount": None if self.amount is None else decimal_text(self.amount),
            "currency": self.currency,
            "amount_base": None if self.amount_base is None else decimal_text(self.amount_base),
            "splits": None
            if self.splits is None
            else [{"rep_id": s.rep_id, "share": decimal_text(s.share)} for s in self.splits],
            "data": self.data if self.data is not None else {},
        }
        return json.dumps(doc, separators=(",", ":"), ensure_ascii=False, default=_number).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> Event:
        """Read the canonical form back. It is our own output, so a malformed message is a bug
        upstream and raises ``ValueError`` rather than being silently skipped."""
        try:
            doc = json.loads(raw, parse_float=Decimal)
            time = parse_instant(doc["time"])
            if time is None:
                raise ValueError(f"bad time {doc['time']!r}")
            splits = doc["splits"]
            return cls(
                source=doc["source"],
                id=doc["id"],
                type=doc["type"],
                time=time,
                rep_id=doc["rep_id"],
                deal_id=doc["deal_id"],
                amount=None if doc["amount"] is None else Decimal(doc["amount"]),
                currency=doc["currency"],
                amount_base=None if doc["amount_base"] is None else Decimal(doc["amount_base"]),
                splits=None
                if splits is None
                else tuple(Split(s["rep_id"], Decimal(s["share"])) for s in splits),
                data=doc["data"],
            )
        except (KeyError, TypeError, ArithmeticError, json.JSONDecodeError) as exc:
            raise ValueError(f"not a canonical event: {exc}") from exc


def _number(value: object) -> float:
    """JSON numbers in ``data`` were read as Decimal (exactness); write them back as numbers."""
    if isinstance(value, Decimal):
        return float(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


class Decoder:
    """Validates raw messages against contract v1 (schema compiled once per process)."""

    __slots__ = ("catalog", "max_bytes", "rates", "strict")
    _validator: Draft202012Validator | None = None

    def __init__(
        self, catalog: MetricCatalog, rates: Rates, *, strict: bool = False, max_bytes: int = 65536
    ) -> None:
        self.catalog = catalog
        self.rates = rates
        self.strict = strict
        self.max_bytes = max_bytes

    @classmethod
    def validator(cls) -> Draft202012Validator:
        if cls._validator is None:
            schema = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
            Draft202012Validator.check_schema(schema)
            cls._validator = Draft202012Validator(schema)
        return cls._validator

    def ignored(self, event: Event) -> bool:
        """Kept in history but counted toward no metric."""
        return not self.catalog.counts(event.type)

    def decode(self, raw: bytes) -> Event | Invalid:
        if len(raw) > self.max_bytes:
            return Invalid("too_large", f"{len(raw)} bytes > limit {self.max_bytes}")
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            return Invalid("not_utf8", f"not UTF-8 at byte {exc.start}")
        try:
            doc = json.loads(text, parse_float=Decimal, parse_constant=_no_constants)
        except (ValueError, RecursionError) as exc:
            return Invalid("not_json", f"not JSON: {exc}")
        validator = self.validator()
        if not validator.is_valid(doc):
            return _schema_invalid(best_match(validator.iter_errors(doc)))
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


def _schema_invalid(error: ValidationError | None) -> Invalid:
    assert error is not None  # called with at least one error
    parts = [f"[{p}]" if isinstance(p, int) else f".{p}" for p in error.absolute_path]
    if error.validator == "required" and isinstance(error.instance, dict):
        missing = [k for k in error.validator_value if k not in error.instance]
        parts.append(f".{missing[0]}" if missing else "")
    path = "".join(parts).lstrip(".")
    return Invalid("schema", error.message, path)
