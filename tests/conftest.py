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
#: measured under ``make test`` (the last four are the slow ones of ``make check``). A module
#: that does not exist is ignored.
SLOW_MODULES = (
    "tests/integration/test_celebrations_live.py",
    "tests/integration/test_late_reference.py",
    "tests/integration/test_dashboards_live.py",
    "tests/integration/test_pipeline.py",
    "tests/integration/test_explain_reconcile.py",
    "tests/integration/test_failover.py",
    "tests/integration/test_crash_matrix.py",
    "tests/integration/test_dockerfile.py",
    "tests/integration/test_http_ingest_outage.py",
    "tests/integration/test_http_ingest.py",
    "tests/integration/test_cli.py",
    "tests/integration/test_api_contract.py",  # ~80 s alone: two workers, then a ~45 s fuzz
    "tests/integration/test_scale_out.py",
    "tests/integration/test_stack.py",
    "tests/integration/test_auth.py",
    "tests/integration/test_sink.py",
    "tests/integration/test_sasl_ssl.py",
    "tests/integration/test_dashboards.py",
    "tests/integration/test_history_api.py",
    "tests/unit/engine/test_decoder_schema.py",
    "tests/unit/observability/test_alertmanager.py",
    "tests/integration/test_in_process.py",
    "tests/unit/engine/test_properties.py",
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    rank = {module: i for i, module in enumerate(SLOW_MODULES)}

    def slowness(item: pytest.Item) -> int:
        module = item.path.relative_to(config.rootpath).as_posix()
        return rank.get(module, len(SLOW_MODULES))

    items.sort(key=slowness)  # stable: the order within a module and among the rest is kept
