"""Milestones worth celebrating: a figure reaching its target (100 %) and a stretch level.

A milestone is a level per (scope, metric, period): 0 below the target, 1 from the target on,
2 from ``stretch`` × target on. Levels only go up within a period: a retraction that drops a rep
back below the target does not make the next win a second "target reached" (celebrating the
same milestone twice is noise). The worker keeps the highest level celebrated per figure in its
changelog, so a re-evaluation or a restart never celebrates a level again.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Final

TARGET: Final = 1
STRETCH: Final = 2
NAMES: Final = {TARGET: "target", STRETCH: "stretch"}


def level(value: Decimal, target: Decimal | None, stretch: Decimal) -> int:
    """The milestone ``value`` has reached against ``target`` (exact decimals); 0 without a
    positive target (nothing to reach)."""
    if target is None or target <= 0:
        return 0
    if value >= target * stretch:
        return STRETCH
    if value >= target:
        return TARGET
    return 0


def crossed(previous: int, now: int) -> list[int]:
    """The levels to celebrate when a figure goes from ``previous`` (highest celebrated) to
    ``now``: each level above ``previous`` up to ``now``, lowest first."""
    return list(range(previous + 1, now + 1))
