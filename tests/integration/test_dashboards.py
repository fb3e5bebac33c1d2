"""Every panel query of every board returns data from a real Prometheus and a real chDB.

A real Prometheus (own instance, the shipped alert rules) scrapes the worker's metrics registry
(``streams.metrics``) served on loopback while a rep behind target, an on-track rep, their team
and the company are published through ``QuotaExporter`` and the pipeline counters move; the
history tables are migrated into a real chDB and filled through the sink's own row mappers.
Then the board variables are resolved the way Grafana does and each Prometheus and ClickHouse
query must return data; the Alerts panel must show the ``RepBehindTarget`` the rules fired.

The end-to-end test with the worker and the generator reuses ``dashboards.queries`` the same way.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from aiokafka import ConsumerRecord
from clickhouse_connect.driver import Client
from prometheus_client import start_http_server

from dashboards.queries import BoardRunner, TimeRange, load_boards, panel_queries
from streams import credit_history, metrics, reconcile
from streams.chclient import close_clients, get_client
from streams.engine.errors import Invalid
from streams.engine.pace import Thresholds
from streams.engine.recompute import contributions
from streams.migrations import migrate
from streams.rules import Rules
from streams.settings import REPO_ROOT, Settings
from streams.sinks.clickhouse import (
    COLUMNS,
    accepted_rows,
    alert_row,
    progress_row,
    rejected_row,
)

RULES = REPO_ROOT / "deploy" / "prometheus" / "rules" / "spm.yml"
NOW = datetime.now(UTC)
MONTH, QUARTER = NOW.strftime("%Y-%m"), f"{NOW.year}-Q{(NOW.month - 1) // 3 + 1}"
BEHIND = {
    "value": "1200",
    "target": "10000",
    "attainment": "0.12",
    "expected": "0.5",
    "pace": "0.24",
    "status": "behind",
}
ON_TRACK = {
    "value": "6000",
    "target": "10000",
    "attainment": "0.6",
    "expected": "0.5",
    "pace": "1.2",
    "status": "on_track",
}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait(check: Callable[[], Any], seconds: float, what: str, log: Path | None = None) -> Any:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if result := check():
                return result
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    pytest.fail(f"{what} within {seconds}s\n{log.read_text() if log else ''}", pytrace=False)


def _publish_sales_floor() -> None:
    """A rep behind target and one on track in team t-emea, the team and the company, half-way
    through their periods (figures of other period types than the default budget's are not
    exported)."""
    metrics.configure_quotas(
        metrics.EXPORTED_METRICS, metrics.EXPORTED_PERIOD_TYPES, ("revenue", "calls"), Thresholds()
    )
    for period_type in metrics.EXPORTED_PERIOD_TYPES:
        metrics.PERIOD_EXPECTED.labels(period_type).set(float(BEHIND["expected"]))
        metrics.PERIOD_BUSINESS_DAYS_LEFT.labels(period_type).set(10)
    quotas = metrics.QUOTAS
    quotas.set_rep_info("r-1", "Ann Lee", "t-emea")
    quotas.set_rep_info("r-2", "Bo Chen", "t-emea")
    quotas.record_activity("r-2", NOW.timestamp() - 600)
    for metric in ("revenue", "calls"):
        for period_type in ("month", "quarter"):
            quotas.publish("rep", "r-1", metric, period_type, BEHIND, team="t-emea")
            quotas.publish("rep", "r-2", metric, period_type, ON_TRACK, team="t-emea")
            quotas.publish("team", "t-emea", metric, period_type, BEHIND)
            quotas.publish("company", "acme", metric, period_type, ON_TRACK)
    metrics.WORKER_UP.set(1)


def _move_pipeline_counters(stop: threading.Event) -> None:
    """Keep the pipeline metrics moving like a busy worker's."""
    while not stop.is_set():
        metrics.EVENTS_PROCESSED.labels("call.completed").inc(3)
        metrics.EVENTS_REJECTED.labels("schema").inc()
        metrics.EVENTS_IGNORED.labels(metrics.IGNORED_TYPES("ticket.closed")).inc()
        metrics.EVENT_TIME_LAG.observe(2.5)
        metrics.TABLE_KEYS.labels("contributions").set(42)
        metrics.CONSUMER_LAG.labels("spm.activity", "0").set(7)
        metrics.ALERTS_EMITTED.labels("rep", "behind").inc()
        metrics.SINK_ROWS_WRITTEN.labels("activity_events").inc(3)
        metrics.SINK_BATCH_ROWS.observe(3)
        metrics.SINK_LAG.labels("spm.events").set(5)
        stop.wait(0.25)


@pytest.fixture
def worker_metrics() -> Iterator[str]:
    """The worker's registry on a loopback port, with quota series and moving counters."""
    port = _free_port()
    server, _ = start_http_server(port, addr="127.0.0.1", registry=metrics.ALL)
    _publish_sales_floor()
    stop = threading.Event()
    ticker = threading.Thread(target=_move_pipeline_counters, args=(stop,), daemon=True)
    ticker.start()
    yield f"127.0.0.1:{port}"
    stop.set()
    ticker.join()
    server.shutdown()
    metrics.QUOTAS.forget_where(lambda scope, scope_id: True)


@pytest.fixture
def prometheus(tmp_path: Path, worker_metrics: str) -> Iterator[str]:
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.fail("`prometheus` is not installed (Debian: apt-get install prometheus)")
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(RULES)],
        "scrape_configs": [
            {"job_name": "spm-worker", "static_configs": [{"targets": [worker_metrics]}]}
        ],
    }
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    address = f"127.0.0.1:{_free_port()}"
    log = tmp_path / "prometheus.log"
    process = subprocess.Popen(
        [
            binary,
            f"--config.file={tmp_path / 'prometheus.yml'}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address={address}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=log.open("w"),
    )
    url = f"http://{address}"
    try:
        _wait(lambda: httpx.get(f"{url}/-/ready").status_code == 200, 30, "Prometheus ready", log)
        yield url
    finally:
        process.terminate()
        process.wait(10)


def _record(
    topic: str,
    value: dict[str, Any] | bytes,
    at: datetime,
    headers: list[tuple[str, bytes]] | None = None,
) -> ConsumerRecord:
    """A consumed message as the sink's row mappers receive it."""
    raw = value if isinstance(value, bytes) else json.dumps(value).encode()
    return ConsumerRecord(
        topic=topic,
        partition=0,
        offset=0,
        timestamp=int(at.timestamp() * 1000),
        timestamp_type=0,
        key=None,
        value=raw,
        checksum=None,
        serialized_key_size=0,
        serialized_value_size=len(raw),
        headers=headers or [],
    )


@pytest.fixture
def history(tmp_path: Path) -> Iterator[Client]:
    """A migrated chDB holding snapshots of the last days, and a status change and a dead
    letter of a moment ago (inside the time range the test queries)."""
    close_clients()
    just_now = datetime.now(UTC) - timedelta(seconds=10)
    client = get_client(Settings(clickhouse_url=f"chdb://{tmp_path / 'clickhouse'}"))
    migrate(client)
    snapshots = [
        progress_row(
            {
                "scope": scope,
                "id": scope_id,
                "metric": metric,
                "period": period,
                "period_type": period_type,
                "as_of": (NOW - timedelta(days=days)).isoformat(),
                **figures,
                "projection": None,
                "gap": None,
            }
        )
        for scope, scope_id, figures in (
            ("rep", "r-1", BEHIND),
            ("rep", "r-2", ON_TRACK),
            ("team", "t-emea", BEHIND),
        )
        for metric in ("revenue", "calls")
        for period_type, period in (("month", MONTH), ("quarter", QUARTER))
        for days in (2, 1, 0)
    ]
    client.insert("progress_snapshots", snapshots, column_names=COLUMNS["progress_snapshots"])
    # the sink writes every progress message to current_figures too; the newest per key counts
    client.insert("current_figures", snapshots, column_names=COLUMNS["current_figures"])
    alert = {
        "alert_id": "rep:r-1:revenue:" + MONTH,
        "scope": "rep",
        "id": "r-1",
        "name": "Ann Lee",
        "team_id": "t-emea",
        "metric": "revenue",
        "period": MONTH,
        "from_status": "at_risk",
        "to_status": "behind",
        "value": "1200",
        "target": "10000",
        "pace": "0.24",
        "gap": "8800",
        "at": just_now.isoformat(),
    }
    client.insert(
        "alerts",
        [alert_row(_record("spm.alerts", alert, just_now))],
        column_names=COLUMNS["alerts"],
    )
    dead = _record(
        "spm.activity.dlq",
        b"{not json",
        just_now,
        headers=[
            ("spm-error-code", b"not_json"),
            ("spm-error-message", b"bad"),
            ("spm-source-topic", b"spm.activity"),
            ("spm-source-partition", b"1"),
            ("spm-source-offset", b"17"),
        ],
    )
    client.insert("rejected_events", [rejected_row(dead)], column_names=COLUMNS["rejected_events"])
    for table, rows in _credit_rows(CREDITED).items():
        client.insert(table, rows, column_names=COLUMNS[table])
    reconcile.record(
        client,
        reconcile.Result("run-1", MONTH, just_now, just_now, len(CREDITED), 12, ()),
    )
    yield client
    close_clients()


#: r-1's events for the explain table: calls, a deal won then re-won with a split (the first
#: win superseded), a deal won then lost (retracted), one in euros.
def _cloud(kind: str, n: int, at: datetime, **data: Any) -> dict[str, Any]:
    return {
        "specversion": "1.0",
        "id": f"{kind}-{n}",
        "source": "crm",
        "type": kind,
        "time": at.isoformat(),
        "data": {"rep_id": "r-1", **data},
    }


CREDITED = [
    _cloud("call.completed", 1, NOW - timedelta(hours=5)),
    _cloud("call.completed", 2, NOW - timedelta(hours=4)),
    _cloud("deal.won", 1, NOW - timedelta(days=3), deal_id="D-42", amount="9000", currency="USD"),
    _cloud(
        "deal.won",
        2,
        NOW - timedelta(days=2),
        deal_id="D-42",
        amount="12000",
        currency="EUR",
        splits=[{"rep_id": "r-1", "share": "0.6"}, {"rep_id": "r-2", "share": "0.4"}],
    ),
    _cloud("deal.won", 3, NOW - timedelta(days=2), deal_id="D-7", amount="500", currency="USD"),
    _cloud("deal.lost", 4, NOW - timedelta(days=1), deal_id="D-7"),
]


def _credit_rows(events: list[dict[str, Any]]) -> dict[str, list[Any]]:
    """The sink's own rows (activity_events and credits) of ``events``."""
    rows: dict[str, list[Any]] = {"activity_events": [], "credits": []}
    to_rows = accepted_rows(Rules.from_settings(Settings()))
    for event in events:
        for table, mapped in to_rows(_record("spm.activity", event, NOW)).items():
            rows[table].extend(mapped)
    return rows


def test_explain_table_marks_credits_as_the_engine_explains_them(history: Client) -> None:
    """The rep board's SQL (superseded/retracted) against the engine's explain, on real chDB."""
    rules = Rules.from_settings(Settings())
    events = [rules.decoder.decode(json.dumps(e).encode()) for e in CREDITED]
    listed = list(contributions([e for e in events if not isinstance(e, Invalid)], rules.catalog))
    for metric in ("revenue", "deals_won", "calls"):
        sql = credit_history.RECENT_CREDITS_SQL
        rows = history.query(sql, parameters={"rep": "r-1", "metric": metric, "limit": 50})
        shown = {
            (row["event"], row["status"], row["value"])
            for row in (dict(zip(rows.column_names, r, strict=True)) for r in rows.result_rows)
        }
        engine = {
            (f"{c.event.source}/{c.event.id}", c.status, c.claim.credit)
            for c in listed
            if c.claim.rep_id == "r-1" and c.claim.metric == metric
        }
        assert shown == engine, metric
        assert shown
    statuses = {c.status for c in listed}
    assert statuses == {"counted", "superseded", "retracted"}


def _has_data(result: list[Any]) -> bool:
    """A Prometheus result with at least one sample, or at least one SQL row."""
    return any(
        row.get("values") or row.get("value") if isinstance(row, dict) else True for row in result
    )


def test_every_panel_query_returns_data(prometheus: str, history: Client) -> None:
    started = datetime.now(UTC)

    def rep_behind_fires() -> bool:
        query = 'ALERTS{alertname="RepBehindTarget", alertstate="firing", rep="r-1"}'
        body = httpx.get(f"{prometheus}/api/v1/query", params={"query": query}).json()
        return bool(body["data"]["result"])

    _wait(rep_behind_fires, 90, "RepBehindTarget firing for r-1")
    window = TimeRange(started - timedelta(minutes=1), datetime.now(UTC))
    run_sql: Callable[[str], Any] = lambda sql: history.query(sql).result_rows  # noqa: E731

    empty = []
    with BoardRunner(prometheus, run_sql, window, scrape_interval=1) as runner:
        for board in load_boards().values():
            values = runner.variables(board, {"rep": "r-1"} if "rep" in _names(board) else {})
            for query in panel_queries(board):
                if not _has_data(runner.run(query, values)):
                    empty.append(
                        f"{board['uid']} / {query.panel} / {query.ref_id}: "
                        f"{runner.fill(query, values)}"
                    )
            if board["uid"] == "spm-sales-floor":
                [firing] = [q for q in panel_queries(board) if q.panel == "Alerts firing"]
                shown = [row["metric"] for row in runner.run(firing, values)]
                assert {
                    "alertname": "RepBehindTarget",
                    "rep": "r-1",
                    "team": "t-emea",
                    "metric": "revenue",
                    "period_type": "month",
                } in shown

    assert not empty, "panels without data:\n" + "\n".join(empty)


def test_rep_variable_offers_rep_ids_named_by_the_info_metric(
    prometheus: str, history: Client
) -> None:
    board = load_boards()["spm-rep-drilldown"]
    window = TimeRange(NOW - timedelta(minutes=5), datetime.now(UTC) + timedelta(minutes=1))
    _wait(
        lambda: httpx.get(f"{prometheus}/api/v1/query", params={"query": "spm_rep_info"}).json()[
            "data"
        ]["result"],
        30,
        "spm_rep_info scraped",
    )
    run_sql: Callable[[str], Any] = lambda sql: history.query(sql).result_rows  # noqa: E731
    with BoardRunner(prometheus, run_sql, window, scrape_interval=1) as runner:
        values = runner.variables(board)
        with pytest.raises(ValueError, match="not one of \\['r-1', 'r-2'\\]"):
            runner.variables(board, {"rep": "Ann Lee"})

    assert values["rep"] == "r-1"
    assert values["period_type"] == "month"
    assert values["metric"] == "calls"  # label_values sorted, first option
    assert values["period"] == MONTH  # from ClickHouse, newest period first


def _names(board: dict[str, Any]) -> set[str]:
    return {variable["name"] for variable in board["templating"].get("list", [])}
