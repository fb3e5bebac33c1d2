"""The metric catalog: which event types count toward which figure, declared in YAML.

Users add metrics (say ``demos`` counting ``demo.booked``) without code. Metrics on
``deal.won`` are *deal metrics*: they are credited through the deal ledger (latest win,
retractions, splits), never per event, which is why only they may be of kind ``amount``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, cast

import yaml

DEFAULT_CATALOG = Path(__file__).with_name("catalog.yaml")
DEAL_WON = "deal.won"
RETRACTION_TYPES = frozenset({"deal.lost", "deal.reopened"})
DEAL_TYPES = frozenset({DEAL_WON}) | RETRACTION_TYPES
BUILTIN_ACTIVITY_TYPES = frozenset(
    {"call.completed", "email.sent", "meeting.held", "proposal.sent"}
)
_NAME = re.compile(r"[a-z][a-z0-9_]*\Z", re.ASCII)


@dataclass(frozen=True, slots=True)
class Metric:
    """A named figure: ``count`` of events/deals or ``amount`` (base currency) of deals."""

    name: str
    kind: Literal["count", "amount"]
    event_types: frozenset[str]

    @property
    def is_deal_metric(self) -> bool:
        return DEAL_WON in self.event_types


class MetricCatalog:
    """The metrics in force; lookups by event type are precomputed (hot path)."""

    __slots__ = ("_by_type", "deal_metrics", "metrics")

    def __init__(self, metrics: tuple[Metric, ...]) -> None:
        names = [m.name for m in metrics]
        if len(set(names)) != len(names):
            raise ValueError("metric names must be unique")
        for m in metrics:
            _check(m)
        self.metrics = metrics
        self.deal_metrics = tuple(m for m in metrics if m.is_deal_metric)
        by_type: dict[str, list[Metric]] = {}
        for m in metrics:
            for t in m.event_types:
                by_type.setdefault(t, []).append(m)
        self._by_type = {t: tuple(ms) for t, ms in by_type.items()}

    @classmethod
    def load(cls, path: Path | None = None) -> MetricCatalog:
        """Read the YAML catalog (default: the shipped ``catalog.yaml``).

        A malformed catalog is a configuration error and raises ``ValueError``.
        """
        doc = yaml.safe_load((path or DEFAULT_CATALOG).read_text(encoding="utf-8"))
        if not isinstance(doc, dict) or not isinstance(doc.get("metrics"), dict):
            raise ValueError("catalog must be a mapping with a 'metrics' mapping")
        metrics = []
        for name, spec in doc["metrics"].items():
            if not isinstance(spec, dict) or not isinstance(spec.get("event_types"), list):
                raise ValueError(f"metric {name!r}: needs kind and an event_types list")
            kind = cast(Literal["count", "amount"], spec.get("kind"))  # checked by _check
            metrics.append(Metric(str(name), kind, frozenset(spec["event_types"])))
        return cls(tuple(metrics))

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(m.name for m in self.metrics)

    def metrics_for(self, event_type: str) -> tuple[Metric, ...]:
        """Metrics that ``event_type`` counts toward (deal metrics for ``deal.won``)."""
        return self._by_type.get(event_type, ())

    def activity_metrics_for(self, event_type: str) -> tuple[Metric, ...]:
        """Metrics credited directly per event (empty for deal types)."""
        return () if event_type in DEAL_TYPES else self._by_type.get(event_type, ())

    def counts(self, event_type: str) -> bool:
        """Whether the type moves any figure (retractions do, through deal metrics)."""
        if event_type in RETRACTION_TYPES:
            return bool(self.deal_metrics)
        return event_type in self._by_type

    def known(self, event_type: str) -> bool:
        """Whether the contract knows the type (strict mode rejects the others)."""
        return (
            event_type in DEAL_TYPES
            or event_type in BUILTIN_ACTIVITY_TYPES
            or event_type in self._by_type
        )


def _check(m: Metric) -> None:
    if not _NAME.match(m.name):
        raise ValueError(f"metric name {m.name!r} must match [a-z][a-z0-9_]*")
    if m.kind not in ("count", "amount"):
        raise ValueError(f"metric {m.name!r}: kind must be count or amount")
    if not m.event_types or not all(isinstance(t, str) and t for t in m.event_types):
        raise ValueError(f"metric {m.name!r}: event_types must be non-empty strings")
    if m.event_types & RETRACTION_TYPES:
        raise ValueError(f"metric {m.name!r}: deal.lost/deal.reopened only retract deals")
    if m.is_deal_metric and m.event_types != {DEAL_WON}:
        raise ValueError(f"metric {m.name!r}: a deal metric counts deal.won only")
    if m.kind == "amount" and not m.is_deal_metric:
        raise ValueError(f"metric {m.name!r}: only deal.won metrics can be amounts")
