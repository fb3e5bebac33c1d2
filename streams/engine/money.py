"""Money: exact ``Decimal`` amounts and their conversion to the base currency.

Rates are effective-dated so a deal won last year converts at last year's rate, and a
replay gives the same figures as the live run. The table is expressed in any reference
currency (the shipped one in USD); converting to another base uses the cross rate, which
is why the base itself only needs to be in the table.
"""

from __future__ import annotations

import csv
import re
from bisect import bisect_right
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path

from streams.engine.errors import Invalid
from streams.engine.instants import parse_instant

DEFAULT_RATES = Path(__file__).with_name("rates.csv")
_CURRENCY = re.compile(r"[A-Z]{3}\Z", re.ASCII)
_DECIMAL_TEXT = re.compile(r"-?\d+(\.\d+)?\Z", re.ASCII)


def parse_decimal(value: object) -> Decimal | None:
    """A finite Decimal from a JSON number or a plain decimal string (``"12.50"``).

    Strings with exponents, signs other than ``-``, spaces or NaN are refused so that
    what a CRM sends is read one way only. Booleans are not numbers.
    """
    if isinstance(value, bool):
        return None
    if isinstance(value, Decimal):
        return value if value.is_finite() else None
    if isinstance(value, int):
        return Decimal(value)
    if isinstance(value, str) and _DECIMAL_TEXT.match(value):
        return Decimal(value)
    return None


def decimal_text(value: Decimal) -> str:
    """Canonical plain text of a Decimal for JSON and CSV: positional (never exponent
    notation), no trailing zeros, so equal amounts always print alike (``8.0`` → ``8``)."""
    if value == 0:
        return "0"
    return format(value.normalize(), "f")


def is_currency_code(code: object) -> bool:
    """ISO 4217 shape: three upper-case ASCII letters."""
    return isinstance(code, str) and _CURRENCY.match(code) is not None


@dataclass(frozen=True, slots=True)
class _Series:
    """The rates of one currency, sorted by effective instant (micro-opt: parallel lists)."""

    starts: tuple[datetime, ...]
    rates: tuple[Decimal, ...]

    def at(self, t: datetime) -> Decimal:
        # Before the first entry the earliest rate applies: old deals still convert.
        i = bisect_right(self.starts, t) - 1
        return self.rates[max(i, 0)]


class Rates:
    """Effective-dated conversion rates: ``rate`` = reference units per one unit."""

    __slots__ = ("_series", "base")

    def __init__(self, table: dict[str, list[tuple[datetime, Decimal]]], base: str) -> None:
        if base not in table:
            raise ValueError(f"base currency {base!r} is not in the rates table")
        self.base = base
        self._series = {
            code: _Series(tuple(t for t, _ in rows), tuple(r for _, r in rows))
            for code, rows in ((c, sorted(rows)) for c, rows in table.items())
        }

    @classmethod
    def load(cls, path: Path | None = None, base: str = "USD") -> Rates:
        """Read ``currency,rate,effective_from`` CSV (default: the shipped table).

        ``effective_from`` is a date (midnight UTC) or an RFC 3339 instant. A malformed
        table is a configuration error and raises ``ValueError`` at start-up.
        """
        text = (path or DEFAULT_RATES).read_text(encoding="utf-8")
        table: dict[str, list[tuple[datetime, Decimal]]] = {}
        reader = csv.DictReader(text.splitlines())
        if reader.fieldnames != ["currency", "rate", "effective_from"]:
            raise ValueError("rates CSV header must be currency,rate,effective_from")
        for line, row in enumerate(reader, start=2):
            code, rate, start = row["currency"], parse_decimal(row["rate"]), row["effective_from"]
            when = _parse_start(start)
            if not is_currency_code(code) or rate is None or rate <= 0 or when is None:
                raise ValueError(f"rates CSV line {line}: bad row {row!r}")
            table.setdefault(code, []).append((when, rate))
        return cls(table, base)

    @property
    def currencies(self) -> frozenset[str]:
        return frozenset(self._series)

    def to_base(self, amount: Decimal, currency: str, at: datetime) -> Decimal | Invalid:
        """``amount`` of ``currency`` in base units at instant ``at`` (exact product)."""
        series = self._series.get(currency) if is_currency_code(currency) else None
        if series is None:
            return Invalid("unknown_currency", f"unknown currency {currency!r}", "data.currency")
        if currency == self.base:
            return amount
        try:
            return amount * series.at(at) / self._series[self.base].at(at)
        except ArithmeticError:  # InvalidOperation, Overflow: too large to convert exactly
            return Invalid("bad_amount", f"amount {amount} cannot be converted", "data.amount")


def _parse_start(text: str) -> datetime | None:
    try:
        day = date.fromisoformat(text)
    except ValueError:
        return parse_instant(text)
    return datetime(day.year, day.month, day.day, tzinfo=UTC)
