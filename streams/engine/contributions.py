"""Contributions: what each event or deal adds to a scope's figures, kept incrementally.

A scope's value for (metric, period) is the sum of its contributions whose time falls in
the period. Each contribution is stored under a key with a *version*; a put replaces the
stored one only if its version is higher. With activity contributions at version ``()``
(first wins, duplicates ignored) and deal contributions at the deal ledger's version
(monotone), applying the same puts in any order, any number of times, ends in the same
book — which is why a deal credit that no longer applies is put as amount 0 at the new
version instead of being deleted.

What is put where (keys, scopes, roll-up) is decided in ``streams.engine.credit``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from streams.engine.instants import format_instant, parse_instant
from streams.engine.money import decimal_text
from streams.engine.periods import Calendar

_ZERO = Decimal(0)


@dataclass(frozen=True, slots=True)
class Contribution:
    metric: str
    time: datetime
    amount: Decimal
    version: tuple[Any, ...]

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly: time RFC 3339 UTC, amount a decimal string, version nested lists."""
        return {
            "metric": self.metric,
            "time": format_instant(self.time),
            "amount": decimal_text(self.amount),
            "version": self.version,
        }

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> Contribution:
        time = parse_instant(doc["time"])
        if time is None:
            raise ValueError(f"bad contribution time {doc['time']!r}")
        return cls(doc["metric"], time, Decimal(doc["amount"]), _tuples(doc["version"]))


@dataclass(frozen=True, slots=True)
class Change:
    """A put that took effect: ``old`` (None if new) replaced by ``new`` under ``key``."""

    scope_id: str
    old: Contribution | None
    new: Contribution
    key: str = ""


class ContributionBook:
    """Contributions per scope and key, with sums per (scope, metric, period label)."""

    __slots__ = ("_calendar", "_items", "_sums")

    def __init__(self, calendar: Calendar) -> None:
        self._calendar = calendar
        self._items: dict[str, dict[str, Contribution]] = {}
        self._sums: dict[str, dict[str, dict[str, Decimal]]] = {}

    def put(self, scope_id: str, key: str, c: Contribution) -> Change | None:
        """Store ``c`` unless a contribution with an equal or higher version is stored."""
        items = self._items.get(scope_id)
        if items is None:
            items = self._items[scope_id] = {}
            self._sums[scope_id] = {}
        old = items.get(key)
        if old is not None and not c.version > old.version:
            return None
        items[key] = c
        sums = self._sums[scope_id]
        labels_at = self._calendar.labels_at
        if old is not None:
            by_label = sums[old.metric]
            amount = old.amount
            for label in labels_at(old.time):
                by_label[label] -= amount
        by_label = sums.get(c.metric)
        if by_label is None:
            by_label = sums[c.metric] = {}
        amount = c.amount
        for label in labels_at(c.time):
            by_label[label] = by_label.get(label, _ZERO) + amount
        return Change(scope_id, old, c, key)

    def clear(self) -> None:
        self._items.clear()
        self._sums.clear()

    def value(self, scope_id: str, metric: str, label: str) -> Decimal:
        return self._sums.get(scope_id, {}).get(metric, {}).get(label, _ZERO)

    def get(self, scope_id: str, key: str) -> Contribution | None:
        return self._items.get(scope_id, {}).get(key)

    def scopes(self) -> Iterable[str]:
        return self._items.keys()

    def metrics(self, scope_id: str) -> Iterable[str]:
        return self._sums.get(scope_id, {}).keys()

    def labels(self, scope_id: str, metric: str) -> set[str]:
        """Labels of periods holding at least one contribution (possibly a zeroed one)."""
        return set(self._sums.get(scope_id, {}).get(metric, {}))


def contribution_to_dict(c: Contribution) -> dict[str, Any]:
    return c.to_dict()


def contribution_from_dict(doc: dict[str, Any]) -> Contribution:
    return Contribution.from_dict(doc)


def _tuples(value: Any) -> Any:
    """JSON turned the version's tuples into lists; comparisons need tuples back."""
    return tuple(_tuples(v) for v in value) if isinstance(value, list | tuple) else value
