"""``spm stack``: start, stop and inspect the local stack (Kafka, Prometheus, Alertmanager)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from streams import stack
from streams.settings import get_settings

app = typer.Typer(help="Start, stop and inspect the local stack.", no_args_is_help=True)
console = Console()
error_console = Console(stderr=True)

STATE_STYLES = {
    stack.State.RUNNING: "green",
    stack.State.STARTING: "yellow",
    stack.State.STOPPED: "dim",
    stack.State.FOREIGN: "red",
}


def _shown(path: Path) -> str:
    """A path relative to the working directory when it lies below it (shorter tables)."""
    return str(path.relative_to(Path.cwd())) if path.is_relative_to(Path.cwd()) else str(path)


def _table(title: str, report: list[stack.PartStatus]) -> Table:
    log_dir = _shown(report[0].log_file.parent)
    table = Table(title=title, title_justify="left", caption=f"logs: {log_dir}/<part>.log")
    for column in ("part", "state", "pid", "address"):
        table.add_column(column, no_wrap=True)
    table.add_column("detail", overflow="fold")
    for part in report:
        style = STATE_STYLES[part.state]
        table.add_row(
            part.name,
            f"[{style}]{part.state}[/{style}]",
            str(part.pid or "-"),
            part.address,
            part.detail,
        )
    return table


def _run(title: str, verb: Callable[[], list[stack.PartStatus]]) -> list[stack.PartStatus]:
    """Run a stack verb; a StackError becomes a red message and exit code 1."""
    try:
        with console.status(f"{title}…"):
            report = verb()
    except stack.StackError as exc:
        error_console.print(f"[bold red]{title} failed:[/bold red] {exc}", highlight=False)
        raise typer.Exit(1) from None
    console.print(_table(title, report))
    return report


@app.command()
def up() -> None:
    """Start every part that is not running and wait until each answers (idempotent)."""
    settings = get_settings()
    _run("stack up", lambda: stack.up(settings))


@app.command()
def down() -> None:
    """Stop the parts `up` started; processes it did not start are left alone."""
    settings = get_settings()
    _run("stack down", lambda: stack.down(settings))


@app.command()
def status() -> None:
    """Show each part's state; exits 1 unless every part is running."""
    settings = get_settings()
    report = _run("stack status", lambda: stack.status(settings))
    if any(part.state is not stack.State.RUNNING for part in report):
        raise typer.Exit(1)


@app.command()
def jars() -> None:
    """Resolve the Kafka broker jars with Maven into the cache unless they are current."""
    settings = get_settings()
    try:
        with console.status("resolving Kafka jars…"):
            lib = stack.ensure_kafka_jars(settings)
    except stack.StackError as exc:
        error_console.print(f"[bold red]resolving Kafka jars failed:[/bold red] {exc}")
        raise typer.Exit(1) from None
    console.print(f"Kafka jars in {_shown(lib)}")


if __name__ == "__main__":
    app()
