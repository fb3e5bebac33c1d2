"""Test order: the slowest modules first, so that parallel runs end together.

``make test`` runs modules in parallel with pytest-xdist (``--dist loadfile``: a module stays on
one worker, its module-scoped fixtures start worker processes once). Its scheduler hands out the
modules in collection order, the order this hook leaves; ``--no-loadscope-reorder`` keeps it
from sorting them by their number of tests instead. A slow module started last would run on
alone after the rest: known-slow modules go first, the others keep pytest's order, and so does
every module's own tests.
"""

from __future__ import annotations

import pytest

#: Test modules (from the repository root) by how long they take, the slowest first. Measured
#: under ``make test``; a module that does not exist is ignored.
SLOW_MODULES = (
    "tests/integration/test_dashboards_live.py",
    "tests/integration/test_pipeline.py",
    "tests/integration/test_failover.py",
    "tests/integration/test_crash_matrix.py",
    "tests/integration/test_dockerfile.py",
    "tests/integration/test_http_ingest_outage.py",
    "tests/integration/test_http_ingest.py",
    "tests/integration/test_cli.py",
    "tests/integration/test_scale_out.py",
    "tests/integration/test_stack.py",
    "tests/integration/test_auth.py",
    "tests/integration/test_sink.py",
    "tests/integration/test_sasl_ssl.py",
    "tests/integration/test_dashboards.py",
    "tests/integration/test_history_api.py",
    "tests/unit/engine/test_properties.py",
    "tests/unit/engine/test_decoder_schema.py",
    "tests/unit/observability/test_alertmanager.py",
    "tests/integration/test_in_process.py",
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    rank = {module: i for i, module in enumerate(SLOW_MODULES)}

    def slowness(item: pytest.Item) -> int:
        module = item.path.relative_to(config.rootpath).as_posix()
        return rank.get(module, len(SLOW_MODULES))

    items.sort(key=slowness)  # stable: the order within a module and among the rest is kept
