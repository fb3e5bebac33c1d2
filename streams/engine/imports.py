"""CSV imports of quotas, reps and teams: every bad line reported, none silently dropped.

Formats (header line required, columns in this order)::

    scope,scope_id,metric,period,target[,effective_from]     quotas
    rep_id,name,team_id[,effective_from]                     reps (roster)
    team_id,name,parent_id                                   teams

``effective_from`` is an RFC 3339 instant or a date (midnight in ``tz``, default UTC);
empty means "from the start". ``parent_id`` empty means a root team. Errors are ``Invalid``
values with code ``bad_csv`` and ``path="line N"`` (N counts the header as line 1), so a
manager can fix the file and re-import; the valid rows are returned alongside.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import TypeVar
from zoneinfo import ZoneInfo

from streams.engine.catalog import MetricCatalog
from streams.engine.errors import Invalid
from streams.engine.instants import parse_instant
from streams.engine.money import parse_decimal
from streams.engine.periods import Calendar
from streams.engine.rollup import UNASSIGNED
from streams.engine.scopes import SCOPES

Row = TypeVar("Row")


@dataclass(frozen=True, slots=True)
class QuotaRow:
    scope: str
    scope_id: str
    metric: str
    period: str
    target: Decimal
    effective_from: datetime | None


@dataclass(frozen=True, slots=True)
class RosterRow:
    rep_id: str
    name: str
    team_id: str
    effective_from: datetime | None


@dataclass(frozen=True, slots=True)
class TeamRow:
    team_id: str
    name: str
    parent_id: str | None


class _BadRow(ValueError):
    """A line's problem, turned into an ``Invalid`` by ``_parse``."""


def parse_quotas_csv(
    text: str,
    *,
    catalog: MetricCatalog | None = None,
    calendar: Calendar | None = None,
) -> tuple[list[QuotaRow], list[Invalid]]:
    """Quota rows; with ``catalog``/``calendar`` metric names and period labels are checked."""
    tz = calendar.tz if calendar is not None else "UTC"

    def row(cells: list[str]) -> QuotaRow:
        scope, scope_id, metric, period, target_text = cells[:5]
        if scope not in SCOPES:
            raise _BadRow(f"scope must be one of {', '.join(SCOPES)}, not {scope!r}")
        if not scope_id:
            raise _BadRow("scope_id is empty")
        if catalog is not None and metric not in catalog.names:
            raise _BadRow(f"unknown metric {metric!r}")
        if calendar is not None and isinstance(calendar.parse(period), Invalid):
            raise _BadRow(f"not a period label: {period!r}")
        if not period:
            raise _BadRow("period is empty")
        target = parse_decimal(target_text)
        if target is None or target < 0:
            raise _BadRow(f"target must be a decimal >= 0, not {target_text!r}")
        return QuotaRow(scope, scope_id, metric, period, target, _effective(cells, 5, tz))

    return _parse(text, ("scope", "scope_id", "metric", "period", "target"), True, row)


def parse_roster_csv(text: str, *, tz: str = "UTC") -> tuple[list[RosterRow], list[Invalid]]:
    def row(cells: list[str]) -> RosterRow:
        rep_id, name, team_id = cells[:3]
        if not rep_id or not team_id:
            raise _BadRow("rep_id and team_id must not be empty")
        _not_reserved(team_id)
        return RosterRow(rep_id, name, team_id, _effective(cells, 3, tz))

    return _parse(text, ("rep_id", "name", "team_id"), True, row)


def parse_teams_csv(text: str) -> tuple[list[TeamRow], list[Invalid]]:
    def row(cells: list[str]) -> TeamRow:
        team_id, name, parent_id = cells
        if not team_id:
            raise _BadRow("team_id must not be empty")
        if parent_id == team_id:
            raise _BadRow("a team cannot be its own parent")
        _not_reserved(team_id)
        _not_reserved(parent_id)
        return TeamRow(team_id, name, parent_id or None)

    return _parse(text, ("team_id", "name", "parent_id"), False, row)


def _parse(
    text: str,
    columns: Sequence[str],
    optional_effective: bool,
    build: Callable[[list[str]], Row],
) -> tuple[list[Row], list[Invalid]]:
    rows: list[Row] = []
    errors: list[Invalid] = []
    reader = csv.reader(io.StringIO(text, newline=""))
    allowed = [list(columns)] + ([[*columns, "effective_from"]] if optional_effective else [])
    try:
        header = [h.strip() for h in next(reader, [])]
    except csv.Error as exc:
        return [], [_error(1, f"unreadable CSV: {exc}")]
    if header not in allowed:
        expected = " or ".join(",".join(a) for a in allowed)
        return [], [_error(1, f"header must be {expected}, got {','.join(header) or 'nothing'}")]
    while True:
        try:
            cells = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            errors.append(_error(reader.line_num, f"unreadable CSV: {exc}"))
            continue
        line = reader.line_num
        if not any(c.strip() for c in cells):
            continue  # blank lines are harmless
        if len(cells) != len(header):
            errors.append(_error(line, f"expected {len(header)} fields, got {len(cells)}"))
            continue
        try:
            rows.append(build([c.strip() for c in cells]))
        except _BadRow as exc:
            errors.append(_error(line, str(exc)))
    return rows, errors


def _not_reserved(team_id: str) -> None:
    if team_id == UNASSIGNED:
        raise _BadRow(f"team id {UNASSIGNED!r} is reserved for credit of reps without a team")


def _error(line: int, message: str) -> Invalid:
    return Invalid("bad_csv", f"line {line}: {message}", f"line {line}")


def _effective(cells: list[str], index: int, tz: str) -> datetime | None:
    text = cells[index] if len(cells) > index else ""
    if not text:
        return None
    try:
        day = date.fromisoformat(text)
    except ValueError:
        instant = parse_instant(text)
        if instant is None:
            raise _BadRow(f"effective_from must be a date or RFC 3339 time: {text!r}") from None
        return instant
    return datetime(day.year, day.month, day.day, tzinfo=ZoneInfo(tz))
