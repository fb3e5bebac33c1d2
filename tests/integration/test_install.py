"""The product installs: a wheel in a fresh venv gives a working ``spm`` and worker code that
reads the event schema and the ClickHouse migrations from the installed package.

Everything runs from a temporary directory, so nothing of the repository can stand in for a
file the wheel forgot.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest

from tests.integration.installing import Venv, build_wheel, output_tail
from tools.settings import REPO_ROOT

pytestmark = pytest.mark.timeout(1800)

#: Run inside the installed venv: where the package is, the schema, the migrations, whether
#: the worker's code imports and the contract decodes an event.
PROBE = """
import importlib, json, streams
from streams import resources
from streams.migrations import load_migrations
from streams.rules import Rules
from streams.settings import Settings
importlib.import_module("streams.app")
event = json.dumps({
    "specversion": "1.0", "id": "c-1", "source": "dialer", "type": "call.completed",
    "time": "2026-11-27T10:15:00+01:00", "data": {"rep_id": "rep-001"},
}).encode()
print(json.dumps({
    "package": streams.__file__,
    "schema": json.loads(resources.event_schema_text()),
    "migrations": [[m.version, m.name, len(m.statements)] for m in load_migrations()],
    "decoded": repr(Rules.from_settings(Settings()).decoder.decode(event))[:200],
}))
"""


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_wheel(tmp_path_factory.mktemp("wheel"))


@pytest.fixture(scope="module")
def installed(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Venv:
    venv = Venv.create(tmp_path_factory.mktemp("installed") / "venv")
    venv.pip_install(wheel, cwd=wheel.parent)
    return venv


def test_the_wheel_ships_the_product_and_its_data_only(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())

    shipped_sql = {n for n in names if n.startswith("streams/schemas/clickhouse/")}
    repo_sql = {f"streams/schemas/clickhouse/{p.name}" for p in REPO_ROOT.glob("schemas/*/*.sql")}
    assert "streams/schemas/event.v1.schema.json" in names
    assert shipped_sql == repo_sql
    assert {"streams/engine/catalog.yaml", "streams/engine/rates.csv", "streams/py.typed"} <= names
    tops = {name.split("/")[0] for name in names}
    assert {t for t in tops if not t.endswith(".dist-info")} == {"streams"}


def test_spm_runs_from_the_install(installed: Venv, tmp_path: Path) -> None:
    done = installed.run("spm", "--help", cwd=tmp_path, COLUMNS="200")

    assert done.returncode == 0, output_tail(done)
    for command in ("emit", "quotas", "roster", "teams", "dlq", "db", "replay", "grafana"):
        assert f" {command} " in done.stdout, done.stdout
    for tooling in ("stack", "demo"):  # developer tooling is not part of the product
        assert f" {tooling} " not in done.stdout, done.stdout


def test_the_installed_package_reads_its_schema_and_migrations(
    installed: Venv, tmp_path: Path
) -> None:
    done = installed.run(installed.python, "-c", PROBE, cwd=tmp_path)

    assert done.returncode == 0, output_tail(done)
    found = json.loads(done.stdout.splitlines()[-1])
    assert Path(found["package"]).is_relative_to(installed.root), found["package"]
    repo_schema = json.loads((REPO_ROOT / "schemas" / "event.v1.schema.json").read_text())
    assert found["schema"] == repo_schema
    repo_sql = REPO_ROOT.glob("schemas/clickhouse/*.sql")
    repo_versions = sorted(int(p.name.split("_")[0]) for p in repo_sql)
    assert [version for version, _, _ in found["migrations"]] == repo_versions
    assert all(statements for _, _, statements in found["migrations"])
    assert found["decoded"].startswith("Event("), found["decoded"]
