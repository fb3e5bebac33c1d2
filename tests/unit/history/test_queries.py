"""History queries on real chDB, every row stored twice; expectations computed here."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from clickhouse_connect.driver import Client

from streams import history
from streams.engine.events import Event, Split
from streams.engine.periods import Calendar
from streams.sinks.clickhouse import alert_row, event_row, progress_row, rejected_row, roster_row
from streams.web_history import events_page

from .conftest import insert_twice, record

UTC_CALENDAR = Calendar("UTC")
NOV = datetime(2026, 11, 1, tzinfo=UTC)


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def snapshot(
    scope: str,
    scope_id: str,
    metric: str,
    period: str,
    *,
    as_of: str = "2026-11-02T09:00:00",
    value: str = "1",
    target: str | None = "10",
    period_type: str = "month",
) -> tuple[object, ...]:
    """A progress_snapshots row built by the sink's own mapping from a wire record."""
    return progress_row(
        {
            "scope": scope,
            "id": scope_id,
            "metric": metric,
            "period": period,
            "period_type": period_type,
            "as_of": f"{as_of}+00:00",
            "value": value,
            "target": target,
            "attainment": None if target is None else str(Decimal(value) / Decimal(target)),
            "expected": "0.5",
            "pace": None,
            "projection": None,
            "gap": None if target is None else str(Decimal(target) - Decimal(value)),
            "status": None if target is None else "on_track",
        }
    )


def dec(text: str | None) -> Decimal | None:
    return None if text is None else Decimal(text)


# --- cumulative ---------------------------------------------------------------------------------
NOV_SNAPSHOTS = [  # (as_of, value, target) for rep r1 / revenue / 2026-11
    ("2026-11-02T09:00:00", "10", "300"),
    ("2026-11-02T17:00:00", "25", "300"),
    ("2026-11-05T10:00:00", "40.125", "300"),
    ("2026-11-05T23:59:59.999", "55", "330"),
    ("2026-11-08T00:00:00", "70", None),  # quota removed: the newest target is NULL
]
NOISE = [
    snapshot("rep", "r2", "revenue", "2026-11", value="999"),
    snapshot("rep", "r1", "calls", "2026-11", value="999"),
    snapshot("rep", "r1", "revenue", "2026-10", as_of="2026-11-03T00:00:00", value="999"),
    snapshot("team", "r1", "revenue", "2026-11", value="999"),
]


@pytest.fixture
def november(ch: Client) -> Client:
    rows = [
        snapshot("rep", "r1", "revenue", "2026-11", as_of=a, value=v, target=t)
        for a, v, t in NOV_SNAPSHOTS
    ]
    insert_twice(ch, "progress_snapshots", rows + NOISE)
    return ch


def expected_days(snapshots: list[tuple[str, str, str | None]], zone: ZoneInfo, last: date):
    """Per local day: the newest snapshot recorded on or before that day."""
    start = date(2026, 11, 1)
    # real elapsed time: subtract in UTC (same-zone datetimes subtract by wall time, and
    # New York's November is 30 days and 1 hour long)
    month_start = datetime(2026, 11, 1, tzinfo=zone).astimezone(UTC)
    month_end = datetime(2026, 12, 1, tzinfo=zone).astimezone(UTC)
    out = []
    day = start
    while day <= last:
        seen = [s for s in snapshots if at(s[0]).astimezone(zone).date() <= day]
        newest = max(seen, key=lambda s: at(s[0])) if seen else None
        value, target = (None, None) if newest is None else (newest[1], newest[2])
        day_end = datetime.combine(day + timedelta(days=1), datetime.min.time(), zone).astimezone(
            UTC
        )
        share = Decimal((day_end - month_start).total_seconds()) / Decimal(
            (month_end - month_start).total_seconds()
        )
        out.append(
            (
                day.isoformat(),
                dec(value),
                dec(target),
                None if target is None else Decimal(target) * share,
            )
        )
        day += timedelta(days=1)
    return out


def test_rep_cumulative_follows_the_newest_snapshot_per_day(november: Client) -> None:
    result = history.rep_cumulative(
        november, "r1", "revenue", "2026-11", UTC_CALENDAR, now=at("2026-11-10T12:00:00")
    )
    got = [
        (d["day"], dec(d["value"]), dec(d["target"]), dec(d["expected"])) for d in result["days"]
    ]
    assert got == expected_days(NOV_SNAPSHOTS, ZoneInfo("UTC"), date(2026, 11, 10))
    assert result["period_type"] == "month"
    assert result["start"] == "2026-11-01T00:00:00+00:00"
    assert result["days"][1]["as_of"] == "2026-11-02T17:00:00+00:00"


def test_cumulative_days_are_the_organisations_local_days(november: Client) -> None:
    new_york = Calendar("America/New_York")
    result = history.rep_cumulative(
        november, "r1", "revenue", "2026-11", new_york, now=at("2026-12-20T00:00:00")
    )
    got = [
        (d["day"], dec(d["value"]), dec(d["target"]), dec(d["expected"])) for d in result["days"]
    ]
    assert got == expected_days(NOV_SNAPSHOTS, ZoneInfo("America/New_York"), date(2026, 11, 30))
    # 2026-11-05T23:59:59.999Z is still the 5th in New York, 2026-11-08T00:00Z the 7th
    by_day = {d["day"]: d["value"] for d in result["days"]}
    assert by_day["2026-11-05"] == "55" and by_day["2026-11-07"] == "70"


def test_team_cumulative_reads_the_team_scope(november: Client) -> None:
    result = history.team_cumulative(
        november, "r1", "revenue", "2026-11", UTC_CALENDAR, now=at("2026-11-03T00:00:00")
    )
    # the team's one snapshot was recorded on the 2nd: nothing known on the 1st
    assert [d["value"] for d in result["days"]] == [None, "999", "999"]


def test_unknown_period_label_is_a_bad_query(ch: Client) -> None:
    with pytest.raises(history.BadQuery) as caught:
        history.rep_cumulative(ch, "r1", "revenue", "2026-13", UTC_CALENDAR)
    assert caught.value.invalid.code == "bad_period"


# --- period over period -------------------------------------------------------------------------
def test_period_over_period_compares_at_the_same_point(ch: Client) -> None:
    october = [
        ("2026-10-05T00:00:00", "5"),
        ("2026-10-16T00:00:00", "20"),
        ("2026-10-31T12:00:00", "50"),
    ]
    november = [("2026-11-03T00:00:00", "12"), ("2026-11-15T12:00:00", "30")]
    rows = [
        snapshot("rep", "r1", "calls", "2026-10", as_of=a, value=v, target="60") for a, v in october
    ]
    rows += [
        snapshot("rep", "r1", "calls", "2026-11", as_of=a, value=v, target="60")
        for a, v in november
    ]
    insert_twice(ch, "progress_snapshots", rows)

    result = history.period_over_period(ch, "rep", "r1", "calls", "2026-11", UTC_CALENDAR)

    share = (at("2026-11-15T12:00:00") - NOV) / timedelta(days=30)
    same_point = datetime(2026, 10, 1, tzinfo=UTC) + timedelta(days=31) * share
    then = max((s for s in october if at(s[0]) <= same_point), key=lambda s: at(s[0]))
    assert result["current"]["value"] == "30" and result["current"]["target"] == "60"
    assert result["previous"]["period"] == "2026-10"
    assert result["previous"]["final"]["value"] == "50"
    assert datetime.fromisoformat(result["previous"]["same_point"]) == same_point
    assert result["previous"]["at_same_point"]["value"] == then[1]
    assert Decimal(result["change"]) == 30 - Decimal(then[1])
    assert Decimal(result["change_ratio"]) == (30 - Decimal(then[1])) / Decimal(then[1])


def test_period_over_period_without_history_has_no_figures(ch: Client) -> None:
    result = history.period_over_period(ch, "rep", "nobody", "calls", "2026-Q4", UTC_CALENDAR)
    assert result["current"] is None and result["previous"]["final"] is None
    assert result["previous"]["period"] == "2026-Q3" and result["change"] is None


# --- leaderboard ----------------------------------------------------------------------------------
LATEST = {"r1": "100", "r2": "300", "r3": "200", "r4": "250", "r5": "50", "r6": "120"}
ROSTER = [  # (key, value or None for a tombstone)
    ("rep|r1|", {"rep_id": "r1", "name": "Ann", "team_id": "A", "effective_from": None}),
    ("rep|r2|", {"rep_id": "r2", "name": "Bob", "team_id": "A", "effective_from": None}),
    ("rep|r3|", {"rep_id": "r3", "name": "Cy", "team_id": "B", "effective_from": None}),
    ("rep|r4|", {"rep_id": "r4", "name": "Di", "team_id": "A", "effective_from": None}),
    (
        "rep|r4|2026-12-15",
        {"rep_id": "r4", "name": "Di", "team_id": "B", "effective_from": "2026-12-15"},
    ),
    ("rep|r5|", {"rep_id": "r5", "name": "Ed", "team_id": "A", "effective_from": None}),
    ("rep|r5|", None),
    (
        "rep|r6|2026-01-01",
        {"rep_id": "r6", "name": "Flo", "team_id": "B", "effective_from": "2026-01-01"},
    ),
    (
        "rep|r6|2027-01-10",
        {"rep_id": "r6", "name": "Flo", "team_id": "A", "effective_from": "2027-01-10"},
    ),
    ("team|A", {"team_id": "A", "name": "Alpha", "parent_id": None}),
]


@pytest.fixture
def quarter(ch: Client) -> Client:
    rows = []
    for rep, value in LATEST.items():
        # an earlier, higher figure (e.g. before a deal was lost): the newest one counts
        rows.append(
            snapshot(
                "rep",
                rep,
                "revenue",
                "2026-Q4",
                as_of="2026-10-10T00:00:00",
                value="9999",
                period_type="quarter",
            )
        )
        rows.append(
            snapshot(
                "rep",
                rep,
                "revenue",
                "2026-Q4",
                as_of="2026-12-30T00:00:00",
                value=value,
                period_type="quarter",
            )
        )
    rows.append(snapshot("rep", "r9", "revenue", "2026-Q3", value="5000", period_type="quarter"))
    rows.append(snapshot("rep", "r9", "calls", "2026-Q4", value="5000", period_type="quarter"))
    insert_twice(ch, "progress_snapshots", rows)
    roster = []
    for offset, (key, doc) in enumerate(ROSTER):
        value = None if doc is None else json.dumps({"kind": key.split("|")[0], **doc}).encode()
        roster.append(roster_row(record("spm.roster", value, key=key.encode(), offset=offset)))
    insert_twice(ch, "roster_history", roster)
    return ch


def team_at_quarter_end(rep: str) -> str | None:
    """Membership by hand: newest live record per key, latest effective_from before 2027."""
    live: dict[str, dict | None] = {}
    for key, doc in ROSTER:
        if key.startswith("rep|"):
            live[key] = doc
    records = [
        d
        for d in live.values()
        if d and d["rep_id"] == rep and (d["effective_from"] or "") < "2027-01-01"
    ]
    return max(records, key=lambda d: d["effective_from"] or "")["team_id"] if records else None


@pytest.mark.parametrize("team", [None, "A", "B"])
def test_leaderboard_ranks_the_newest_values(quarter: Client, team: str | None) -> None:
    result = history.leaderboard(quarter, "revenue", "2026-Q4", UTC_CALENDAR, limit=10, team=team)
    reps = [r for r in LATEST if team is None or team_at_quarter_end(r) == team]
    ranking = sorted(reps, key=lambda r: (-Decimal(LATEST[r]), r))
    assert [e["rep_id"] for e in result["entries"]] == ranking
    assert [e["value"] for e in result["entries"]] == [LATEST[r] for r in ranking]
    assert [e["rank"] for e in result["entries"]] == list(range(1, len(ranking) + 1))
    if team is not None:
        assert {e["team_id"] for e in result["entries"]} == {team}


def test_leaderboard_limit_and_names(quarter: Client) -> None:
    entries = history.leaderboard(quarter, "revenue", "2026-Q4", UTC_CALENDAR, limit=2)["entries"]
    assert [(e["rep_id"], e["name"], e["team_id"]) for e in entries] == [
        ("r2", "Bob", "A"),
        ("r4", "Di", "B"),
    ]
    with pytest.raises(history.BadQuery):
        history.leaderboard(quarter, "revenue", "2026-Q4", UTC_CALENDAR, limit=0)


# --- alerts and rejected events ----------------------------------------------------------------
def alert(n: int, scope: str, scope_id: str, when: str, to: str = "behind") -> tuple[object, ...]:
    doc = {
        "alert_id": f"{scope}:{scope_id}:calls:2026-11:{when}",
        "scope": scope, "id": scope_id, "name": None if scope != "rep" else f"Rep {scope_id}",
        "team_id": "A", "metric": "calls", "period": "2026-11", "from_status": "on_track",
        "to_status": to, "value": str(n), "target": "100", "pace": "0.5", "gap": "50",
        "at": f"{when}+00:00",
    }  # fmt: skip
    return alert_row(record("spm.alerts", json.dumps(doc).encode(), offset=n))


def test_alert_history_filters_and_orders_newest_first(ch: Client) -> None:
    rows = [
        alert(1, "rep", "r1", "2026-11-02T10:00:00"),
        alert(2, "rep", "r2", "2026-11-03T10:00:00"),
        alert(3, "team", "A", "2026-11-04T10:00:00"),
        alert(4, "rep", "r1", "2026-11-05T10:00:00", to="at_risk"),
        alert(5, "rep", "r1", "2026-10-30T10:00:00"),
    ]
    insert_twice(ch, "alerts", rows)
    everything = history.alert_history(ch)
    assert [a["at"] for a in everything] == sorted((a["at"] for a in everything), reverse=True)
    assert len(everything) == 5
    r1 = history.alert_history(ch, scope="rep", scope_id="r1", since=at("2026-11-01T00:00:00"))
    assert [(a["id"], a["to_status"], a["value"]) for a in r1] == [
        ("r1", "at_risk", "4"),
        ("r1", "behind", "1"),
    ]
    assert r1[0]["at"] == "2026-11-05T10:00:00+00:00" and r1[0]["name"] == "Rep r1"
    assert [a["scope"] for a in history.alert_history(ch, scope="team")] == ["team"]
    assert len(history.alert_history(ch, limit=2)) == 2
    with pytest.raises(history.BadQuery):
        history.alert_history(ch, limit=0)


def dead_letter(
    code: str, source_offset: int, when: datetime, dlq_offset: int
) -> tuple[object, ...]:
    headers = (
        ("spm-error-code", code.encode()),
        ("spm-error-message", f"{code} at {source_offset}".encode()),
        ("spm-error-path", b"data"),
        ("spm-source-topic", b"spm.activity"),
        ("spm-source-partition", b"1"),
        ("spm-source-offset", str(source_offset).encode()),
        ("traceparent", b"00-abc"),
    )
    return rejected_row(
        record("spm.activity.dlq", b"\xff{oops", headers=headers, offset=dlq_offset, at=when)
    )


def test_rejected_by_reason_counts_each_rejected_message_once(ch: Client) -> None:
    letters = [
        ("not_json", 1, at("2026-10-31T23:00:00")),
        ("not_json", 2, at("2026-11-02T00:00:00")),
        ("not_json", 3, at("2026-11-03T00:00:00")),
        ("schema", 4, at("2026-11-04T00:00:00")),
        ("schema", 5, at("2026-11-05T00:00:00")),
        ("bad_time", 6, at("2026-11-06T00:00:00")),
    ]
    rows = [dead_letter(c, o, w, i) for i, (c, o, w) in enumerate(letters)]
    # the same rejected message dead-lettered again a day later, into another month's partition
    rows.append(dead_letter("not_json", 1, at("2026-11-01T23:00:00"), 99))
    insert_twice(ch, "rejected_events", rows)

    def counts(since: datetime | None) -> dict[str, int]:
        expected: dict[str, int] = {}
        for code, _, when in letters:
            if since is None or when >= since:
                expected[code] = expected.get(code, 0) + 1
        return expected

    for since in (None, at("2026-11-01T00:00:00"), at("2026-11-05T00:00:00")):
        got = history.rejected_by_reason(ch, since=since)
        assert {r["error_code"]: r["events"] for r in got} == counts(since)
    top = history.rejected_by_reason(ch)[0]
    assert top["error_code"] == "not_json" and top["first_at"] == "2026-10-31T23:00:00+00:00"
    stored = ch.query(
        "SELECT value, headers FROM rejected_events LIMIT 1", column_formats={"value": "bytes"}
    )
    assert stored.result_rows[0] == (b"\xff{oops", {"traceparent": "00-abc"})


# --- latest progress, replay, daily totals ------------------------------------------------------
def test_latest_progress_is_the_newest_snapshot_per_key(november: Client) -> None:
    latest = history.latest_progress(november, scope="rep", period="2026-11")
    by_key = {(p["id"], p["metric"]): p for p in latest}
    newest = max(NOV_SNAPSHOTS, key=lambda s: at(s[0]))
    assert set(by_key) == {("r1", "revenue"), ("r2", "revenue"), ("r1", "calls")}
    assert by_key["r1", "revenue"]["value"] == newest[1]
    assert by_key["r1", "revenue"]["target"] is None and by_key["r1", "revenue"]["status"] is None
    assert by_key["r1", "revenue"]["as_of"] == "2026-11-08T00:00:00+00:00"


def events() -> list[Event]:
    won = Event(
        source="crm", id="d1-won", type="deal.won", time=at("2026-11-03T10:00:00"), rep_id="r1",
        deal_id="d1", amount=Decimal("1234.50"), currency="EUR",
        amount_base=Decimal("84.61538461538461538461538462"),
        splits=(Split("r1", Decimal("0.25")), Split("r2", Decimal("0.75"))),
        data={"rep_id": "r1", "deal_id": "d1", "amount": "1234.50", "note": "ünïcode"},
    )  # fmt: skip
    calls = [
        Event(
            source="dialer",
            id=f"c{i}",
            type="call.completed",
            time=at(f"2026-11-0{1 + i % 5}T08:00:00"),
            rep_id=f"r{i % 3}",
            data={"rep_id": f"r{i % 3}", "seconds": 61.5},
        )
        for i in range(7)
    ]
    return [won, *calls]


def test_replay_yields_each_event_once_in_event_time_order(ch: Client) -> None:
    originals = events()
    rows = [event_row(record("spm.events", e.to_json(), offset=i)) for i, e in enumerate(originals)]
    insert_twice(ch, "activity_events", rows)
    order = sorted(originals, key=lambda e: (e.time, e.source, e.id))
    for page in (2, 3, 100):
        replayed = [Event.from_json(raw) for raw in history.replay_events(ch, page=page)]
        assert replayed == order
    since = at("2026-11-03T00:00:00")
    assert [Event.from_json(r) for r in history.replay_events(ch, since)] == [
        e for e in order if e.time >= since
    ]


def test_conflicting_copies_are_each_replayed_and_paged_once(ch: Client) -> None:
    """Copies of one (source, id) at one time for other reps: every page size replays each
    once, and an event page never ends between them (its cursor names no copy)."""
    first = events()[1]
    copies = [replace(first, rep_id=f"rep-{n}", data={"rep_id": f"rep-{n}"}) for n in range(4)]
    rows = [event_row(record("spm.events", e.to_json(), offset=i)) for i, e in enumerate(copies)]
    insert_twice(ch, "activity_events", rows)
    by_digest = sorted(copies, key=lambda e: e.copy_digest)
    for page in (1, 2, 3, 100):
        replayed = [Event.from_json(raw) for raw in history.replay_events(ch, page=page)]
        assert replayed == by_digest
    page = events_page(ch, None, None, limit=1)
    assert [Event.from_json(line) for line in page] == by_digest
    assert events_page(ch, None, (first.time, first.source, first.id), limit=1) == []


def test_daily_totals_view_stays_exact_with_duplicates(november: Client) -> None:
    rows = november.query(
        "SELECT day, argMaxMerge(figures_state).value, argMaxMerge(figures_state).target"
        " FROM daily_totals WHERE scope = 'rep' AND id = 'r1' AND metric = 'revenue'"
        " AND period = '2026-11' GROUP BY day ORDER BY day"
    ).result_rows
    expected = {}
    for as_of, value, target in sorted(NOV_SNAPSHOTS, key=lambda s: at(s[0])):
        expected[at(as_of).date()] = (Decimal(value), dec(target))
    assert [(d, v, t) for d, v, t in rows] == [(d, *vt) for d, vt in sorted(expected.items())]
