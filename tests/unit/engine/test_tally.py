"""One partition's tally: the duplicate window, versioned state messages, restore."""

from __future__ import annotations

from decimal import Decimal

import pytest

from streams.engine.catalog import MetricCatalog
from streams.engine.periods import Calendar
from streams.engine.roster import Roster
from streams.engine.tally import (
    BucketState,
    CreditState,
    Effects,
    Tally,
    claim_records,
    record_doc,
)

from .conftest import activity, lost, utc, won

DAY_MS = 86_400_000
D = Decimal


@pytest.fixture
def roster() -> Roster:
    r = Roster()
    r.set_team("emea", "EMEA", None)
    r.set_team("dach", "DACH", "emea")
    r.set_assignment("ann", "Ann", "dach", None)
    return r


def tally(catalog: MetricCatalog, roster: Roster, window_days: int = 30, epoch: int = 1) -> Tally:
    return Tally(0, Calendar(), catalog, roster, window_ms=window_days * DAY_MS, epoch=epoch)


def test_a_copy_within_the_window_is_not_counted_but_resends_its_buckets(
    catalog: MetricCatalog, roster: Roster
) -> None:
    t = tally(catalog, roster)
    fx = Effects()
    t.activity(activity("c1", "ann", utc(2026, 11, 2, 9)), 1_000, fx)
    assert t.value(("rep", "ann"), "calls", "2026-11") == 1
    assert fx.buckets == {
        (("team", "dach"), "2026-11"),
        (("team", "emea"), "2026-11"),
        (("company", "company"), "2026-11"),
    }
    assert list(fx.records) == ["r\x1fann\x1f2026-11-02"]
    again = Effects()
    t.activity(activity("c1", "ann", utc(2026, 11, 2, 9)), 2_000, again)
    assert t.value(("rep", "ann"), "calls", "2026-11") == 1
    assert t.duplicates == 1
    assert again.buckets == fx.buckets and not again.records and not again.figures
    assert t.out_bucket(("team", "emea"), "2026-11").days == {"2026-11-02": {"calls": 1}}


def test_ids_past_the_window_are_dropped_and_a_later_copy_counts_again(
    catalog: MetricCatalog, roster: Roster
) -> None:
    t = tally(catalog, roster, window_days=2)
    t.activity(activity("c1", "ann", utc(2026, 11, 2, 9)), 0, Effects())
    t.activity(activity("c2", "bob", utc(2026, 11, 5, 9)), 3 * DAY_MS, Effects())
    fx = Effects()
    assert t.expire(fx) == 1  # ann's day, last arrival 3 days before the stream time
    assert record_doc(fx.records["r\x1fann\x1f2026-11-02"])["r"]["ids"] is None
    assert t.sizes()["dedupe_ids"] == 1
    t.activity(activity("c1", "ann", utc(2026, 11, 2, 9)), 3 * DAY_MS, Effects())
    assert t.value(("rep", "ann"), "calls", "2026-11-02") == 2


def test_credits_keep_the_newest_version_in_any_order(
    catalog: MetricCatalog, roster: Roster
) -> None:
    deals = tally(catalog, roster)
    first, second = Effects(), Effects()
    deals.deal_event(won("w1", "D1", "ann", utc(2026, 11, 3), "100"), first)
    deals.deal_event(lost("l1", "D1", "ann", utc(2026, 11, 4)), second)
    (win,), (retraction,) = first.credits, second.credits
    assert retraction.values == {} and retraction.version > win.version
    for order in ([win, retraction], [retraction, win], [win, retraction, win]):
        reps = tally(catalog, roster)
        for credit in order:
            reps.credit(CreditState.from_dict(credit.to_dict()), Effects())
        assert reps.value(("rep", "ann"), "revenue", "2026-11") == 0
    reps = tally(catalog, roster)
    reps.credit(win, Effects())
    assert reps.value(("rep", "ann"), "revenue", "2026-Q4") == 100
    assert reps.value(("rep", "ann"), "deals_won", "2026") == 1


def test_buckets_keep_the_newest_version_per_origin_and_month(
    catalog: MetricCatalog, roster: Roster
) -> None:
    t = tally(catalog, roster)
    team = ("team", "dach")
    newer = BucketState(team, 3, "2026-11", (2, 1), {"2026-11-02": {"calls": D(5)}})
    older = BucketState(
        team, 3, "2026-11", (1, 9), {"2026-11-02": {"calls": D(7)}, "2026-11-20": {"calls": D(2)}}
    )
    other = BucketState(team, 1, "2026-11", (1, 1), {"2026-11-02": {"calls": D(1)}})
    for bucket in (older, newer, other, older, newer):
        t.bucket(BucketState.from_dict(bucket.to_dict()), Effects())
    assert t.value(team, "calls", "2026-11") == 6  # the newer state has no 20th any more
    assert t.value(team, "calls", "2026-W45") == 6
    assert t.value(team, "calls", "2026-11-20") == 0


def test_restore_from_records_gives_the_same_sums(catalog: MetricCatalog, roster: Roster) -> None:
    t = tally(catalog, roster)
    records: dict[str, dict[str, object]] = {}
    for i in range(5):
        fx = Effects()
        t.activity(activity(f"c{i}", "ann", utc(2026, 11, 2 + i % 2, 9)), i, fx)
        t.deal_event(won(f"w{i}", f"D{i}", "ann", utc(2026, 11, 3), "10"), fx)
        records.update((key, record_doc(record)) for key, record in fx.records.items())
    restored = tally(catalog, roster, epoch=2)
    for key, doc in records.items():
        restored.load(key, doc)  # type: ignore[arg-type]
    assert restored.value(("rep", "ann"), "calls", "2026-11") == 5
    assert restored.deals == t.deals
    fx = Effects()
    restored.resend_all(fx)
    bucket = restored.out_bucket(("company", "company"), "2026-11")
    assert bucket.days == {"2026-11-02": {"calls": D(3)}, "2026-11-03": {"calls": D(2)}}
    assert bucket.version[0] == 2
    scopes = [("team", "dach"), ("team", "emea"), ("company", "company")]
    assert fx.buckets == {(s, "2026-11") for s in scopes}


def test_a_roster_change_re_attributes_past_days_at_the_next_batch(
    catalog: MetricCatalog, roster: Roster
) -> None:
    t = tally(catalog, roster)
    t.activity(activity("c1", "ann", utc(2026, 11, 2, 9)), 1_000, Effects())
    t.activity(activity("c2", "ann", utc(2026, 11, 20, 9)), 1_000, Effects())
    roster.set_team("us", "US", None)
    roster.set_assignment("ann", "Ann", "us", utc(2026, 11, 10))
    assert t.roster_changed

    fx = Effects()
    t.next_batch(fx)

    assert not t.roster_changed
    team = {s: t.out_bucket(s, "2026-11").days for s in (("team", "dach"), ("team", "us"))}
    assert team == {
        ("team", "dach"): {"2026-11-02": {"calls": D(1)}},
        ("team", "us"): {"2026-11-20": {"calls": D(1)}},
    }
    assert (("team", "dach"), "2026-11") in fx.buckets  # moved away from: sent again
    assert fx.claims == {(("team", "us"), "2026-11")}  # first bucket: claimed first
    assert t.value(("rep", "ann"), "calls", "2026-11") == 2


def test_a_new_owner_sends_every_claimed_key_even_where_attribution_moved_away(
    catalog: MetricCatalog, roster: Roster
) -> None:
    """The old owner attributed to dach and claimed it; the roster moved ann to us before the
    restore. The new owner must send dach's bucket (now empty), or dach keeps the old days."""
    old = tally(catalog, roster)
    fx = Effects()
    old.activity(activity("c1", "ann", utc(2026, 11, 2, 9)), 1_000, fx)
    records = {k: record_doc(r) for k, r in fx.records.items()}
    records |= claim_records(fx.claims)
    roster.set_team("us", "US", None)
    roster.set_assignment("ann", "Ann", "us", None)

    new = tally(catalog, roster, epoch=2)
    for key, doc in records.items():
        new.load(key, doc)
    sent = Effects()
    new.next_batch(sent)
    new.resend_all(sent)

    assert (("team", "dach"), "2026-11") in sent.buckets
    assert new.out_bucket(("team", "dach"), "2026-11").days == {}
    assert new.out_bucket(("team", "us"), "2026-11").days == {"2026-11-02": {"calls": D(1)}}
    assert (("team", "us"), "2026-11") in sent.claims
