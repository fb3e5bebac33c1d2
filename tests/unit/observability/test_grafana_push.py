"""``spm grafana push`` against loopback HTTP servers: a closed port, one that refuses the token,
and one that answers Grafana's HTTP API for the calls the push makes (no Grafana runs here)."""

from __future__ import annotations

import json
import re
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from typer.testing import CliRunner

from streams import grafana
from streams.cli.main import app

runner = CliRunner()
CLICKHOUSE = "https://spm:s3cret@ch.example.internal:8443/sales"


@dataclass
class FakeGrafanaState:
    """What a Grafana holds, as far as the push's API calls can tell."""

    datasources: dict[str, dict[str, Any]] = field(default_factory=dict)
    folders: set[str] = field(default_factory=set)
    dashboards: dict[str, dict[str, Any]] = field(default_factory=dict)
    requests: list[tuple[str, str, str, Any]] = field(default_factory=list)  # method, path, auth
    status: int | None = None  # answer every request with this status when set


def _handler(state: FakeGrafanaState) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def _answer(self, method: str) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(length)) if length else None
            state.requests.append((method, self.path, self.headers.get("Authorization", ""), body))
            status, payload = self._route(method, body)
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _route(self, method: str, body: Any) -> tuple[int, Any]:
            if state.status is not None:
                return state.status, {"message": "invalid API key"}
            path = self.path
            if (method, path) == ("GET", "/api/org"):
                return 200, {"id": 1, "name": "Main Org."}
            if match := re.fullmatch(r"/api/datasources/uid/([\w-]+)", path):
                uid = match[1]
                if method == "GET":
                    found = state.datasources.get(uid)
                    return (200, found) if found else (404, {"message": "not found"})
                state.datasources[uid] = body
                return 200, {"message": "Datasource updated"}
            if (method, path) == ("POST", "/api/datasources"):
                state.datasources[body["uid"]] = body
                return 200, {"message": "Datasource added"}
            if (method, path) == ("GET", "/api/folders/spm"):
                return (200, {"uid": "spm"}) if "spm" in state.folders else (404, {})
            if (method, path) == ("POST", "/api/folders"):
                state.folders.add(body["uid"])
                return 200, {"uid": body["uid"]}
            if match := re.fullmatch(r"/api/dashboards/uid/([\w-]+)", path):
                found = state.dashboards.get(match[1])
                return (200, {"dashboard": found}) if found else (404, {})
            if (method, path) == ("POST", "/api/dashboards/db"):
                board = body["dashboard"]
                state.dashboards[board["uid"]] = body
                return 200, {
                    "uid": board["uid"],
                    "url": f"/d/{board['uid']}/x",
                    "status": "success",
                }
            return 404, {"message": f"{method} {path} is not part of this fake"}

        def do_GET(self) -> None:
            self._answer("GET")

        def do_POST(self) -> None:
            self._answer("POST")

        def do_PUT(self) -> None:
            self._answer("PUT")

        def log_message(self, *args: object) -> None:
            pass

    return Handler


@pytest.fixture
def fake_grafana() -> Iterator[tuple[str, FakeGrafanaState]]:
    state = FakeGrafanaState()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}", state
    server.shutdown()
    server.server_close()


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]  # released when the socket closes: nobody listens


def push(*args: str) -> Any:
    return runner.invoke(app, ["grafana", "push", *args])


def test_unreachable_grafana_exits_2_with_the_reason():
    result = push("--url", f"http://127.0.0.1:{closed_port()}", "--token", "t")

    assert result.exit_code == 2
    assert "cannot reach Grafana" in result.output
    assert "refused" in result.output.lower()


def test_a_refused_token_exits_2_and_says_so(fake_grafana):
    url, state = fake_grafana
    state.status = 401

    result = push("--url", url, "--token", "wrong")

    assert result.exit_code == 2
    assert "refused the token (401 Unauthorized)" in result.output
    assert [r[2] for r in state.requests] == ["Bearer wrong"]  # nothing pushed after the check


def test_a_forbidden_token_exits_2_with_grafanas_message(fake_grafana):
    url, state = fake_grafana
    state.status = 403

    result = push("--url", url, "--token", "viewer")

    assert result.exit_code == 2
    assert "answered 403" in result.output


@pytest.mark.parametrize("url", ["grafana.example.com", "ftp://127.0.0.1:21", "http://"])
def test_a_url_that_is_not_http_exits_2(url):
    result = push("--url", url, "--token", "t")

    assert result.exit_code == 2
    assert "not a Grafana URL" in result.output


def test_push_creates_datasources_folder_and_boards_then_updates_them(fake_grafana):
    url, state = fake_grafana
    args = ["--url", url, "--token", "tok", "--prometheus-url", "http://prom.internal:9090"]

    first = push(*args, "--clickhouse-url", CLICKHOUSE)

    assert first.exit_code == 0, first.output
    assert {r[2] for r in state.requests} == {"Bearer tok"}
    prometheus, clickhouse = state.datasources["prometheus"], state.datasources["clickhouse"]
    assert prometheus["url"] == "http://prom.internal:9090"
    assert prometheus["type"] == "prometheus"
    assert clickhouse["type"] == "grafana-clickhouse-datasource"
    connection = ("host", "port", "secure", "username", "defaultDatabase")
    assert {key: clickhouse["jsonData"][key] for key in connection} == {
        "host": "ch.example.internal",
        "port": 8443,
        "secure": True,
        "username": "spm",
        "defaultDatabase": "sales",
    }
    assert clickhouse["secureJsonData"] == {"password": "s3cret"}
    assert state.folders == {"spm"}
    assert set(state.dashboards) == {board["uid"] for board in grafana.boards()}
    for payload in state.dashboards.values():
        assert payload["folderUid"] == "spm"
        assert payload["overwrite"] is True
        assert payload["dashboard"]["id"] is None
    assert first.output.count("created") == 5

    state.requests.clear()
    second = push(*args, "--clickhouse-url", CLICKHOUSE)

    assert second.exit_code == 0, second.output
    assert second.output.count("updated") == 5
    assert ("PUT", "/api/datasources/uid/clickhouse") in {(r[0], r[1]) for r in state.requests}
    assert ("POST", "/api/folders") not in {(r[0], r[1]) for r in state.requests}


def test_without_a_clickhouse_server_only_prometheus_is_pushed(fake_grafana):
    url, state = fake_grafana

    result = push("--url", url, "--token", "tok")

    assert result.exit_code == 0, result.output
    assert set(state.datasources) == {"prometheus"}
    assert "ClickHouse data source skipped" in result.output


def test_clickhouse_url_must_be_a_server_url():
    with pytest.raises(grafana.PushError, match="http"):
        grafana.datasources(None, "chdb:///var/clickhouse")


def test_clickhouse_connection_fields_follow_the_url():
    [_, clickhouse] = grafana.datasources(None, "http://reader@127.0.0.1/history")

    assert clickhouse["jsonData"]["port"] == 8123
    assert clickhouse["jsonData"]["secure"] is False
    assert clickhouse["jsonData"]["username"] == "reader"
    assert clickhouse["jsonData"]["defaultDatabase"] == "history"
    assert clickhouse["secureJsonData"] == {"password": ""}
