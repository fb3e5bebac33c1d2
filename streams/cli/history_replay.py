"""``spm replay``: the accepted events of the ClickHouse history, sent through the pipeline again.

The history keeps every accepted event in canonical form (``spm.events``), including the
original ``data``; each goes back to the input topic as the CloudEvent it came in as, is
validated with today's rules first (those it would now fail are reported, not sent) and keyed
like ``spm emit``. Reading: the history store directly, or — while a worker owns the embedded
chDB path — that worker's paged ``/api/v1/history/events``.
"""

from __future__ import annotations

import fcntl
import itertools
import json
import os
from collections import Counter
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit

import httpx
import typer
from clickhouse_connect.driver.exceptions import ClickHouseError
from pydantic import SecretStr
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from streams import history
from streams.auth import client_headers
from streams.chclient import get_client, shown_dsn
from streams.cli.common import (
    EXIT_OK,
    EXIT_SOME_BAD,
    console,
    error_console,
    fail,
    kafka_producer,
)
from streams.engine.instants import parse_instant
from streams.settings import Settings, get_settings

EVENTS_PATH = "/api/v1/history/events"
API_TIMEOUT = 60.0


class HistoryUnreadable(Exception):
    """The history could not be read (store or worker API); the message says where and why."""


def chdb_holder(settings: Settings) -> str | None:
    """Which process holds the embedded chDB path of ``settings``, if one does.

    A running chDB/ClickHouse keeps ``<path>/status`` locked (flock) and writes its PID there;
    the lock is only tested here, so the path is never opened (nor held) by this check.
    """
    parts = urlsplit(settings.clickhouse_dsn)
    if parts.scheme != "chdb":
        return None
    status = Path(parts.path) / "status"
    try:
        fd = os.open(status, os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        pid = status.read_text(errors="replace").partition("\n")[0].removeprefix("PID:")
        return f"process {pid.strip() or '(unknown)'}"
    finally:
        os.close(fd)  # closing also drops the shared lock, if it was taken
    return None


def store_events(settings: Settings, since: datetime | None) -> Iterator[bytes]:
    """Canonical events from the history store of ``settings`` (ClickHouse or chDB)."""
    parts = urlsplit(settings.clickhouse_dsn)
    if parts.scheme == "chdb" and not Path(parts.path).is_dir():  # chDB would create it empty
        raise HistoryUnreadable(f"no chDB history at {parts.path}")
    try:
        yield from history.replay_events(get_client(settings), since)
    except ClickHouseError as exc:
        raise HistoryUnreadable(f"reading {shown_dsn(settings)} failed: {exc}") from exc


def api_events(
    url: str,
    since: datetime | None,
    page: int = history.REPLAY_PAGE,
    token: SecretStr | None = None,
) -> Iterator[bytes]:
    """Canonical events from a worker's ``/api/v1/history/events``, page after page (with
    ``token``, ``SPM_API_CLIENT_TOKEN``, when the worker requires one: scope read)."""
    params: dict[str, str | int] = {"limit": page}
    if since is not None:
        params["since"] = since.isoformat()
    with httpx.Client(base_url=url, timeout=API_TIMEOUT, headers=client_headers(token)) as client:
        while True:
            try:
                response = client.get(EVENTS_PATH, params=params)
            except httpx.HTTPError as exc:
                raise HistoryUnreadable(f"worker API at {url} failed: {exc}") from exc
            if response.status_code != 200:
                raise HistoryUnreadable(
                    f"worker API at {url} answered {response.status_code}: {response.text[:300]}"
                )
            lines = response.content.splitlines()
            yield from lines
            if len(lines) < page:
                return
            last = json.loads(lines[-1])
            params["after"] = json.dumps([last["time"], last["source"], last["id"]])


def cloud_event(line: bytes) -> dict[str, Any]:
    """A canonical event as a CloudEvent: the same source, id, type, instant and data."""
    doc = json.loads(line)
    return {
        "specversion": "1.0",
        "id": doc["id"],
        "source": doc["source"],
        "type": doc["type"],
        "time": doc["time"],
        "data": doc["data"],
    }


def _since(raw: str | None) -> datetime | None:
    if raw is None:
        return None
    since = parse_instant(raw)
    if since is None:
        raise typer.BadParameter(f"not an RFC 3339 instant with offset: {raw!r}")
    return since


def _progress() -> Progress:
    return Progress(
        SpinnerColumn(),
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=error_console,
        transient=True,
    )


#: The command's help: paragraphs of single lines (Typer keeps a docstring's line breaks).
HELP = "\n\n".join(
    (
        "Rebuild the live tables from the ClickHouse history (e.g. after a catalog or roster fix).",
        "Re-publishes every accepted event of the history (or those since --since) to the "
        "input topic <topic_prefix>.activity, validated with today's rules; events they now "
        "reject are counted and not sent.",
        "Into the running app (same SPM_APP_ID and SPM_TOPIC_PREFIX) a replay is idempotent: "
        "events are identified by (source, id) and deals merge in the ledger, so an event "
        "already counted is not counted twice (useful to bring back events lost downstream).",
        "To rebuild from scratch (a rules fix that must also undo what was counted), run it "
        "against a FRESH app id and topic prefix: set SPM_APP_ID and SPM_TOPIC_PREFIX (and "
        "give the new worker its own SPM_CLICKHOUSE_URL), import quotas, roster and teams "
        "there, start a worker on it, and read the old history with --api <old worker> or the "
        "old SPM_CLICKHOUSE_URL.",
        "While a worker holds the embedded chDB path, the history is read through that "
        "worker's API (/api/v1/history/events) by itself.",
        "Exit codes: 0 all replayed, 1 some events now rejected, 2 the history or Kafka failed "
        "(the message says how many events were replayed before).",
    )
)


def replay(
    since: Annotated[
        str | None,
        typer.Option(help="Only events at or after this RFC 3339 instant (event time)."),
    ] = None,
    api: Annotated[
        str | None,
        typer.Option(
            metavar="URL",
            help="Read the history through this worker's API (e.g. http://127.0.0.1:26066) "
            "instead of the history store.",
        ),
    ] = None,
) -> None:
    """``spm replay`` (its help is :data:`HELP`)."""
    settings = get_settings()
    start = _since(since)
    if api is None and (holder := chdb_holder(settings)) is not None:
        api = f"http://{settings.web_host}:{settings.web_port}"
        error_console.print(
            f"{escape(shown_dsn(settings))} is held by {escape(holder)} (a running worker "
            f"owns it): reading the history through the worker API at {escape(api)}"
        )
    origin = shown_dsn(settings) if api is None else f"the worker API at {api}"
    token = settings.api_client_token
    lines = store_events(settings, start) if api is None else api_events(api, start, token=token)
    try:  # the history answers before any topic is touched
        first = next(lines, None)
    except HistoryUnreadable as exc:
        raise fail(f"{exc}: nothing replayed") from None
    if first is None:
        console.print(f"no events to replay in {escape(origin)}")
        raise typer.Exit(EXIT_OK)
    sent, rejected = 0, Counter[str]()
    topic = settings.topic("activity")
    with kafka_producer(settings) as producer, _progress() as progress:
        task = progress.add_task(f"Replaying to {topic}", total=None)
        try:
            for line in itertools.chain([first], lines):
                refused = producer.send_event(cloud_event(line))
                if refused is None:
                    sent += 1
                else:
                    rejected[refused.code] += 1
                progress.advance(task)
        except HistoryUnreadable as exc:
            producer.flush()
            raise fail(f"{exc} (after {sent} events were replayed)") from None
    console.print(f"replayed {sent} events from {escape(origin)} to {escape(topic)}")
    if rejected:
        table = Table(title="rejected by today's rules (not sent)", title_justify="left")
        table.add_column("reason")
        table.add_column("events")
        for code, count in rejected.most_common():
            table.add_row(code, str(count))
        console.print(table)
    raise typer.Exit(EXIT_SOME_BAD if rejected else EXIT_OK)
