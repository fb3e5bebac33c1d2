"""Deal ledger: latest win counts once, later retractions take it back, order never matters."""

from __future__ import annotations

from decimal import Decimal
from itertools import permutations

import pytest

from streams.engine.events import Event
from streams.engine.ledger import Credit, DealState, credits, merge

from .conftest import activity, lost, utc, won


def _fold(events: list[Event]) -> DealState | None:
    state = None
    for e in events:
        state = merge(state, e)
    return state


def _credited(events: list[Event]) -> tuple[Credit, ...]:
    state = _fold(events)
    assert state is not None
    return credits(state)


W1 = won("w1", "D", "alice", utc(2026, 10, 5), "100")
L1 = lost("l1", "D", "alice", utc(2026, 10, 20))
W2 = won("w2", "D", "bob", utc(2026, 11, 3), "250")
R1 = lost("r1", "D", "bob", utc(2026, 11, 10), "deal.reopened")


@pytest.mark.parametrize(
    ("events", "expected"),
    [
        ([W1], [("alice", "100", utc(2026, 10, 5))]),
        ([W1, L1], []),
        ([W1, L1, W2], [("bob", "250", utc(2026, 11, 3))]),  # re-won later: credited again
        ([W1, L1, W2, R1], []),
        ([W1, W2], [("bob", "250", utc(2026, 11, 3))]),  # an amended win replaces the old
        ([L1], []),
        ([W2, lost("early", "D", "x", utc(2026, 9, 1))], [("bob", "250", utc(2026, 11, 3))]),
    ],
)
def test_worked_examples_in_every_arrival_order(
    events: list[Event], expected: list[tuple[str, str, object]]
) -> None:
    want = tuple(Credit(r, Decimal(a), t) for r, a, t in expected)  # type: ignore[arg-type]
    for order in permutations(events):
        assert _credited(list(order)) == want


def test_equal_times_are_ordered_by_id() -> None:
    t = utc(2026, 11, 1, 9)
    assert _credited([won("a", "D", "x", t, "5"), lost("b", "D", "x", t)]) == ()
    assert _credited([won("b", "D", "x", t, "5"), lost("a", "D", "x", t)]) == (
        Credit("x", Decimal(5), t),
    )
    first, second = won("a", "D", "x", t, "5"), won("b", "D", "y", t, "7")
    assert _credited([second, first]) == _credited([first, second]) == (Credit("y", Decimal(7), t),)


def test_split_parts_sum_exactly_with_remainder_to_last_rep() -> None:
    t = utc(2026, 11, 1)
    deal = won("w", "D", "x", t, "100.00", {"zoe": "0.3334", "amy": "0.3333", "bob": "0.3333"})
    parts = _credited([deal])
    assert [c.rep_id for c in parts] == ["amy", "bob", "zoe"]
    assert [c.amount for c in parts] == [
        Decimal("33.330000"),
        Decimal("33.330000"),
        Decimal("33.340000"),
    ]
    assert [c.share for c in parts] == [Decimal("0.3333"), Decimal("0.3333"), Decimal("0.3334")]
    assert sum(c.amount for c in parts) == Decimal("100.00")


def test_rounded_products_still_sum_to_the_whole() -> None:
    amount = "25446067614772125637216482.29"  # 28 digits: the share products get rounded
    shares = {"a": "0.3333", "b": "0.3333", "c": "0.3334"}
    naive = sum(Decimal(amount) * Decimal(s) for s in shares.values())
    assert naive != Decimal(amount)  # the pitfall the remainder rule avoids
    parts = _credited([won("w", "D", "x", utc(2026, 11, 1), amount, shares)])
    assert sum((c.amount for c in parts), Decimal(0)) == Decimal(amount)
    assert parts[0].amount == parts[1].amount == Decimal(amount) * Decimal("0.3333")


def test_merge_is_idempotent_and_commutative() -> None:
    events = [W1, L1, W2, R1]
    state = None
    for e in events:
        nxt = merge(state, e)
        assert merge(nxt, e) == nxt
        state = nxt
    assert _fold([R1, W2, L1, W1]) == state


def test_state_round_trips_through_json_friendly_dict() -> None:
    split = won("w", "D", "x", utc(2026, 11, 1), "10", {"a": "0.5", "b": "0.5"})
    for state in (_fold([split, L1]), _fold([W1]), _fold([L1])):
        assert state is not None
        assert DealState.from_dict(state.to_dict()) == state


def test_merge_refuses_other_deals_and_activities() -> None:
    state = merge(None, W1)
    with pytest.raises(ValueError):
        merge(state, won("x", "OTHER", "a", utc(2026, 1, 1), "1"))
    with pytest.raises(ValueError):
        merge(state, activity("c", "a", utc(2026, 1, 1)))
