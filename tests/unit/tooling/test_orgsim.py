"""Synthetic organisation: reproducible, complete, importable, figures that mean something."""

from __future__ import annotations

import csv
import io
import itertools
import json
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from streams.engine.engine import Engine
from streams.engine.errors import Invalid
from streams.engine.events import Event
from streams.engine.imports import parse_quotas_csv, parse_roster_csv, parse_teams_csv
from streams.rules import Rules
from streams.settings import Settings
from tools.orgsim import QUOTA_PERIOD_TYPES, Organisation, backfill, traffic

NOW = datetime(2026, 11, 18, 15, 30, tzinfo=UTC)  # a Wednesday, 7 weeks into 2026-Q4
AMENDMENTS = ("deal.lost", "deal.reopened")


@pytest.fixture(scope="module")
def rules() -> Rules:
    return Rules.from_settings(Settings())


@pytest.fixture(scope="module")
def small_org() -> Organisation:
    return Organisation.generate(11, regions=1, teams_per_region=2, reps_per_team=5)


@pytest.fixture(scope="module")
def small_backfill(rules: Rules, small_org: Organisation) -> list[dict[str, Any]]:
    return backfill(small_org, NOW, rules.calendar)


def decode(rules: Rules, event: dict[str, Any]) -> Event | Invalid:
    return rules.decoder.decode(json.dumps(event).encode())


def test_same_seed_same_organisation_backfill_and_traffic(rules: Rules) -> None:
    a, b = Organisation.generate(5), Organisation.generate(5)
    assert a == b
    since = NOW - timedelta(days=7)
    assert backfill(a, NOW, rules.calendar, since) == backfill(b, NOW, rules.calendar, since)
    first = list(itertools.islice(traffic(a, NOW, 50, rules.calendar), 300))
    assert first == list(itertools.islice(traffic(b, NOW, 50, rules.calendar), 300))
    other = Organisation.generate(6)
    assert [r.name for r in other.reps] != [r.name for r in a.reps]


def test_tree_of_company_regions_teams_and_reps() -> None:
    org = Organisation.generate(
        3, regions=3, teams_per_region=4, reps_per_team=7, behind_per_team=2
    )
    assert org.company.parent_id is None
    assert len(org.regions) == 3 and {r.parent_id for r in org.regions} == {org.company.team_id}
    assert len(org.teams) == 12
    assert {t.parent_id for t in org.teams} == {r.team_id for r in org.regions}
    assert len(org.reps) == 84
    assert len({r.rep_id for r in org.reps}) == 84 and len({r.name for r in org.reps}) == 84
    per_team = Counter(r.team_id for r in org.reps if r.behind)
    assert per_team == dict.fromkeys((t.team_id for t in org.teams), 2)
    assert org.behind == {r.rep_id for r in org.reps if r.behind}
    assert max(r.activity for r in org.reps if r.behind) < min(
        r.activity for r in org.reps if not r.behind
    )


def test_generate_refuses_impossible_shapes() -> None:
    with pytest.raises(ValueError):
        Organisation.generate(1, regions=0)
    with pytest.raises(ValueError):
        Organisation.generate(1, reps_per_team=2, behind_per_team=3)


def test_every_rep_has_a_quota_per_metric_and_current_period(
    rules: Rules, small_org: Organisation
) -> None:
    rows = small_org.quota_rows(NOW, rules.calendar, rules.catalog, rules.rates)
    labels = {rules.calendar.current(p, NOW).label for p in QUOTA_PERIOD_TYPES}
    assert labels == {"2026-W47", "2026-11", "2026-Q4", "2026"}
    keys = {(q.scope, q.scope_id, q.metric, q.period) for q in rows}
    assert len(keys) == len(rows)  # one target per key
    assert keys == {
        ("rep", rep.rep_id, metric, label)
        for rep in small_org.reps
        for metric in rules.catalog.names
        for label in labels
    }
    target = {(q.scope_id, q.metric, q.period): q.target for q in rows}
    for rep in small_org.reps:
        for metric in rules.catalog.names:
            week, month, quarter, year = (
                target[rep.rep_id, metric, label]
                for label in ("2026-W47", "2026-11", "2026-Q4", "2026")
            )
            assert 0 < week <= month < quarter < year, (rep.rep_id, metric)
    # realistic magnitudes: thousands of dollars a week, a few hundred calls a month
    revenue_q = [target[r.rep_id, "revenue", "2026-Q4"] for r in small_org.reps]
    assert all(50_000 < t < 1_000_000 for t in revenue_q)
    calls_m = [target[r.rep_id, "calls", "2026-11"] for r in small_org.reps]
    assert all(150 < t < 400 for t in calls_m)


def test_rows_survive_the_csv_importers(rules: Rules, small_org: Organisation) -> None:
    """The rows are the importers' own types: written as CSV they parse back unchanged."""

    def as_csv(header: list[str], rows: list[tuple[Any, ...]]) -> str:
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow(header)
        writer.writerows(["" if v is None else v for v in row] for row in rows)
        return out.getvalue()

    teams = small_org.team_rows()
    parsed_teams, errors = parse_teams_csv(
        as_csv(["team_id", "name", "parent_id"], [(t.team_id, t.name, t.parent_id) for t in teams])
    )
    assert errors == [] and parsed_teams == teams
    reps = small_org.roster_rows()
    parsed_reps, errors = parse_roster_csv(
        as_csv(["rep_id", "name", "team_id"], [(r.rep_id, r.name, r.team_id) for r in reps])
    )
    assert errors == [] and parsed_reps == reps
    quotas = small_org.quota_rows(NOW, rules.calendar, rules.catalog, rules.rates)
    parsed_quotas, errors = parse_quotas_csv(
        as_csv(
            ["scope", "scope_id", "metric", "period", "target"],
            [(q.scope, q.scope_id, q.metric, q.period, q.target) for q in quotas],
        ),
        catalog=rules.catalog,
        calendar=rules.calendar,
    )
    assert errors == [] and parsed_quotas == quotas


def test_backfill_is_valid_ordered_and_covers_the_quarter(
    rules: Rules, small_org: Organisation, small_backfill: list[dict[str, Any]]
) -> None:
    events = small_backfill
    decoded = [decode(rules, e) for e in events]
    assert [d for d in decoded if isinstance(d, Invalid)] == []
    times = [d.time for d in decoded if isinstance(d, Event)]
    assert times == sorted(times)
    quarter = rules.calendar.current("quarter", NOW)
    assert quarter.start <= times[0] < quarter.start + timedelta(days=7)
    assert NOW - timedelta(days=3) < times[-1] < NOW
    work = [d.time for d in decoded if isinstance(d, Event) and d.deal_id is None]
    assert all(t.weekday() < 5 and 8 <= t.hour < 18 for t in work)
    mix = Counter(e["type"] for e in events)
    assert mix["call.completed"] > mix["email.sent"] > mix["meeting.held"]
    assert mix["meeting.held"] > mix["proposal.sent"] > mix["deal.won"] > 0
    assert mix["deal.lost"] + mix["deal.reopened"] > 0
    ids = Counter((e["source"], e["id"]) for e in events)
    repeated = [key for key, n in ids.items() if n > 1]
    assert repeated, "some events are re-sent"
    by_key: dict[tuple[str, str], dict[str, Any]] = {}
    for e in events:  # a re-sent event is the same event, not an id collision
        assert by_key.setdefault((e["source"], e["id"]), e) == e
    won = [e for e in events if e["type"] == "deal.won"]
    assert any("splits" in e["data"] for e in won)
    assert {e["data"]["currency"] for e in won} == {small_org.regions[0].currency}


def test_backfill_resent_later_repeats_the_same_events(
    rules: Rules, small_org: Organisation, small_backfill: list[dict[str, Any]]
) -> None:
    """A second run on the same day sends the same ids again, which the pipeline dedupes."""
    earlier = small_backfill
    later = backfill(small_org, NOW + timedelta(hours=2), rules.calendar)
    assert len(later) > len(earlier)
    assert later[: len(earlier)] == earlier


def test_behind_reps_turn_out_behind_and_the_others_do_not(
    rules: Rules, small_org: Organisation, small_backfill: list[dict[str, Any]]
) -> None:
    """Fed through the engine, the generated laggards are exactly the reps behind on activity."""
    org = small_org
    engine = Engine(rules.calendar, rules.catalog, rules.rates, rules.thresholds)
    for t in org.team_rows():
        engine.roster.set_team(t.team_id, t.name, t.parent_id)
    for r in org.roster_rows():
        engine.roster.set_assignment(r.rep_id, r.name, r.team_id, r.effective_from)
    for q in org.quota_rows(NOW, rules.calendar, rules.catalog, rules.rates):
        engine.quotas.set(q.scope, q.scope_id, q.metric, q.period, q.target, q.effective_from)
    for e in small_backfill:
        event = decode(rules, e)
        assert isinstance(event, Event)
        engine.apply(event)
    assert engine.duplicates > 0
    for metric in ("calls", "emails"):
        behind = {
            rep.rep_id
            for rep in org.reps
            if engine.figures("rep", rep.rep_id, metric, "2026-Q4", NOW).status == "behind"
        }
        assert behind == org.behind, metric
    revenue_pace = {
        rep.rep_id: engine.figures("rep", rep.rep_id, "revenue", "2026-Q4", NOW).pace or 0
        for rep in org.reps
    }
    laggards = [p for rep, p in revenue_pace.items() if rep in org.behind]
    others = [p for rep, p in revenue_pace.items() if rep not in org.behind]
    assert max(laggards) < sum(others) / len(others)
    company = engine.figures("company", "company", "calls", "2026-Q4", NOW)
    assert company.status in ("on_track", "at_risk")


def test_traffic_is_timed_mixed_and_mostly_valid(rules: Rules) -> None:
    org = Organisation.generate(4)
    rate = 40.0
    events = list(itertools.islice(traffic(org, NOW, rate, rules.calendar), 6000))
    times = [datetime.fromisoformat(e["time"]) for e in events]
    assert times[0] == NOW
    assert max(times) <= NOW + timedelta(seconds=len(events) / rate)
    assert max(
        abs(t - (NOW + timedelta(seconds=i / rate))) for i, t in enumerate(times)
    ) < timedelta(seconds=5)  # only re-sent events are older than their slot, and by little
    mix = Counter(e["type"] for e in events)
    assert mix["call.completed"] > mix["email.sent"] > mix["meeting.held"]
    assert mix["meeting.held"] > mix["proposal.sent"] > mix["deal.won"] > 0
    assert all(not isinstance(decode(rules, e), Invalid) for e in events)
    # laggards are heard from less than their share of the headcount
    by_rep = Counter(e["data"]["rep_id"] for e in events)
    share_behind = sum(by_rep[r] for r in org.behind) / len(events)
    assert share_behind < 0.6 * len(org.behind) / len(org.reps)
    ids = Counter(e["id"] for e in events)
    assert 0 < sum(n - 1 for n in ids.values()) < 0.03 * len(events)
    won = {e["data"]["deal_id"] for e in events if e["type"] == "deal.won"}
    amendments = [e for e in events if e["type"] in AMENDMENTS]
    assert amendments and all(e["data"]["deal_id"] in won for e in amendments)


def test_traffic_with_malformed_events_and_fresh_ids_per_run(rules: Rules) -> None:
    org = Organisation.generate(4)
    events = list(
        itertools.islice(traffic(org, NOW, 10, rules.calendar, malformed_ratio=0.05), 4000)
    )
    rejected = [e for e in events if isinstance(decode(rules, e), Invalid)]
    assert 0.03 * len(events) < len(rejected) < 0.07 * len(events)
    reasons = {decode(rules, e).code for e in rejected}  # type: ignore[union-attr]
    assert reasons == {"schema", "bad_time", "unknown_currency"}
    next_run = itertools.islice(traffic(org, NOW + timedelta(seconds=1), 10, rules.calendar), 4000)
    assert not {e["id"] for e in events} & {e["id"] for e in next_run}


def test_traffic_rate_must_be_positive(rules: Rules) -> None:
    with pytest.raises(ValueError):
        next(traffic(Organisation.generate(1), NOW, 0, rules.calendar))
