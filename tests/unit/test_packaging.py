"""The wheel's package list in pyproject.toml covers every package under streams/.

setuptools' ``find`` cannot map the top-level ``schemas/`` into the package, so the packages
are listed by hand; this catches a new sub-package that would be missing from an installed
product (only the source tree would have it).
"""

from __future__ import annotations

import tomllib

from setuptools import find_packages

from tools.settings import REPO_ROOT

DATA_PACKAGES = {"streams.schemas": "schemas", "streams.schemas.clickhouse": "schemas/clickhouse"}
SETUPTOOLS = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]


def test_every_package_under_streams_is_listed_and_nothing_else() -> None:
    on_disk = set(find_packages(where=str(REPO_ROOT), include=["streams", "streams.*"]))
    listed = set(SETUPTOOLS["packages"])
    assert listed == on_disk | set(DATA_PACKAGES), (
        "[tool.setuptools] packages in pyproject.toml must list exactly the packages under "
        f"streams/ plus {sorted(DATA_PACKAGES)}; missing: {sorted(on_disk - listed)}, "
        f"stale: {sorted(listed - on_disk - set(DATA_PACKAGES))}"
    )


def test_the_data_packages_are_the_top_level_schemas_folder() -> None:
    assert SETUPTOOLS["package-dir"] == {"streams.schemas": "schemas"}
    for folder in DATA_PACKAGES.values():
        assert (REPO_ROOT / folder).is_dir()
