"""The Faust application factory: ``create_app(settings)`` builds a worker's app.

Reading order for a newcomer: this file → ``streams/pipeline/topology.py`` (topics, the agent)
→ ``streams/pipeline/stage.py`` (what a batch does) → ``streams/engine/tally.py`` (the rules
of the state) → ``streams/live.py`` (figures) → ``streams/web.py`` (the HTTP API).
``streams.worker`` is the module ``faust -A`` (and ``spm worker``) start.
"""

from __future__ import annotations

import faust

from streams.kafka_clients import faust_broker
from streams.metrics import faust_monitor
from streams.pipeline import faust_compat, lifecycle, topology
from streams.settings import Settings
from streams.web_auth import application_options


class SpmApp(faust.App):
    """A Faust app that carries its runtime, so web views reach the live state through it."""

    runtime: topology.Runtime


def create_app(settings: Settings) -> SpmApp:
    """The app for ``settings``: at-least-once, no Faust tables (the tallies keep their own
    state in Kafka, see ``streams.pipeline.partitions``)."""
    app = SpmApp(
        settings.app_id,
        **faust_broker(settings),  # bootstrap servers and transport security
        store="memory://",
        processing_guarantee="at_least_once",
        topic_partitions=settings.partitions,
        topic_replication_factor=1,
        topic_allow_declare=False,
        datadir=str(settings.worker_data_dir),
        web_host=settings.web_host,
        web_port=settings.web_port,
        web_bind=settings.web_host,
        canonical_url=settings.advertised_url,
        web_application_options=application_options(settings),  # access control
        broker_commit_interval=settings.commit_interval,
        broker_session_timeout=settings.session_timeout,
        broker_heartbeat_interval=settings.session_timeout / 5,
        stream_buffer_maxsize=settings.batch_size * 2,
        autodiscover=False,
        key_serializer="raw",
        value_serializer="raw",
        monitor=faust_monitor(),
    )
    faust_compat.use_seeking_transport(app)  # before anything asks the app for its transport
    app.runtime = topology.build(app, settings)
    lifecycle.attach(app, app.runtime)
    from streams import (  # views read the runtime via the app
        ingest,
        web,
        web_admin,
        web_explain,
        web_history,
    )

    web.register(app)
    ingest.register(app)
    web_history.register(app)
    web_explain.register(app)
    web_admin.register(app)
    return app
