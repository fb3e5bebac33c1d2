"""The Faust application: one app, its topics, and the modules that attach agents and views.

``faust -A streams.app worker`` starts a worker. Reading order for a newcomer: this file (topics)
→ ``agents.py`` (what happens to an event) → ``live.py`` (the read model the agents keep and the
API reads) → ``web.py`` (the HTTP API) → ``sinks/clickhouse.py`` (history).

Topic flow::

    spm.activity ─ingest─┬─> spm.activity.dlq      (rejected: original bytes + reason)
                         └─> spm.events            [key: deal_id | rep_id]
    spm.events ─ledger──────> spm.credits           [key: rep_id]  (deal ledger → credit)
    spm.credits ─reps───────> spm.team-credits      [key: team:<id> | company:company]
                         └──> spm.progress, spm.alerts, /metrics gauges
    spm.team-credits ─teams─> spm.progress, spm.alerts, /metrics gauges
    spm.quotas, spm.roster (compacted) ─> every worker's reference mirror
"""

from __future__ import annotations

import faust

from streams import transactions
from streams.metrics import faust_monitor
from streams.settings import Settings, get_settings


def create_app(settings: Settings) -> faust.App:
    """The Faust app for ``settings``; tests build their own with a unique prefix and app id."""
    return faust.App(
        settings.app_id,
        broker=f"kafka://{settings.kafka_bootstrap}",
        store=settings.store,
        processing_guarantee=settings.processing_guarantee,
        topic_partitions=settings.partitions,
        topic_replication_factor=1,
        topic_allow_declare=True,
        datadir=str(settings.worker_data_dir),
        web_host=settings.web_host,
        web_port=settings.web_port,
        web_bind=settings.web_host,
        canonical_url=f"http://{settings.web_host}:{settings.web_port}",
        broker_commit_interval=settings.commit_interval,
        stream_buffer_maxsize=settings.batch_size * 2,
        autodiscover=False,
        key_serializer="raw",
        value_serializer="raw",
        monitor=faust_monitor(),
    )


settings = get_settings()
app = create_app(settings)
transactions.install(app)

# Importing these modules attaches the agents, timers, services and views to ``app``.
from streams import agents, web, web_history  # noqa: E402

__all__ = ["agents", "app", "create_app", "settings", "web", "web_history"]
