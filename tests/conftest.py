"""How ``make test`` spreads the test modules over parallel pytest-xdist workers.

With ``--dist loadfile`` a module stays on one worker (its module-scoped fixtures start worker
processes once), and the scheduler hands out the modules in collection order, the order the
hook below leaves; ``--no-loadscope-reorder`` keeps it from sorting them by their number of
tests instead. A slow module started last would run on alone after the rest: known-slow
modules go first, the others keep pytest's order, and so does every module's own tests.

Every module can run beside any other: the live tests that wait for alerts listen on the webhook
port of their own stack's Alertmanager config (``SPM_ALERTMANAGER_WEBHOOK_PORT``).
"""

from __future__ import annotations

import pytest

#: Test modules (from the repository root) by how long they take, the slowest first, as
#: measured under ``make test`` (``PYTEST_ADDOPTS=--durations=0``, setup + call + teardown
#: summed per module). A module that does not exist is ignored.
SLOW_MODULES = (
    "tests/integration/test_celebrations_live.py",  # 127 s
    "tests/integration/test_crash_matrix.py",  # 77 s
    "tests/integration/test_failover.py",  # 75 s
    "tests/integration/test_dashboards_live.py",  # 69 s
    "tests/integration/test_late_reference.py",  # 69 s
    "tests/integration/test_explain_reconcile.py",  # 68 s
    "tests/integration/test_dockerfile.py",  # 68 s
    "tests/integration/test_api_contract.py",  # 66 s
    "tests/integration/test_scale_out.py",  # 59 s
    "tests/integration/test_pipeline.py",  # 58 s
    "tests/integration/test_sasl_ssl.py",  # 45 s
    "tests/unit/engine/test_decoder_schema.py",  # 45 s
    "tests/integration/test_dashboards.py",  # 45 s
    "tests/integration/test_cli.py",  # 41 s
    "tests/integration/test_stack.py",  # 41 s
    "tests/integration/test_http_ingest.py",  # 40 s
    "tests/integration/test_history_api.py",  # 39 s
    "tests/unit/observability/test_alertmanager.py",  # 36 s
    "tests/integration/test_http_ingest_outage.py",  # 35 s
    "tests/integration/test_sink.py",  # 33 s
    "tests/integration/test_auth.py",  # 20 s
    "tests/unit/engine/test_properties.py",  # 12 s alone
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    rank = {module: i for i, module in enumerate(SLOW_MODULES)}

    def slowness(item: pytest.Item) -> int:
        module = item.path.relative_to(config.rootpath).as_posix()
        return rank.get(module, len(SLOW_MODULES))

    items.sort(key=slowness)  # stable: the order within a module and among the rest is kept
