"""What the producer puts on the wire: event batches checked per line, reference-data records."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from streams.engine.imports import QuotaRow, RosterRow, TeamRow
from streams.engine.periods import Period
from streams.producer import encode_event, quota_record, read_event_lines, rep_record, team_record
from streams.reference import ReferenceData
from streams.rules import Rules
from streams.settings import Settings

CALL = {
    "specversion": "1.0",
    "id": "c-1",
    "source": "dialer",
    "type": "call.completed",
    "time": "2026-11-27T10:00:00+01:00",
    "data": {"rep_id": "r1"},
}


@pytest.fixture(scope="module")
def rules() -> Rules:
    return Rules.from_settings(Settings())


def line(**changes: object) -> str:
    event = json.loads(json.dumps(CALL))
    for path, value in changes.items():
        *parents, leaf = path.split("__")
        target = event
        for p in parents:
            target = target[p]
        if value is None:
            del target[leaf]
        else:
            target[leaf] = value
    return json.dumps(event)


def test_batch_errors_name_their_line_and_field(rules: Rules) -> None:
    lines = [
        line(id="a"),
        "",  # blank lines are skipped but counted
        line(id="b", data__rep_id=None),
        "   ",
        "{not json",
        line(id="c", type="deal.won", data__deal_id="d1", data__amount="-5", data__currency="USD"),
        line(id="d", time="2026-11-27T10:00:00"),
        "  " + line(id="e") + "  ",
    ]
    accepted, errors = read_event_lines(lines, rules.decoder)
    assert [a.line for a in accepted] == [1, 8]
    assert [a.event.id for a in accepted] == ["a", "e"]
    assert accepted[1].raw == line(id="e").encode()  # the original bytes, only trimmed
    assert [(e.code, e.path) for e in errors] == [
        ("schema", "line 3"),
        ("not_json", "line 5"),
        ("bad_amount", "line 6"),
        ("bad_time", "line 7"),
    ]
    assert errors[0].message.startswith("line 3: ") and "(at data.rep_id)" in errors[0].message
    assert errors[2].message.endswith("(at data.amount)")


def test_empty_batch_has_neither_events_nor_errors(rules: Rules) -> None:
    assert read_event_lines(["", "  "], rules.decoder) == ([], [])


def test_events_given_as_dicts_are_compact_json_and_bytes_stay_untouched() -> None:
    assert json.loads(encode_event(CALL)) == CALL
    assert b" " not in encode_event(CALL).replace(b"call.completed", b"")
    raw = b'{ "id" : "x" }'
    assert encode_event(raw) is raw


def test_quota_records_are_json_keyed_and_read_back_by_the_worker_mirror(rules: Rules) -> None:
    start = datetime(2026, 11, 15, tzinfo=UTC)
    plain = QuotaRow("rep", "r1", "revenue", "2026-Q4", Decimal("125000.50"), None)
    dated = QuotaRow("rep", "r1", "revenue", "2026-Q4", Decimal("150000"), start)
    key, value = quota_record(plain)
    assert json.loads(key) == "rep|r1|revenue|2026-Q4|"
    assert json.loads(value) == {
        "scope": "rep",
        "scope_id": "r1",
        "metric": "revenue",
        "period": "2026-Q4",
        "target": "125000.5",
        "effective_from": None,
    }
    dated_key, dated_value = quota_record(dated)
    assert json.loads(dated_key) == "rep|r1|revenue|2026-Q4|2026-11-15T00:00:00+00:00"
    assert json.loads(dated_value)["effective_from"] == "2026-11-15T00:00:00+00:00"

    data = ReferenceData()
    for k, v in (quota_record(plain), quota_record(dated)):
        data.apply_quota(json.loads(k), json.loads(v))
    quarter = rules.calendar.parse("2026-Q4")
    assert isinstance(quarter, Period)
    explicit = data.quotas.explicit
    assert explicit("rep", "r1", "revenue", quarter, datetime(2026, 11, 1, tzinfo=UTC)) == Decimal(
        "125000.50"
    )
    assert explicit("rep", "r1", "revenue", quarter, datetime(2026, 12, 1, tzinfo=UTC)) == 150000
    data.apply_quota(json.loads(dated_key), None)  # a tombstone for the dated target
    assert explicit("rep", "r1", "revenue", quarter, datetime(2026, 12, 1, tzinfo=UTC)) == Decimal(
        "125000.50"
    )


def test_roster_records_are_json_keyed_and_read_back_by_the_worker_mirror() -> None:
    moved = datetime(2026, 11, 2, tzinfo=UTC)
    reps = [
        RosterRow("r1", "Ada Weber", "emea-ent", None),
        RosterRow("r1", "Ada Weber", "emea-mm", moved),
    ]
    teams = [TeamRow("acme", "Acme", None), TeamRow("emea-ent", "EMEA Enterprise", "acme")]
    keys = [json.loads(rep_record(r)[0]) for r in reps] + [
        json.loads(team_record(t)[0]) for t in teams
    ]
    assert keys == ["rep|r1|", "rep|r1|2026-11-02T00:00:00+00:00", "team|acme", "team|emea-ent"]
    assert json.loads(team_record(teams[0])[1]) == {
        "kind": "team",
        "team_id": "acme",
        "name": "Acme",
        "parent_id": None,
    }
    data = ReferenceData()
    for record in [*map(team_record, teams), *map(rep_record, reps)]:
        data.apply_roster(json.loads(record[1]))
    roster = data.roster
    assert roster.team_at("r1", datetime(2026, 10, 5, tzinfo=UTC)) == "emea-ent"
    assert roster.team_at("r1", datetime(2026, 11, 5, tzinfo=UTC)) == "emea-mm"
    assert roster.lineage("emea-ent") == ("emea-ent", "acme")
    assert roster.rep_name("r1") == "Ada Weber"
