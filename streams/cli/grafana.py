"""``spm grafana push``: publish the SPM boards and data sources to an existing Grafana."""

from __future__ import annotations

from typing import Annotated

import typer
from grafana_client.client import (
    GrafanaClientError,
    GrafanaException,
    GrafanaUnauthorizedError,
)
from niquests.exceptions import RequestException
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from streams import grafana
from streams.settings import get_settings

app = typer.Typer(help="Publish dashboards and data sources to Grafana.", no_args_is_help=True)
console = Console()
error_console = Console(stderr=True)


def _fail(message: str) -> typer.Exit:
    error_console.print(
        f"[bold red]grafana push failed:[/bold red] {escape(message)}", highlight=False
    )
    return typer.Exit(2)


@app.command()
def push(
    url: Annotated[str, typer.Option(help="Grafana base URL, e.g. http://127.0.0.1:3000")],
    token: Annotated[str, typer.Option(help="Service-account token with Editor or Admin role.")],
    prometheus_url: Annotated[
        str | None,
        typer.Option(help="Prometheus as Grafana reaches it (default: the provisioned one)."),
    ] = None,
    clickhouse_url: Annotated[
        str | None,
        typer.Option(
            help="ClickHouse http(s)://user:password@host:port/db as Grafana reaches it "
            "(default: SPM_CLICKHOUSE_URL when it is a server)."
        ),
    ] = None,
) -> None:
    """Create or update the Prometheus and ClickHouse data sources and the three boards.

    Exits 2 with a message when Grafana is unreachable, the URL is wrong or the token is refused.
    """
    settings = get_settings()
    if clickhouse_url is None and settings.clickhouse_dsn.startswith("http"):
        clickhouse_url = settings.clickhouse_dsn
    try:
        sources = grafana.datasources(prometheus_url, clickhouse_url)
        boards = grafana.boards()
        api = grafana.connect(url, token)
        with console.status(f"pushing to {url}…"):
            pushed = grafana.push(api, sources, boards)
    except grafana.PushError as exc:
        raise _fail(str(exc)) from None
    except GrafanaUnauthorizedError:
        raise _fail(f"{url} refused the token (401 Unauthorized)") from None
    except GrafanaClientError as exc:
        raise _fail(f"{url} answered {exc.status_code}: {exc.message}") from None
    except (GrafanaException, RequestException) as exc:
        raise _fail(f"cannot reach Grafana at {url}: {exc}") from None
    if clickhouse_url is None:
        console.print(
            "[yellow]ClickHouse data source skipped:[/yellow] history is embedded chDB; pass "
            "--clickhouse-url for a ClickHouse server Grafana can reach."
        )
    table = Table(title=f"pushed to {url}", title_justify="left")
    for column in ("kind", "uid", "title", "action", "url"):
        table.add_column(column)
    for item in pushed:
        table.add_row(item.kind, item.uid, item.title, item.action, item.url)
    console.print(table)
