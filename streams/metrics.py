"""Prometheus metrics of the worker, exported on its ``/metrics`` route.

Everything lives on one dedicated :data:`REGISTRY` (not the client's global one), so the worker
exports exactly the series this module documents and tests can render it in isolation.

Quota series (:class:`QuotaExporter`), a *series budget*: only the raw figures Prometheus cannot
derive — value and target — and only for the metrics and period types alerts need::

    spm_quota_{value,target}{scope, id, team, metric, period_type}
    spm_rep_info{rep, team, name} 1
    spm_rep_last_activity_timestamp_seconds{rep, team}
    spm_period_expected{period_type}            elapsed fraction of the current period
    spm_period_business_days_left{period_type}  business days left in it, today included
    spm_pace_threshold{status}, spm_min_elapsed  the engine's status thresholds

Attainment, pace and status are recording rules in ``deploy/prometheus/rules/spm.yml``
(``spm:quota_attainment``, ``spm:quota_pace``, ``spm:quota_status``) from these series: the
elapsed fraction is the same for every scope of a period type, so it is one series per period type
rather than one per scope. Exact figures (decimals) are the API's and ClickHouse's; Prometheus
holds floats for alerting and trends.

``scope`` is ``rep|team|company``; ``id`` the rep id, team id or company id; ``team`` the rep's
current team (= ``id`` on team series, empty on company series) so rules and Alertmanager can group
by team; ``metric`` a catalog metric; ``period_type`` one of day|week|month|quarter|year. Only the
*current* period of each type is exported, so the period label (which would grow forever) is not
a label. Every label value comes from the roster or the catalog, never from event payloads; the
rep's display name appears only on ``spm_rep_info`` (one series per rep). A missing target (no
quota) has no target series.

Cardinality: per rep 2 figures × M exported metrics × P exported period types, plus
``spm_rep_info`` and the last-activity gauge. With the defaults (``SPM_METRICS_EXPORTED`` =
revenue, calls; ``SPM_METRICS_PERIOD_TYPES`` = month, quarter) that is 2·2·2 + 2 = 10 series
per rep, so **10,000 series per 1,000 reps**; teams and the company add 8 each. Every other series
here is independent of the number of reps (a few hundred). A worker exports only the reps of the
partitions it owns: on a rebalance it calls :meth:`QuotaExporter.forget_where` for what it lost,
so no stale or duplicate series remain.

Pipeline health: the ``EVENTS_*``, ``EVENT_TIME_LAG``, ``TABLE_KEYS``, ``UNASSIGNED_REPS``,
``CONSUMER_LAG``,
``ALERTS_EMITTED``, ``WORKER_UP`` and ``SINK_*`` objects below, plus Faust's own sensor metrics
(``spm_faust_*``, see :func:`faust_monitor`) and the process/platform collectors.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Final

from faust.sensors.prometheus import FaustMetrics, PrometheusMonitor
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Metric,
    PlatformCollector,
    ProcessCollector,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.utils import floatToGoString

from streams.engine.pace import Thresholds
from streams.engine.scopes import SCOPES

# ``*_created`` series double every counter and histogram for no use on these dashboards.
disable_created_metrics()

REGISTRY: Final = CollectorRegistry()
ProcessCollector(registry=REGISTRY)
PlatformCollector(registry=REGISTRY)

FIGURES: Final = ("value", "target")
#: Status codes of the ``spm:quota_status`` recording rule (and the boards' mappings).
STATUS_CODES: Final = {"on_track": 0, "at_risk": 1, "behind": 2}
QUOTA_LABELS: Final = ("scope", "id", "team", "metric", "period_type")
#: The default series budget: the metrics and period types the quota alerts watch.
EXPORTED_METRICS: Final = ("revenue", "calls")
EXPORTED_PERIOD_TYPES: Final = ("month", "quarter")

_HELP: Final = {
    "spm_quota_value": "Value of the metric so far in the current period.",
    "spm_quota_target": "Target of the metric for the current period.",
    "spm_rep_info": "Roster data of a rep; join on rep for names.",
    "spm_rep_last_activity_timestamp_seconds": (
        "Event time of the rep's latest activity event (0 = none seen)."
    ),
}
_FAMILIES: Final = tuple(_HELP)
Key = tuple[str, str]  # (scope, id)


class QuotaExporter:
    """Keeps the quota series equal to the figures of the scopes this worker owns.

    It remembers what it exported, so it can move a rep's series when the rep changes team and
    remove a scope's series entirely (period roll-over, roster removal, lost partitions).

    These are nearly all of a worker's series (10 per rep at the defaults: 100,000 for 10,000
    reps), so they are not prometheus-client gauges: :meth:`exposition` writes the text format
    itself from lines rendered once per scope when its figures change, which keeps ``/metrics``
    of 10,000 reps well under a second (``bench/metrics_bench.py``). As a collector
    (:meth:`collect`) it also serves generic readers (tests, ``ALL``).
    """

    def __init__(
        self,
        registry: CollectorRegistry | None = None,
        metrics: Iterable[str] = EXPORTED_METRICS,
        period_types: Iterable[str] = EXPORTED_PERIOD_TYPES,
    ) -> None:
        self._budget: tuple[frozenset[str], frozenset[str]] = (frozenset(), frozenset())
        self.configure(metrics, period_types)
        self._lock = threading.Lock()
        # (scope, id) -> team label; (scope, id) -> (metric, period_type) -> figure -> value.
        self._teams: dict[Key, str] = {}
        self._figures: dict[Key, dict[tuple[str, str], dict[str, float]]] = {}
        self._rep_names: dict[str, str] = {}
        self._activity: dict[str, float] = {}
        # (scope, id) -> family -> its exposition lines; re-rendered for the dirty keys.
        self._lines: dict[Key, dict[str, str]] = {}
        self._dirty: set[Key] = set()
        if registry is not None:
            registry.register(self)

    def configure(self, metrics: Iterable[str], period_types: Iterable[str]) -> None:
        """Set the series budget: figures of other metrics or period types are not exported
        (set once at start, before anything is published)."""
        self._budget = (frozenset(metrics), frozenset(period_types))

    def exports(self, metric: str, period_type: str) -> bool:
        """Whether figures of ``metric`` over ``period_type`` are within the series budget."""
        metrics, period_types = self._budget
        return metric in metrics and period_type in period_types

    def publish(
        self,
        scope: str,
        scope_id: str,
        metric: str,
        period_type: str,
        figures: Mapping[str, str | None],
        team: str | None = None,
    ) -> None:
        """Export the current-period figures of one scope and metric.

        ``figures`` is ``Figures.to_dict()``: decimal strings, or None for figures that do not
        exist (no target) — those series are removed. ``team`` is the rep's current team (rep
        scope only; a team's series carry their own id). Figures outside the series budget
        (:meth:`configure`) are ignored.
        """
        if scope not in SCOPES:
            raise ValueError(f"unknown scope {scope!r}")
        if not self.exports(metric, period_type):
            return
        key = (scope, scope_id)
        values = {name: float(raw) for name in FIGURES if (raw := figures.get(name)) is not None}
        with self._lock:
            self._set_team(key, team if scope == "rep" else (scope_id if scope == "team" else ""))
            held = self._figures.setdefault(key, {})
            if held.get((metric, period_type)) != values:  # a tick re-publishes everything
                held[(metric, period_type)] = values
                self._dirty.add(key)

    def set_rep_info(self, rep: str, name: str, team: str) -> None:
        """Export a rep's name and team; a rep without activity yet reports last activity 0."""
        with self._lock:
            key = ("rep", rep)
            self._set_team(key, team)
            self._rep_names[rep] = name
            self._activity.setdefault(rep, 0.0)
            self._dirty.add(key)

    def record_activity(self, rep: str, event_time: float) -> None:
        """Note an activity event of ``rep`` at ``event_time`` (epoch seconds); late events
        never move the timestamp back."""
        with self._lock:
            latest = max(self._activity.get(rep, 0.0), event_time)
            if self._activity.get(rep) != latest:
                self._activity[rep] = latest
                self._dirty.add(("rep", rep))

    def forget(self, scope: str, scope_id: str) -> None:
        """Remove every series of one scope id (for a rep: also its info and last activity)."""
        with self._lock:
            self._forget((scope, scope_id))

    def forget_where(self, predicate: Callable[[str, str], bool]) -> int:
        """Forget every scope id for which ``predicate(scope, id)`` holds; returns how many.

        After a rebalance: ``forget_where(lambda scope, id: (scope, id) not in still_owned)``.
        """
        with self._lock:
            known = set(self._figures) | set(self._teams) | {("rep", rep) for rep in self._activity}
            doomed = [key for key in known if predicate(*key)]
            for key in doomed:
                self._forget(key)
            return len(doomed)

    def exposition(self) -> bytes:
        """The text exposition (format 0.0.4) of every quota series."""
        with self._lock:
            for key in self._dirty:
                self._lines[key] = self._render(key)
            self._dirty.clear()
            out = []
            for family in _FAMILIES:
                out.append(f"# HELP {family} {_HELP[family]}\n# TYPE {family} gauge\n")
                out.extend(lines[family] for lines in self._lines.values() if family in lines)
        return "".join(out).encode()

    def collect(self) -> Iterator[Metric]:
        """The same series as metric families, for prometheus-client readers."""
        text = self.exposition().decode()
        yield from text_string_to_metric_families(text)

    def describe(self) -> list[Metric]:
        return [Metric(family, _HELP[family], "gauge") for family in _FAMILIES]

    def _forget(self, key: Key) -> None:
        self._figures.pop(key, None)
        self._teams.pop(key, None)
        self._lines.pop(key, None)
        self._dirty.discard(key)
        scope, scope_id = key
        if scope == "rep":
            self._rep_names.pop(scope_id, None)
            self._activity.pop(scope_id, None)

    def _set_team(self, key: Key, team: str | None) -> None:
        """Record the team label of a scope id (its lines are re-rendered under it)."""
        if team is not None and self._teams.get(key) != team:
            self._teams[key] = team
            self._dirty.add(key)

    def _render(self, key: Key) -> dict[str, str]:
        """The exposition lines of one scope id, per family."""
        scope, scope_id = key
        team = self._teams.get(key, "")
        lines: dict[str, str] = {}
        head = f'scope="{_escape(scope)}",id="{_escape(scope_id)}",team="{_escape(team)}"'
        for (metric, period_type), values in sorted(self._figures.get(key, {}).items()):
            labels = f'{head},metric="{_escape(metric)}",period_type="{_escape(period_type)}"'
            for name, value in values.items():
                family = f"spm_quota_{name}"
                line = f"{family}{{{labels}}} {floatToGoString(value)}\n"
                lines[family] = lines.get(family, "") + line
        if scope == "rep":
            rep = f'rep="{_escape(scope_id)}"'
            if scope_id in self._rep_names:
                name = _escape(self._rep_names[scope_id])
                lines["spm_rep_info"] = (
                    f'spm_rep_info{{{rep},name="{name}",team="{_escape(team)}"}} 1.0\n'
                )
            if scope_id in self._activity:
                family = "spm_rep_last_activity_timestamp_seconds"
                at = floatToGoString(self._activity[scope_id])
                lines[family] = f'{family}{{{rep},team="{_escape(team)}"}} {at}\n'

        return lines


def _escape(value: str) -> str:
    """A label value as the text format wants it (backslash, double quote, newline escaped)."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


QUOTAS: Final = QuotaExporter()
#: Every series of the worker in one registry, for generic readers (tests serving it with
#: prometheus-client's HTTP server); the ``/metrics`` route uses :func:`render`.
ALL: Final = CollectorRegistry(auto_describe=False)
ALL.register(REGISTRY)
ALL.register(QUOTAS)

PERIOD_EXPECTED: Final = Gauge(
    "spm_period_expected",
    "Elapsed fraction of the current period (0..1, by business days with SPM_BUSINESS_DAYS); "
    "target × this is due by now.",
    ["period_type"],
    registry=REGISTRY,
)
PERIOD_BUSINESS_DAYS_LEFT: Final = Gauge(
    "spm_period_business_days_left",
    "Business days left in the current period, today included (weekends and the holidays of "
    "SPM_HOLIDAY_COUNTRY excluded).",
    ["period_type"],
    registry=REGISTRY,
)
PACE_THRESHOLD: Final = Gauge(
    "spm_pace_threshold",
    "Pace below which a figure is at_risk / behind (SPM_AT_RISK_PACE, SPM_BEHIND_PACE).",
    ["status"],
    registry=REGISTRY,
)
MIN_ELAPSED: Final = Gauge(
    "spm_min_elapsed",
    "Elapsed fraction of a period before which nothing is behind (SPM_MIN_ELAPSED).",
    registry=REGISTRY,
)

CELEBRATIONS: Final = Counter(
    "spm_celebrations",
    "Milestones (target, stretch) Alertmanager accepted, by scope.",
    ["scope", "milestone"],
    registry=REGISTRY,
)


def configure_quotas(
    exported: Sequence[str],
    period_types: Sequence[str],
    catalog: Iterable[str],
    thresholds: Thresholds,
) -> None:
    """Set the worker's series budget (SPM_METRICS_EXPORTED, SPM_METRICS_PERIOD_TYPES) and
    export the status thresholds the recording rules use; a metric the catalog does not know
    is refused (a typo would silently export nothing)."""
    if unknown := sorted(set(exported) - set(catalog)):
        raise ValueError(f"SPM_METRICS_EXPORTED names metrics not in the catalog: {unknown}")
    QUOTAS.configure(exported, period_types)
    PACE_THRESHOLD.labels("behind").set(float(thresholds.behind))
    PACE_THRESHOLD.labels("at_risk").set(float(thresholds.at_risk))
    MIN_ELAPSED.set(float(thresholds.min_elapsed))


# --- pipeline health ------------------------------------------------------------------------

EVENTS_PROCESSED: Final = Counter(
    "spm_events_processed",
    "Accepted events applied to the quota tables, by catalog event type.",
    ["type"],
    registry=REGISTRY,
)
EVENTS_REJECTED: Final = Counter(
    "spm_events_rejected",
    "Input messages sent to the dead-letter topic, by error code.",
    ["reason"],
    registry=REGISTRY,
)
EVENTS_REROUTED: Final = Counter(
    "spm_events_rerouted",
    "Accepted events that arrived in another partition than their key's and took one hop.",
    registry=REGISTRY,
)
EVENT_COPIES_NOT_COUNTED: Final = Counter(
    "spm_event_copies_not_counted",
    "Copies of an event (source, id) already counted that do not count: the same copy again, "
    "or a conflicting copy with a larger digest (streams.engine.events.Event.copy_digest).",
    registry=REGISTRY,
)
EVENTS_IGNORED: Final = Counter(
    "spm_events_ignored",
    "Valid events no metric counts (or duplicates), by type; see IGNORED_TYPES for the label.",
    ["type"],
    registry=REGISTRY,
)
EVENT_TIME_LAG: Final = Histogram(
    "spm_event_time_lag_seconds",
    "Arrival time minus event time of accepted events.",
    buckets=(1, 5, 15, 60, 300, 900, 3600, 4 * 3600, 86400, 3 * 86400, 7 * 86400, 30 * 86400),
    registry=REGISTRY,
)
TABLE_KEYS: Final = Gauge(
    "spm_table_keys",
    "Entries of each part of the state this worker holds (rep_days, dedupe_ids, deals, ...).",
    ["table"],
    registry=REGISTRY,
)
UNASSIGNED_REPS: Final = Gauge(
    "spm_unassigned_reps",
    "Reps with credit in this worker's partitions who are not on the roster (their team "
    "credit counts for the team 'unassigned' until they are added).",
    registry=REGISTRY,
)
CONSUMER_LAG: Final = Gauge(
    "spm_consumer_lag_messages",
    "Messages between the partition end and this worker's position.",
    ["topic", "partition"],
    registry=REGISTRY,
)
ALERTS_EMITTED: Final = Counter(
    "spm_alerts_emitted",
    "Status transitions published on the alerts topic.",
    ["scope", "to_status"],
    registry=REGISTRY,
)
WORKER_UP: Final = Gauge(
    "spm_worker_up", "1 while the worker is started and owns its partitions.", registry=REGISTRY
)
SINK_ROWS_WRITTEN: Final = Counter(
    "spm_sink_rows_written", "Rows inserted into ClickHouse.", ["table"], registry=REGISTRY
)
SINK_FAILURES: Final = Counter(
    "spm_sink_failures", "Failed ClickHouse insert attempts.", ["table"], registry=REGISTRY
)
SINK_BATCH_ROWS: Final = Histogram(
    "spm_sink_batch_rows",
    "Rows per ClickHouse insert.",
    buckets=(1, 10, 100, 500, 1000, 2000, 5000, 10000, 50000),
    registry=REGISTRY,
)
SINK_LAG: Final = Gauge(
    "spm_sink_lag_messages",
    "Messages of a topic not yet written to ClickHouse.",
    ["topic"],
    registry=REGISTRY,
)


class BoundedLabel:
    """Passes the first ``limit`` distinct values through and maps later ones to ``other``.

    Event types of ignored events come from producers, not from the catalog; this keeps a
    misbehaving producer from creating unbounded series.
    """

    def __init__(self, limit: int, other: str = "other") -> None:
        self._limit = limit
        self._other = other
        self._seen: set[str] = set()

    def __call__(self, value: str) -> str:
        if value in self._seen:
            return value
        if len(self._seen) >= self._limit:
            return self._other
        self._seen.add(value)
        return value


IGNORED_TYPES: Final = BoundedLabel(limit=50)

_FAUST_METRICS: Final = FaustMetrics.create(REGISTRY, "spm_faust")


def faust_monitor() -> PrometheusMonitor:
    """A Faust sensor recording Faust's own metrics (``spm_faust_*``) on :data:`REGISTRY`;
    pass it as the app's ``monitor``."""
    return PrometheusMonitor(metrics=_FAUST_METRICS)


def render() -> bytes:
    """The exposition text of every series for the ``/metrics`` route: the quota series
    written by :meth:`QuotaExporter.exposition`, the rest by prometheus-client."""
    return generate_latest(REGISTRY) + QUOTAS.exposition()
