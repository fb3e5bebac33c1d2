"""``spm db``: the ClickHouse history database (schema migrations, a stand-alone sink)."""

from __future__ import annotations

import asyncio
import signal

import typer
from clickhouse_connect.driver.exceptions import ClickHouseError

from streams.chclient import get_client, shown_dsn
from streams.cli.common import console, error_console
from streams.migrations import MigrationError, applied_versions, migrate
from streams.settings import get_settings

app = typer.Typer(help="The ClickHouse history database.", no_args_is_help=True)


@app.command("migrate")
def migrate_command() -> None:
    """Apply pending schema migrations (idempotent) and print the versions applied."""
    settings = get_settings()
    try:
        client = get_client(settings)
        applied = migrate(client)
        recorded = sorted(applied_versions(client))
    except (ClickHouseError, MigrationError) as exc:
        error_console.print(f"[red]cannot migrate {shown_dsn(settings)}[/]: {exc}")
        raise typer.Exit(1) from exc
    if applied:
        console.print(f"applied: {', '.join(str(v) for v in applied)}")
    else:
        console.print("nothing to apply")
    console.print(f"schema version: {recorded[-1] if recorded else 'none'}")


@app.command("sink")
def sink_command() -> None:
    """Run the history sink on its own until SIGINT/SIGTERM (normally the worker runs it)."""
    from streams.sinks.clickhouse import ClickHouseSink  # aiokafka/mode only for this command

    settings = get_settings()
    try:
        get_client(settings)  # claims an embedded chDB path before consuming anything
    except ClickHouseError as exc:
        error_console.print(f"[red]cannot open {shown_dsn(settings)}[/]: {exc}")
        raise typer.Exit(1) from exc

    async def run() -> None:
        sink = ClickHouseSink(settings)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        await sink.start()
        console.print(f"sink running: group {sink.group_id}, topics {', '.join(sink.topics)}")
        await stop.wait()
        await sink.stop()

    asyncio.run(run())
