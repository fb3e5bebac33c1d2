"""Generates the three Grafana boards with grafana-foundation-sdk.

    .venv/bin/python -m dashboards.build            # rewrite dashboards/*.json
    .venv/bin/python -m dashboards.build --out DIR  # write them elsewhere

The JSON is committed (Grafana provisioning and ``spm grafana push`` read it) and a test fails
when it differs from what this module generates, so edit here, never the JSON.

Prometheus panels read the series of ``streams/metrics.py``; ClickHouse panels run the history
module's own SQL (``streams/history.py``) with its ``{name:Type}`` parameters bound to dashboard
variables and Grafana macros (:func:`grafana_sql`), so the boards and the API answer the same
questions the same way. Pace colours use the engine's default thresholds (SPM_BEHIND_PACE,
SPM_AT_RISK_PACE).
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path
from typing import Any

from grafana_foundation_sdk.builders import (
    bargauge,
    dashboard,
    prometheus,
    stat,
    statetimeline,
    table,
    timeseries,
)
from grafana_foundation_sdk.builders import (
    common as common_builders,
)
from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.cog import variants as cogvariants
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common
from grafana_foundation_sdk.models import dashboard as model
from grafana_foundation_sdk.models import prometheus as prommodel

from streams import credit_history, current_figures, history
from streams.metrics import STATUS_CODES
from streams.settings import Settings

HERE = Path(__file__).resolve().parent
PROMETHEUS = model.DataSourceRef(type_val="prometheus", uid="prometheus")
CLICKHOUSE = model.DataSourceRef(type_val="grafana-clickhouse-datasource", uid="clickhouse")

SALES_FLOOR_UID = "spm-sales-floor"
REP_DRILLDOWN_UID = "spm-rep-drilldown"
PIPELINE_HEALTH_UID = "spm-pipeline-health"
REP_BOARD_LINK = (
    f"/d/{REP_DRILLDOWN_UID}/rep-drill-down?var-rep=${{__data.fields.id}}"
    "&var-metric=${metric}&var-period_type=${period_type}"
)

BEHIND_PACE = float(Settings.model_fields["behind_pace"].default)
AT_RISK_PACE = float(Settings.model_fields["at_risk_pace"].default)
STATUS_COLORS = {"on_track": "green", "at_risk": "orange", "behind": "red"}
REP_NAMES = 'max by (id, name) (label_replace(spm_rep_info, "id", "$1", "rep", "(.+)"))'


# --- ClickHouse queries (the SDK has no builder for the ClickHouse plugin) ------------------------
class ClickHouseDataquery(cogvariants.Dataquery):
    """A raw-SQL target of the grafana-clickhouse-datasource plugin (v4 query model)."""

    def __init__(self, sql: str, time_series: bool, ref_id: str) -> None:
        self.sql = sql
        self.time_series = time_series
        self.ref_id = ref_id

    def to_json(self) -> dict[str, object]:
        return {
            "datasource": CLICKHOUSE.to_json(),
            "editorType": "sql",
            "format": 0 if self.time_series else 1,
            "queryType": "timeseries" if self.time_series else "table",
            "rawSql": self.sql,
            "refId": self.ref_id,
        }


class ClickHouseQuery(cogbuilder.Builder[ClickHouseDataquery]):
    def __init__(self, sql: str, *, time_series: bool = False, ref_id: str = "A") -> None:
        self._query = ClickHouseDataquery(sql, time_series, ref_id)

    def build(self) -> ClickHouseDataquery:
        return self._query


_PARAMETER = re.compile(r"\{(\w+):[^{}]+\}")


def grafana_sql(sql: str, **bindings: str) -> str:
    """``sql`` with each ClickHouse ``{name:Type}`` parameter replaced by ``bindings[name]``
    (a SQL expression: a literal, a ``${var:sqlstring}`` variable, a Grafana macro)."""
    missing = set(_PARAMETER.findall(sql)) - bindings.keys()
    if missing:
        raise ValueError(f"unbound query parameters: {sorted(missing)}")
    return _PARAMETER.sub(lambda m: bindings[m.group(1)], sql).strip()


# --- small builders -------------------------------------------------------------------------------
def prom(
    expr: str, legend: str | None = None, *, instant: bool = False, ref_id: str = "A"
) -> prometheus.Dataquery:
    query = prometheus.Dataquery().expr(expr).ref_id(ref_id).datasource(PROMETHEUS)
    if legend is not None:
        query = query.legend_format(legend)
    if instant:
        query = query.instant().format(prommodel.PromQueryFormat.TABLE)
    return query


#: Where each figure lives in Prometheus: value and target are exported by the worker, the
#: rest recorded from them (the series budget, deploy/prometheus/rules/spm.yml).
QUOTA_SERIES = {
    "value": "spm_quota_value",
    "target": "spm_quota_target",
    "attainment": "spm:quota_attainment",
    "pace": "spm:quota_pace",
    "status": "spm:quota_status",
}
EXPECTED = "max by (period_type) (spm_period_expected)"


def quota(figure: str, scope: str, **matchers: str) -> str:
    """A quota-series selector for the board's metric and period type variables."""
    labels = {"scope": scope, "metric": "$metric", "period_type": "$period_type", **matchers}
    body = ", ".join(
        f'{name}=~"{value[1:]}"' if value.startswith("~") else f'{name}="{value}"'
        for name, value in labels.items()
    )
    return f"{QUOTA_SERIES[figure]}{{{body}}}"


def due_by_now(scope: str, **matchers: str) -> str:
    """target × the elapsed fraction of the period: what the target needs by now."""
    return f"{quota('target', scope, **matchers)} * on (period_type) group_left () {EXPECTED}"


def with_rep_names(expr: str) -> str:
    """Adds the rep's ``name`` label (from spm_rep_info) to a series keyed by ``id``."""
    return f"({expr}) * on (id) group_left (name) {REP_NAMES}"


def stat_panel() -> stat.Panel:
    return (
        stat.Panel()
        .datasource(PROMETHEUS)
        .reduce_options(common_builders.ReduceDataOptions().calcs(["lastNotNull"]))
        .graph_mode(common.BigValueGraphMode.AREA)
    )


def count_stat(title: str, query: str, legend: str, below: str, from_one: str) -> stat.Panel:
    """A big coloured count: ``below`` while it is 0, ``from_one`` from 1 on."""
    return (
        stat_panel()
        .title(title)
        .with_target(prom(query, legend))
        .thresholds(
            dashboard.ThresholdsConfig()
            .mode(model.ThresholdsMode.ABSOLUTE)
            .steps([model.Threshold(value=None, color=below), model.Threshold(1, from_one)])
        )
        .color_mode(common.BigValueColorMode.BACKGROUND)
        .span(6)
        .height(5)
    )


def timeseries_panel() -> timeseries.Panel:
    return timeseries.Panel().datasource(PROMETHEUS).legend(legend())


def table_panel() -> table.Panel:
    return table.Panel().datasource(PROMETHEUS).show_header(True)


def bargauge_panel() -> bargauge.Panel:
    return (
        bargauge.Panel()
        .datasource(PROMETHEUS)
        .reduce_options(common_builders.ReduceDataOptions().calcs(["lastNotNull"]))
        .orientation(common.VizOrientation.HORIZONTAL)
    )


def statetimeline_panel() -> statetimeline.Panel:
    return statetimeline.Panel().datasource(PROMETHEUS).legend(legend())


def legend() -> common_builders.VizLegendOptions:
    return (
        common_builders.VizLegendOptions()
        .display_mode(common.LegendDisplayMode.LIST)
        .placement(common.LegendPlacement.BOTTOM)
        .show_legend(True)
    )


def pace_thresholds() -> dashboard.ThresholdsConfig:
    return (
        dashboard.ThresholdsConfig()
        .mode(model.ThresholdsMode.ABSOLUTE)
        .steps(
            [
                model.Threshold(value=None, color="red"),
                model.Threshold(value=BEHIND_PACE, color="orange"),
                model.Threshold(value=AT_RISK_PACE, color="green"),
            ]
        )
    )


def attainment_column() -> list[model.DynamicConfigValue]:
    """A table column of attainments (value / target) as a percent gauge up to 100 %."""
    return [
        model.DynamicConfigValue("unit", "percentunit"),
        model.DynamicConfigValue("custom.cellOptions", {"type": "gauge", "mode": "basic"}),
        model.DynamicConfigValue("max", 1),
    ]


def pace_column() -> list[model.DynamicConfigValue]:
    """A table column of paces, coloured by the pace thresholds."""
    return [
        model.DynamicConfigValue("thresholds", pace_thresholds().build()),
        model.DynamicConfigValue("custom.cellOptions", {"type": "color-background"}),
        model.DynamicConfigValue("decimals", 2),
    ]


def status_column() -> list[model.DynamicConfigValue]:
    """A table column of status codes, shown by name and colour."""
    return [
        model.DynamicConfigValue("mappings", status_mappings()),
        model.DynamicConfigValue("custom.cellOptions", {"type": "color-text"}),
    ]


def status_mappings() -> list[model.ValueMapping]:
    return [
        model.ValueMap(
            options={
                str(code): model.ValueMappingResult(
                    text=name.replace("_", " "), color=STATUS_COLORS[name], index=code
                )
                for name, code in STATUS_CODES.items()
            }
        )
    ]


def merge_and_hide(*hidden: str, rename: dict[str, str]) -> list[model.DataTransformerConfig]:
    """Table transformations: join instant queries on their labels, tidy the columns."""
    return [
        model.DataTransformerConfig(id_val="merge", options={}),
        model.DataTransformerConfig(
            id_val="organize",
            options={
                "excludeByName": dict.fromkeys(("Time", *hidden), True),
                "renameByName": rename,
            },
        ),
    ]


def link(title: str, url: str) -> model.DashboardLink:
    return dashboard.DashboardLink(title).url(url).build()


def prometheus_variable(name: str, label: str, query: str) -> dashboard.QueryVariable:
    return (
        dashboard.QueryVariable(name)
        .label(label)
        .datasource(PROMETHEUS)
        .query({"query": query, "refId": f"{name}-variable"})
        .refresh(model.VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(model.VariableSort.ALPHABETICAL_ASC)
    )


def period_type_variable() -> Any:
    """The period types the worker exports (SPM_METRICS_PERIOD_TYPES), month first."""
    return prometheus_variable(
        "period_type", "Period", "label_values(spm_quota_target, period_type)"
    ).current(model.VariableOption(selected=True, text="month", value="month"))


def metric_variable() -> dashboard.QueryVariable:
    return prometheus_variable("metric", "Metric", "label_values(spm_quota_target, metric)")


def base(title: str, uid: str, description: str) -> dashboard.Dashboard:
    return (
        dashboard.Dashboard(title)
        .uid(uid)
        .description(description)
        .tags(["spm"])
        .editable()
        .timezone("browser")
        .refresh("30s")
        .tooltip(model.DashboardCursorSync.CROSSHAIR)
        .link(
            dashboard.DashboardLink("SPM boards")
            .type(model.DashboardLinkType.DASHBOARDS)
            .tags(["spm"])
            .as_dropdown(True)
            .include_vars(True)
            .keep_time(True)
        )
    )


# --- Sales floor ----------------------------------------------------------------------------------
def sales_floor() -> dashboard.Dashboard:
    team = {"team": "~$team"}
    behind = f"max by (id, team) ({quota('status', 'rep', **team)}) >= 1"
    return (
        base(
            "Sales floor",
            SALES_FLOOR_UID,
            "Live attainment of the company, the teams and every rep for the current period; "
            "who is behind pace and which alerts fire.",
        )
        .time("now-24h", "now")
        .with_variable(period_type_variable())
        .with_variable(metric_variable())
        .with_variable(
            prometheus_variable("team", "Team", 'label_values(spm_quota_value{scope="team"}, id)')
            .include_all(True)
            .all_value(".*")
        )
        .with_row(dashboard.Row("Company"))
        .with_panel(
            stat_panel()
            .title("Company attainment")
            .description("Value so far / target of the current period.")
            .with_target(prom(f"max({quota('attainment', 'company')})", "attainment"))
            .unit("percentunit")
            .span(6)
            .height(5)
        )
        .with_panel(
            stat_panel()
            .title("Company pace")
            .description("Attainment / elapsed share of the period; below 1 is behind.")
            .with_target(prom(f"max({quota('pace', 'company')})", "pace"))
            .thresholds(pace_thresholds())
            .decimals(2)
            .color_mode(common.BigValueColorMode.BACKGROUND)
            .span(6)
            .height(5)
        )
        .with_panel(
            count_stat(
                "Reps behind target",
                f"count(max by (id) ({quota('status', 'rep', **team)}) == 2) or vector(0)",
                "reps",
                "green",
                "red",
            )
        )
        .with_panel(
            count_stat(
                "Quota alerts firing",
                'count(ALERTS{alertstate="firing", component="quota", team=~"$team"}) or vector(0)',
                "alerts",
                "green",
                "orange",
            )
        )
        .with_panel(
            stat_panel()
            .title("Last reconciled")
            .description(
                "When `spm reconcile` last proved the live figures against the history "
                "(every scope recomputed from the stored events), and how many differed."
            )
            .datasource(CLICKHOUSE)
            .with_target(ClickHouseQuery(grafana_sql(credit_history.LAST_RECONCILED_SQL)))
            .unit("dateTimeFromNow")
            .override_by_name("differences", [model.DynamicConfigValue("unit", "none")])
            .text_mode(common.BigValueTextMode.VALUE_AND_NAME)
            .graph_mode(common.BigValueGraphMode.NONE)
            .span(6)
            .height(5)
        )
        .with_row(dashboard.Row("Teams"))
        .with_panel(
            table_panel()
            .title("Team standings")
            .description("Exact figures of the current period from ClickHouse, best first.")
            .datasource(CLICKHOUSE)
            .with_target(
                ClickHouseQuery(
                    grafana_sql(
                        current_figures.TEAM_STANDINGS_SQL,
                        metric="${metric:sqlstring}",
                        period_type="${period_type:sqlstring}",
                        team="${team:sqlstring}",
                    )
                )
            )
            .transformations(
                merge_and_hide(
                    rename={
                        "id": "Team",
                        "value": "Value",
                        "target": "Target",
                        "attainment": "Attainment",
                        "gap": "Gap",
                        "as_of": "As of",
                    }
                )
            )
            .override_by_name("Attainment", attainment_column())
            .span(12)
            .height(8)
        )
        .with_panel(
            timeseries_panel()
            .title("Team pace over time")
            .with_target(prom(f"max by (id) ({quota('pace', 'team', id='~$team')})", "{{id}}"))
            .thresholds(pace_thresholds())
            .thresholds_style(
                common_builders.GraphThresholdsStyleConfig().mode(
                    common.GraphTresholdsStyleMode.LINE
                )
            )
            .span(12)
            .height(8)
        )
        .with_row(dashboard.Row("Reps"))
        .with_panel(
            table_panel()
            .title("Leaderboard")
            .description(
                "Reps by value, exact figures of the current period from ClickHouse; click a "
                "name for the rep's board."
            )
            .datasource(CLICKHOUSE)
            .with_target(
                ClickHouseQuery(
                    grafana_sql(
                        current_figures.LEADERBOARD_SQL,
                        metric="${metric:sqlstring}",
                        period_type="${period_type:sqlstring}",
                        team="${team:sqlstring}",
                        until="today() + 1",
                        limit="100",
                    )
                )
            )
            .transformations(
                merge_and_hide(
                    "id",
                    "as_of",
                    rename={
                        "name": "Rep",
                        "team": "Team",
                        "value": "Value",
                        "target": "Target",
                        "attainment": "Attainment",
                    },
                )
            )
            .override_by_name("Attainment", attainment_column())
            .override_by_name(
                "Rep", [model.DynamicConfigValue("links", [link("Rep board", REP_BOARD_LINK)])]
            )
            .span(12)
            .height(12)
        )
        .with_panel(
            table_panel()
            .title("Behind pace")
            .description("Reps at risk or behind on the selected metric, worst pace first.")
            .with_target(
                prom(
                    "sort("
                    + with_rep_names(
                        f"max by (id, team) ({quota('pace', 'rep', **team)}) and on (id) ({behind})"
                    )
                    + ")",
                    instant=True,
                    ref_id="A",
                )
            )
            .with_target(prom(with_rep_names(behind), instant=True, ref_id="B"))
            .transformations(
                merge_and_hide(
                    rename={
                        "name": "Rep",
                        "team": "Team",
                        "Value #A": "Pace",
                        "Value #B": "Status",
                    }
                )
            )
            .override_by_name("Pace", pace_column())
            .override_by_name("Status", status_column())
            .override_by_name(
                "Rep", [model.DynamicConfigValue("links", [link("Rep board", REP_BOARD_LINK)])]
            )
            .span(12)
            .height(12)
        )
        .with_row(dashboard.Row("Alerts"))
        .with_panel(
            table_panel()
            .title("Alerts firing")
            .description("Quota alerts Prometheus is firing now (delivered by Alertmanager).")
            .with_target(
                prom(
                    "max by (alertname, team, rep, metric, period_type) "
                    '(ALERTS{alertstate="firing", component="quota", team=~"$team"})',
                    instant=True,
                )
            )
            .transformations(merge_and_hide("Value", rename={"alertname": "Alert"}))
            .span(12)
            .height(8)
        )
        .with_panel(
            table_panel()
            .title("Recent status changes")
            .description("Status transitions of the time range, from history (ClickHouse).")
            .with_target(
                ClickHouseQuery(
                    grafana_sql(
                        history.ALERT_HISTORY_SQL,
                        scope="''",
                        id="''",
                        since="$__fromTime_ms",
                        limit="200",
                    )
                )
            )
            .datasource(CLICKHOUSE)
            .span(12)
            .height(8)
        )
    )


# --- Rep drill-down -------------------------------------------------------------------------------
def rep_drilldown() -> dashboard.Dashboard:
    rep = {"id": "$rep"}
    by_metric = {"metric": "~.+"}
    cumulative = grafana_sql(
        history.CUMULATIVE_SQL,
        tz="${tz:sqlstring}",
        scope="'rep'",
        id="${rep:sqlstring}",
        metric="${metric:sqlstring}",
        period="${period:sqlstring}",
    )
    return (
        base(
            "Rep drill-down",
            REP_DRILLDOWN_UID,
            "One rep: progress against target per metric, pace, status history and the "
            "cumulative course of the period from ClickHouse against the target line.",
        )
        .time("now-30d", "now")
        .with_variable(
            prometheus_variable(
                "rep", "Rep", "query_result(max by (rep, name) (spm_rep_info))"
            ).regex('/name="(?<text>[^"]*)".*rep="(?<value>[^"]*)"/')
        )
        .with_variable(period_type_variable())
        .with_variable(metric_variable())
        .with_variable(
            dashboard.QueryVariable("period")
            .label("Period (history)")
            .datasource(CLICKHOUSE)
            .query(
                "SELECT DISTINCT period FROM progress_snapshots WHERE scope = 'rep' "
                "AND id = ${rep:sqlstring} AND period_type = ${period_type:sqlstring} "
                "ORDER BY period DESC"
            )
            .refresh(model.VariableRefresh.ON_TIME_RANGE_CHANGED)
        )
        .with_variable(
            dashboard.ConstantVariable("tz")
            .value("UTC")
            .description("The organisation's time zone (SPM_TIMEZONE) for history days.")
        )
        .with_row(dashboard.Row("Now"))
        .with_panel(
            table_panel()
            .title("Progress vs target")
            .description(
                "Exact figures of the current period per metric from ClickHouse (as of the last "
                "change); pace and status beside them move with time (Prometheus)."
            )
            .datasource(CLICKHOUSE)
            .with_target(
                ClickHouseQuery(
                    grafana_sql(
                        current_figures.PROGRESS_SQL,
                        scope="'rep'",
                        id="${rep:sqlstring}",
                        period_type="${period_type:sqlstring}",
                    )
                )
            )
            .transformations(
                merge_and_hide(
                    rename={
                        "metric": "Metric",
                        "value": "Value",
                        "target": "Target",
                        "attainment": "Attainment",
                        "gap": "Gap",
                        "as_of": "As of",
                    }
                )
            )
            .override_by_name("Attainment", attainment_column())
            .span(16)
            .height(9)
        )
        .with_panel(
            bargauge_panel()
            .title("Pace per metric")
            .with_target(
                prom(
                    f"max by (metric) ({quota('pace', 'rep', **rep, **by_metric)})",
                    "{{metric}}",
                    instant=True,
                )
            )
            .thresholds(pace_thresholds())
            .min(0)
            .max(1.5)
            .span(8)
            .height(9)
        )
        .with_row(dashboard.Row("Course of the period"))
        .with_panel(
            timeseries_panel()
            .title("Cumulative ${metric} in ${period} vs target (history)")
            .description(
                "Value at the end of each day from the progress snapshots in ClickHouse, "
                "against the period's target."
            )
            .datasource(CLICKHOUSE)
            .with_target(
                ClickHouseQuery(
                    "SELECT toDateTime(day) AS time,\n"
                    "       toFloat64(tupleElement(figures, 1)) AS value,\n"
                    "       toFloat64(tupleElement(figures, 2)) AS target\n"
                    f"FROM ({cumulative})\nORDER BY time",
                    time_series=True,
                )
            )
            .draw_style(common.GraphDrawStyle.LINE)
            .line_interpolation(common.LineInterpolation.STEP_AFTER)
            .override_by_name(
                "target",
                [
                    model.DynamicConfigValue(
                        "custom.lineStyle", {"fill": "dash", "dash": [10, 10]}
                    ),
                    model.DynamicConfigValue("color", {"mode": "fixed", "fixedColor": "red"}),
                ],
            )
            .span(12)
            .height(9)
        )
        .with_panel(
            timeseries_panel()
            .title("Live ${metric} vs what the target needs by now")
            .with_target(prom(f"max({quota('value', 'rep', **rep)})", "value", ref_id="A"))
            .with_target(
                prom(
                    f"max({due_by_now('rep', **rep)})",
                    "expected by now",
                    ref_id="B",
                )
            )
            .with_target(prom(f"max({quota('target', 'rep', **rep)})", "target", ref_id="C"))
            .span(12)
            .height(9)
        )
        .with_panel(
            statetimeline_panel()
            .title("Status per metric")
            .with_target(
                prom(
                    f"max by (metric) ({quota('status', 'rep', **rep, **by_metric)})", "{{metric}}"
                )
            )
            .mappings(status_mappings())
            .span(12)
            .height(7)
        )
        .with_panel(
            table_panel()
            .title("Explain: recent contributions")
            .description(
                "The rep's newest credits of the metric from history: each event, deal, split "
                "share, amount and rate, and whether a later win superseded it or a later "
                "loss or reopening retracted it (`spm explain` lists a whole period)."
            )
            .datasource(CLICKHOUSE)
            .with_target(
                ClickHouseQuery(
                    grafana_sql(
                        credit_history.RECENT_CREDITS_SQL,
                        rep="${rep:sqlstring}",
                        metric="${metric:sqlstring}",
                        limit="50",
                    )
                )
            )
            .span(24)
            .height(9)
        )
        .with_panel(
            table_panel()
            .title("Status changes (history)")
            .datasource(CLICKHOUSE)
            .with_target(
                ClickHouseQuery(
                    grafana_sql(
                        history.ALERT_HISTORY_SQL,
                        scope="'rep'",
                        id="${rep:sqlstring}",
                        since="$__fromTime_ms",
                        limit="100",
                    )
                )
            )
            .span(12)
            .height(7)
        )
    )


# --- Pipeline health ------------------------------------------------------------------------------
def rate(series: str, by: str) -> str:
    return f"sum by ({by}) (rate({series}[$__rate_interval]))"


def quantile(q: float, histogram: str) -> str:
    return f"histogram_quantile({q}, {rate(histogram + '_bucket', 'le')})"


def zero_if_none(expr: str, label: str, placeholder: str = "none") -> str:
    """``expr``, or one zero series labelled ``label=placeholder`` while ``expr`` has none (a
    counter that never counted has no series, and "0 per second" is the honest answer)."""
    return f'{expr} or on () label_replace(vector(0), "{label}", "{placeholder}", "", "")'


def pipeline_health() -> dashboard.Dashboard:
    worker = 'job="spm-worker"'
    return (
        base(
            "Pipeline health",
            PIPELINE_HEALTH_UID,
            "The SPM worker: throughput, rejects, event-time lag, consumer lag, state size, "
            "the ClickHouse sink and Faust's own sensors.",
        )
        .time("now-6h", "now")
        .with_row(dashboard.Row("Overview"))
        .with_panel(count_stat("Workers up", f"sum(up{{{worker}}})", "up", "red", "green"))
        .with_panel(
            stat_panel()
            .title("Events accepted / s")
            .with_target(
                prom("sum(rate(spm_events_processed_total[$__rate_interval]))", "events/s")
            )
            .unit("ops")
            .span(6)
            .height(5)
        )
        .with_panel(
            stat_panel()
            .title("Consumer lag")
            .with_target(prom("sum(spm_consumer_lag_messages)", "messages"))
            .unit("short")
            .span(6)
            .height(5)
        )
        .with_panel(
            count_stat(
                "Pipeline alerts firing",
                'count(ALERTS{alertstate="firing", component="pipeline"}) or vector(0)',
                "alerts",
                "green",
                "red",
            )
        )
        .with_row(dashboard.Row("Events"))
        .with_panel(
            timeseries_panel()
            .title("Events accepted by type")
            .with_target(prom(rate("spm_events_processed_total", "type"), "{{type}}"))
            .unit("ops")
            .span(8)
            .height(8)
        )
        .with_panel(
            timeseries_panel()
            .title("Events rejected (dead-lettered) by reason")
            .with_target(
                prom(
                    zero_if_none(rate("spm_events_rejected_total", "reason"), "reason"),
                    "{{reason}}",
                )
            )
            .unit("ops")
            .span(8)
            .height(8)
        )
        .with_panel(
            timeseries_panel()
            .title("Events ignored by type")
            .description("Valid events no metric counts.")
            .with_target(
                prom(zero_if_none(rate("spm_events_ignored_total", "type"), "type"), "{{type}}")
            )
            .unit("ops")
            .span(8)
            .height(8)
        )
        .with_panel(
            timeseries_panel()
            .title("Event-time lag (arrival − event time)")
            .with_target(
                prom(
                    quantile(0.5, "spm_event_time_lag_seconds"),
                    "p50",
                    ref_id="A",
                )
            )
            .with_target(
                prom(
                    quantile(0.95, "spm_event_time_lag_seconds"),
                    "p95",
                    ref_id="B",
                )
            )
            .unit("s")
            .span(8)
            .height(8)
        )
        .with_panel(
            timeseries_panel()
            .title("Consumer lag by topic")
            .with_target(prom("sum by (topic) (spm_consumer_lag_messages)", "{{topic}}"))
            .unit("short")
            .span(8)
            .height(8)
        )
        .with_panel(
            timeseries_panel()
            .title("Status changes emitted")
            .with_target(
                prom(
                    rate("spm_alerts_emitted_total", "scope, to_status"),
                    "{{scope}} → {{to_status}}",
                )
            )
            .unit("ops")
            .span(8)
            .height(8)
        )
        .with_row(dashboard.Row("State and sink"))
        .with_panel(
            timeseries_panel()
            .title("Table keys")
            .with_target(prom("sum by (table) (spm_table_keys)", "{{table}}"))
            .unit("short")
            .span(8)
            .height(8)
        )
        .with_panel(
            timeseries_panel()
            .title("ClickHouse rows written / s")
            .with_target(prom(rate("spm_sink_rows_written_total", "table"), "{{table}}"))
            .unit("rowsps")
            .span(8)
            .height(8)
        )
        .with_panel(
            timeseries_panel()
            .title("ClickHouse insert failures / s")
            .with_target(
                prom(
                    f"{rate('spm_sink_failures_total', 'table')} or "
                    f"{rate('spm_sink_rows_written_total', 'table')} * 0",
                    "{{table}}",
                )
            )
            .unit("ops")
            .span(8)
            .height(8)
        )
        .with_panel(
            timeseries_panel()
            .title("Sink lag by topic")
            .with_target(prom("max by (topic) (spm_sink_lag_messages)", "{{topic}}"))
            .unit("short")
            .span(8)
            .height(8)
        )
        .with_panel(
            timeseries_panel()
            .title("Rows per insert (p50 / p95)")
            .with_target(
                prom(
                    quantile(0.5, "spm_sink_batch_rows"),
                    "p50",
                    ref_id="A",
                )
            )
            .with_target(
                prom(
                    quantile(0.95, "spm_sink_batch_rows"),
                    "p95",
                    ref_id="B",
                )
            )
            .span(8)
            .height(8)
        )
        .with_panel(
            table_panel()
            .title("Rows in ClickHouse history")
            .datasource(CLICKHOUSE)
            .with_target(
                ClickHouseQuery(
                    "SELECT table, sum(rows) AS rows,\n"
                    "       formatReadableSize(sum(bytes_on_disk)) AS size\n"
                    "FROM system.parts\n"
                    "WHERE active AND database = currentDatabase()\n"
                    "GROUP BY table\nORDER BY table"
                )
            )
            .span(8)
            .height(8)
        )
        .with_row(dashboard.Row("Dead letters and Faust"))
        .with_panel(
            table_panel()
            .title("Dead letters by reason (history)")
            .datasource(CLICKHOUSE)
            .with_target(
                ClickHouseQuery(grafana_sql(history.REJECTED_BY_REASON_SQL, since="$__fromTime_ms"))
            )
            .span(12)
            .height(8)
        )
        .with_panel(
            timeseries_panel()
            .title("Faust: messages received / s and event runtime p95")
            .with_target(
                prom(
                    "sum(rate(spm_faust_messages_received_total[$__rate_interval]))",
                    "messages/s",
                    ref_id="A",
                )
            )
            .with_target(
                prom(
                    quantile(0.95, "spm_faust_events_runtime_ms"),
                    "runtime p95 (ms)",
                    ref_id="B",
                )
            )
            .span(12)
            .height(8)
        )
        .with_panel(
            timeseries_panel()
            .title("Worker memory")
            .with_target(prom(f"process_resident_memory_bytes{{{worker}}}", "{{instance}}"))
            .unit("bytes")
            .span(12)
            .height(7)
        )
        .with_panel(
            timeseries_panel()
            .title("Worker CPU")
            .with_target(
                prom(
                    f"rate(process_cpu_seconds_total{{{worker}}}[$__rate_interval])", "{{instance}}"
                )
            )
            .unit("percentunit")
            .span(12)
            .height(7)
        )
    )


# --- output ---------------------------------------------------------------------------------------
BOARDS = {
    "sales-floor.json": sales_floor,
    "rep-drilldown.json": rep_drilldown,
    "pipeline-health.json": pipeline_health,
}


def render(board: dashboard.Dashboard) -> str:
    """The board's JSON with stable panel ids (1, 2, … in layout order)."""
    data: dict[str, Any] = json.loads(JSONEncoder().encode(board.build()))
    for number, panel in enumerate(data.get("panels", []), start=1):
        panel["id"] = number
    return json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def render_all() -> dict[str, str]:
    """File name → JSON text of every board."""
    return {name: render(make()) for name, make in BOARDS.items()}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--out", type=Path, default=HERE, help="directory (default: dashboards/)")
    out = parser.parse_args(argv).out
    out.mkdir(parents=True, exist_ok=True)
    for name, text in render_all().items():
        (out / name).write_text(text)


if __name__ == "__main__":
    main()
