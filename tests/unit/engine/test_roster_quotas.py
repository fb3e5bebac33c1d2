"""Roster with effective dates, roll-up lineage, and quota targets (explicit, summed, changed)."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

import pytest

from streams.engine.periods import Calendar, Period
from streams.engine.quotas import QuotaBook
from streams.engine.rollup import UNASSIGNED, teams_for
from streams.engine.roster import Roster

from .conftest import utc


@pytest.fixture
def roster() -> Roster:
    r = Roster()
    r.set_team("emea", "EMEA", None)
    r.set_team("dach", "DACH", "emea")
    r.set_team("uk", "UK", "emea")
    r.set_team("us", "US", None)
    r.set_assignment("ann", "Ann", "dach", None)
    r.set_assignment("ben", "Ben", "uk", None)
    r.set_assignment("cat", "Cat", "dach", None)
    r.set_assignment("cat", "Cat B.", "us", utc(2026, 11, 15))
    return r


def _period(label: str) -> Period:
    p = Calendar().parse(label)
    assert isinstance(p, Period)
    return p


def test_team_at_follows_effective_dates(roster: Roster) -> None:
    assert roster.team_at("cat", utc(2026, 11, 14, 23, 59)) == "dach"
    assert roster.team_at("cat", utc(2026, 11, 15)) == "us"
    assert roster.team_at("nobody", utc(2026, 11, 15)) is None
    assert roster.rep_name("cat") == "Cat B."
    assert teams_for(roster, "cat", utc(2026, 11, 1)) == ("dach", "emea")
    assert teams_for(roster, "cat", utc(2026, 11, 20)) == ("us",)


def test_a_day_counts_for_the_team_in_force_at_its_end(roster: Roster) -> None:
    """``teams_for`` takes the day's end (exclusive): a change effective on a day, at any hour,
    counts for the whole day, one effective at the next midnight does not."""
    roster.set_assignment("ann", "Ann", "uk", utc(2026, 11, 10, 15, 30))
    assert teams_for(roster, "ann", utc(2026, 11, 10)) == ("dach", "emea")
    assert teams_for(roster, "ann", utc(2026, 11, 11)) == ("uk", "emea")
    assert teams_for(roster, "cat", utc(2026, 11, 15)) == ("dach", "emea")
    assert teams_for(roster, "cat", utc(2026, 11, 15, 0, 0, 1)) == ("us",)


def test_credit_without_a_team_counts_for_unassigned(roster: Roster) -> None:
    roster.set_assignment("eve", "Eve", "uk", utc(2026, 11, 10))
    roster.set_assignment("eve", "Eve", None, utc(2026, 11, 20))
    assert teams_for(roster, "nobody", utc(2026, 11, 20)) == (UNASSIGNED,)
    assert teams_for(roster, "eve", utc(2026, 11, 10)) == (UNASSIGNED,)
    assert teams_for(roster, "eve", utc(2026, 11, 11)) == ("uk", "emea")
    assert teams_for(roster, "eve", utc(2026, 11, 21)) == (UNASSIGNED,)


def test_every_change_bumps_the_version(roster: Roster) -> None:
    before = roster.version
    roster.set_assignment("ann", "Ann", "uk", utc(2026, 1, 1))
    roster.set_team("uk", "UK", "us")
    assert roster.version == before + 2


def test_rep_without_team_before_first_dated_assignment() -> None:
    r = Roster()
    r.set_assignment("dan", "Dan", "x", utc(2026, 6, 1))
    r.set_assignment("dan", "Dan", "y", utc(2026, 3, 1))
    assert r.team_at("dan", utc(2026, 2, 1)) is None
    assert r.team_at("dan", utc(2026, 4, 1)) == "y"
    assert r.team_at("dan", utc(2026, 7, 1)) == "x"
    r.set_assignment("dan", "Dan", "z", utc(2026, 6, 1))  # same start replaces
    assert r.team_at("dan", utc(2026, 7, 1)) == "z"
    r.set_assignment("dan", "Dan", "w", datetime(2026, 8, 1))  # naive = UTC
    assert r.team_at("dan", utc(2026, 8, 1)) == "w"


def test_lineage_and_membership(roster: Roster) -> None:
    assert roster.lineage("dach") == ("dach", "emea")
    assert roster.lineage("undeclared") == ("undeclared",)
    assert roster.members_at("emea", utc(2026, 11, 1)) == {"ann", "ben", "cat"}
    assert roster.members_at("emea", utc(2026, 11, 20)) == {"ann", "ben"}
    assert roster.members_at("us", utc(2026, 11, 20)) == {"cat"}
    assert roster.children("emea") == {"dach", "uk"}
    assert roster.teams() == {"emea", "dach", "uk", "us"}
    assert roster.team_name("uk") == "UK"


def test_lineage_is_cycle_safe() -> None:
    r = Roster()
    r.set_team("a", "A", "b")
    r.set_team("b", "B", "c")
    r.set_team("c", "C", "a")
    assert r.lineage("a") == ("a", "b", "c")


def test_explicit_targets_and_mid_period_changes(roster: Roster) -> None:
    q = QuotaBook()
    nov = _period("2026-11")
    q.set("rep", "ann", "revenue", "2026-11", Decimal(100))
    q.set("rep", "ann", "revenue", "2026-11", Decimal(160), utc(2026, 11, 16))
    assert q.target("rep", "ann", "revenue", nov, utc(2026, 11, 15, 23), roster) == 100
    assert q.target("rep", "ann", "revenue", nov, utc(2026, 11, 16), roster) == 160
    assert q.target("rep", "ben", "revenue", nov, utc(2026, 11, 16), roster) is None
    q.remove("rep", "ann", "revenue", "2026-11", utc(2026, 11, 16))
    assert q.target("rep", "ann", "revenue", nov, utc(2026, 11, 20), roster) == 100


def test_before_every_effective_from_the_earliest_applies(roster: Roster) -> None:
    q = QuotaBook()
    nov = _period("2026-11")
    q.set("rep", "ann", "calls", "2026-11", Decimal(50), utc(2026, 11, 10))
    q.set("rep", "ann", "calls", "2026-11", Decimal(70), utc(2026, 11, 20))
    assert q.target("rep", "ann", "calls", nov, utc(2026, 11, 2), roster) == 50
    assert q.target("rep", "ann", "calls", nov, utc(2026, 11, 25), roster) == 70


def test_team_targets_sum_members_unless_explicit(roster: Roster) -> None:
    q = QuotaBook()
    nov = _period("2026-11")
    for rep, target in (("ann", 100), ("ben", 200), ("cat", 50)):
        q.set("rep", rep, "revenue", "2026-11", Decimal(target))
    early, late = utc(2026, 11, 10), utc(2026, 11, 20)
    assert q.target("team", "dach", "revenue", nov, early, roster) == 150
    assert q.target("team", "dach", "revenue", nov, late, roster) == 100  # cat moved to us
    assert q.target("team", "emea", "revenue", nov, early, roster) == 350
    assert q.target("team", "us", "revenue", nov, late, roster) == 50
    assert q.target("company", "company", "revenue", nov, late, roster) == 350
    q.set("team", "uk", "revenue", "2026-11", Decimal(999))
    assert q.target("team", "emea", "revenue", nov, late, roster) == 1099  # explicit child wins
    q.set("team", "emea", "revenue", "2026-11", Decimal(1000))
    assert q.target("team", "emea", "revenue", nov, late, roster) == 1000
    assert q.target("company", "company", "revenue", nov, late, roster) == 1050
    q.set("company", "company", "revenue", "2026-11", Decimal(5000))
    assert q.target("company", "company", "revenue", nov, late, roster) == 5000


def test_no_member_target_means_no_target(roster: Roster) -> None:
    q = QuotaBook()
    nov = _period("2026-11")
    assert q.target("team", "emea", "calls", nov, utc(2026, 11, 5), roster) is None
    assert q.target("company", "company", "calls", nov, utc(2026, 11, 5), roster) is None
    q.set("rep", "ann", "calls", "2026-10", Decimal(10))  # other period does not count
    assert q.target("team", "dach", "calls", nov, utc(2026, 11, 5), roster) is None


def test_reps_without_team_count_for_the_company(roster: Roster) -> None:
    q = QuotaBook()
    nov = _period("2026-11")
    q.set("rep", "solo", "calls", "2026-11", Decimal(30))
    q.set("rep", "ben", "calls", "2026-11", Decimal(20))
    assert q.target("company", "company", "calls", nov, utc(2026, 11, 5), roster) == 50


def test_membership_after_the_period_is_read_at_its_end(roster: Roster) -> None:
    q = QuotaBook()
    oct_ = _period("2026-10")
    q.set("rep", "cat", "calls", "2026-10", Decimal(40))
    assert q.target("team", "dach", "calls", oct_, utc(2027, 1, 1), roster) == 40
    assert q.target("team", "us", "calls", oct_, utc(2027, 1, 1), roster) is None
