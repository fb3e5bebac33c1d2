"""Access control on real workers: who may read, write and administer, route by route.

Two workers of one app, both configured with the same tokens (a tokens file): the first on
loopback with ``/metrics`` open, the second on 0.0.0.0 (allowed because tokens are set) with
``SPM_METRICS_AUTH=true``. Every route is asked with no token, an unknown token, a token
lacking the route's scope and one holding it (401 / 401 / 403 / the route's own answer); the
reference data is imported through the admin routes (and read back from its topics); a bad
CSV row is refused by its line with nothing published; forwarded progress and the gathered
leaderboard work with auth on; a worker without tokens refuses to listen on 0.0.0.0.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from streams.auth import hash_token, new_token
from streams.engine.scopes import scope_key
from streams.pipeline.kafka import partition_for
from streams.settings import REPO_ROOT, Settings
from streams.topics import ensure_topics
from tests.integration.harness import HTTP, Worker, settings_env, wait_settled, worker_settings

#: Token name → its scopes; the ``no_*`` tokens hold every scope but one.
TOKENS = {
    "read": ["read"],
    "ingest": ["ingest"],
    "admin": ["admin"],
    "no_read": ["ingest", "admin"],
    "no_ingest": ["read", "admin"],
    "no_admin": ["read", "ingest"],
}
SECRETS = {name: new_token() for name in TOKENS}
UNKNOWN = new_token()
PERIOD = "2026-Q4"
TEAMS_CSV = "team_id,name,parent_id\nt-sales,Sales,\nt-east,East,t-sales\n"
QUOTAS_CSV = "scope,scope_id,metric,period,target\ncompany,company,revenue,2026-Q4,1000000\n"
EVENT = {
    "specversion": "1.0",
    "id": "auth-1",
    "source": "auth-test",
    "type": "call.completed",
    "time": "2026-11-27T10:00:00Z",
}


def bearer(name: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {SECRETS[name]}"}


def reps_over_every_partition(partitions: int) -> list[str]:
    """Rep ids such that every partition holds at least one (so each worker holds some)."""
    reps: list[str] = []
    covered: set[int] = set()
    i = 0
    while covered != set(range(partitions)):
        rep = f"rep-{i:03d}"
        covered.add(partition_for(scope_key(("rep", rep)), partitions))
        reps.append(rep)
        i += 1
    return reps


@dataclass
class Cluster:
    first: Worker  # loopback, /metrics open, runs the history sink
    second: Worker  # 0.0.0.0, /metrics needs the read scope
    reps: list[str]

    def call(self, method: str, path: str, worker: Worker | None = None, **kw: Any) -> Any:
        return HTTP.request(method, f"{(worker or self.first).url}{path}", **kw)


@pytest.fixture(scope="module")
def cluster(
    stack: Settings, module_prefix: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Cluster]:
    tmp = tmp_path_factory.mktemp("auth")
    tokens = tmp / "tokens.json"
    tokens.write_text(
        json.dumps(
            [
                {"name": name, "sha256": hash_token(SECRETS[name]), "scopes": scopes}
                for name, scopes in TOKENS.items()
            ]
        )
    )
    first = worker_settings(stack, module_prefix, tmp / "w1", api_tokens_file=tokens)
    second = worker_settings(
        stack,
        module_prefix,
        tmp / "w2",
        api_tokens_file=tokens,
        metrics_auth=True,
        history_sink=False,
    )
    second = second.model_copy(
        update={"web_host": "0.0.0.0", "web_advertised_url": f"http://127.0.0.1:{second.web_port}"}
    )
    ensure_topics(first)
    workers = [Worker(first, tmp / "w1.log"), Worker(second, tmp / "w2.log")]
    try:
        for worker in workers:
            worker.spawn()
        wait_settled(workers, first.partitions)
        reps = reps_over_every_partition(first.partitions)
        cluster = Cluster(workers[0], workers[1], reps)
        import_reference(cluster)
        yield cluster
    finally:
        for worker in workers:
            worker.stop()


def import_reference(cluster: Cluster) -> None:
    """Teams, reps and quotas through the admin routes; then wait until both workers know
    every rep (their mirrors read the topics the routes published to)."""
    roster = "rep_id,name,team_id\n" + "".join(f"{r},{r},t-east\n" for r in cluster.reps)
    for route, text, count in (
        ("teams", TEAMS_CSV, 2),
        ("roster", roster, len(cluster.reps)),
        ("quotas", QUOTAS_CSV, 1),
    ):
        answer = post_csv(cluster, route, text, "admin")
        assert answer.status_code == 200, answer.text
        assert answer.json()["published"] == count
    deadline = time.monotonic() + 30
    for worker in (cluster.first, cluster.second):
        for rep in cluster.reps:
            while (status := progress(cluster, worker, rep).status_code) != 200:
                assert time.monotonic() < deadline, f"{rep} still {status} on {worker.url}"
                time.sleep(0.2)


def post_csv(cluster: Cluster, route: str, text: str, token: str, **params: str) -> Any:
    headers = {"Content-Type": "text/csv", **bearer(token)}
    path = f"/api/v1/admin/{route}"
    return cluster.call("POST", path, content=text.encode(), headers=headers, params=params)


def progress(cluster: Cluster, worker: Worker, rep: str, token: str = "read") -> Any:
    path = f"/api/v1/reps/{rep}/progress"
    return cluster.call("GET", path, worker, params={"period": PERIOD}, headers=bearer(token))


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    scope: str
    answer: int  # with the scope
    params: dict[str, str] | None = None
    headers: dict[str, str] | None = None
    body: bytes | None = None

    def __str__(self) -> str:
        return f"{self.method} {self.path}"


ROUTES = [
    Route("GET", "/api/v1/reps/rep-000/progress", "read", 200, {"period": PERIOD}),
    Route("GET", "/api/v1/teams/t-sales/progress", "read", 200, {"period": PERIOD}),
    Route("GET", "/api/v1/company/progress", "read", 200, {"period": PERIOD}),
    Route("GET", "/api/v1/leaderboard", "read", 200, {"period": PERIOD}),
    Route("GET", "/api/v1/reps/nobody/progress", "read", 404),
    Route("GET", "/api/v1/history/reps/rep-000/cumulative", "read", 200, {"period": PERIOD}),
    Route("GET", "/api/v1/history/teams/t-sales/cumulative", "read", 200, {"period": PERIOD}),
    Route("GET", "/api/v1/history/period-over-period", "read", 200, {"scope": "company"}),
    Route("GET", "/api/v1/history/leaderboard", "read", 200, {"period": PERIOD}),
    Route("GET", "/api/v1/history/alerts", "read", 200),
    Route("GET", "/api/v1/history/rejected", "read", 200),
    Route("GET", "/api/v1/history/events", "read", 200),
    Route("GET", "/api/v1/history/period-over-period", "read", 400),  # scope missing
    Route(
        "POST",
        "/api/v1/events",
        "ingest",
        202,
        headers={"Content-Type": "application/cloudevents+json"},
        body=json.dumps({**EVENT, "data": {"rep_id": "rep-000"}}).encode(),
    ),
    Route("POST", "/api/v1/admin/quotas", "admin", 200, None, {"Content-Type": "text/csv"},
          QUOTAS_CSV.encode()),
    Route("POST", "/api/v1/admin/teams", "admin", 200, None, {"Content-Type": "text/csv"},
          TEAMS_CSV.encode()),
    Route("POST", "/api/v1/admin/roster", "admin", 415),  # no CSV content type
    Route("POST", "/api/v1/admin/dlq/replay", "admin", 200, {"dry_run": "true"}),
]  # fmt: skip


@pytest.mark.parametrize("route", ROUTES, ids=str)
def test_each_route_answers_401_without_a_known_token_403_without_its_scope(
    cluster: Cluster, route: Route
) -> None:
    def ask(headers: dict[str, str]) -> Any:
        return cluster.call(
            route.method,
            route.path,
            params=route.params,
            content=route.body,
            headers={**(route.headers or {}), **headers},
        )

    for headers in ({}, {"Authorization": f"Bearer {UNKNOWN}"}):
        refused = ask(headers)
        assert refused.status_code == 401, refused.text
        assert refused.headers["WWW-Authenticate"].startswith("Bearer")
        assert "error" in refused.json()
    lacking = ask(bearer(f"no_{route.scope}"))
    assert lacking.status_code == 403, lacking.text
    assert route.scope in lacking.json()["error"]
    granted = ask(bearer(route.scope))
    assert granted.status_code == route.answer, granted.text


def test_health_is_open_and_metrics_are_open_or_protected_per_worker(cluster: Cluster) -> None:
    for worker in (cluster.first, cluster.second):
        assert cluster.call("GET", "/healthz", worker).status_code == 200
    assert cluster.call("GET", "/metrics").status_code == 200
    assert cluster.call("GET", "/metrics", cluster.second).status_code == 401
    refused = cluster.call("GET", "/metrics", cluster.second, headers=bearer("no_read"))
    assert refused.status_code == 403
    scraped = cluster.call("GET", "/metrics", cluster.second, headers=bearer("read"))
    assert scraped.status_code == 200 and "spm_" in scraped.text


@pytest.mark.parametrize(
    ("method", "path", "denied"),
    [
        ("GET", "/", 403),  # Faust's own pages are in no rule
        ("GET", "/router/", 403),
        ("DELETE", "/api/v1/leaderboard", 405),  # no such route: aiohttp's answer
    ],
)
def test_routes_nobody_listed_are_denied_even_with_every_scope(
    cluster: Cluster, method: str, path: str, denied: int
) -> None:
    assert cluster.call(method, path).status_code == 401
    for token in ("no_read", "no_ingest"):  # together they hold every scope
        assert cluster.call(method, path, headers=bearer(token)).status_code == denied


def read_topic(settings: Settings, name: str) -> list[tuple[bytes, bytes]]:
    """Every (key, value) of a topic, from the beginning to its current end."""
    consumer = KafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, enable_auto_commit=False)
    try:
        topic = settings.topic(name)
        tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic))]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        ends = consumer.end_offsets(tps)
        records: list[tuple[bytes, bytes]] = []
        while any(consumer.position(tp) < ends[tp] for tp in tps):
            for batch in consumer.poll(timeout_ms=500).values():
                records += [(r.key, r.value) for r in batch]
        return records
    finally:
        consumer.close()


def test_the_admin_imports_published_what_the_cli_would(cluster: Cluster) -> None:
    settings = cluster.first.settings
    roster = [json.loads(value) for _, value in read_topic(settings, "roster")]
    quotas = [json.loads(value) for _, value in read_topic(settings, "quotas")]

    assert sorted(r["rep_id"] for r in roster if r["kind"] == "rep") == cluster.reps
    assert {r["team_id"] for r in roster if r["kind"] == "team"} == {"t-sales", "t-east"}
    assert {(q["scope"], q["metric"], q["period"], q["target"]) for q in quotas} == {
        ("company", "revenue", PERIOD, "1000000")
    }


def test_a_bad_row_is_refused_by_its_line_and_nothing_is_published(cluster: Cluster) -> None:
    settings = cluster.first.settings
    before = read_topic(settings, "quotas")
    csv = QUOTAS_CSV + "company,company,no_such_metric,2026-Q4,5\nrep,rep-001,calls,2026-Q4,9\n"

    refused = post_csv(cluster, "quotas", csv, "admin")

    assert refused.status_code == 400, refused.text
    body = refused.json()
    assert "nothing published" in body["error"]
    assert [e["path"] for e in body["errors"]] == ["line 3"]
    assert body["errors"][0]["message"].startswith("line 3:")
    assert read_topic(settings, "quotas") == before
    skipped = post_csv(cluster, "quotas", csv, "admin", skip_bad="true")
    assert skipped.status_code == 200, skipped.text
    assert (skipped.json()["published"], skipped.json()["skipped"]) == (2, 1)
    assert len(read_topic(settings, "quotas")) == len(before) + 2


def test_dead_letters_are_replayed_through_the_admin_route(cluster: Cluster) -> None:
    settings = cluster.first.settings
    producer = KafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all")
    producer.send(settings.topic("activity"), b"{not json").get(30)
    producer.close()
    deadline = time.monotonic() + 30
    while not read_topic(settings, "activity.dlq"):
        assert time.monotonic() < deadline, "the malformed message was not dead-lettered"
        time.sleep(0.3)

    replay = cluster.call("POST", "/api/v1/admin/dlq/replay", headers=bearer("admin"))

    assert replay.status_code == 200, replay.text
    report = replay.json()
    assert report["read"] >= 1 and report["replayed"] == 0
    assert report["reasons"].get("not_json", 0) >= 1


def test_forwarded_requests_carry_the_callers_token(cluster: Cluster) -> None:
    held = {
        worker.url: set(cluster.call("GET", "/healthz", worker).json()["partitions"])
        for worker in (cluster.first, cluster.second)
    }
    partitions = cluster.first.settings.partitions
    for asked, owner in ((cluster.first, cluster.second), (cluster.second, cluster.first)):
        theirs = [
            rep
            for rep in cluster.reps
            if partition_for(scope_key(("rep", rep)), partitions) in held[owner.url]
        ]
        assert theirs, held
        for rep in theirs:
            answer = progress(cluster, asked, rep)
            assert answer.status_code == 200, answer.text
            assert answer.json()["id"] == rep
            assert progress(cluster, asked, rep, token="no_read").status_code == 403
        board = cluster.call(
            "GET", "/api/v1/leaderboard", asked, params={"period": PERIOD}, headers=bearer("read")
        )
        assert board.status_code == 200, board.text
        assert board.json()["partial"] is False
        assert board.json()["partitions"] == list(range(partitions))


def test_without_tokens_a_worker_refuses_to_listen_beyond_loopback(
    stack: Settings, module_prefix: str, tmp_path: Path
) -> None:
    settings = worker_settings(stack, module_prefix, tmp_path, web_host="0.0.0.0")
    settings = settings.model_copy(
        update={"web_advertised_url": f"http://127.0.0.1:{settings.web_port}"}
    )

    done = subprocess.run(
        [sys.executable, "-m", "faust", "-A", "streams.worker", "worker"],
        cwd=REPO_ROOT,
        env=settings_env(settings),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert done.returncode != 0
    assert "SPM_WEB_HOST=0.0.0.0" in done.stderr and "without authentication" in done.stderr
    assert "spm token new" in done.stderr
