"""The reference-data imports — quotas, reps, teams — as ``spm … import`` and the admin API
both run them: a whole CSV parsed with the engine's rules, then published with the
``EventProducer`` (acks=all). Defined once so the two doors cannot drift apart.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from streams.engine.errors import Invalid
from streams.engine.imports import (
    QuotaRow,
    RosterRow,
    TeamRow,
    parse_quotas_csv,
    parse_roster_csv,
    parse_teams_csv,
)
from streams.producer import EventProducer
from streams.rules import Rules

Row = TypeVar("Row")


@dataclass(frozen=True)
class ReferenceImport(Generic[Row]):
    """What one kind of import reads and where its rows go."""

    noun: str  # what a row is, in messages: quotas, reps, teams
    topic: str  # short topic name (``Settings.topic``)
    parse: Callable[[str, Rules], tuple[list[Row], list[Invalid]]]
    publish: Callable[[EventProducer, Iterable[Row]], int]


def _quotas(text: str, rules: Rules) -> tuple[list[QuotaRow], list[Invalid]]:
    return parse_quotas_csv(text, catalog=rules.catalog, calendar=rules.calendar)


def _reps(text: str, rules: Rules) -> tuple[list[RosterRow], list[Invalid]]:
    return parse_roster_csv(text, tz=rules.calendar.tz)


def _teams(text: str, rules: Rules) -> tuple[list[TeamRow], list[Invalid]]:
    return parse_teams_csv(text)


QUOTAS = ReferenceImport("quotas", "quotas", _quotas, EventProducer.publish_quotas)
REPS = ReferenceImport("reps", "roster", _reps, EventProducer.publish_roster)
TEAMS = ReferenceImport("teams", "roster", _teams, EventProducer.publish_teams)
#: By the name of the CLI group and of the admin route.
IMPORTS: dict[str, ReferenceImport[Any]] = {"quotas": QUOTAS, "roster": REPS, "teams": TEAMS}
