"""The Alertmanager config: valid, routes by component, groups by team, renders the Slack
template, holds quota alerts back while the pipeline is down and says each celebration once, in
its own channel — checked on the real binary."""

from __future__ import annotations

import asyncio
import json
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from streams.celebrations import Alertmanager, Celebration
from streams.engine.milestones import STRETCH, TARGET

from .helpers import ALERTMANAGER_CONFIG, run, tool

SHIPPED_WEBHOOK = "http://127.0.0.1:29095/alerts"
SHIPPED_WEBHOOKS = "http://127.0.0.1:29095/"  # /alerts and /celebrations


def test_config_passes_amtool_check():
    result = run(tool("amtool"), "check-config", ALERTMANAGER_CONFIG)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 templates" in result.stdout


def test_amtool_check_rejects_a_route_to_an_unknown_receiver(tmp_path):
    broken = tmp_path / "alertmanager.yml"
    broken.write_text(
        ALERTMANAGER_CONFIG.read_text().replace("receiver: pipeline-oncall", "receiver: nobody")
    )
    result = run(tool("amtool"), "check-config", broken)
    assert result.returncode != 0


@pytest.mark.parametrize(
    ("labels", "receiver"),
    [
        (["alertname=RepBehindTarget", "component=quota", "team=t-emea"], "sales-managers"),
        (["alertname=RepNoActivity", "component=quota", "team=t-emea"], "sales-managers"),
        (["alertname=SpmWorkerDown", "component=pipeline", "severity=critical"], "pipeline-oncall"),
        (["alertname=TargetReached", "component=celebration", "team=t-emea"], "celebrations"),
        (["alertname=NewLeader", "component=celebration", "team=t-emea"], "celebrations"),
    ],
)
def test_routes_quota_alerts_to_managers_and_pipeline_alerts_to_oncall(labels, receiver):
    result = run(
        tool("amtool"),
        "config",
        "routes",
        "test",
        f"--config.file={ALERTMANAGER_CONFIG}",
        f"--verify.receivers={receiver}",
        *labels,
    )
    assert result.returncode == 0, result.stdout + result.stderr


class _Webhook(BaseHTTPRequestHandler):
    received: list[dict[str, Any]]

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.server.received.append(json.loads(body))  # type: ignore[attr-defined]
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def webhook() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """A Slack-compatible incoming webhook on loopback collecting the posted messages."""
    server = HTTPServer(("127.0.0.1", 0), _Webhook)
    server.received = []  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/alerts", server.received  # type: ignore[attr-defined]
    server.shutdown()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def alertmanager(tmp_path: Path, webhook: tuple[str, list[dict[str, Any]]]) -> Iterator[str]:
    """The shipped config, posting to the test's webhook instead of the fixed port."""
    url, _ = webhook
    config_dir = tmp_path / "config"
    shutil.copytree(ALERTMANAGER_CONFIG.parent, config_dir)
    config = config_dir / "alertmanager.yml"
    assert SHIPPED_WEBHOOK in config.read_text()
    # Every receiver posts to the test's webhook; the channels tell them apart. Groups are
    # flushed again after 2 s instead of 1 min, so a repeated notification would show in time.
    text = config.read_text().replace(SHIPPED_WEBHOOKS, url.removesuffix("alerts"))
    assert "group_interval: 1m" in text
    config.write_text(text.replace("group_interval: 1m", "group_interval: 2s"))
    address = f"127.0.0.1:{_free_port()}"
    log = tmp_path / "alertmanager.log"
    process = subprocess.Popen(
        [
            tool("prometheus-alertmanager"),
            f"--config.file={config}",
            f"--storage.path={tmp_path / 'data'}",
            f"--web.listen-address={address}",
            "--cluster.listen-address=",
        ],
        stdout=subprocess.DEVNULL,
        stderr=log.open("w"),
    )
    try:
        base = f"http://{address}"
        _wait_for(lambda: _ready(base), 20, log)
        yield base
    finally:
        process.terminate()
        process.wait(10)


def _ready(base: str) -> bool:
    try:
        return httpx.get(f"{base}/-/ready", timeout=1).status_code == 200
    except httpx.TransportError:
        return False


def _wait_for(check: Callable[[], Any], seconds: float, log: Path | None = None) -> Any:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if result := check():
            return result
        time.sleep(0.2)
    details = log.read_text() if log else ""
    pytest.fail(f"condition not met within {seconds}s\n{details}", pytrace=False)


def _alert(alertname: str, labels: dict[str, str], summary: str, dashboard: str) -> dict[str, Any]:
    now = datetime.now(UTC)
    return {
        "labels": {"alertname": alertname} | labels,
        "annotations": {"summary": summary, "description": f"{summary}.", "dashboard": dashboard},
        "startsAt": now.isoformat(),
        "endsAt": (now + timedelta(minutes=10)).isoformat(),
    }


def _rep_behind(rep: str, team: str) -> dict[str, Any]:
    labels = {
        "component": "quota",
        "severity": "warning",
        "rep": rep,
        "team": team,
        "metric": "revenue",
    }
    return _alert(
        "RepBehindTarget",
        labels,
        f"{rep} is behind target on revenue",
        f"/d/spm-rep-drilldown/x?var-rep={rep}",
    )


def test_rep_alerts_of_a_team_arrive_as_one_slack_message(alertmanager, webhook):
    _, received = webhook
    alerts = [_rep_behind("r-1", "t-emea"), _rep_behind("r-2", "t-emea")]
    httpx.post(f"{alertmanager}/api/v2/alerts", json=alerts, timeout=5).raise_for_status()

    [message] = _wait_for(lambda: list(received), 30)

    assert message["channel"] == "#sales-floor"
    [attachment] = message["attachments"]
    assert attachment["title"] == "[FIRING:2] RepBehindTarget · team t-emea"
    assert attachment["color"] == "warning"
    assert "*r-1 is behind target on revenue*" in attachment["text"]
    assert "*r-2 is behind target on revenue*" in attachment["text"]
    assert (
        "<http://127.0.0.1:3000/d/spm-rep-drilldown/x?var-rep=r-2|Open board>" in attachment["text"]
    )


def test_quota_alerts_are_inhibited_while_the_worker_is_down(alertmanager, webhook):
    _, received = webhook
    down = _alert(
        "SpmWorkerDown",
        {"component": "pipeline", "severity": "critical", "instance": "127.0.0.1:26066"},
        "SPM worker is down",
        "/d/spm-pipeline-health/pipeline-health",
    )
    alerts = [down, _rep_behind("r-3", "t-apac")]
    httpx.post(f"{alertmanager}/api/v2/alerts", json=alerts, timeout=5).raise_for_status()

    def rep_alert_state() -> dict[str, Any] | None:
        response = httpx.get(
            f"{alertmanager}/api/v2/alerts", params={"filter": 'rep="r-3"'}, timeout=5
        )
        [state] = response.json()
        return state["status"] if state["status"]["inhibitedBy"] else None

    assert _wait_for(rep_alert_state, 10)["state"] == "suppressed"
    [message] = _wait_for(lambda: list(received), 30)
    assert message["channel"] == "#spm-oncall"
    assert message["attachments"][0]["title"] == "[FIRING:1] SpmWorkerDown"
    assert message["attachments"][0]["color"] == "danger"
    time.sleep(2)
    assert len(received) == 1, "the inhibited rep alert was delivered"


def _celebration(level: int, value: str) -> Celebration:
    return Celebration(
        scope="rep",
        id="r-1",
        name="Ann Lee",
        team="t-emea",
        metric="revenue",
        period="2026-11",
        period_type="month",
        level=level,
        value=Decimal(value),
        target=Decimal("10000.00"),
        stretch=Decimal("1.2"),
    )


def test_a_celebration_reaches_its_own_channel_once_even_when_posted_again(alertmanager, webhook):
    """The worker posts a milestone before it records it: after a crash in between it posts the
    same milestone again, and Alertmanager must not say it twice."""
    _, received = webhook
    poster = Alertmanager(alertmanager)
    reached = [_celebration(TARGET, "12250.5"), _celebration(STRETCH, "12250.5")]
    assert asyncio.run(poster.post(reached, datetime.now(UTC)))

    def delivered() -> list[dict[str, Any]]:
        return [attachment for post in received for attachment in post["attachments"]]

    # one message per team and alert name: TargetReached, StretchReached
    attachments = _wait_for(lambda: len(delivered()) == 2 and delivered(), 30)
    assert {post["channel"] for post in received} == {"#sales-wins"}
    assert sorted(a["title"] for a in attachments) == [
        "[FIRING:1] StretchReached · team t-emea",
        "[FIRING:1] TargetReached · team t-emea",
    ]
    assert all(a["color"] == "good" for a in attachments)
    texts = "".join(a["text"] for a in attachments)
    assert "*Ann Lee (r-1, team t-emea) reached 100 % of the revenue target for 2026-11*" in texts
    assert "*Ann Lee (r-1, team t-emea) reached 120 % of the revenue target for 2026-11*" in texts
    assert "revenue is 12,250.5 against a target of 10,000 (122.5 %)." in texts

    assert asyncio.run(poster.post(reached, datetime.now(UTC)))  # the re-post after a crash
    time.sleep(6)  # three group intervals of the test's config
    assert len(delivered()) == 2, received


def test_an_unreachable_alertmanager_is_reported_so_the_milestone_is_tried_again():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    poster = Alertmanager(f"http://127.0.0.1:{port}", timeout=1)
    assert not asyncio.run(poster.post([_celebration(TARGET, "10000")], datetime.now(UTC)))
