"""The product's wheel ships the product and its data, and nothing else.

The wheel is built (without dependencies) from a clean copy of its sources in a temporary
directory, so nothing of the repository can stand in for a file the wheel forgot. That the
installed product runs (``spm``, the worker's code reading the event schema and the ClickHouse
migrations from the installed package) is checked in ``test_dockerfile.py``, on the
non-editable install with all dependencies that the Dockerfile's ``pip install .`` makes.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest

from tests.integration.installing import build_wheel
from tools.settings import REPO_ROOT


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_wheel(tmp_path_factory.mktemp("wheel"))


def test_the_wheel_ships_the_product_and_its_data_only(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())

    shipped_sql = {n for n in names if n.startswith("streams/schemas/clickhouse/")}
    repo_sql = {f"streams/schemas/clickhouse/{p.name}" for p in REPO_ROOT.glob("schemas/*/*.sql")}
    assert "streams/schemas/event.v1.schema.json" in names
    assert shipped_sql == repo_sql
    assert {"streams/engine/catalog.yaml", "streams/engine/rates.csv", "streams/py.typed"} <= names
    tops = {name.split("/")[0] for name in names}
    assert {t for t in tops if not t.endswith(".dist-info")} == {"streams"}
