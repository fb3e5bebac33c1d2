"""The HTTP API on two real workers of one app: ``as_of`` against the recomputation, parameters
that must be refused, and a schemathesis fuzz against the published OpenAPI document.

One generated organisation is fed once (real Kafka, history sink as shipped); the two workers
split the partitions, so every answer may be forwarded and every leaderboard is gathered from
both. ``as_of`` answers, for days before, inside and after the events (dates and instants with
offsets), must equal ``recompute`` restricted to the credit dated before the end of that day,
digit for digit and status for status (closed periods included). The fuzz runs last: it posts
random CSVs to the admin routes, which change the reference data.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import Case, GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from streams.engine.money import decimal_text
from streams.settings import Settings
from streams.topics import ensure_topics
from tests.integration import scenario
from tests.integration.harness import HTTP, Worker, wait_caught_up, wait_settled
from tests.integration.test_pipeline import expected_figures, publish_reference, raw_producer
from tests.integration.test_scale_out import pair_settings

#: ``as_of`` as a caller writes it, and the day (UTC calendar) it names.
AS_OF_DAYS = [
    ("2026-09-30", date(2026, 9, 30)),  # before every event
    ("2026-10-01", date(2026, 10, 1)),
    ("2026-10-31T22:30:00-01:00", date(2026, 10, 31)),  # 23:30 UTC: October's last day
    ("2026-11-01T00:30:00+01:00", date(2026, 10, 31)),  # 23:30 UTC the day before
    ("2026-11-15", date(2026, 11, 15)),  # the Sunday ending 2026-W46 (a meetings quota)
    ("2026-11-20T12:00:00Z", date(2026, 11, 20)),
    ("2027-01-05", date(2027, 1, 5)),  # after 2026-Q4 ended: every period closed
]
#: Examples per operation of the fuzz (positive and negative data alike).
FUZZ_EXAMPLES = 80


@pytest.fixture(scope="module")
def fed(
    stack: Settings, module_prefix: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[list[Worker], scenario.Scenario]]:
    """Two workers, caught up on a generated stream."""
    tmp = tmp_path_factory.mktemp("api")
    first, second = pair_settings(stack, module_prefix, tmp)
    ensure_topics(first)
    workers = [Worker(first, tmp / "w1.log"), Worker(second, tmp / "w2.log")]
    sc = scenario.generate(seed=31, activities=600, deals=90)
    try:
        publish_reference(first, sc)
        for worker in workers:
            worker.spawn()
        wait_settled(workers, first.partitions)
        with raw_producer(first) as producer:
            for raw in sc.events + [raw for raw, _ in sc.malformed]:
                producer.send(first.topic("activity"), raw)
            producer.flush()
        wait_caught_up(first, worker=workers[0])
        yield workers, sc
    finally:
        for worker in workers:
            worker.stop()


def _cut(day: date) -> datetime:
    """The end of ``day`` on the workers' calendar (UTC, as the test settings leave it)."""
    return datetime(day.year, day.month, day.day, tzinfo=UTC) + timedelta(days=1)


PATHS = {
    "rep": "/api/v1/reps/{}/progress",
    "team": "/api/v1/teams/{}/progress",
    "company": "/api/v1/company/progress",
}


def test_as_of_answers_equal_the_recomputation_before_the_cut(
    fed: tuple[list[Worker], scenario.Scenario],
) -> None:
    workers, sc = fed
    assert workers[0].settings.timezone == "UTC"
    compared, closed = 0, set()
    for n, (raw, day) in enumerate(AS_OF_DAYS):
        cut = _cut(day)
        expected = expected_figures(workers[0].settings, sc, cut=cut)
        by_request: dict[tuple[str, str, str], dict[str, Any]] = {}
        for (scope, scope_id, metric, label), figures in expected.items():
            if len(label) == 10 and label != day.isoformat():  # of the days, as_of's own only
                continue
            by_request.setdefault((scope, scope_id, label), {})[metric] = figures.to_dict()
        mismatches = []
        for i, ((scope, scope_id, label), want) in enumerate(sorted(by_request.items())):
            worker = workers[(i + n) % 2]  # half of the answers are forwarded to the other
            response = worker.get(PATHS[scope].format(scope_id), period=label, as_of=raw)
            assert response.status_code == 200, (raw, scope, scope_id, label, response.text)
            body = response.json()
            assert datetime.fromisoformat(body["as_of"]) == cut
            assert body["as_of_day"] == day.isoformat()
            for metric, figures in want.items():
                closed.add(figures["status"])
                if body["metrics"][metric] != figures:
                    mismatches.append((raw, scope, scope_id, label, metric, figures))
        assert not mismatches, f"{len(mismatches)} mismatches, first: {mismatches[:3]}"
        compared += len(by_request)
        _assert_leaderboards(workers, raw, expected, sc.reps)
    assert compared > 1000
    assert {"achieved", "missed", "on_track"} <= closed  # closed and open periods were compared


def _assert_leaderboards(
    workers: list[Worker], as_of: str, expected: dict[Any, Any], reps: list[str]
) -> None:
    """The quarter's revenue ranking as of the day, gathered across both workers, from each."""
    values = {
        rep: expected[key].value if (key := ("rep", rep, "revenue", "2026-Q4")) in expected else 0
        for rep in reps
    }
    ranking = sorted(reps, key=lambda rep: (-values[rep], rep))
    for worker in workers:
        body = worker.get(
            "/api/v1/leaderboard", metric="revenue", period="2026-Q4", limit="1000", as_of=as_of
        ).json()
        assert body["partial"] is False, body
        assert [e["rep_id"] for e in body["entries"]] == ranking
        assert [e["value"] for e in body["entries"]] == [decimal_text(values[r]) for r in ranking]


BAD_PARAMETERS = [
    ("period", "9999"),
    ("period", "9999-Q4"),
    ("period", "9999-12-31"),
    ("period", "0000"),
    ("period", "2026-Q5"),
    ("period", ""),
    ("as_of", "9999-12-31"),
    ("as_of", "9999-12-31T23:00:00-05:00"),  # past year 9999 in UTC
    ("as_of", "0001-01-01T00:00:00+01:00"),  # before year 1 in UTC
    ("as_of", "2026-02-30"),
    ("as_of", "2026-11-27T10:00:00"),  # no offset
    ("as_of", "yesterday"),
]
READ_ROUTES = [
    "/api/v1/reps/{rep}/progress",
    "/api/v1/teams/emea/progress",
    "/api/v1/company/progress",
    "/api/v1/leaderboard",
]


@pytest.mark.parametrize(("name", "value"), BAD_PARAMETERS)
def test_odd_periods_and_as_of_are_400_naming_the_parameter(
    fed: tuple[list[Worker], scenario.Scenario], name: str, value: str
) -> None:
    workers, sc = fed
    for route in READ_ROUTES:
        for worker in workers:
            response = worker.get(route.format(rep=sc.reps[0]), **{name: value})
            assert response.status_code == 400, (route, response.text)
            assert response.json()["field"] == name, response.text
    if name == "period":  # the history routes read period labels too
        response = workers[0].get("/api/v1/history/leaderboard", period=value)
        assert response.status_code == 400 and response.json()["field"] == "period"


def test_paths_and_methods_no_route_answers_are_json_too(
    fed: tuple[list[Worker], scenario.Scenario],
) -> None:
    worker = fed[0][0]
    missing = worker.get("/api/v1/reps/a/b/progress")
    assert missing.status_code == 404 and missing.json() == {"error": "Not Found", "field": None}
    wrong = HTTP.post(f"{worker.url}/api/v1/company/progress")
    assert wrong.status_code == 405 and wrong.json()["field"] is None
    assert "GET" in wrong.headers["Allow"]


@schemathesis.check
def errors_are_json_naming_a_field(ctx: Any, response: Any, case: Case) -> bool | None:
    """Every 4xx is ``{"error": <non-empty string>, "field": <string or null>}``."""
    if 400 <= response.status_code < 500:
        assert response.headers["content-type"][0].startswith("application/json"), response.text
        body = json.loads(response.content)
        assert isinstance(body.get("error"), str) and body["error"], body
        assert "field" in body and (body["field"] is None or isinstance(body["field"], str)), body
    return None


CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    errors_are_json_naming_a_field,
]


def test_fuzzing_the_documented_api_finds_no_5xx_and_only_documented_answers(
    fed: tuple[list[Worker], scenario.Scenario],
) -> None:
    """schemathesis generates valid and invalid requests for every operation of the document
    the worker serves; each answer must be documented, schema-valid, and never a 5xx.

    Requests go out through httpx, not schemathesis' ``requests`` transport: grafana-client's
    niquests installs urllib3-future over urllib3, whose pool container that transport counts
    connections in has changed."""
    workers, _ = fed
    url = workers[0].url
    doc = httpx.get(f"{url}/api/v1/openapi.json", timeout=10).json()
    schema = schemathesis.openapi.from_dict(doc)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) == sum(
        len(item.keys() & {"get", "post"}) for item in doc["paths"].values()
    )
    calls = 0
    failures: list[str] = []
    started = time.monotonic()
    for operation in operations:
        strategy = operation.as_strategy(GenerationMode.POSITIVE) | operation.as_strategy(
            GenerationMode.NEGATIVE
        )

        @settings(
            max_examples=FUZZ_EXAMPLES,
            deadline=None,
            derandomize=True,
            database=None,
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        @given(case=strategy)
        def fuzz(case: Case) -> None:
            nonlocal calls
            calls += 1
            request = case.as_transport_kwargs(base_url=url)
            response = HTTP.request(
                request["method"],
                request["url"],
                params=request.get("params"),
                headers=request.get("headers"),
                content=request.get("data"),
                json=request.get("json"),
            )
            case.validate_response(response, checks=CHECKS)

        try:
            fuzz()
        except (AssertionError, BaseExceptionGroup) as exc:  # schemathesis' FailureGroup
            failures.append(f"{operation.label}: {exc}"[:3000])
    elapsed = time.monotonic() - started
    print(f"fuzz: {calls} requests over {len(operations)} operations in {elapsed:.1f} s")
    assert not failures, "\n\n".join(failures)
    assert calls >= len(operations) * FUZZ_EXAMPLES // 2
