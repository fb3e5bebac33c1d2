"""The worker entry point: ``faust -A streams.worker worker`` (or ``spm worker``).

Before the app is built, the checks that would otherwise fail late and obscurely run here and
stop the process with one clear message: the API tokens must be valid, and without any the
API must stay on a loopback address (``streams.web_auth``); the URL other workers forward
requests to must be reachable (not a wildcard address); a reachable Kafka broker must accept
its TLS and SASL settings; and a worker that runs the history sink on embedded chDB claims
that path (one process per path). Then the topics it needs are created (the broker does not
create topics itself), so a worker with a fresh prefix starts on an empty cluster.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from streams.app import create_app
from streams.chclient import ChdbPathBusy, chdb_path, get_client
from streams.kafka_clients import BrokerRefused, check_accepted
from streams.settings import Settings, get_settings
from streams.topics import ensure_topics
from streams.web_auth import access_problem

WILDCARD_HOSTS = {"0.0.0.0", "::", ""}


def advertised_url_problem(settings: Settings) -> str | None:
    """Why other workers could not reach ``settings.advertised_url``, if they could not."""
    url = settings.advertised_url
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return f"SPM_WEB_ADVERTISED_URL {url!r} is not an http(s) URL with a host"
    if parts.hostname in WILDCARD_HOSTS:
        return (
            f"this worker would advertise {url}, which other workers cannot reach: with "
            f"SPM_WEB_HOST={settings.web_host} set SPM_WEB_ADVERTISED_URL to this worker's "
            "own address (e.g. http://worker-1:6066)"
        )
    return None


def preflight(settings: Settings) -> None:
    """Refuse to start, with the reason, a configuration that cannot work; make the data dir."""
    problem = access_problem(settings) or advertised_url_problem(settings)
    if problem is not None:
        raise SystemExit(f"spm worker: {problem}")
    try:
        check_accepted(settings)
    except BrokerRefused as exc:
        raise SystemExit(f"spm worker: Kafka at {settings.kafka_bootstrap}: {exc}") from None
    settings.worker_data_dir.mkdir(parents=True, exist_ok=True)
    if settings.history_sink and chdb_path(settings.clickhouse_dsn) is not None:
        try:
            get_client(settings)
        except ChdbPathBusy as exc:
            raise SystemExit(f"spm worker: {exc}") from None


settings = get_settings()
preflight(settings)
ensure_topics(settings)
app = create_app(settings)
