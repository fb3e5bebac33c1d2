"""Publishing the SPM boards and their data sources to an existing Grafana (``spm grafana push``).

The same definitions serve docker-compose and a remote Grafana: the data sources come from the
provisioning file (``deploy/grafana/provisioning/datasources/``, uids ``prometheus`` and
``clickhouse`` that the boards refer to) and the boards are the committed ``dashboards/*.json``.
Only the addresses differ: the provisioning file names compose hosts and ``${ENV}`` secrets,
which a remote Grafana cannot resolve, so the caller supplies the URLs it can reach.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml
from grafana_client import GrafanaApi
from grafana_client.client import GrafanaClientError

from streams.settings import REPO_ROOT

PROVISIONED_DATASOURCES = REPO_ROOT / "deploy" / "grafana" / "provisioning" / "datasources"
BOARDS_DIR = REPO_ROOT / "dashboards"
FOLDER_UID = "spm"
FOLDER_TITLE = "SPM"
# Fields of a provisioning entry that the data source HTTP API accepts.
_API_FIELDS = ("name", "uid", "type", "access", "url", "isDefault", "jsonData", "secureJsonData")


class PushError(Exception):
    """The push cannot go ahead; the message says what to fix."""


@dataclass(frozen=True)
class Pushed:
    kind: str  # "datasource" | "dashboard"
    uid: str
    title: str
    action: str  # "created" | "updated"
    url: str = ""


def provisioned_datasources(directory: Path = PROVISIONED_DATASOURCES) -> dict[str, dict[str, Any]]:
    """uid → data source definition of every provisioning file."""
    found = {}
    for path in sorted(directory.glob("*.yml")):
        for entry in yaml.safe_load(path.read_text()).get("datasources", []):
            found[entry["uid"]] = {key: entry[key] for key in _API_FIELDS if key in entry}
    return found


def datasources(prometheus_url: str | None, clickhouse_url: str | None) -> list[dict[str, Any]]:
    """The data sources to push, pointed at the given servers.

    ``prometheus_url`` replaces the provisioned Prometheus address when given;
    ``clickhouse_url`` (``http(s)://user:password@host:port/database``, as SPM_CLICKHOUSE_URL)
    fills in the ClickHouse connection — without it the ClickHouse data source is left out, since
    embedded chDB history is not reachable by any Grafana.
    """
    provisioned = provisioned_datasources()
    chosen = []
    prometheus = dict(provisioned["prometheus"])
    if prometheus_url:
        prometheus["url"] = prometheus_url
    chosen.append(prometheus)
    if clickhouse_url:
        chosen.append(_clickhouse(provisioned["clickhouse"], clickhouse_url))
    for source in chosen:
        if "${" in json.dumps(source):
            raise PushError(
                f"data source {source['uid']} still has ${{...}} placeholders that only a "
                "provisioned Grafana resolves; pass its address explicitly"
            )
    return chosen


def _clickhouse(provisioned: dict[str, Any], url: str) -> dict[str, Any]:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise PushError(f"ClickHouse URL must be http(s)://user:password@host:port/db, not {url}")
    source = dict(provisioned)
    source["jsonData"] = {
        **provisioned.get("jsonData", {}),
        "host": parts.hostname,
        "port": parts.port or (8443 if parts.scheme == "https" else 8123),
        "protocol": "http",
        "secure": parts.scheme == "https",
        "username": parts.username or "default",
        "defaultDatabase": parts.path.strip("/") or "default",
    }
    source["secureJsonData"] = {"password": parts.password or ""}
    return source


def boards(directory: Path = BOARDS_DIR) -> list[dict[str, Any]]:
    found = [json.loads(path.read_text()) for path in sorted(directory.glob("*.json"))]
    if not found:
        raise PushError(f"no dashboards in {directory}: run `python -m dashboards.build`")
    return found


def connect(url: str, token: str, timeout: float = 10.0) -> GrafanaApi:
    """A client for the Grafana at ``url`` with a service-account token (or API key)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise PushError(f"not a Grafana URL (want http(s)://host[:port][/path]): {url!r}")
    path = parts.path if parts.path.endswith("/") else parts.path + "/"
    base = parts._replace(path=path).geturl()
    return GrafanaApi.from_url(base, credential=token, timeout=timeout)


def push(
    api: GrafanaApi, sources: list[dict[str, Any]], dashboards: list[dict[str, Any]]
) -> list[Pushed]:
    """Create or update the data sources (by uid), the SPM folder and the dashboards."""
    api.organization.get_current_organization()  # fails fast on a bad token
    done = [_push_datasource(api, source) for source in sources]
    if not _exists(lambda: api.folder.get_folder(FOLDER_UID)):
        api.folder.create_folder(FOLDER_TITLE, uid=FOLDER_UID)
    for board in dashboards:
        existed = _exists(lambda board=board: api.dashboard.get_dashboard(board["uid"]))
        result = api.dashboard.update_dashboard(
            {
                "dashboard": {**board, "id": None},
                "folderUid": FOLDER_UID,
                "overwrite": True,
                "message": "spm grafana push",
            }
        )
        done.append(
            Pushed(
                "dashboard",
                board["uid"],
                board["title"],
                "updated" if existed else "created",
                result.get("url", ""),
            )
        )
    return done


def _push_datasource(api: GrafanaApi, source: dict[str, Any]) -> Pushed:
    if _exists(lambda: api.datasource.get_datasource_by_uid(source["uid"])):
        api.datasource.update_datasource_by_uid(source["uid"], source)
        action = "updated"
    else:
        api.datasource.create_datasource(source)
        action = "created"
    return Pushed("datasource", source["uid"], source["name"], action)


def _exists(get: Any) -> bool:
    try:
        get()
    except GrafanaClientError as exc:
        if exc.status_code == 404:
            return False
        raise
    return True
