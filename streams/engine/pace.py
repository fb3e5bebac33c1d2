"""Derived figures: how a scope is doing against its target, and whether to worry.

Definitions (``expected`` = elapsed fraction of the period, see ``Calendar.expected``):

* attainment = value / target            (None without a target or with target 0)
* pace       = attainment / expected     (None without attainment or at expected 0)
* projection = value / expected          (end-of-period value at the current rate;
                                          None at expected 0)
* gap        = target − value            (None without a target; negative = ahead)
* status     = None without a target. A **closed** period (ended at the as-of instant) is
  ``achieved`` if value >= target, else ``missed``: it was reached or not, and pace no longer
  matters. An open period is ``behind`` if pace < ``behind`` once at least ``min_elapsed``
  of it is gone; else ``at_risk`` if pace < ``at_risk``; else ``on_track`` (also at
  expected 0 or target 0: nothing is late yet).

Ratios are rounded half-even to 6 decimals (stable output; status is decided on the rounded
pace so readers can reproduce it); value, target and gap stay exact.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Context, Decimal
from typing import Any

from streams.engine.money import decimal_text

_PLACES = Decimal("0.000001")
_CONTEXT = Context(prec=80, rounding=ROUND_HALF_EVEN)  # room for big values + 6 places


@dataclass(frozen=True, slots=True)
class Thresholds:
    behind: Decimal = Decimal("0.8")
    at_risk: Decimal = Decimal("1.0")
    min_elapsed: Decimal = Decimal("0.1")


@dataclass(frozen=True, slots=True)
class Figures:
    value: Decimal
    target: Decimal | None
    attainment: Decimal | None
    expected: Decimal
    pace: Decimal | None
    projection: Decimal | None
    gap: Decimal | None
    status: str | None

    def to_dict(self) -> dict[str, Any]:
        return {
            name: getattr(self, name)
            if getattr(self, name) is None or isinstance(getattr(self, name), str)
            else decimal_text(getattr(self, name))
            for name in self.__slots__
        }


#: The statuses of a period that has ended.
CLOSED_STATUSES = ("achieved", "missed")


def figures(
    value: Decimal,
    target: Decimal | None,
    expected: Decimal,
    thresholds: Thresholds,
    *,
    closed: bool,
) -> Figures:
    """The figures of ``value`` against ``target``; ``closed``: the period has ended."""
    exp = _round(expected)
    projection = None if expected == 0 else _round(_CONTEXT.divide(value, expected))
    if target is None:
        return Figures(value, None, None, exp, None, projection, None, None)
    gap = target - value
    final = ("achieved" if value >= target else "missed") if closed else None
    if target == 0:
        return Figures(value, target, None, exp, None, projection, gap, final or "on_track")
    attainment = _CONTEXT.divide(value, target)
    pace = None if expected == 0 else _round(_CONTEXT.divide(attainment, expected))
    if final is not None:
        status = final
    elif pace is None:
        status = "on_track"
    elif pace < thresholds.behind and expected >= thresholds.min_elapsed:
        status = "behind"
    elif pace < thresholds.at_risk:
        status = "at_risk"
    else:
        status = "on_track"
    return Figures(value, target, _round(attainment), exp, pace, projection, gap, status)


def _round(x: Decimal) -> Decimal:
    return x.quantize(_PLACES, context=_CONTEXT)
