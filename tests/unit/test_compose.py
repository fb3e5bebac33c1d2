"""docker-compose.yml stays runnable without Docker here: Debian's docker-compose accepts it with
the variables .env.example names, refuses it while a secret is missing, and it mounts only files
of this repository, publishes only on loopback, wires the services to each other and gives the
workers the API token hashes of .env."""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from streams.auth import TokenBook, hash_token, new_token
from streams.settings import REPO_ROOT, Settings

COMPOSE_FILE = REPO_ROOT / "docker-compose.yml"
ENV_EXAMPLE = REPO_ROOT / ".env.example"
WORKERS = ("worker-1", "worker-2")
SERVICES = {"kafka", "clickhouse", *WORKERS, "prometheus", "alertmanager", "grafana"}


def _env_file(directory: Path, *, fill_secrets: bool) -> Path:
    """.env.example, with every empty value set to a fresh random secret when asked."""
    lines = []
    for line in ENV_EXAMPLE.read_text().splitlines():
        key, sep, value = line.partition("=")
        if fill_secrets and sep and not line.lstrip().startswith("#") and not value:
            value = secrets.token_urlsafe(16)
        lines.append(f"{key}{sep}{value}")
    path = directory / ".env"
    path.write_text("\n".join(lines) + "\n")
    return path


def _compose_config(env_file: Path, home: Path) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("docker-compose")
    assert binary, "docker-compose is not installed; run `make deps`"
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(home),
        "COMPOSE_FILE": str(COMPOSE_FILE),
        "COMPOSE_PROJECT_NAME": "spm-config-test",
    }
    return subprocess.run(
        [binary, "--project-directory", str(REPO_ROOT), "--env-file", str(env_file), "config"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.fixture(scope="module")
def env_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _env_file(tmp_path_factory.mktemp("compose-env"), fill_secrets=True)


@pytest.fixture(scope="module")
def config(env_file: Path) -> dict[str, Any]:
    """The compose file as docker-compose resolves it with a filled-in .env."""
    done = _compose_config(env_file, env_file.parent)
    assert done.returncode == 0, done.stderr
    return yaml.safe_load(done.stdout)


def test_config_resolves_every_service_with_env_example_variables(config: dict[str, Any]):
    assert set(config["services"]) == SERVICES


def test_config_refuses_to_run_without_the_secrets(tmp_path: Path):
    done = _compose_config(_env_file(tmp_path, fill_secrets=False), tmp_path)

    assert done.returncode != 0
    assert "set in .env" in done.stderr


def test_no_secret_has_a_default_in_the_compose_file():
    text = COMPOSE_FILE.read_text()
    references = re.findall(r"\$\{([A-Z_]+)([^}]*)\}", text)

    assert references
    assert {rest for _, rest in references} == {":?set in .env"}


def _bind_mounts(config: dict[str, Any]) -> list[Path]:
    """Host paths of every bind mount (named volumes have no path)."""
    hosts = []
    for service in config["services"].values():
        for volume in service.get("volumes", []):
            source = volume["source"] if isinstance(volume, dict) else volume.split(":", 1)[0]
            if source.startswith(("/", ".")):
                hosts.append(Path(source))
    return hosts


def test_bind_mounts_are_existing_repository_paths(config: dict[str, Any]):
    mounts = _bind_mounts(config)

    assert mounts
    for host in mounts:
        assert host.is_relative_to(REPO_ROOT), host
        assert host.exists(), f"{host} is mounted but missing"
    assert REPO_ROOT / "dashboards" in mounts
    assert (REPO_ROOT / "dashboards").is_dir()


def test_ports_are_published_on_loopback_only(config: dict[str, Any]):
    published = [
        str(port) for service in config["services"].values() for port in service.get("ports", [])
    ]

    assert published
    assert all(port.startswith("127.0.0.1:") for port in published), published


def test_workers_reach_kafka_and_clickhouse_by_service_name(config: dict[str, Any], env_file: Path):
    env = dict(line.split("=", 1) for line in env_file.read_text().splitlines() if "=" in line)
    credentials = f"{env['CLICKHOUSE_USER']}:{env['CLICKHOUSE_PASSWORD']}"

    for name in WORKERS:
        worker = config["services"][name]
        assert "command" not in worker  # the image's CMD (Dockerfile) is the one worker command
        assert worker["environment"]["SPM_KAFKA_BOOTSTRAP"] == "kafka:9092"
        assert worker["environment"]["SPM_CLICKHOUSE_URL"] == (
            f"http://{credentials}@clickhouse:8123/{env['CLICKHOUSE_DB']}"
        )


def test_workers_take_the_api_token_hashes_of_env_as_spm_token_new_prints_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    secret = new_token()
    entry = {"name": "crm", "sha256": hash_token(secret), "scopes": ["ingest", "read"]}
    env_file = _env_file(tmp_path, fill_secrets=True)
    lines = env_file.read_text().splitlines()
    tokens = f"SPM_API_TOKENS={json.dumps([entry])}"
    env_file.write_text(
        "\n".join(tokens if line.startswith("SPM_API_TOKENS=") else line for line in lines)
    )

    done = _compose_config(env_file, tmp_path)

    assert done.returncode == 0, done.stderr
    for name in WORKERS:
        environment = yaml.safe_load(done.stdout)["services"][name]["environment"]
        monkeypatch.setenv("SPM_API_TOKENS", environment["SPM_API_TOKENS"])  # as the worker
        found = TokenBook(Settings().api_tokens).authenticate(secret)
        assert found is not None and found.scopes == {"ingest", "read"}
        assert environment.get("SPM_METRICS_AUTH", "false") == "false"  # Prometheus scrapes


def test_each_worker_advertises_its_own_reachable_url_and_keeps_its_own_data(
    config: dict[str, Any],
):
    services = config["services"]
    for name in WORKERS:
        environment = services[name]["environment"]
        assert environment["SPM_WEB_ADVERTISED_URL"] == (
            f"http://{name}:{environment['SPM_WEB_PORT']}"
        )
    volumes = [tuple(str(v) for v in services[name]["volumes"]) for name in WORKERS]
    ports = [tuple(str(p) for p in services[name]["ports"]) for name in WORKERS]
    assert len(set(volumes)) == len(WORKERS)
    assert len(set(ports)) == len(WORKERS)


def test_prometheus_scrapes_every_worker_and_alerts_the_alertmanager_port(
    config: dict[str, Any],
):
    services = config["services"]
    prometheus_config = yaml.safe_load(
        (REPO_ROOT / "deploy" / "prometheus" / "prometheus-compose.yml").read_text()
    )
    alertmanager_port = str(services["alertmanager"]["ports"][0]).split(":")[-1].split("/")[0]
    scrape = {job["job_name"]: job for job in prometheus_config["scrape_configs"]}
    managers = prometheus_config["alerting"]["alertmanagers"][0]["static_configs"][0]

    assert scrape["spm-worker"]["static_configs"][0]["targets"] == [
        f"{name}:{services[name]['environment']['SPM_WEB_PORT']}" for name in WORKERS
    ]
    assert managers["targets"] == [f"alertmanager:{alertmanager_port}"]
    assert (
        "--config.file=/etc/prometheus/prometheus-compose.yml" in services["prometheus"]["command"]
    )


def test_prometheus_compose_config_passes_promtool():
    promtool = shutil.which("promtool")
    assert promtool, "promtool is not installed; run `make deps`"
    done = subprocess.run(
        [promtool, "check", "config", "prometheus-compose.yml"],
        cwd=REPO_ROOT / "deploy" / "prometheus",
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert done.returncode == 0, done.stdout + done.stderr


def test_grafana_provisioning_only_uses_variables_grafana_gets(config: dict[str, Any]):
    grafana_env = config["services"]["grafana"]["environment"]
    provisioning = REPO_ROOT / "deploy" / "grafana" / "provisioning"
    used = {
        name
        for path in provisioning.rglob("*.yml")
        for name in re.findall(r"\$\{(\w+)\}", path.read_text())
    }

    assert used
    assert used <= set(grafana_env), used - set(grafana_env)
