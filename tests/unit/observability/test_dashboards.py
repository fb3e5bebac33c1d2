"""The committed boards: up to date with their generator, valid PromQL on exported series,
history SQL reused with every parameter bound, and alert links that open a real board."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from urllib.parse import parse_qs, urlsplit

import pytest
import yaml

from dashboards import build
from dashboards.queries import (
    BOARDS_DIR,
    PanelQuery,
    TimeRange,
    interpolate,
    load_boards,
    panel_queries,
    panels,
    sql_string,
)
from streams import current_figures, history
from streams.grafana import provisioned_datasources

from .helpers import RULES, exported_series_names, run, tool

RANGE = TimeRange(datetime(2026, 11, 27, 9, tzinfo=UTC), datetime(2026, 11, 27, 15, tzinfo=UTC))
SAMPLE_VALUES = {
    "period_type": "month",
    "metric": "revenue",
    "team": ".*",
    "rep": "r-1",
    "period": "2026-11",
    "tz": "UTC",
}


@pytest.fixture(scope="module")
def boards() -> dict[str, dict]:
    return load_boards()


def all_queries(boards: dict[str, dict]) -> list[PanelQuery]:
    return [query for board in boards.values() for query in panel_queries(board)]


def test_committed_json_is_what_the_generator_produces(tmp_path):
    build.main(["--out", str(tmp_path)])

    generated = {path.name: path.read_text() for path in tmp_path.glob("*.json")}
    committed = {path.name: path.read_text() for path in BOARDS_DIR.glob("*.json")}
    assert generated.keys() == committed.keys()
    stale = [name for name in generated if generated[name] != committed[name]]
    assert not stale, f"{stale} are stale: run `.venv/bin/python -m dashboards.build`"


def test_the_three_boards_exist_with_their_variables(boards):
    variables = {
        uid: [v["name"] for v in board["templating"].get("list", [])]
        for uid, board in boards.items()
    }
    assert variables == {
        "spm-sales-floor": ["period_type", "metric", "team"],
        "spm-rep-drilldown": ["rep", "period_type", "metric", "period", "tz"],
        "spm-pipeline-health": [],
    }


def test_panel_ids_are_unique_and_every_target_names_its_data_source(boards):
    for board in boards.values():
        ids = [panel["id"] for panel in board["panels"]]
        assert len(ids) == len(set(ids))
    for query in all_queries(boards):
        assert query.datasource in {"prometheus", "clickhouse"}
        assert query.text.strip()


def test_every_promql_query_is_valid_promql(boards, tmp_path):
    """promtool parses every filled-in expression (as recording rules in a scratch file)."""
    expressions = [
        interpolate(q.text, SAMPLE_VALUES, RANGE, datasource="prometheus")
        for q in all_queries(boards)
        if q.datasource == "prometheus"
    ]
    rules = [{"record": f"check:panel_{n}", "expr": expr} for n, expr in enumerate(expressions)]
    scratch = tmp_path / "panels.yml"
    scratch.write_text(yaml.safe_dump({"groups": [{"name": "panels", "rules": rules}]}))

    result = run(tool("promtool"), "check", "rules", scratch)

    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{len(expressions)} rules found" in result.stdout


def test_panels_only_use_series_the_worker_exports_or_the_rules_record(boards):
    exported = exported_series_names() | {"up", "ALERTS"}
    recorded = {
        rule["record"]
        for path in RULES
        for group in yaml.safe_load(path.read_text())["groups"]
        for rule in group["rules"]
        if "record" in rule
    }
    for query in all_queries(boards):
        if query.datasource != "prometheus":
            continue
        used = set(re.findall(r"\b(?:spm|process)_[a-z_]+", query.text))
        used |= {name for name in ("up", "ALERTS") if re.search(rf"\b{name}\{{", query.text)}
        from_rules = set(re.findall(r"\bspm:[a-z_]+", query.text))
        assert used or from_rules, query
        assert used <= exported, f"{query.panel}: {used - exported}"
        assert from_rules <= recorded, f"{query.panel}: {from_rules - recorded}"


def test_history_panels_run_the_history_modules_sql(boards):
    sql = {q.panel: q.text for q in all_queries(boards) if q.datasource == "clickhouse"}
    reused = {
        "Cumulative ${metric} in ${period} vs target (history)": history.CUMULATIVE_SQL,
        "Status changes (history)": history.ALERT_HISTORY_SQL,
        "Recent status changes": history.ALERT_HISTORY_SQL,
        "Dead letters by reason (history)": history.REJECTED_BY_REASON_SQL,
        "Leaderboard": current_figures.LEADERBOARD_SQL,
        "Team standings": current_figures.TEAM_STANDINGS_SQL,
        "Progress vs target": current_figures.PROGRESS_SQL,
    }
    for panel, original in reused.items():
        # the original text with each {name:Type} parameter replaced, nothing else changed
        pattern = re.escape(original.strip())
        pattern = re.sub(r"\\\{\w+:.+?\\\}", ".+?", pattern)
        assert re.search(pattern, sql[panel], re.S), panel
        assert not re.search(r"(?<!\$)\{\w+:[^{}]+\}", sql[panel]), f"{panel}: unbound"


def test_grafana_sql_refuses_an_unbound_parameter():
    with pytest.raises(ValueError, match="unbound query parameters: \\['since'\\]"):
        build.grafana_sql(history.ALERT_HISTORY_SQL, scope="''", id="''", limit="1")


def test_interpolate_fills_variables_formats_and_macros():
    sql = "SELECT 1 WHERE id = ${rep:sqlstring} AND at >= $__fromTime_ms AND $__timeFilter(at)"
    filled = interpolate(sql, {"rep": "o'neil"}, RANGE, datasource="clickhouse")
    start_s, end_s = int(RANGE.start.timestamp()), int(RANGE.end.timestamp())
    assert filled == (
        "SELECT 1 WHERE id = 'o''neil' "
        f"AND at >= fromUnixTimestamp64Milli({start_s * 1000}) "
        f"AND at >= toDateTime({start_s}) AND at <= toDateTime({end_s})"
    )
    promql = (
        'rate(x{metric="$metric"}[$__rate_interval]) + label_replace(y, "a", "$1", "b", "(.+)")'
    )
    assert interpolate(promql, {"metric": "calls"}, RANGE, datasource="prometheus", step=10,
                       scrape_interval=5) == (
        'rate(x{metric="calls"}[20s]) + label_replace(y, "a", "$1", "b", "(.+)")'
    )  # fmt: skip


@pytest.mark.parametrize(
    ("text", "datasource", "error"),
    [
        ('x{a="$nope"}', "prometheus", "unknown variable"),
        ("rate(x[$__unknown])", "prometheus", "unsupported Grafana macro"),
        ("SELECT ${rep:csv}", "clickhouse", "format 'csv'"),
        ("SELECT 1 WHERE $__timeFilter()", "clickhouse", "needs a column"),
    ],
)
def test_interpolate_refuses_what_it_cannot_fill_like_grafana(text, datasource, error):
    with pytest.raises(ValueError, match=error):
        interpolate(text, {"rep": "r-1"}, RANGE, datasource=datasource)


def test_sql_string_quotes_like_grafana():
    assert sql_string("it's") == "'it''s'"


def test_alert_dashboard_links_open_an_existing_board_with_its_variables(boards):
    for path in RULES:
        for group in yaml.safe_load(path.read_text())["groups"]:
            for rule in group["rules"]:
                if "record" in rule:
                    continue
                url = urlsplit(rule["annotations"]["dashboard"])
                uid = url.path.split("/")[2]
                assert uid in boards, f"{rule['alert']}: no board {uid}"
                names = {v["name"] for v in boards[uid]["templating"].get("list", [])}
                params = {key.removeprefix("var-") for key in parse_qs(url.query)}
                assert params <= names, f"{rule['alert']}: {params - names}"


def test_every_data_source_the_boards_use_is_provisioned_with_that_type(boards):
    provisioned = {uid: source["type"] for uid, source in provisioned_datasources().items()}
    refs = [
        target.get("datasource") or panel["datasource"]
        for board in boards.values()
        for panel in panels(board)
        for target in panel.get("targets") or []
    ]
    refs += [
        variable["datasource"]
        for board in boards.values()
        for variable in board["templating"].get("list", [])
        if "datasource" in variable
    ]
    used = {ref["uid"]: ref["type"] for ref in refs}
    assert set(used) == {"prometheus", "clickhouse"}
    assert used.items() <= provisioned.items()
