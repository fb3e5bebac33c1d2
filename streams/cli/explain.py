"""``spm explain`` (the contributions behind a figure) and ``spm reconcile`` (live figures
proven against the history).

``explain`` reads a worker's explain API, page after page, and prints a rich table or CSV for a
spreadsheet. ``reconcile`` recomputes a period from the history store and compares it with the
live API; while a worker holds the embedded chDB path, that worker runs it
(``POST /api/v1/admin/reconcile``). Exit codes: 0 no difference, 1 differences, 2 the history or
the API failed (no verdict).
"""

from __future__ import annotations

import csv
import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote, urlsplit

import httpx
import typer
from clickhouse_connect.driver.exceptions import ClickHouseError
from rich.markup import escape
from rich.table import Table

from streams import reconcile as reconciling
from streams.auth import client_headers
from streams.chclient import get_client, shown_dsn
from streams.cli.common import EXIT_OK, EXIT_SOME_BAD, console, error_console, fail
from streams.cli.history_replay import chdb_holder
from streams.engine.errors import Invalid
from streams.engine.money import decimal_text
from streams.migrations import migrate
from streams.reconcile import DEFAULT_SETTLE, MAX_SETTLE
from streams.rules import Rules
from streams.settings import Settings, get_settings

API_TIMEOUT = 120.0
PAGE = 1000
CSV_COLUMNS = (
    "time", "source", "id", "type", "rep_id", "teams", "deal_id", "share", "value", "amount",
    "currency", "rate", "amount_base", "status", "reason",
)  # fmt: skip

ApiOption = Annotated[
    str | None,
    typer.Option(
        metavar="URL", help="The worker API (default http://<SPM_WEB_HOST>:<SPM_WEB_PORT>)."
    ),
]


def _api(settings: Settings, api: str | None) -> str:
    return api or f"http://{settings.web_host}:{settings.web_port}"


def _http(settings: Settings, api: str | None) -> httpx.Client:
    return httpx.Client(
        base_url=_api(settings, api),
        timeout=API_TIMEOUT,
        headers=client_headers(settings.api_client_token),
    )


def explain(
    rep: Annotated[str | None, typer.Argument(help="The rep whose figure to explain.")] = None,
    team: Annotated[str | None, typer.Option(help="Explain a team's figure instead.")] = None,
    company: Annotated[
        bool, typer.Option("--company", help="Explain the company's figure.")
    ] = False,
    metric: Annotated[str, typer.Option(help="Metric of the catalog.")] = "revenue",
    period: Annotated[
        str | None, typer.Option(help="Period label, e.g. 2026-Q4 (default: this quarter).")
    ] = None,
    as_of: Annotated[
        str | None,
        typer.Option(help="As the figure stood at the end of this day (date or instant)."),
    ] = None,
    as_csv: Annotated[
        bool, typer.Option("--csv", help="CSV on stdout, for a spreadsheet.")
    ] = False,
    api: ApiOption = None,
) -> None:
    """List the contributions behind a figure, newest first; superseded and retracted ones are
    marked with the reason, and the total is the live figure."""
    chosen = [s for s in (rep and "rep", team and "team", company and "company") if s]
    if len(chosen) != 1:
        raise fail("name exactly one of: a rep id, --team TEAM or --company")
    path = (
        "/api/v1/company/explain"
        if company
        else f"/api/v1/{chosen[0]}s/{quote(rep or team or '', safe='')}/explain"
    )
    params: dict[str, Any] = {"metric": metric, "limit": PAGE}
    if period is not None:
        params["period"] = period
    if as_of is not None:
        params["as_of"] = as_of
    settings = get_settings()
    lines: list[dict[str, Any]] = []
    with _http(settings, api) as http:
        while True:
            body = _get(http, path, params)
            lines.extend(body["lines"])
            if body["next_cursor"] is None:
                break
            params["cursor"] = body["next_cursor"]
    if as_csv:
        _write_csv(lines)
    else:
        console.print(_table(body, lines))


def _get(http: httpx.Client, path: str, params: dict[str, Any]) -> dict[str, Any]:
    try:
        answer = http.get(path, params=params)
    except httpx.HTTPError as exc:
        raise fail(f"worker API at {http.base_url} failed: {exc}") from None
    if answer.status_code != 200:
        try:
            error = answer.json().get("error", answer.text)
        except ValueError:
            error = answer.text
        raise fail(f"{answer.status_code}: {error}")
    doc: dict[str, Any] = answer.json()
    return doc


def _table(body: dict[str, Any], lines: list[dict[str, Any]]) -> Table:
    who = "company" if body["scope"] == "company" else f"{body['scope']} {body['id']}"
    table = Table(
        title=(
            f"{who} · {body['metric']} · {body['period']}: total {body['total']} "
            f"({body['counted']} counted of {body['contributions']} contributions)"
        ),
        title_justify="left",
    )
    for name, justify in (
        ("time", "left"),
        ("event", "left"),
        ("rep", "left"),
        ("value", "right"),
        ("status", "left"),
        ("why", "left"),
    ):
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    for line in lines:
        event = line["event"]
        status = line["status"] if line["counted"] else f"[dim]{line['status']}[/dim]"
        table.add_row(
            event["time"],
            escape(f"{event['source']}/{event['id']}"),
            escape(line["rep_id"]),
            line["value"] if line["counted"] else f"[dim strike]{line['value']}[/dim strike]",
            status,
            escape(line["reason"]),
        )
    return table


def _write_csv(lines: list[dict[str, Any]]) -> None:
    writer = csv.writer(sys.stdout, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for line in lines:
        event = line["event"]
        row = {**line, **event, "teams": " > ".join(line["teams"])}
        writer.writerow(
            [row.get(name) if row.get(name) is not None else "" for name in CSV_COLUMNS]
        )


def reconcile(
    period: Annotated[
        str | None,
        typer.Option(help="Period label to prove, e.g. 2026-Q4 (default: the current quarter)."),
    ] = None,
    previous: Annotated[
        bool,
        typer.Option("--previous", help="Prove the period before (e.g. last quarter, nightly)."),
    ] = False,
    settle: Annotated[
        float,
        typer.Option(
            min=0,
            max=MAX_SETTLE,
            help="Seconds to wait before comparing differing scopes once more (events in "
            "flight between the live tables and the history).",
        ),
    ] = DEFAULT_SETTLE,
    api: ApiOption = None,
) -> None:
    """Recompute every scope's figures of a period from the ClickHouse history with the
    engine's independent recomputation, compare them with the live API, record the run in
    the reconciliations table; exit 1 when any figure differs."""
    settings = get_settings()
    rules = Rules.from_settings(settings)
    parsed = reconciling.period_to_prove(rules.calendar, period, previous, datetime.now(UTC))
    if isinstance(parsed, Invalid):
        raise fail(parsed.message)
    holder = chdb_holder(settings)
    try:
        if holder is not None:
            error_console.print(
                f"{escape(shown_dsn(settings))} is held by {escape(holder)}: the worker at "
                f"{escape(_api(settings, api))} reconciles"
            )
            result = _remote(settings, api, parsed.label, settle)
        else:
            chdb = urlsplit(settings.clickhouse_dsn)
            if chdb.scheme == "chdb" and not Path(chdb.path).is_dir():
                raise fail(f"no chDB history at {chdb.path}")
            client = get_client(settings)
            migrate(client)
            with _http(settings, api) as http:
                live = reconciling.api_figures(http, parsed.label)
                result = reconciling.reconcile(client, rules, parsed, live, settle=settle)
            reconciling.record(client, result)
    except reconciling.LiveUnavailable as exc:
        raise fail(f"{exc}: no verdict") from None
    except ClickHouseError as exc:
        raise fail(f"history store {shown_dsn(settings)} failed: {exc}") from None
    _report(result)
    raise typer.Exit(EXIT_SOME_BAD if result.differences else EXIT_OK)


def _remote(settings: Settings, api: str | None, period: str, settle: float) -> reconciling.Result:
    with _http(settings, api) as http:
        try:
            params: dict[str, str | float] = {"period": period, "settle": settle}
            answer = http.post("/api/v1/admin/reconcile", params=params)
        except httpx.HTTPError as exc:
            raise reconciling.LiveUnavailable(f"worker API at {http.base_url}: {exc}") from exc
    if answer.status_code != 200:
        raise reconciling.LiveUnavailable(
            f"worker API answered {answer.status_code}: {answer.text[:300]}"
        )
    return reconciling.Result.from_dict(json.loads(answer.content))


def _report(result: reconciling.Result) -> None:
    seconds = (result.finished_at - result.started_at).total_seconds()
    verdict = (
        "[bold green]0 differences[/bold green]"
        if not result.differences
        else f"[bold red]{len(result.differences)} differences[/bold red]"
    )
    console.print(
        f"reconciled {escape(result.period)}: {result.figures} figures from {result.events} "
        f"events in {seconds:.1f} s; {verdict} (run {result.run_id})"
    )
    if result.differences:
        table = Table(title="live figures that differ from the history", title_justify="left")
        for name in ("scope", "id", "metric", "history", "live"):
            table.add_column(name)
        for d in result.differences:
            table.add_row(
                d.scope,
                escape(d.id),
                d.metric,
                decimal_text(d.history),
                "(unknown scope)" if d.live is None else decimal_text(d.live),
            )
        console.print(table)
