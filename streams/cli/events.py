"""``spm emit``, ``spm quotas|roster|teams import`` and ``spm dlq replay``: feeding the pipeline.

Every command validates with the engine before publishing and treats a batch as a whole:
when any line or row is bad nothing is published (unless ``--skip-bad``), and every error
names its line. Exit codes: see ``streams.cli.common``.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Annotated, Any, TypeVar

import httpx
import typer
from rich.markup import escape
from rich.progress import track
from rich.table import Table

from streams.cli.common import (
    EXIT_OK,
    EXIT_SOME_BAD,
    console,
    error_console,
    fail,
    kafka_producer,
)
from streams.dlq import replay_dead_letters, replay_group
from streams.engine.errors import Invalid
from streams.producer import EventLine, read_event_lines
from streams.reference_imports import QUOTAS, REPS, TEAMS, ReferenceImport
from streams.rules import Rules
from streams.settings import Settings, get_settings

quotas_app = typer.Typer(help="Quota targets (compacted topic spm.quotas).", no_args_is_help=True)
roster_app = typer.Typer(help="Reps and their teams (topic spm.roster).", no_args_is_help=True)
teams_app = typer.Typer(help="The team tree (topic spm.roster).", no_args_is_help=True)
dlq_app = typer.Typer(help="Dead letters (topic spm.activity.dlq).", no_args_is_help=True)
MAX_ERRORS_SHOWN = 50
BATCH_CONTENT_TYPE = "application/cloudevents-batch+json"
PROGRESS_FROM_ROWS = 1000  # shorter batches finish before a bar is worth drawing

Row = TypeVar("Row")
SkipBad = Annotated[
    bool, typer.Option("--skip-bad", help="Publish the valid rows even if some are bad (exit 1).")
]
CsvFile = Annotated[Path, typer.Argument(metavar="FILE.csv", help="CSV file with a header row.")]


def _report_errors(errors: Sequence[Invalid]) -> None:
    """One line per error: ``code: line N: message`` (the message names the line)."""
    for error in errors[:MAX_ERRORS_SHOWN]:
        error_console.print(f"[red]{error.code}[/red]: {escape(error.message)}")
    if len(errors) > MAX_ERRORS_SHOWN:
        error_console.print(f"… and {len(errors) - MAX_ERRORS_SHOWN} more errors")


def _verdict(good: int, bad: int, skip_bad: bool, noun: str) -> int:
    """The exit code a batch will end with; raises Exit(2) when nothing may be sent."""
    if bad and not skip_bad:
        raise fail(f"{bad} bad {noun}: nothing published (--skip-bad publishes the rest)")
    if not good:
        raise fail(f"no valid {noun}: nothing published")
    return EXIT_SOME_BAD if bad else EXIT_OK


def _progress(rows: Sequence[Row], description: str) -> Iterable[Row]:
    return track(
        rows,
        description=description,
        console=error_console,
        disable=len(rows) < PROGRESS_FROM_ROWS,
        transient=True,
    )


def _summary(verb: str, count: int, noun: str, topic: str, skipped: int) -> None:
    tail = f", skipped {skipped} bad" if skipped else ""
    console.print(f"{verb} {count} {noun} to {topic}{tail}")


def _read_source(source: str) -> str:
    """The text of a file argument, or of standard input for ``-``."""
    if source == "-":
        return sys.stdin.read()
    path = Path(source)
    if not path.is_file():
        raise fail(f"no such file: {source}")
    return path.read_text(encoding="utf-8")


def emit(
    source: Annotated[
        str,
        typer.Argument(
            metavar="EVENT_JSON_OR_FILE",
            help="One event as JSON, a JSON-lines file (one event per line), or - for stdin.",
        ),
    ],
    skip_bad: SkipBad = False,
    http: Annotated[
        str | None,
        typer.Option(
            metavar="URL",
            help="Post to a worker's POST /api/v1/events at URL (e.g. http://127.0.0.1:26066) "
            "instead of Kafka; prints one JSON result per event.",
        ),
    ] = None,
    token: Annotated[
        str | None, typer.Option(help="Bearer token for --http (scope ingest).")
    ] = None,
) -> None:
    """Validate events with the engine and send them to spm.activity."""
    settings = get_settings()
    lines = [source] if source.lstrip().startswith("{") else _read_source(source).splitlines()
    accepted, errors = read_event_lines(lines, Rules.from_settings(settings).decoder)
    _report_errors(errors)
    code = _verdict(len(accepted), len(errors), skip_bad, "events")
    if http is not None:
        raise typer.Exit(max(code, _post_events(http, token, accepted, settings)))
    with kafka_producer(settings) as producer:
        for line in _progress(accepted, "Sending events"):
            producer.send_valid(line.raw, line.event)
    _summary("sent", len(accepted), "events", settings.topic("activity"), len(errors))
    raise typer.Exit(code)


def _post_events(
    url: str, token: str | None, lines: Sequence[EventLine], settings: Settings
) -> int:
    """Post ``lines`` as CloudEvents batches, one JSON result per event on stdout; the exit
    code (1 when the worker rejected some). A failed request ends the command: the batches
    before it were written, and sending them all again is harmless (deduplicated by id)."""
    endpoint = f"{url.rstrip('/')}/api/v1/events"
    headers = {"Content-Type": BATCH_CONTENT_TYPE}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    counts = {"accepted": 0, "rejected": 0}
    with httpx.Client(headers=headers, timeout=settings.ingest_timeout + 30) as client:
        for batch in _batches(lines, settings.ingest_max_events, settings.ingest_max_bytes):
            body = b"[" + b",".join(line.raw for line in batch) + b"]"
            try:
                answer = client.post(endpoint, content=body)
            except httpx.HTTPError as exc:
                raise fail(f"{endpoint}: {exc!r} ({counts['accepted']} accepted before)") from None
            if answer.status_code != 202:
                raise fail(
                    f"{endpoint} answered {answer.status_code} {answer.text.strip()} "
                    f"({counts['accepted']} accepted before)"
                )
            for result in answer.json()["results"]:
                counts[result["status"]] += 1
                typer.echo(json.dumps({"line": batch[result.pop("index")].line, **result}))
    error_console.print(
        f"sent {len(lines)} events to {endpoint}: "
        f"{counts['accepted']} accepted, {counts['rejected']} rejected"
    )
    return EXIT_SOME_BAD if counts["rejected"] else EXIT_OK


def _batches(
    lines: Sequence[EventLine], max_events: int, max_bytes: int
) -> Iterator[list[EventLine]]:
    """Consecutive batches within the worker's limits (``SPM_INGEST_MAX_EVENTS`` / ``_BYTES``)."""
    batch: list[EventLine] = []
    size = 2  # the array's brackets
    for line in lines:
        if batch and (len(batch) == max_events or size + len(line.raw) + 1 > max_bytes):
            yield batch
            batch, size = [], 2
        batch.append(line)
        size += len(line.raw) + 1
    if batch:
        yield batch


def _import(file: Path, kind: ReferenceImport[Any], skip_bad: bool) -> None:
    """The shared shape of the CSV imports: parse everything, report, publish all or none."""
    settings = get_settings()
    if not file.is_file():
        raise fail(f"no such file: {file}")
    rows, errors = kind.parse(file.read_text(encoding="utf-8"), Rules.from_settings(settings))
    _report_errors(errors)
    code = _verdict(len(rows), len(errors), skip_bad, kind.noun)
    with kafka_producer(settings) as producer:
        kind.publish(producer, _progress(rows, f"Publishing {kind.noun}"))
    _summary("published", len(rows), kind.noun, settings.topic(kind.topic), len(errors))
    raise typer.Exit(code)


@quotas_app.command("import")
def import_quotas(file: CsvFile, skip_bad: SkipBad = False) -> None:
    """Import targets: scope,scope_id,metric,period,target[,effective_from]."""
    _import(file, QUOTAS, skip_bad)


@roster_app.command("import")
def import_roster(file: CsvFile, skip_bad: SkipBad = False) -> None:
    """Import reps and their teams: rep_id,name,team_id[,effective_from]."""
    _import(file, REPS, skip_bad)


@teams_app.command("import")
def import_teams(file: CsvFile, skip_bad: SkipBad = False) -> None:
    """Import the team tree: team_id,name,parent_id (empty parent_id: a root team)."""
    _import(file, TEAMS, skip_bad)


@dlq_app.command("replay")
def replay(
    since_offset: Annotated[
        int | None,
        typer.Option(
            min=0, help="Start at this offset in every partition (default: after the last replay)."
        ),
    ] = None,
    limit: Annotated[
        int | None, typer.Option(min=1, help="Read at most this many letters.")
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Only report: send nothing, commit nothing.")
    ] = False,
) -> None:
    """Re-validate dead letters and re-submit those that now pass (e.g. after a catalog fix)."""
    settings = get_settings()
    with kafka_producer(settings, create_topics=False) as producer:
        try:
            report = replay_dead_letters(
                producer, since_offset=since_offset, limit=limit, dry_run=dry_run
            )
        except ValueError as exc:
            raise fail(f"dlq replay: {exc}") from None
    verb = "would replay" if dry_run else "replayed"
    console.print(
        f"read {report.read} letters from {settings.topic('activity.dlq')} "
        f"(group {replay_group(settings.app_id)}): {verb} {report.replayed}, "
        f"still failing {len(report.failing)}"
    )
    if report.failing:
        table = Table(title="still failing", title_justify="left")
        for column in ("reason", "letters", "first at (partition/offset)", "message"):
            table.add_column(column)
        for code, count in report.reasons().most_common():
            first = next(f for f in report.failing if f.reason.code == code)
            field = f" {first.reason.path}" if first.reason.path else ""
            where = f"{first.partition}/{first.offset}{field}"
            table.add_row(code, str(count), escape(where), escape(first.reason.message))
        console.print(table)
    raise typer.Exit(EXIT_SOME_BAD if report.failing else EXIT_OK)
