"""The ClickHouse sink's pure parts: topic → row mappings and the progress snapshot cadence."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

from aiokafka import TopicPartition

from streams.engine.events import Event, Split
from streams.sinks.clickhouse import (
    COLUMNS,
    SnapshotCadence,
    event_row,
    progress_row,
    quota_row,
    rejected_row,
    roster_row,
)

from .conftest import record

T0 = datetime(2026, 11, 27, 10, tzinfo=UTC)
TP = TopicPartition("spm.progress", 0)


def test_event_row_keeps_every_canonical_field_exactly() -> None:
    event = Event(
        source="crm",
        id="e1",
        type="deal.won",
        time=T0,
        rep_id="r1",
        deal_id="d1",
        amount=Decimal("1000.10"),
        currency="GBP",
        amount_base=Decimal("1270.127000000000000000000001"),
        splits=(Split("r1", Decimal("0.6")), Split("r2", Decimal("0.4"))),
        data={"rep_id": "r1", "amount": "1000.10", "nested": {"x": [1, 2.5]}},
    )
    row = dict(
        zip(
            COLUMNS["activity_events"],
            event_row(record("spm.events", event.to_json(), partition=3, offset=42)),
            strict=True,
        )
    )
    t0_ms = int(T0.timestamp() * 1000)  # DateTime64(3) ticks
    assert row["time"] == t0_ms and row["ingest_time"] == t0_ms
    assert row["amount"] == Decimal("1000.10") and row["amount_base"] == event.amount_base
    assert json.loads(row["splits"]) == [
        {"rep_id": "r1", "share": "0.6"},
        {"rep_id": "r2", "share": "0.4"},
    ]
    assert json.loads(row["data"]) == event.data
    assert (row["kafka_partition"], row["kafka_offset"]) == (3, 42)


def test_dead_letter_without_source_headers_is_identified_by_its_own_position() -> None:
    row = rejected_row(record("spm.activity.dlq", b"raw", key=b"k", partition=2, offset=7))
    assert row[:3] == ("spm.activity.dlq", 2, 7)
    assert row[3:9] == ("", "", "", b"k", b"raw", {})


def test_quota_tombstone_keeps_its_key_fields() -> None:
    key = json.dumps("team|t1|revenue|2026-Q4|2026-10-01").encode()
    row = dict(
        zip(
            COLUMNS["quota_history"],
            quota_row(record("spm.quotas", None, key=key, offset=5)),
            strict=True,
        )
    )
    assert row["key"] == "team|t1|revenue|2026-Q4|2026-10-01"
    assert (row["scope"], row["scope_id"], row["metric"], row["period"]) == (
        "team",
        "t1",
        "revenue",
        "2026-Q4",
    )
    assert (
        row["effective_from"] == date(2026, 10, 1) and row["deleted"] == 1 and row["target"] is None
    )


def test_roster_rows_for_reps_teams_and_tombstones() -> None:
    rep = {
        "kind": "rep",
        "rep_id": "r1",
        "name": "Ann",
        "team_id": "t1",
        "effective_from": "2026-11-01",
    }
    team = {"kind": "team", "team_id": "t1", "name": "Alpha", "parent_id": None}
    rows = [
        roster_row(record("spm.roster", json.dumps(rep).encode(), key=b"rep|r1|2026-11-01")),
        roster_row(record("spm.roster", json.dumps(team).encode(), key=b"team|t1")),
        roster_row(record("spm.roster", None, key=b"rep|r1|2026-11-01")),
        roster_row(record("spm.roster", None, key=b"team|t1")),
    ]
    picked = [row[:8] for row in rows]
    assert picked == [
        ("rep|r1|2026-11-01", "rep", "r1", "t1", "Ann", None, date(2026, 11, 1), 0),
        ("team|t1", "team", None, "t1", "Alpha", None, None, 0),
        ("rep|r1|2026-11-01", "rep", "r1", None, None, None, date(2026, 11, 1), 1),
        ("team|t1", "team", None, "t1", None, None, None, 1),
    ]


def progress(value: str, seconds: float, target: str | None = "100") -> tuple[object, ...]:
    as_of = (T0 + timedelta(seconds=seconds)).isoformat()
    doc = {"scope": "rep", "id": "r1", "metric": "calls", "period": "2026-11",
           "period_type": "month", "as_of": as_of, "value": value, "target": target,
           "attainment": None, "expected": "0.9", "pace": None, "projection": None, "gap": None,
           "status": None}  # fmt: skip
    return progress_row(doc)


class Clock:
    """A wall clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_cadence_writes_changes_at_most_once_per_interval_and_the_last_one_eventually() -> None:
    clock = Clock()
    cadence = SnapshotCadence(60.0, clock)
    assert cadence.offer(progress("1", 0), TP, 10) is not None  # first figures: written
    assert cadence.offer(progress("1", 5), TP, 11) is None  # unchanged
    assert cadence.offer(progress("2", 10), TP, 12) is None  # changed, too soon: held
    assert cadence.offer(progress("3", 20), TP, 13) is None  # replaces the held one
    assert cadence.held_offsets() == {TP: 13}
    clock.now = 30.0
    assert cadence.due(final=False) == []
    clock.now = 61.0
    (released,) = cadence.due(final=False)
    assert released == progress("3", 20) and cadence.held_offsets() == {}
    assert cadence.offer(progress("3", 70), TP, 14) is None  # same as written
    assert cadence.offer(progress("4", 81), TP, 15) == progress("4", 81)  # interval passed


def test_cadence_drops_a_held_change_that_was_undone() -> None:
    cadence = SnapshotCadence(60.0, Clock())
    cadence.offer(progress("1", 0), TP, 1)
    assert cadence.offer(progress("2", 1), TP, 2) is None
    assert cadence.offer(progress("1", 2), TP, 3) is None  # back to the stored figures
    assert cadence.held_offsets() == {} and cadence.due(final=True) == []


def test_cadence_seeded_with_naive_times_as_clickhouse_returns_them() -> None:
    """After a restart the seed comes from ClickHouse, whose client returns naive UTC times:
    a changed figure must still be written (it was dropped as malformed: naive - aware)."""
    cadence = SnapshotCadence(60.0, Clock())
    row = progress("7", 0, target=None)
    stored_at = row[5].astimezone(UTC).replace(tzinfo=None)
    cadence.seed([(("rep", "r1", "calls", "2026-11"), row[6:], stored_at)])
    assert cadence.offer(progress("8", 100, target=None), TP, 1) == progress("8", 100, target=None)


def test_cadence_final_releases_everything_and_seed_prevents_repeats() -> None:
    cadence = SnapshotCadence(60.0, Clock())
    row = progress("7", 0, target=None)
    cadence.seed([(("rep", "r1", "calls", "2026-11"), row[6:], row[5])])
    assert cadence.offer(progress("7", 100, target=None), TP, 1) is None  # already stored
    assert cadence.offer(progress("8", 110, target=None), TP, 2) is not None
    assert cadence.offer(progress("9", 120, target=None), TP, 3) is None
    assert cadence.due(final=True) == [progress("9", 120, target=None)]
