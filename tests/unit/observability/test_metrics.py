"""The worker's metrics: quota series follow published figures and disappear when forgotten."""

from __future__ import annotations

import re

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from streams import metrics
from streams.engine.catalog import MetricCatalog
from streams.engine.pace import Thresholds
from streams.engine.periods import PERIOD_TYPES
from streams.metrics import FIGURES, QUOTA_LABELS, BoundedLabel, QuotaExporter

BEHIND = {
    "value": "1200.50",
    "target": "10000",
    "attainment": "0.12005",
    "expected": "0.5",
    "pace": "0.2401",
    "projection": "2401",
    "gap": "8799.50",
    "status": "behind",
}
NO_TARGET = {name: None for name in BEHIND} | {"value": "7"}


def samples(registry: CollectorRegistry, prefix: str = "spm_") -> list[tuple[str, dict[str, str]]]:
    return [
        (sample.name, sample.labels)
        for family in registry.collect()
        for sample in family.samples
        if sample.name.startswith(prefix)
    ]


def quota(registry: CollectorRegistry, figure: str, **labels: str) -> float | None:
    return registry.get_sample_value(f"spm_quota_{figure}", labels)


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
def exporter(registry: CollectorRegistry) -> QuotaExporter:
    return QuotaExporter(registry)


def test_publish_exports_value_and_target_only(registry, exporter):
    exporter.publish("rep", "r-1", "revenue", "month", BEHIND, team="t-emea")

    labels = {
        "scope": "rep",
        "id": "r-1",
        "team": "t-emea",
        "metric": "revenue",
        "period_type": "month",
    }
    assert {name for name, _ in samples(registry, "spm_quota_")} == {
        "spm_quota_value",
        "spm_quota_target",
    }
    for figure in FIGURES:
        assert quota(registry, figure, **labels) == float(BEHIND[figure])


def test_figures_outside_the_series_budget_are_not_exported(registry):
    exporter = QuotaExporter(registry, metrics=["deals_won"], period_types=["week"])
    exporter.publish("rep", "r-1", "deals_won", "week", BEHIND, team="t-1")
    exporter.publish("rep", "r-1", "deals_won", "month", BEHIND, team="t-1")
    exporter.publish("rep", "r-1", "revenue", "week", BEHIND, team="t-1")

    exported = {(labels["metric"], labels["period_type"]) for _, labels in samples(registry)}
    assert exported == {("deals_won", "week")}


def test_team_series_carry_their_own_id_as_team_and_company_none(registry, exporter):
    exporter.publish("team", "t-emea", "calls", "month", BEHIND)
    exporter.publish("company", "acme", "calls", "month", BEHIND)

    by_scope = {labels["scope"]: labels for name, labels in samples(registry, "spm_quota_value")}
    assert by_scope["team"]["team"] == "t-emea"
    assert by_scope["company"]["team"] == ""


def test_null_figures_remove_their_series(registry, exporter):
    exporter.publish("rep", "r-1", "calls", "month", BEHIND, team="t-1")
    exporter.publish("rep", "r-1", "calls", "month", NO_TARGET, team="t-1")

    names = {name for name, _ in samples(registry, "spm_quota_")}
    assert names == {"spm_quota_value"}
    labels = {"scope": "rep", "id": "r-1", "team": "t-1", "metric": "calls"}
    assert quota(registry, "value", **labels, period_type="month") == 7.0


def test_rep_moving_team_leaves_no_series_under_the_old_team(registry, exporter):
    exporter.set_rep_info("r-1", "Ann Lee", "t-old")
    exporter.publish("rep", "r-1", "revenue", "month", BEHIND)
    exporter.publish("rep", "r-1", "calls", "quarter", BEHIND)
    exporter.record_activity("r-1", 1_800_000_000.0)
    before = len(samples(registry))

    exporter.set_rep_info("r-1", "Ann Lee", "t-new")

    after = samples(registry)
    assert len(after) == before
    assert {labels["team"] for _, labels in after} == {"t-new"}
    assert (
        registry.get_sample_value(
            "spm_rep_last_activity_timestamp_seconds", {"rep": "r-1", "team": "t-new"}
        )
        == 1_800_000_000.0
    )


def test_publish_with_a_new_team_moves_the_reps_other_series(registry, exporter):
    exporter.publish("rep", "r-1", "revenue", "month", BEHIND, team="t-old")
    exporter.publish("rep", "r-1", "calls", "month", BEHIND, team="t-new")

    assert {labels["team"] for _, labels in samples(registry, "spm_quota_")} == {"t-new"}
    assert len(samples(registry, "spm_quota_")) == 2 * len(FIGURES)


def test_rep_info_exposes_name_and_team_once_per_rep(registry, exporter):
    exporter.set_rep_info("r-1", "Ann Lee", "t-1")
    exporter.set_rep_info("r-1", "Ann Lee-Smith", "t-1")

    info = samples(registry, "spm_rep_info")
    assert info == [("spm_rep_info", {"rep": "r-1", "name": "Ann Lee-Smith", "team": "t-1"})]


def test_last_activity_starts_at_zero_and_never_moves_back(registry, exporter):
    exporter.set_rep_info("r-1", "Ann Lee", "t-1")
    labels = {"rep": "r-1", "team": "t-1"}
    name = "spm_rep_last_activity_timestamp_seconds"
    assert registry.get_sample_value(name, labels) == 0.0

    exporter.record_activity("r-1", 2000.0)
    exporter.record_activity("r-1", 1000.0)

    assert registry.get_sample_value(name, labels) == 2000.0


def test_forget_removes_every_series_of_that_scope_id_only(registry, exporter):
    for rep in ("r-1", "r-2"):
        exporter.set_rep_info(rep, f"Rep {rep}", "t-1")
        exporter.record_activity(rep, 1000.0)
        exporter.publish("rep", rep, "revenue", "month", BEHIND)
        exporter.publish("rep", rep, "revenue", "quarter", BEHIND)
    exporter.publish("team", "t-1", "revenue", "month", BEHIND)

    exporter.forget("rep", "r-1")

    remaining = samples(registry)
    assert not [labels for _, labels in remaining if "r-1" in labels.values()]
    assert {labels.get("id", labels.get("rep")) for _, labels in remaining} == {"r-2", "t-1"}
    # A forgotten rep comes back cleanly, without its old figures.
    exporter.publish("rep", "r-1", "calls", "month", BEHIND, team="t-1")
    back = [labels for _, labels in samples(registry, "spm_quota_") if labels["id"] == "r-1"]
    assert {labels["metric"] for labels in back} == {"calls"}


def test_forget_where_keeps_only_the_owned_scope_ids(registry, exporter):
    for rep in ("r-1", "r-2", "r-3"):
        exporter.publish("rep", rep, "revenue", "month", BEHIND, team="t-1")
    exporter.record_activity("r-4", 1000.0)  # activity only, no figures yet
    exporter.publish("team", "t-1", "revenue", "month", BEHIND)
    owned = {("rep", "r-2"), ("team", "t-1")}

    forgotten = exporter.forget_where(lambda scope, id_: (scope, id_) not in owned)

    assert forgotten == 3
    left = {(labels["scope"], labels["id"]) for _, labels in samples(registry, "spm_quota_")}
    assert left == owned
    assert samples(registry, "spm_rep_last_activity") == []


def test_unknown_scope_is_refused(exporter):
    with pytest.raises(ValueError, match="scope"):
        exporter.publish("region", "emea", "revenue", "month", BEHIND)


def test_a_budget_naming_a_metric_the_catalog_does_not_know_is_refused():
    with pytest.raises(ValueError, match=r"SPM_METRICS_EXPORTED.*'revenu'"):
        metrics.configure_quotas(["revenu"], ["month"], MetricCatalog.load().names, Thresholds())


def test_quota_labels_are_only_the_documented_bounded_ones(registry, exporter):
    exporter.set_rep_info("r-1", "Ann Lee", "t-1")
    exporter.record_activity("r-1", 1000.0)
    exporter.publish("rep", "r-1", "revenue", "month", BEHIND)

    label_sets = {name: frozenset(labels) for name, labels in samples(registry)}
    assert {label_sets[f"spm_quota_{figure}"] for figure in FIGURES} == {frozenset(QUOTA_LABELS)}
    assert label_sets["spm_rep_info"] == {"rep", "name", "team"}
    assert label_sets["spm_rep_last_activity_timestamp_seconds"] == {"rep", "team"}


def test_series_per_thousand_reps_match_the_module_documentation(registry, exporter):
    """Every figure of every catalog metric and period type is published, as the worker does;
    the default budget keeps what the documentation says."""
    for rep in range(1000):
        exporter.set_rep_info(f"r-{rep}", f"Rep {rep}", f"t-{rep % 100}")
        exporter.record_activity(f"r-{rep}", 1000.0)
        for metric in MetricCatalog.load().names:
            for period_type in PERIOD_TYPES:
                exporter.publish("rep", f"r-{rep}", metric, period_type, BEHIND)

    documented = re.search(r"\*\*([\d,]+) series per 1,000 reps\*\*", metrics.__doc__ or "")
    assert documented, "the module docstring states the series per 1,000 reps"
    assert len(samples(registry)) == int(documented.group(1).replace(",", ""))
    assert len(samples(registry)) <= 12 * 1000, "the issue's budget: at most 12 series per rep"


def test_bounded_label_caps_distinct_values():
    label = BoundedLabel(limit=2)
    assert [label(v) for v in ("a", "b", "c", "a", "d", "b")] == [
        "a",
        "b",
        "other",
        "a",
        "other",
        "b",
    ]


def test_render_exposes_the_contract_families_on_the_dedicated_registry():
    metrics.EVENTS_PROCESSED.labels(type="call.completed").inc()
    families = {family.name for family in text_string_to_metric_families(metrics.render().decode())}

    contract = {
        "spm_events_processed",
        "spm_events_rejected",
        "spm_events_ignored",
        "spm_event_time_lag_seconds",
        "spm_table_keys",
        "spm_consumer_lag_messages",
        "spm_alerts_emitted",
        "spm_worker_up",
        "spm_sink_rows_written",
        "spm_sink_failures",
        "spm_sink_batch_rows",
        "spm_sink_lag_messages",
        "spm_faust_messages_received",
        "process_cpu_seconds",
        "python_info",
    }
    assert contract <= families
    assert "spm_events_processed_created" not in metrics.render().decode()
