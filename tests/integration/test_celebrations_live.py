"""Issue 13 end to end: celebrations and actionable warnings from a real worker reach their
Slack webhooks through a real Alertmanager (and Prometheus), once.

A Prometheus and an Alertmanager of the test's own (Prometheus scraping this test's worker port,
Alertmanager with the shipped config) beside the shared broker, on a topic prefix of its own, so
the shipped rules and routes are the ones under test and the shared stack is left alone. A worker
is given a tiny organisation: rep ``r-1`` makes 150 % of a small calls target this month (100 % and
the 120 % stretch), its team reaches exactly 100 % of its own target and so does the company (its
target is its team's); rep ``r-2`` has made nothing of its revenue and calls targets. Then:

1. the celebrations webhook (``/celebrations``, channel ``#sales-wins``) gets the four
   milestones — nothing else arrives there, and no warning arrives there;
2. the warnings webhook (``/alerts``, ``#sales-floor``) gets ``RepBehindTarget`` for ``r-2``
   saying how much per business day would still reach the target;
3. the worker is restarted: it restores the milestones from its changelog and celebrates
   nothing again (its ``spm_celebrations_total`` stays 0 through several re-evaluations, and the
   webhook gets nothing new);
4. every panel query of every board returns data from this Prometheus and the worker's chDB,
   and the exact panels (leaderboard, team standings, the rep's progress, from
   ``current_figures``) show the API's figures digit for digit.

The stack renders the shipped Alertmanager config with a webhook port of this test's own, so
the live-board test on the shared stack can run at the same time.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from dashboards.queries import BoardRunner, TimeRange, has_data, load_boards, panel_queries
from streams.chclient import close_clients, get_client
from streams.engine.imports import QuotaRow, RosterRow, TeamRow
from streams.producer import EventProducer
from streams.rules import Rules
from streams.settings import Settings
from streams.topics import ensure_topics
from tests.integration.harness import (
    Worker,
    duration_seconds,
    prove_reconciled,
    worker_settings,
)
from tools import stack as local_stack
from tools.settings import StackSettings

EXACT_PANELS = ("Leaderboard", "Team standings", "Progress vs target")
CELEBRATE = "celebrations"
WARN = "alerts"


@dataclass
class Webhook:
    """The loopback Slack webhook of the shipped config, keeping posts per path."""

    posts: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def received(self, path: str) -> list[dict[str, Any]]:
        with self.lock:
            return list(self.posts.get(path, []))

    def attachments(self, path: str) -> list[dict[str, Any]]:
        return [a for post in self.received(path) for a in post.get("attachments") or []]


def _webhook_of(settings: StackSettings) -> tuple[str, int]:
    """Host and port the receivers of the stack's Alertmanager config post to."""
    config = local_stack.render_alertmanager_config(settings)
    [(host, port)] = {
        (url.host, url.port)
        for receiver in config["receivers"]
        for slack in receiver["slack_configs"]
        if (url := httpx.URL(slack["api_url"]))
    }
    assert host == "127.0.0.1", host
    return host, port


@pytest.fixture
def webhook(private_monitoring: StackSettings) -> Iterator[Webhook]:
    host, port = _webhook_of(private_monitoring)
    hook = Webhook()

    class Receiver(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
            with hook.lock:
                hook.posts.setdefault(self.path.strip("/"), []).append(body)
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, format: str, *args: Any) -> None:
            pass

    try:
        server = ThreadingHTTPServer((host, port), Receiver)
    except OSError as exc:
        pytest.fail(f"cannot listen on the Alertmanager webhook {host}:{port}: {exc}")
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield hook
    server.shutdown()
    server.server_close()
    thread.join(10)


def _wait(check: Callable[[], Any], seconds: float, what: Callable[[], str], worker: Worker) -> Any:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        worker.get("/healthz")  # fails with the log tail should the worker have died
        if result := check():
            return result
        time.sleep(0.5)
    pytest.fail(f"not within {seconds:.0f} s: {what()}\n{worker.log_tail()}", pytrace=False)


def _feed(settings: Settings, now: datetime) -> None:
    rules = Rules.from_settings(settings)
    month = rules.calendar.current("month", now).label
    quotas = [
        QuotaRow("rep", "r-1", "calls", month, Decimal(2), None),
        QuotaRow("team", "t-1", "calls", month, Decimal(3), None),
        QuotaRow("rep", "r-2", "revenue", month, Decimal("90000"), None),
        QuotaRow("rep", "r-2", "calls", month, Decimal(40), None),
    ]
    with EventProducer(settings, rules.decoder) as producer:
        producer.publish_teams([TeamRow("t-1", "Team One", None)])
        producer.publish_roster([RosterRow("r-1", "Ann Lee", "t-1", None)])
        producer.publish_roster([RosterRow("r-2", "Bo Chen", "t-1", None)])
        producer.publish_quotas(quotas)
        time.sleep(2)  # reference data first: credit goes to the team of the event's time
        for n in range(3):
            call = {
                "specversion": "1.0",
                "id": f"call-{n}",
                "source": "dialer",
                "type": "call.completed",
                "time": now.isoformat(),
                "data": {"rep_id": "r-1"},
            }
            assert producer.send_event(call) is None
        producer.send_raw(b"{not json")  # a dead letter for the pipeline board


def _celebrations(worker: Worker) -> float:
    text = worker.get("/metrics").text
    return sum(
        float(m[1]) for m in re.finditer(r"^spm_celebrations_total\{[^}]*\} (\S+)$", text, re.M)
    )


@pytest.mark.timeout(400)
def test_celebrations_and_warnings_reach_their_webhooks_once(
    private_monitoring: StackSettings, webhook: Webhook, unique_prefix: str, tmp_path: Path
) -> None:
    stack = Settings(kafka_bootstrap=private_monitoring.kafka_bootstrap)
    settings = worker_settings(
        stack,
        unique_prefix,
        tmp_path,
        web_port=private_monitoring.web_port,
        alert_interval=2.0,
        publish_interval=0.5,
        min_elapsed=0.0,  # r-2 is behind from the period's first instant, whatever the date
        alertmanager_url=f"http://127.0.0.1:{private_monitoring.alertmanager_port}",
    )
    ensure_topics(settings)
    started = datetime.now(UTC)
    worker = Worker(settings, tmp_path / "worker.log").start(timeout=120)
    try:
        _feed(settings, datetime.now(UTC))

        def celebrated() -> list[str]:
            return [a["title"] for a in webhook.attachments(CELEBRATE)]

        def all_said() -> bool:
            texts = "".join(a["text"] for a in webhook.attachments(CELEBRATE))
            return all(
                phrase in texts
                for phrase in (
                    "Ann Lee (r-1, team t-1) reached 100 % of the calls target",
                    "Ann Lee (r-1, team t-1) reached 120 % of the calls target",
                    "Team t-1 reached 100 % of the calls target",
                    "The company reached 100 % of the calls target",
                    "calls is 3 against a target of 2 (150.0 %).",
                )
            )

        _wait(all_said, 120, lambda: f"celebrations, got {celebrated()}", worker)

        # (2) the behind rep's warning, with the daily rate that would still make the target
        def behind_said() -> tuple[str, str] | None:
            for post in webhook.received(WARN):
                for attachment in post.get("attachments") or []:
                    title, text = attachment["title"], attachment["text"]
                    if "RepBehindTarget" in title and "Bo Chen" in text:
                        return post["channel"], text
            return None

        channel, text = _wait(
            behind_said, 150, lambda: f"warnings: {webhook.received(WARN)}", worker
        )
        assert channel == "#sales-floor"
        assert re.search(r"Needs [\d.]+k?/day for the \d+ business days left\.", text), text
        assert "#sales-wins" not in {post["channel"] for post in webhook.received(WARN)}
        assert {post["channel"] for post in webhook.received(CELEBRATE)} == {"#sales-wins"}
        assert not [t for t in celebrated() if "Behind" in t]
        before = sorted(celebrated())
        # r-1's target and stretch, t-1's and the company's target: said once, not per tick
        time.sleep(3 * settings.alert_interval)
        assert _celebrations(worker) == 4

        # (3) a restart restores the milestones and celebrates nothing again
        worker.stop()
        assert worker.process is not None and worker.process.returncode == 0, worker.log_tail()
        worker.start(timeout=120)
        health = worker.get("/healthz").json()
        assert health["state"]["entries"]["milestones"] == 3, health  # r-1, t-1, the company
        time.sleep(5 * settings.alert_interval)  # several re-evaluations of every figure
        assert _celebrations(worker) == 0
        # Alertmanager's group_wait of the celebrations route and some: nothing new arrives
        route = local_stack.render_alertmanager_config(private_monitoring)["route"]
        [celebrations] = [r for r in route["routes"] if r["receiver"] == "celebrations"]
        time.sleep(duration_seconds(celebrations["group_wait"]) + 3)
        assert sorted(celebrated()) == before

        # (4) the API's exact figures, then the boards (chDB opens once the worker let go);
        # the restart made Prometheus start RepBehindTarget's `for` over: the Alerts panel
        # shows it once it fires again
        prometheus = f"http://127.0.0.1:{private_monitoring.prometheus_port}"

        def behind_firing() -> bool:
            alerts = httpx.get(f"{prometheus}/api/v1/alerts", timeout=5).json()["data"]["alerts"]
            return any(
                a["labels"].get("alertname") == "RepBehindTarget"
                and a["labels"].get("rep") == "r-2"
                and a["state"] == "firing"
                for a in alerts
            )

        _wait(behind_firing, 90, lambda: "RepBehindTarget for r-2 firing again", worker)
        prove_reconciled(settings, worker)  # the sales floor's "Last reconciled"
        month = Rules.from_settings(settings).calendar.current("month", datetime.now(UTC)).label
        api = {
            "leaderboard": worker.get(
                "/api/v1/leaderboard", metric="calls", period=month, limit=100
            ).json()["entries"],
            "team": worker.get("/api/v1/teams/t-1/progress", period=month).json()["metrics"],
            "rep": worker.get("/api/v1/reps/r-1/progress", period=month).json()["metrics"],
        }
        end = datetime.now(UTC)
    finally:
        worker.stop()
    close_clients()
    client = get_client(settings)
    try:
        shown = _boards(
            prometheus,
            lambda sql: client.query(sql).result_rows,
            TimeRange(started, end),
        )
    finally:
        close_clients()
    _compare(shown, api)


def _boards(
    prometheus: str, run_sql: Callable[[str], Any], window: TimeRange
) -> dict[str, list[Any]]:
    """Every panel query of every board has data; the exact panels' rows by panel title."""
    empty, exact = [], {}
    with BoardRunner(prometheus, run_sql, window, scrape_interval=5) as runner:
        for board in load_boards().values():
            names = {v["name"] for v in board.get("templating", {}).get("list", [])}
            values = runner.variables(board, {"rep": "r-1"} if "rep" in names else {})
            assert values.get("metric", "calls") == "calls", values
            assert values.get("period_type", "month") == "month", values
            for query in panel_queries(board):
                result = runner.run(query, values)
                if not has_data(result):
                    empty.append(f"{board['uid']} / {query.panel}: {runner.fill(query, values)}")
                if query.panel in EXACT_PANELS:
                    exact[query.panel] = result
    assert not empty, "panels without data:\n" + "\n".join(empty)
    return exact


def _compare(shown: dict[str, list[Any]], api: dict[str, Any]) -> None:
    """The exact panels show the API's decimals, digit for digit."""

    def same(db: Any, text: str | None) -> bool:
        return (db is None and text is None) or (
            db is not None and text is not None and Decimal(db) == Decimal(text)
        )

    board = [(r[0], r[3], r[4], r[5]) for r in shown["Leaderboard"]]
    ranked = [
        (e["rep_id"], e["value"], e["target"], e["attainment"])
        for e in api["leaderboard"]
        if Decimal(e["value"]) > 0  # reps without figures this period have no row yet
    ]
    assert [row[0] for row in board] == [row[0] for row in ranked], (board, ranked)
    for (_, *db), (_, *text) in zip(board, ranked, strict=True):
        assert all(map(same, db, text)), (db, text)
    [team] = [r for r in shown["Team standings"] if r[0] == "t-1"]
    calls = api["team"]["calls"]
    assert all(map(same, team[1:5], [calls[k] for k in ("value", "target", "attainment", "gap")]))
    progress = {r[0]: r for r in shown["Progress vs target"]}
    assert set(progress) >= {"calls"}
    for metric, row in progress.items():
        figures = api["rep"][metric]
        wanted = [figures[k] for k in ("value", "target", "attainment", "gap")]
        assert all(map(same, row[1:5], wanted)), (metric, row, figures)
