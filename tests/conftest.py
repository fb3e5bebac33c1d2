"""How ``make test`` spreads the test modules over parallel pytest-xdist workers.

With ``--dist loadfile`` a module stays on one worker (its module-scoped fixtures start worker
processes once), and the scheduler hands out the modules in collection order, the order the
hook below leaves; ``--no-loadscope-reorder`` keeps it from sorting them by their number of
tests instead. A slow module started last would run on alone after the rest: known-slow
modules go first, the others keep pytest's order, and so does every module's own tests.

Modules that must not overlap in time are handed out as one unit, so one worker runs them one
after the other (``ONE_WORKER``).
"""

from __future__ import annotations

from typing import Any

import pytest

#: Test modules (from the repository root) by how long they take, the slowest first, as
#: measured under ``make test`` (the last four are the slow ones of ``make check``). A module
#: that does not exist is ignored.
SLOW_MODULES = (
    "tests/integration/test_dashboards_live.py",
    "tests/integration/test_celebrations_live.py",
    "tests/integration/test_pipeline.py",
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

#: Modules handed out as one unit: both listen on the webhook port of the shipped Alertmanager
#: config (``test_celebrations_live.py`` with a stack of its own, ``test_dashboards_live.py``
#: with the shared one). ``test_stack.py`` used to be here: its ``up`` reloaded the shared
#: Prometheus, which then dropped alerts for a few seconds; ``up`` now reloads only a changed
#: configuration.
ONE_WORKER = (
    "tests/integration/test_dashboards_live.py",
    "tests/integration/test_celebrations_live.py",
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    rank = {module: i for i, module in enumerate(SLOW_MODULES)}

    def slowness(item: pytest.Item) -> int:
        module = item.path.relative_to(config.rootpath).as_posix()
        return rank.get(module, len(SLOW_MODULES))

    items.sort(key=slowness)  # stable: the order within a module and among the rest is kept


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """``--dist loadfile``, the modules of ``ONE_WORKER`` handed out together."""
    if config.getoption("dist") != "loadfile":
        return None
    from xdist.scheduler import LoadFileScheduling

    class Scheduling(LoadFileScheduling):
        def _split_scope(self, nodeid: str) -> str:
            module = super()._split_scope(nodeid)
            return ONE_WORKER[0] if module in ONE_WORKER else module

    return Scheduling(config, log)
