"""The composed engine on worked examples: roll-up, transfers, splits, retractions, figures."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from itertools import permutations
from pathlib import Path

import pytest

from streams.engine.catalog import MetricCatalog
from streams.engine.engine import Engine
from streams.engine.events import Event
from streams.engine.money import Rates
from streams.engine.periods import Calendar

from .conftest import activity, lost, utc, won

D = Decimal


@pytest.fixture
def engine(make_engine: Callable[..., Engine]) -> Engine:
    e = make_engine()
    e.roster.set_team("emea", "EMEA", None)
    e.roster.set_team("dach", "DACH", "emea")
    e.roster.set_team("us", "US", None)
    e.roster.set_assignment("ann", "Ann", "dach", None)
    e.roster.set_assignment("cat", "Cat", "dach", None)
    e.roster.set_assignment("cat", "Cat", "us", utc(2026, 11, 15))
    return e


def _apply(engine: Engine, events: list[Event]) -> None:
    for event in events:
        engine.apply(event)


def test_activity_counts_for_rep_team_lineage_and_company(engine: Engine) -> None:
    changes = engine.apply(activity("c1", "ann", utc(2026, 11, 27, 10)))
    assert {scope for scope, _, _ in changes} == {
        ("rep", "ann"),
        ("team", "dach"),
        ("team", "emea"),
        ("company", "company"),
    }
    for scope, scope_id in (("rep", "ann"), ("team", "dach"), ("team", "emea")):
        assert engine.value(scope, scope_id, "calls", "2026-11-27") == 1
    assert engine.value("company", "company", "calls", "2026-W48") == 1
    assert engine.value("team", "us", "calls", "2026-11") == 0
    assert engine.value("rep", "ann", "emails", "2026-11") == 0


def test_duplicates_change_nothing_even_with_other_content(engine: Engine) -> None:
    first = activity("c1", "ann", utc(2026, 11, 27))
    assert engine.apply(first) != set()
    assert engine.apply(first) == set()
    # a copy is a duplicate within the rep's day; conflicting copies are not deduplicated yet
    assert engine.apply(activity("c1", "ann", utc(2026, 11, 27), source="other")) != []
    assert engine.value("rep", "ann", "calls", "2026-11") == 2
    assert engine.apply(first) == set()


def test_unknown_types_are_counted_as_ignored(engine: Engine) -> None:
    assert engine.apply(activity("s1", "ann", utc(2026, 11, 2), type_="sms.sent")) == set()
    assert engine.ignored == 1
    assert list(engine.keys()) == []


def test_transfer_does_not_move_past_credit(engine: Engine) -> None:
    _apply(
        engine,
        [activity("c1", "cat", utc(2026, 11, 10)), activity("c2", "cat", utc(2026, 11, 20))],
    )
    assert engine.value("team", "dach", "calls", "2026-11") == 1
    assert engine.value("team", "emea", "calls", "2026-11") == 1
    assert engine.value("team", "us", "calls", "2026-11") == 1
    assert engine.value("rep", "cat", "calls", "2026-11") == 2
    assert engine.value("company", "company", "calls", "2026-11") == 2


def test_split_deal_inside_one_team_is_one_deal_for_the_team(engine: Engine) -> None:
    engine.apply(won("w1", "D1", "ann", utc(2026, 11, 10), "1000", {"ann": "0.6", "cat": "0.4"}))
    assert engine.value("rep", "ann", "revenue", "2026-11") == D("600.0")
    assert engine.value("rep", "cat", "revenue", "2026-11") == D("400.0")
    assert engine.value("team", "dach", "revenue", "2026-11") == 1000
    assert engine.value("company", "company", "revenue", "2026-Q4") == 1000
    assert engine.value("rep", "ann", "deals_won", "2026-11") == D("0.6")
    assert engine.value("rep", "cat", "deals_won", "2026-11") == D("0.4")
    assert engine.value("team", "dach", "deals_won", "2026-11") == 1
    assert engine.value("team", "emea", "deals_won", "2026-11") == 1
    assert engine.value("company", "company", "deals_won", "2026-11") == 1


def test_split_across_teams_shares_the_deal(engine: Engine) -> None:
    engine.apply(won("w1", "D1", "ann", utc(2026, 11, 20), "90", {"ann": "0.5", "cat": "0.5"}))
    assert engine.value("team", "dach", "deals_won", "2026-11") == D("0.5")
    assert engine.value("team", "us", "deals_won", "2026-11") == D("0.5")
    assert engine.value("team", "us", "revenue", "2026-11") == D("45.0")
    assert engine.value("company", "company", "deals_won", "2026-11") == 1


def test_rewin_after_transfer_moves_the_deal_to_the_new_period_and_team(engine: Engine) -> None:
    engine.apply(won("w1", "D1", "cat", utc(2026, 10, 30), "100"))
    assert engine.value("team", "dach", "revenue", "2026-10") == 100
    engine.apply(won("w2", "D1", "cat", utc(2026, 11, 20), "120"))
    assert engine.value("team", "dach", "revenue", "2026-10") == 0
    assert engine.value("team", "emea", "revenue", "2026-Q4") == 0
    assert engine.value("team", "us", "revenue", "2026-11") == 120
    assert engine.value("rep", "cat", "revenue", "2026-Q4") == 120
    assert engine.value("company", "company", "deals_won", "2026-Q4") == 1


DEAL_STORY = [
    won("w1", "D1", "ann", utc(2026, 10, 5), "100"),
    lost("l1", "D1", "ann", utc(2026, 10, 20)),
    won("w2", "D1", "cat", utc(2026, 11, 3), "250", {"cat": "0.5", "ann": "0.5"}),
    activity("c1", "ann", utc(2026, 11, 4)),
]


@pytest.mark.parametrize("order", list(permutations(range(len(DEAL_STORY)))))
def test_retraction_and_rewin_in_any_order(
    make_engine: Callable[..., Engine], order: tuple[int, ...]
) -> None:
    engine = make_engine()
    engine.roster.set_assignment("ann", "Ann", "dach", None)
    engine.roster.set_assignment("cat", "Cat", "dach", None)
    _apply(engine, [DEAL_STORY[i] for i in order])
    assert engine.value("rep", "ann", "revenue", "2026-10") == 0
    assert engine.value("rep", "ann", "revenue", "2026-11") == D("125.0")
    assert engine.value("team", "dach", "revenue", "2026-Q4") == 250
    assert engine.value("team", "dach", "deals_won", "2026-Q4") == 1
    assert engine.value("company", "company", "deals_won", "2026-10") == 0
    assert engine.value("rep", "ann", "calls", "2026-Q4") == 1


def test_retraction_takes_back_everything(engine: Engine) -> None:
    engine.apply(won("w1", "D1", "ann", utc(2026, 11, 10), "1000", {"ann": "0.6", "cat": "0.4"}))
    assert engine.apply(lost("l1", "D1", "ann", utc(2026, 11, 11)))
    for scope, scope_id in (
        ("rep", "ann"),
        ("rep", "cat"),
        ("team", "dach"),
        ("company", "company"),
    ):
        assert engine.value(scope, scope_id, "revenue", "2026") == 0
        assert engine.value(scope, scope_id, "deals_won", "2026") == 0
    assert engine.apply(lost("l0", "D1", "ann", utc(2026, 11, 9))) == set()  # older: no effect


def test_figures_with_derived_team_target(engine: Engine) -> None:
    engine.quotas.set("rep", "ann", "revenue", "2026-11", D(1000))
    engine.quotas.set("rep", "cat", "revenue", "2026-11", D(1000))
    engine.apply(won("w1", "D1", "ann", utc(2026, 11, 3), "300"))
    as_of = utc(2026, 11, 16)  # half of November gone
    ann = engine.figures("rep", "ann", "revenue", "2026-11", as_of)
    assert (ann.value, ann.target, ann.attainment, ann.pace, ann.status) == (
        D(300),
        D(1000),
        D("0.3"),
        D("0.6"),
        "behind",
    )
    assert ann.projection == D(600) and ann.gap == D(700)
    team = engine.figures("team", "dach", "revenue", "2026-11", utc(2026, 11, 10))
    assert (team.target, team.status) == (D(2000), "behind")
    team_late = engine.figures("team", "dach", "revenue", "2026-11", as_of)
    assert team_late.target == D(1000)  # cat is in us from the 15th
    assert engine.figures("team", "us", "calls", "2026-11", as_of).target is None
    with pytest.raises(ValueError):
        engine.figures("rep", "ann", "revenue", "November", as_of)


def test_catalog_metrics_without_code(tmp_path: Path, rates: Rates) -> None:
    path = tmp_path / "catalog.yaml"
    path.write_text(
        "metrics:\n"
        "  bookings: {kind: amount, event_types: [deal.won]}\n"
        "  demos: {kind: count, event_types: [demo.held]}\n"
    )
    engine = Engine(Calendar("Europe/Berlin"), MetricCatalog.load(path), rates)
    engine.apply(activity("d1", "ann", utc(2026, 11, 30, 23, 30), type_="demo.held"))
    engine.apply(activity("c1", "ann", utc(2026, 11, 30, 23, 30)))
    engine.apply(won("w1", "D1", "ann", utc(2026, 11, 30, 22, 30), "5"))
    assert engine.value("rep", "ann", "demos", "2026-12-01") == 1
    assert engine.value("rep", "ann", "bookings", "2026-11") == 5
    assert engine.value("rep", "ann", "calls", "2026-12") == 0
    assert engine.value("company", "company", "revenue", "2026-11") == 0
    assert engine.ignored == 1
