"""API access, the pure part and the start-up rules: token hashing and matching, the route
table, 401 vs 403, token configuration (env and file, errors that never echo a secret), the
loopback rule and ``spm token new``. The middleware on a real worker is
``tests/integration/test_auth.py``'s."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
import structlog
from hypothesis import given
from hypothesis import strategies as st
from pydantic import SecretStr, ValidationError
from typer.testing import CliRunner

from streams import ingest, web, web_admin, web_history
from streams.auth import (
    SCOPES,
    TOKEN_PREFIX,
    ApiToken,
    Scope,
    TokenBook,
    access,
    bearer,
    client_headers,
    decide,
    hash_token,
    new_token,
)
from streams.cli.main import app as spm
from streams.settings import Settings
from streams.web_auth import (
    TokenConfigError,
    access_problem,
    application_options,
    is_loopback,
    load_tokens,
)

secrets_ = st.text(min_size=1, max_size=80).filter(lambda s: s.strip() == s and " " not in s)


def token(name: str, secret: str, *scopes: Scope) -> ApiToken:
    return ApiToken(name=name, sha256=hash_token(secret), scopes=frozenset(scopes))


BOOK = TokenBook(
    [
        token("reader", "s-read", "read"),
        token("feeder", "s-ingest", "ingest"),
        token("boss", "s-admin", "admin"),
        token("all", "s-all", *SCOPES),
    ]
)


def verdict(method: str, route: str, secret: str | None, *, exists: bool = True, metrics=False):
    header = None if secret is None else f"Bearer {secret}"
    return decide(access(metrics), BOOK, method, route, header, exists=exists)


# --- tokens --------------------------------------------------------------------------------------
def test_new_tokens_are_prefixed_random_secrets_of_256_bits():
    tokens = {new_token() for _ in range(100)}

    assert len(tokens) == 100
    assert all(t.startswith(TOKEN_PREFIX) and len(t) == len(TOKEN_PREFIX) + 43 for t in tokens)


@given(st.text(max_size=100))
def test_the_configured_hash_is_the_sha256_of_the_secret(secret: str):
    expected = hashlib.sha256(secret.encode("utf-8", "surrogateescape")).hexdigest()
    assert hash_token(secret) == expected


@given(st.lists(secrets_, min_size=1, max_size=6, unique=True), secrets_)
def test_a_secret_authenticates_as_its_own_token_and_no_other(secrets: list[str], other: str):
    book = TokenBook(token(f"t{i}", s, "read") for i, s in enumerate(secrets))

    for i, secret in enumerate(secrets):
        found = book.authenticate(secret)
        assert found is not None and found.name == f"t{i}"
    assert (book.authenticate(other) is None) == (other not in secrets)
    assert book.authenticate(None) is None


@given(secrets_, st.sampled_from(["Bearer", "bearer", "BEARER"]), st.sampled_from([" ", "  "]))
def test_bearer_takes_the_token_of_a_bearer_header_only(secret: str, scheme: str, gap: str):
    assert bearer(f"{scheme}{gap}{secret}") == secret
    assert bearer(f"Basic {secret}") is None
    assert bearer(secret) is None


@pytest.mark.parametrize("header", [None, "", "Bearer", "Bearer   ", "Token x"])
def test_no_bearer_token_in_a_missing_empty_or_other_header(header: str | None):
    assert bearer(header) is None


def test_a_client_sends_its_token_as_a_bearer_header():
    assert client_headers(SecretStr("spm_x")) == {"Authorization": "Bearer spm_x"}
    assert client_headers(None) == {}


def test_a_token_is_configured_by_name_hash_and_at_least_one_known_scope():
    digest = hash_token("s")
    entry = ApiToken.model_validate({"name": "crm", "sha256": digest.upper(), "scopes": ["read"]})

    assert entry.sha256 == digest  # upper-case hex is accepted as the same hash
    for bad in (
        {"name": "crm", "sha256": digest, "scopes": []},
        {"name": "crm", "sha256": digest, "scopes": ["write"]},
        {"name": "", "sha256": digest, "scopes": ["read"]},
        {"name": "a b", "sha256": digest, "scopes": ["read"]},
        {"name": "crm", "sha256": digest[:-1], "scopes": ["read"]},
        {"name": "crm", "sha256": digest, "scopes": ["read"], "secret": "s"},
    ):
        with pytest.raises(ValidationError):
            ApiToken.model_validate(bad)


@pytest.mark.parametrize("attribute", ["name", "secret"])
def test_two_tokens_with_one_name_or_one_hash_are_refused(attribute: str):
    first = token("a", "s1", "read")
    second = token(
        "a" if attribute == "name" else "b", "s2" if attribute == "name" else "s1", "admin"
    )

    with pytest.raises(ValueError, match="configured twice"):
        TokenBook([first, second])


# --- the route table -----------------------------------------------------------------------------
READ_ROUTES = [
    "/api/v1/reps/{rep_id}/progress",
    "/api/v1/teams/{team_id}/progress",
    "/api/v1/company/progress",
    "/api/v1/leaderboard",
    "/api/v1/history/events",
]
ADMIN_ROUTES = ["/api/v1/admin/quotas", "/api/v1/admin/dlq/replay"]


@pytest.mark.parametrize(
    ("method", "route", "scope"),
    [("GET", r, "read") for r in READ_ROUTES]
    + [("HEAD", r, "read") for r in READ_ROUTES]
    + [("POST", r, "admin") for r in ADMIN_ROUTES]
    + [("GET", "/api/v1/admin/quotas", "admin"), ("POST", "/api/v1/events", "ingest")],
)
def test_each_route_needs_its_scope_401_without_a_known_token_403_without_the_scope(
    method: str, route: str, scope: Scope
):
    secrets = {"read": "s-read", "ingest": "s-ingest", "admin": "s-admin"}
    assert verdict(method, route, secrets[scope]).refusal is None
    assert verdict(method, route, "s-all").refusal is None
    for missing in (None, "s-nobody"):
        refused = verdict(method, route, missing)
        assert refused.refusal == 401 and refused.challenge.startswith("Bearer")
    for other in set(SCOPES) - {scope}:
        refused = verdict(method, route, secrets[other])
        assert refused.refusal == 403 and scope in refused.error
        assert f'scope="{scope}"' in refused.challenge


def test_an_unknown_token_is_told_apart_from_a_missing_one():
    assert verdict("GET", "/api/v1/leaderboard", None).error == "a bearer token is required"
    unknown = verdict("GET", "/api/v1/leaderboard", "s-nobody")
    assert unknown.error == "unknown bearer token" and 'error="invalid_token"' in unknown.challenge


def test_health_is_open_and_metrics_open_unless_protected():
    for method in ("GET", "HEAD"):
        assert verdict(method, "/healthz", None).refusal is None
        assert verdict(method, "/metrics", None).refusal is None
    assert verdict("GET", "/metrics", None, metrics=True).refusal == 401
    assert verdict("GET", "/metrics", "s-ingest", metrics=True).refusal == 403
    assert verdict("GET", "/metrics", "s-read", metrics=True).refusal is None


@pytest.mark.parametrize(
    ("method", "route"),
    [
        ("DELETE", "/api/v1/leaderboard"),
        ("POST", "/api/v1/leaderboard"),
        ("PUT", "/api/v1/events"),
        ("GET", "/"),
        ("GET", "/router/"),
        ("POST", "/healthz"),
        ("POST", "/api/v2/anything"),
    ],
)
def test_a_route_nobody_listed_is_denied_even_to_a_token_with_every_scope(method, route):
    assert verdict(method, route, None).refusal == 401
    refused = verdict(method, route, "s-all")
    assert refused.refusal == 403 and "no scope grants" in refused.error


def test_a_path_no_route_answers_gets_its_404_only_with_a_valid_token():
    assert verdict("GET", "/nowhere", None, exists=False).refusal == 401
    assert verdict("GET", "/nowhere", "s-ingest", exists=False).refusal is None
    # a path the table covers still needs its scope, whether the route exists yet or not
    assert verdict("POST", "/api/v1/events", "s-read", exists=False).refusal == 403
    assert verdict("POST", "/api/v1/admin/nothing", "s-read", exists=False).refusal == 403


@given(
    st.sampled_from(["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"]),
    st.one_of(
        st.sampled_from(READ_ROUTES + ADMIN_ROUTES + ["/api/v1/events", "/healthz", "/metrics"]),
        st.text(min_size=1, max_size=30).map(lambda s: "/" + s),
    ),
    st.sampled_from([None, "s-nobody", "s-read", "s-ingest", "s-admin", "s-all"]),
    st.booleans(),
    st.booleans(),
)
def test_nothing_but_an_open_route_passes_without_a_token_holding_the_routes_scope(
    method: str, route: str, secret: str | None, exists: bool, metrics: bool
):
    answer = verdict(method, route, secret, exists=exists, metrics=metrics)
    rule = next((r for r in access(metrics) if r.covers(method, route)), None)
    if answer.refusal is None and not (rule is not None and rule.scope is None):
        assert answer.token is not None
        if rule is not None:
            assert rule.scope in answer.token.scopes
        else:
            assert not exists  # only the 404/405 of a route that does not exist
    assert answer.refusal is None or answer.refusal in (401, 403)


def _registered_routes() -> list[tuple[str, str]]:
    """(method, pattern) of every route the API modules register, as Faust would add them."""
    routes: list[tuple[str, Any]] = []

    class Recorder:
        def page(self, pattern: str) -> Any:
            return lambda view: routes.append((pattern, view))

    for module in (web, ingest, web_history, web_admin):
        module.register(Recorder())
    return [
        (method, pattern)
        for pattern, view in routes
        for method in ("get", "post", "put", "patch", "delete")
        if getattr(view, method) is not getattr(web.View, method)
    ]


def test_every_registered_route_needs_a_scope_except_health_and_metrics():
    table = access(metrics_auth=False)
    for method, pattern in _registered_routes():
        rule = next((r for r in table if r.covers(method.upper(), pattern)), None)
        assert rule is not None, f"{method} {pattern} is in no rule: it would answer 403"
        assert (rule.scope is None) == (pattern in ("/healthz", "/metrics")), pattern
    assert {("post", "/api/v1/admin/roster"), ("post", "/api/v1/events")} <= set(
        _registered_routes()
    )


# --- configuration -------------------------------------------------------------------------------
def entry(name: str, secret: str, *scopes: str) -> dict[str, Any]:
    return {"name": name, "sha256": hash_token(secret), "scopes": list(scopes)}


def test_tokens_come_from_the_environment_and_the_file(tmp_path: Path, monkeypatch):
    path = tmp_path / "tokens.json"
    path.write_text(json.dumps([entry("b", "s-b", "admin")]))
    monkeypatch.setenv("SPM_API_TOKENS", json.dumps([entry("a", "s-a", "read", "ingest")]))
    monkeypatch.setenv("SPM_API_TOKENS_FILE", str(path))

    book = load_tokens(Settings())

    assert book.names == ["a", "b"]
    found = book.authenticate("s-b")
    assert found is not None and found.scopes == {"admin"}


def test_a_secret_put_where_the_hash_belongs_is_refused_without_being_shown(monkeypatch):
    secret = new_token()
    monkeypatch.setenv("SPM_API_TOKENS", json.dumps([entry("a", "x", "read") | {"sha256": secret}]))

    with pytest.raises(ValidationError) as raised:
        Settings()

    assert "sha256" in str(raised.value) and "never the token itself" in str(raised.value)
    assert secret not in str(raised.value)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("not json", "Invalid JSON"),
        ('{"name": "a"}', "the list: Input should be a valid array"),
        (json.dumps([entry("a", "s", "root")]), "0.scopes"),
        (json.dumps([entry("a", "s", "read"), entry("a", "t", "read")]), "configured twice"),
    ],
)
def test_a_bad_tokens_file_is_named_with_what_is_wrong(tmp_path: Path, content, message):
    path = tmp_path / "tokens.json"
    path.write_text(content)

    with pytest.raises(TokenConfigError, match=message) as raised:
        load_tokens(Settings(api_tokens_file=path))

    assert "SPM_API_TOKENS" in str(raised.value)


def test_a_missing_tokens_file_stops_the_worker_with_its_path(tmp_path: Path):
    problem = access_problem(Settings(api_tokens_file=tmp_path / "nope.json"))

    assert problem is not None and "nope.json" in problem


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "::1", "localhost"])
def test_loopback_hosts(host: str):
    assert is_loopback(host)


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "", "10.0.0.5", "worker-1", "example.com"])
def test_other_hosts_are_not_loopback(host: str):
    assert not is_loopback(host)


def test_without_tokens_the_worker_may_listen_on_loopback_only():
    problem = access_problem(Settings(web_host="0.0.0.0"))
    assert problem is not None and "without authentication" in problem
    assert access_problem(Settings(web_host="127.0.0.1")) is None
    with_token = Settings(web_host="0.0.0.0", api_tokens=[token("a", "s", "read")])
    assert access_problem(with_token) is None


def test_the_start_says_whether_the_api_is_open_or_which_tokens_it_takes():
    with structlog.testing.capture_logs() as logs:
        assert application_options(Settings()) == {"middlewares": [web.json_errors]}
        options = application_options(Settings(api_tokens=[token("a", "s", "read")]))

    assert len(options["middlewares"]) == 2 and options["middlewares"][0] is web.json_errors
    assert [(log["event"], log["log_level"]) for log in logs] == [
        ("api.open", "warning"),
        ("api.tokens", "info"),
    ]
    assert logs[0]["host"] == "127.0.0.1" and logs[1]["tokens"] == ["a"]
    assert hash_token("s") not in str(logs)  # names only


# --- spm token new -------------------------------------------------------------------------------
def test_token_new_prints_the_secret_once_and_the_entry_to_configure():
    done = CliRunner().invoke(spm, ["token", "new", "--name", "crm", "--scopes", "read, ingest"])

    assert done.exit_code == 0, done.output
    secret, line = done.stdout.splitlines()[:2]
    configured = ApiToken.model_validate_json(line)
    assert secret.startswith(TOKEN_PREFIX)
    assert configured.sha256 == hash_token(secret)
    assert json.loads(line)["scopes"] == ["ingest", "read"]
    assert configured.name == "crm"
    assert TokenBook([configured]).authenticate(secret) == configured


@pytest.mark.parametrize("scopes", ["", "read,write", "ADMIN"])
def test_token_new_refuses_unknown_scopes(scopes: str):
    done = CliRunner().invoke(spm, ["token", "new", "--name", "crm", "--scopes", scopes])

    assert done.exit_code == 2
    assert "scopes" in done.output
