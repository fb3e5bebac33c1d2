"""Issue 6 without a Grafana server: the boards and the behind-target alert on the live stack.

A worker process, on the web port the stack's Prometheus scrapes, is fed a tiny synthetic
organisation from ``tools.orgsim``: teams, roster and quotas, the last days of activity
(within the current quarter) and a few malformed messages. Then, against the real Prometheus,
Alertmanager and the worker's own chDB:

1. every Prometheus panel query of every board, its variables filled with the values Grafana
   would offer, returns samples;
2. every ClickHouse panel query returns rows (read after the worker stopped: chDB lets one
   process open a path, and SIGTERM makes the sink flush);
3. each rep generated to fall behind fires ``RepBehindTarget`` in Prometheus, and Alertmanager
   delivers it, Slack-formatted, to the webhook receiver named in ``alertmanager.yml`` (a real
   HTTP server started here), with the rep's id and name in the message.

Rep and team ids carry the test's unique prefix: series and alerts of earlier runs (same
Prometheus, same Alertmanager notification log) can neither satisfy nor mute this run's.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import httpx
import pytest
import yaml

from dashboards.queries import BoardRunner, TimeRange, has_data, load_boards, panel_queries
from streams.chclient import close_clients, get_client
from streams.producer import EventProducer
from streams.rules import Rules
from streams.settings import Settings
from streams.topics import ensure_topics
from tests.integration.harness import (
    Worker,
    duration_seconds,
    prove_reconciled,
    wait_caught_up,
    worker_settings,
)
from tools import stack as local_stack
from tools.orgsim import Organisation, Rep, Team, backfill
from tools.settings import StackSettings
from tools.stack import ALERTMANAGER_CONFIG

BUDGET = 245.0  # seconds of waiting; stopping the worker (≤ 40 s) and the queries follow
SEED = 6
BACKFILL_DAYS = 7  # ~5 weekdays × 6 reps: a few hundred events, under 30 s for the worker
MALFORMED = (b"{not json", b'{"specversion": "1.0", "id": "x"}')
POLL = 0.5

T = TypeVar("T")


# --- time ---------------------------------------------------------------------------------------
class Budget:
    """One deadline for the whole test; every wait polls a condition within it and fails with
    the worker's log tail."""

    def __init__(self, seconds: float) -> None:
        self.end = time.monotonic() + seconds
        self.worker: Worker | None = None

    def remaining(self) -> float:
        return max(0.0, self.end - time.monotonic())

    def fail(self, message: str) -> None:
        tail = self.worker.log_tail() if self.worker is not None else "(no worker)"
        pytest.fail(f"{message}\n--- worker log tail ---\n{tail}", pytrace=False)

    def wait(
        self, check: Callable[[], T | None], seconds: float, what: str | Callable[[], str]
    ) -> T:
        """``check()``'s first truthy result, polled until ``seconds`` (or the budget) end;
        ``what`` (or what it returns, at the time of failing) names what did not happen."""
        bound = min(seconds, self.remaining())
        deadline = time.monotonic() + bound
        while True:
            self.check_worker()
            try:
                result = check()
            except httpx.TransportError:
                result = None
            if result:
                return result
            if time.monotonic() >= deadline:
                self.fail(f"not within {bound:.0f} s: {what if isinstance(what, str) else what()}")
            time.sleep(POLL)

    def check_worker(self) -> None:
        process = self.worker.process if self.worker is not None else None
        if process is not None and process.poll() is not None:
            self.fail(f"the worker exited with {process.returncode}")


# --- the organisation ---------------------------------------------------------------------------
def _tagged(org: Organisation, tag: str) -> Organisation:
    """The same organisation with every team and rep id prefixed by ``tag``."""

    def team(t: Team) -> Team:
        parent = None if t.parent_id is None else f"{tag}-{t.parent_id}"
        return replace(t, team_id=f"{tag}-{t.team_id}", parent_id=parent)

    def rep(r: Rep) -> Rep:
        return replace(r, rep_id=f"{tag}-{r.rep_id}", team_id=f"{tag}-{r.team_id}")

    return replace(
        org,
        company=team(org.company),
        regions=tuple(map(team, org.regions)),
        teams=tuple(map(team, org.teams)),
        reps=tuple(map(rep, org.reps)),
    )


def _feed(settings: Settings, org: Organisation, now: datetime) -> int:
    """Publish the organisation, its activity of the last days and a few malformed messages;
    returns the number of events sent."""
    rules = Rules.from_settings(settings)
    since = max(rules.calendar.current("quarter", now).start, now - timedelta(days=BACKFILL_DAYS))
    events = backfill(org, now, rules.calendar, since=since)
    with EventProducer(settings, rules.decoder) as producer:
        producer.publish_teams(org.team_rows())
        producer.publish_roster(org.roster_rows())
        producer.publish_quotas(org.quota_rows(now, rules.calendar, rules.catalog, rules.rates))
        rejected = [r for event in events if (r := producer.send_event(event)) is not None]
        assert not rejected, f"orgsim made events the contract rejects: {rejected[:3]}"
        for raw in MALFORMED:
            producer.send_raw(raw)
    return len(events)


# --- the Slack webhook receiver -------------------------------------------------------------------
@dataclass
class Webhook:
    """A loopback HTTP server keeping every JSON body posted to ``path``."""

    host: str
    port: int
    path: str
    channel: str  # of the quota alerts' receiver
    posts: list[dict[str, Any]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def received(self) -> list[dict[str, Any]]:
        with self.lock:
            return list(self.posts)


def _alertmanager_webhook(stack_settings: StackSettings) -> Webhook:
    """The Slack webhook of the route's default receiver (the sales managers, who get the
    quota alerts) in the stack's Alertmanager config."""
    config = local_stack.render_alertmanager_config(stack_settings)
    [receiver] = [r for r in config["receivers"] if r["name"] == config["route"]["receiver"]]
    slack = receiver["slack_configs"][0]
    url = urlsplit(slack["api_url"])
    assert url.hostname == "127.0.0.1" and url.port, f"webhook not on loopback: {url.geturl()}"
    return Webhook(url.hostname, url.port, url.path, slack["channel"])


@pytest.fixture
def webhook(stack_settings: StackSettings) -> Iterator[Webhook]:
    hook = _alertmanager_webhook(stack_settings)
    host, port = hook.host, hook.port

    class Receiver(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            if self.path == hook.path:
                with hook.lock:
                    hook.posts.append(json.loads(body))
            self.send_response(200 if self.path == hook.path else 404)
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, format: str, *args: Any) -> None:
            pass  # Alertmanager's posts are checked, not logged

    try:
        server = ThreadingHTTPServer((host, port), Receiver)
    except OSError as exc:
        pytest.fail(f"cannot listen on the Alertmanager webhook {host}:{port}: {exc}")
    thread = threading.Thread(target=server.serve_forever, name="slack-webhook", daemon=True)
    thread.start()
    yield hook
    server.shutdown()
    server.server_close()
    thread.join(10)


def _names_rep(post: dict[str, Any], channel: str, rep: Rep) -> bool:
    """A firing ``RepBehindTarget`` message to ``channel`` whose text names ``rep`` by id and
    name."""
    if post.get("channel") != channel:
        return False
    for attachment in post.get("attachments") or []:
        title, text = attachment.get("title", ""), attachment.get("text", "")
        if (
            title.startswith("[FIRING")
            and "RepBehindTarget" in title
            and rep.rep_id in text
            and rep.name in text
        ):
            return True
    return False


# --- Prometheus ---------------------------------------------------------------------------------
class Prometheus:
    def __init__(self, url: str) -> None:
        self.url = url
        self.http = httpx.Client(base_url=url, timeout=10)

    def get(self, path: str, **params: Any) -> Any:
        body = self.http.get(path, params=params).json()
        assert body["status"] == "success", f"Prometheus {path} {params}: {body}"
        return body["data"]

    def query(self, promql: str) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self.get("/api/v1/query", query=promql)["result"]
        return result

    def interval(self, name: str) -> float:
        """scrape_interval / evaluation_interval of the running server's configuration."""
        config = yaml.safe_load(self.get("/api/v1/status/config")["yaml"])
        return duration_seconds(config["global"][name])

    def rule_for(self, alert: str) -> float:
        """The ``for`` duration of an alerting rule as loaded."""
        for group in self.get("/api/v1/rules", type="alert")["groups"]:
            for rule in group["rules"]:
                if rule["name"] == alert:
                    return float(rule["duration"])
        raise AssertionError(f"Prometheus has no alerting rule {alert}")

    def scrape_target(self, job: str) -> dict[str, Any]:
        targets = self.get("/api/v1/targets", state="active")["activeTargets"]
        found = [t for t in targets if t["labels"]["job"] == job]
        assert len(found) == 1, f"Prometheus scrapes job {job} {len(found)} times: {found}"
        return found[0]

    def firing(self, alert: str) -> list[dict[str, Any]]:
        return [
            a["labels"]
            for a in self.get("/api/v1/alerts")["alerts"]
            if a["labels"].get("alertname") == alert and a["state"] == "firing"
        ]


def _alertmanager_view(url: str, reps: set[str]) -> list[str]:
    """What Alertmanager holds of the alerts of ``reps`` and which alerts inhibit them."""
    view = []
    for alert in httpx.get(f"{url}/api/v2/alerts", timeout=10).json():
        labels, status = alert["labels"], alert["status"]
        if labels.get("rep") in reps or labels.get("component") == "pipeline":
            view.append(
                f"{labels['alertname']}{{rep={labels.get('rep')}, "
                f"period_type={labels.get('period_type')}}} {status['state']} "
                f"inhibited by {status['inhibitedBy']} (fingerprint {alert['fingerprint']})"
            )
    return view


def _pipeline_alerts_active(url: str) -> bool:
    """Whether Alertmanager holds an active alert that inhibits quota alerts (a critical
    pipeline alert, as the inhibit rule in deploy/alertmanager says)."""
    return any(
        alert["labels"].get("component") == "pipeline"
        and alert["labels"].get("severity") == "critical"
        and alert["status"]["state"] == "active"
        for alert in httpx.get(f"{url}/api/v2/alerts", timeout=10).json()
    )


def _resolve_forgotten_alerts(alertmanager: str, prometheus: str) -> list[dict[str, str]]:
    """Resolve in Alertmanager the pipeline alerts Prometheus no longer fires; returns their
    labels.

    A Prometheus reload that moves its rule files (another checkout bringing the shared stack
    up) starts their alerts over as pending, and an alert that then clears before its ``for``
    never sends a resolution: Alertmanager keeps the earlier firing one until its ``endsAt``
    (four resend delays). A stale ``SpmWorkerDown`` of the idle worker port would inhibit this
    test's alerts for minutes, so it is resolved here, as Prometheus would have done."""
    firing = [
        a["labels"]
        for a in httpx.get(f"{prometheus}/api/v1/alerts", timeout=10).json()["data"]["alerts"]
        if a["state"] == "firing"
    ]
    held = httpx.get(f"{alertmanager}/api/v2/alerts", params={"active": "true"}, timeout=10)
    forgotten = [
        a
        for a in held.json()
        if a["labels"].get("component") == "pipeline" and a["labels"] not in firing
    ]
    if forgotten:
        now = datetime.now(UTC).isoformat()
        resolved = [
            {"labels": a["labels"], "startsAt": a["startsAt"], "endsAt": now} for a in forgotten
        ]
        httpx.post(f"{alertmanager}/api/v2/alerts", json=resolved, timeout=10).raise_for_status()
    return [a["labels"] for a in forgotten]


def _port_answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


# --- the test -------------------------------------------------------------------------------------
@pytest.mark.stack
@pytest.mark.timeout(320)
def test_live_boards_have_data_and_behind_reps_reach_the_slack_webhook(
    stack: Settings,
    stack_settings: StackSettings,
    unique_prefix: str,
    tmp_path: Path,
    webhook: Webhook,
) -> None:
    budget = Budget(BUDGET)
    settings = worker_settings(
        stack, unique_prefix, tmp_path, web_port=stack.web_port, alert_interval=2.0
    )
    prometheus = Prometheus(f"http://127.0.0.1:{stack_settings.prometheus_port}")
    scrape = prometheus.interval("scrape_interval")
    evaluation = prometheus.interval("evaluation_interval")
    pending = prometheus.rule_for("RepBehindTarget")
    target = prometheus.scrape_target("spm-worker")
    assert urlsplit(target["scrapeUrl"]).port == settings.web_port, (
        f"the stack's Prometheus scrapes {target['scrapeUrl']}, not the worker port "
        f"{settings.web_port}"
    )
    if _port_answers(settings.web_port):
        pytest.fail(
            f"something already listens on the worker port {settings.web_port} (a worker or "
            "the demo?); the stack's Prometheus must scrape this test's worker there"
        )
    alertmanager = f"http://127.0.0.1:{stack_settings.alertmanager_port}"
    forgotten = _resolve_forgotten_alerts(alertmanager, prometheus.url)
    if forgotten:
        print(f"\nresolved in Alertmanager, no longer fired by Prometheus: {forgotten}")
    group_wait = duration_seconds(
        yaml.safe_load(ALERTMANAGER_CONFIG.read_text())["route"]["group_wait"]
    )

    org = _tagged(
        Organisation.generate(SEED, regions=1, teams_per_region=2, reps_per_team=3),
        unique_prefix,
    )
    behind = [rep for rep in org.reps if rep.behind]
    assert len(behind) == 2
    ensure_topics(settings)
    started = datetime.now(UTC)
    worker = Worker(settings, tmp_path / "worker.log")
    budget.worker = worker
    try:
        worker.start(timeout=min(90.0, budget.remaining()))
        sent = _feed(settings, org, datetime.now(UTC))
        # The input only: credits and buckets follow from it; the figures published from them
        # are awaited in Prometheus below.
        wait_caught_up(
            settings,
            topics=("activity", "events"),
            timeout=min(120.0, budget.remaining()),
            worker=worker,
        )
        caught_up = datetime.now(UTC)

        # The stack's Prometheus scrapes the worker: every rep's figures arrive.
        budget.wait(
            lambda: prometheus.scrape_target("spm-worker")["health"] == "up",
            4 * scrape,
            lambda: (
                f"the stack's Prometheus scraping the worker: "
                f"{prometheus.scrape_target('spm-worker')['lastError']}"
            ),
        )
        reps = f'rep=~"{unique_prefix}-.+"'
        budget.wait(
            lambda: len(prometheus.query(f"spm_rep_info{{{reps}}}")) == len(org.reps),
            4 * scrape,
            f"spm_rep_info of all {len(org.reps)} reps in Prometheus",
        )

        # (3) The behind reps fire RepBehindTarget and Alertmanager posts them to the webhook.
        wanted = {rep.rep_id for rep in behind}
        alert_bound = 2 * scrape + pending + 3 * evaluation + 10
        budget.wait(
            lambda: wanted <= {a.get("rep") for a in prometheus.firing("RepBehindTarget")},
            alert_bound,
            f"RepBehindTarget firing for {sorted(wanted)} (for: {pending:.0f} s)",
        )
        fired = datetime.now(UTC)
        # While the scraped port was idle (before this worker), SpmWorkerDown fired; it inhibits
        # quota alerts until Alertmanager holds its resolution. Prometheus sends that at once and
        # again every resend delay (1 min) should one be lost (a stack reload meanwhile).
        budget.wait(
            lambda: not _pipeline_alerts_active(alertmanager),
            75.0,
            lambda: (
                "critical pipeline alerts resolved in Alertmanager: "
                f"{_alertmanager_view(alertmanager, wanted)}"
            ),
        )
        budget.wait(
            lambda: all(
                any(_names_rep(post, webhook.channel, rep) for post in webhook.received())
                for rep in behind
            ),
            group_wait + 3 * evaluation + 15,
            lambda: (
                f"Slack messages naming {sorted(wanted)} at {webhook.path}; Alertmanager has "
                f"{_alertmanager_view(alertmanager, wanted)}; the webhook got "
                f"{json.dumps(webhook.received())[:2000]}"
            ),
        )
        # The nightly proof (the sales floor's "Last reconciled"): once the sink has stored the
        # input, `spm reconcile` finds the live figures equal to the history's recomputation.
        prove_reconciled(settings, worker, timeout=min(120.0, budget.remaining()))
        # The Prometheus time range ends here; the ClickHouse panels need the chDB path, which
        # the worker holds until it stops.
        end = datetime.now(UTC)
    finally:
        worker.stop()
    exit_code = worker.process.returncode if worker.process is not None else None
    assert exit_code == 0, (
        f"the worker did not stop cleanly on SIGTERM (exit {exit_code}), so its sink may not "
        f"have flushed\n{worker.log_tail()}"
    )

    # (1) + (2) Every panel query of every board returns data.
    close_clients()
    client = get_client(settings)
    try:
        empty = _empty_panels(
            prometheus.url,
            lambda sql: client.query(sql).result_rows,
            TimeRange(started, end),
            scrape,
            rep=behind[0].rep_id,
            alert_reps=wanted,
        )
    finally:
        close_clients()
    assert not empty, "panels without data:\n" + "\n".join(empty)
    print(
        f"\nsent {sent} events; caught up after {(caught_up - started).total_seconds():.0f} s, "
        f"RepBehindTarget firing after {(fired - started).total_seconds():.0f} s, delivered "
        f"after {(end - started).total_seconds():.0f} s"
    )


def _empty_panels(
    prometheus_url: str,
    run_sql: Callable[[str], Any],
    window: TimeRange,
    scrape: float,
    rep: str,
    alert_reps: set[str],
) -> list[str]:
    """Every panel query without data, with its filled-in text; also checks that the Alerts
    panel of the sales floor shows ``alert_reps``."""
    empty = []
    with BoardRunner(prometheus_url, run_sql, window, scrape_interval=scrape) as runner:
        for board in load_boards().values():
            names = {variable["name"] for variable in board.get("templating", {}).get("list", [])}
            values = runner.variables(board, {"rep": rep} if "rep" in names else {})
            for query in panel_queries(board):
                result = runner.run(query, values)
                if not has_data(result):
                    empty.append(
                        f"{board['uid']} / {query.panel} / {query.ref_id}: "
                        f"{runner.fill(query, values)}"
                    )
                if query.panel == "Alerts firing":
                    shown = {row["metric"].get("rep") for row in result}
                    assert alert_reps <= shown, f"Alerts panel shows {shown}, not {alert_reps}"
    return empty
