"""Explanations and recomputation read back from real chDB: the sink's own rows of a generated
scenario (every event delivered twice, as a re-delivery leaves it, and conflicting copies of
some) give, for every scope, metric and period, explanation totals equal to the recomputation
of the scenario itself."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import orjson
from clickhouse_connect.driver import Client

from streams import credit_history
from streams.engine.errors import Invalid
from streams.engine.imports import RosterRow, TeamRow
from streams.engine.periods import Period
from streams.engine.recompute import values
from streams.engine.roster import Roster
from streams.engine.scopes import COMPANY
from streams.producer import rep_record, team_record
from streams.rules import Rules
from streams.settings import Settings
from streams.sinks.clickhouse import accepted_rows, roster_row
from tests.integration import scenario
from tests.integration.test_pipeline import reference_books

from .conftest import insert_twice, record

RULES = Rules.from_settings(Settings())
AT = datetime(2026, 11, 25, tzinfo=UTC)


def load(ch: Client, sc: scenario.Scenario) -> None:
    rows: dict[str, list[tuple[object, ...]]] = {"activity_events": [], "credits": []}
    to_rows = accepted_rows(RULES)
    for offset, raw in enumerate(sc.events):
        for table, mapped in to_rows(record("spm.activity", raw, offset=offset, at=AT)).items():
            rows[table].extend(mapped)
    for table, mapped in rows.items():
        insert_twice(ch, table, mapped)
    reference = [team_record(t) for t in sc.teams] + [rep_record(r) for r in sc.roster]
    roster_rows = [
        roster_row(record("spm.roster", value, key=key, offset=i, at=AT))
        for i, (key, value) in enumerate(reference)
    ]
    insert_twice(ch, "roster_history", roster_rows)


def test_history_explains_every_figure_as_the_recomputation_counts_it(ch: Client) -> None:
    sc = scenario.generate(seed=3, activities=250, deals=60)
    load(ch, sc)
    events = [RULES.decoder.decode(raw) for raw in sc.events]
    accepted = [e for e in events if not isinstance(e, Invalid)]
    roster, _ = reference_books(sc)
    expected = values(accepted, roster, RULES.calendar, RULES.catalog)
    by_key = {e.key: e for e in sorted(accepted, key=lambda e: -e.copy_digest)}  # counting copy
    checked = 0
    for label in ("2026-Q4", "2026-11", "2026-10", "2026-W45"):
        period = RULES.calendar.parse(label)
        assert isinstance(period, Period)
        scopes = [("rep", r) for r in sc.reps] + [("team", t[0]) for t in scenario.TEAMS]
        for scope in [*scopes, ("company", "company")]:
            for metric in ("revenue", "deals_won", "calls"):
                got = credit_history.explanation(ch, RULES, scope, metric, period)
                assert got.total == expected.get((*scope, metric, label), 0), (scope, metric, label)
                for line in got.lines:  # the copy that counts, as accepted (data kept as JSON)
                    event = line.contribution.event
                    assert replace(by_key[event.key], data=None) == replace(event, data=None)
                checked += bool(got.lines)
    assert checked > 100


def test_before_cuts_credit_as_the_live_apis_as_of_does(ch: Client) -> None:
    sc = scenario.generate(seed=5, activities=80, deals=20)
    load(ch, sc)
    accepted = [e for e in map(RULES.decoder.decode, sc.events) if not isinstance(e, Invalid)]
    roster, _ = reference_books(sc)
    cut = datetime(2026, 11, 1, tzinfo=UTC)
    expected = values(accepted, roster, RULES.calendar, RULES.catalog, before=cut)
    period = RULES.calendar.parse("2026-Q4")
    assert isinstance(period, Period)
    for metric in ("calls", "revenue"):
        got = credit_history.explanation(ch, RULES, COMPANY, metric, period, before=cut)
        assert got.total == expected[("company", "company", metric, "2026-Q4")]
        assert got.lines and all(line.contribution.event.time < cut for line in got.lines)
        assert got.total < credit_history.explanation(ch, RULES, COMPANY, metric, period).total


def test_a_transfer_at_a_time_of_day_counts_from_that_instant(ch: Client) -> None:
    """The roster rebuilt from history moves a rep when the mirror does: a transfer at 23:30 UTC
    (00:30 the next day in Berlin) is not in force at the end of that Berlin day, as its date
    alone (midnight UTC) would be."""
    rules = Rules.from_settings(Settings(timezone="Europe/Berlin"))
    moved = datetime(2026, 11, 10, 23, 30, tzinfo=UTC)
    rows = [RosterRow("ann", "Ann", "north", None), RosterRow("ann", "Ann", "south", moved)]
    reference = [team_record(TeamRow(t, t, None)) for t in ("north", "south")]
    reference += [rep_record(r) for r in rows]
    insert_twice(
        ch,
        "roster_history",
        [
            roster_row(record("spm.roster", value, key=key, offset=i, at=AT))
            for i, (key, value) in enumerate(reference)
        ],
    )
    calls = [
        {"specversion": "1.0", "id": f"c{h}", "source": "dialer", "type": "call.completed",
         "time": f"2026-11-10T{h:02d}:00:00Z", "data": {"rep_id": "ann"}}
        for h in (10, 12, 20)
    ]  # fmt: skip
    to_rows = accepted_rows(rules)
    for i, doc in enumerate(calls):
        for table, mapped in to_rows(record("spm.activity", orjson.dumps(doc), offset=i)).items():
            insert_twice(ch, table, mapped)
    day = rules.calendar.parse("2026-11-10")
    assert isinstance(day, Period)
    north = credit_history.explanation(ch, rules, ("team", "north"), "calls", day)
    south = credit_history.explanation(ch, rules, ("team", "south"), "calls", day)
    mirror = Roster()
    for team in ("north", "south"):
        mirror.set_team(team, team, None)
    for r in rows:
        mirror.set_assignment(r.rep_id, r.name, r.team_id, r.effective_from)
    accepted = [e for e in (rules.decoder.decode(orjson.dumps(d)) for d in calls)]
    want = values(
        [e for e in accepted if not isinstance(e, Invalid)], mirror, rules.calendar, rules.catalog
    )
    assert (north.total, south.total) == (
        want[("team", "north", "calls", "2026-11-10")],
        want.get(("team", "south", "calls", "2026-11-10"), 0),
    )
    assert (north.total, south.total) == (3, 0)


def test_the_cache_reuses_an_explanation_only_while_the_history_is_unchanged(ch: Client) -> None:
    sc = scenario.generate(seed=9, activities=60, deals=6)
    load(ch, sc)
    period = RULES.calendar.parse("2026-Q4")
    assert isinstance(period, Period)
    cache = credit_history.ExplanationCache(entries=2)
    rep = sc.reps[0]
    first = cache.explanation(ch, RULES, ("rep", rep), "calls", period)
    assert cache.explanation(ch, RULES, ("rep", rep), "calls", period) is first
    call = {"specversion": "1.0", "id": "late-1", "source": "dialer", "type": "call.completed",
            "time": "2026-11-02T10:00:00Z", "data": {"rep_id": rep}}  # fmt: skip
    for table, rows in accepted_rows(RULES)(record("spm.activity", orjson.dumps(call))).items():
        insert_twice(ch, table, rows)
    after = cache.explanation(ch, RULES, ("rep", rep), "calls", period)
    assert after.total == first.total + 1
    assert after == credit_history.explanation(ch, RULES, ("rep", rep), "calls", period)
