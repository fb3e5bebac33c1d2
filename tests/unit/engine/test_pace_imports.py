"""Derived figures and CSV imports."""

from __future__ import annotations

from decimal import Decimal

import pytest

from streams.engine.imports import (
    QuotaRow,
    RosterRow,
    TeamRow,
    parse_quotas_csv,
    parse_roster_csv,
    parse_teams_csv,
)
from streams.engine.pace import Thresholds, figures
from streams.engine.periods import Calendar

from .conftest import utc

D = Decimal


def test_figures_halfway_on_track() -> None:
    f = figures(D(50), D(100), D("0.5"), Thresholds(), closed=False)
    assert (f.attainment, f.pace, f.projection, f.gap, f.status) == (
        D("0.5"),
        D(1),
        D(100),
        D(50),
        "on_track",
    )
    assert f.to_dict() == {
        "value": "50",
        "target": "100",
        "attainment": "0.5",
        "expected": "0.5",
        "pace": "1",
        "projection": "100",
        "gap": "50",
        "status": "on_track",
    }


@pytest.mark.parametrize(
    ("value", "expected", "status"),
    [
        ("39", "0.5", "behind"),  # pace 0.78
        ("40", "0.5", "at_risk"),  # pace 0.8
        ("49.99", "0.5", "at_risk"),
        ("1", "0.09", "at_risk"),  # too early to be behind
        ("1", "0.1", "behind"),
        ("0", "0", "on_track"),  # nothing is late at the start
        ("120", "1", "on_track"),
    ],
)
def test_status_thresholds(value: str, expected: str, status: str) -> None:
    assert figures(D(value), D(100), D(expected), Thresholds(), closed=False).status == status


@pytest.mark.parametrize(
    ("value", "target", "expected", "status"),
    [
        ("100", "100", "1", "achieved"),  # reached exactly
        ("250", "100", "1", "achieved"),
        ("99.99", "100", "1", "missed"),
        ("0", "0", "1", "achieved"),  # a zero target is met by nothing
        ("5", "100", "0.02", "missed"),  # closed early in business days: still final
        ("95", "100", "1", "missed"),  # would be at_risk by pace
    ],
)
def test_closed_periods_are_achieved_or_missed(
    value: str, target: str, expected: str, status: str
) -> None:
    f = figures(D(value), D(target), D(expected), Thresholds(), closed=True)
    assert f.status == status
    assert figures(D(value), None, D(expected), Thresholds(), closed=True).status is None


def test_custom_thresholds() -> None:
    strict = Thresholds(behind=D("0.95"), at_risk=D("1.1"), min_elapsed=D("0.5"))
    assert figures(D(50), D(100), D("0.5"), strict, closed=False).status == "at_risk"
    assert figures(D(40), D(100), D("0.5"), strict, closed=False).status == "behind"
    assert figures(D(40), D(100), D("0.4"), strict, closed=False).status == "at_risk"


def test_no_target_gives_nulls_not_zeros() -> None:
    f = figures(D(7), None, D("0.25"), Thresholds(), closed=False)
    assert (f.target, f.attainment, f.pace, f.gap, f.status) == (None, None, None, None, None)
    assert f.projection == D(28)
    assert f.to_dict()["attainment"] is None


def test_ratios_are_rounded_to_six_places() -> None:
    f = figures(D(1), D(3), D(1) / D(3), Thresholds(), closed=False)
    assert f.attainment == D("0.333333") and f.pace == D("1.000000")
    assert f.expected == D("0.333333") and f.projection == D("3.000000")


def test_quota_csv_reports_every_bad_line() -> None:
    text = (
        "scope,scope_id,metric,period,target,effective_from\n"
        "rep,ann,revenue,2026-Q4,1000.50,\n"
        "team,dach,calls,2026-11,200,2026-11-16\n"
        "region,x,calls,2026-11,1,\n"
        "rep,ann,revnue,2026-11,1,\n"
        "rep,ann,calls,2026-13,1,\n"
        "rep,ann,calls,2026-11,-3,\n"
        "rep,ann,calls,2026-11,3,16/11/2026\n"
        "rep,ann\n"
        "\n"
        "company,company,calls,2026-11,900,2026-11-16T09:00:00-05:00\n"
    )
    from streams.engine.catalog import MetricCatalog

    rows, errors = parse_quotas_csv(
        text, catalog=MetricCatalog.load(), calendar=Calendar("Europe/Berlin")
    )
    assert rows == [
        QuotaRow("rep", "ann", "revenue", "2026-Q4", D("1000.50"), None),
        QuotaRow("team", "dach", "calls", "2026-11", D(200), utc(2026, 11, 15, 23)),
        QuotaRow("company", "company", "calls", "2026-11", D(900), utc(2026, 11, 16, 14)),
    ]
    assert [e.path for e in errors] == [f"line {n}" for n in (4, 5, 6, 7, 8, 9)]
    assert all(e.code == "bad_csv" and e.message.startswith(e.path) for e in errors)


def test_quota_csv_header_is_checked() -> None:
    rows, errors = parse_quotas_csv("scope,id,metric,period,target\nrep,a,calls,2026,1\n")
    assert rows == [] and [e.path for e in errors] == ["line 1"]
    assert "scope,scope_id,metric,period,target" in errors[0].message
    rows, errors = parse_quotas_csv("")
    assert rows == [] and [e.path for e in errors] == ["line 1"]


def test_roster_and_teams_csv() -> None:
    reps, errors = parse_roster_csv(
        'rep_id,name,team_id,effective_from\nann,Ann,dach,\ncat,"Cat, B.",us,2026-11-15\n,x,y,\n'
    )
    assert reps == [
        RosterRow("ann", "Ann", "dach", None),
        RosterRow("cat", "Cat, B.", "us", utc(2026, 11, 15)),
    ]
    assert [e.path for e in errors] == ["line 4"]
    teams, errors = parse_teams_csv(
        "team_id,name,parent_id\nemea,EMEA,\ndach,DACH,emea\nloop,Loop,loop\n"
    )
    assert teams == [TeamRow("emea", "EMEA", None), TeamRow("dach", "DACH", "emea")]
    assert [e.path for e in errors] == ["line 4"]
    short, errors = parse_roster_csv("rep_id,name,team_id\nann,Ann,dach\n")
    assert short == [RosterRow("ann", "Ann", "dach", None)] and errors == []


def test_the_unassigned_pseudo_team_is_not_a_team_id_imports_accept() -> None:
    reps, errors = parse_roster_csv("rep_id,name,team_id\nann,Ann,unassigned\nben,Ben,uk\n")
    assert reps == [RosterRow("ben", "Ben", "uk", None)]
    assert [(e.path, "reserved" in e.message) for e in errors] == [("line 2", True)]
    teams, errors = parse_teams_csv("team_id,name,parent_id\nunassigned,U,\nuk,UK,unassigned\n")
    assert teams == [] and [e.path for e in errors] == ["line 2", "line 3"]
