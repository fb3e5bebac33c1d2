"""One partition's tally: judging copies of an idempotency key, the duplicate window,
versioned state messages, restore."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal

import pytest

from streams.engine.catalog import MetricCatalog
from streams.engine.events import Event
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


def rep_days(t: Tally, rep: str, month: str = "2026-11") -> dict[str, dict[str, Decimal]]:
    """What this partition sends the rep's partition for the month, per day (zeros left out:
    a bucket keeps a day it once counted)."""
    days = t.out_bucket(("rep", rep), month).days.items()
    counted = {day: {m: v for m, v in values.items() if v} for day, values in days}
    return {day: values for day, values in counted.items() if values}


def ledger_credits(catalog: MetricCatalog, roster: Roster, *events: Event) -> list[CreditState]:
    """The credits a deal's ledger sends after its events pass their key's partition."""
    gate, ledger = tally(catalog, roster), tally(catalog, roster)
    credits: list[CreditState] = []
    for event in events:
        fx, out = Effects(), Effects()
        gate.admit(event, 0, fx)
        for copy in fx.copies:
            ledger.deal_copy(copy, out)
        credits.extend(out.credits)
    return credits


def test_a_copy_within_the_window_is_not_counted_but_resends_its_buckets(
    catalog: MetricCatalog, roster: Roster
) -> None:
    t = tally(catalog, roster)
    fx = Effects()
    assert t.admit(activity("c1", "ann", utc(2026, 11, 2, 9)), 1_000, fx)
    assert rep_days(t, "ann") == {"2026-11-02": {"calls": 1}}
    assert fx.buckets == {
        (("rep", "ann"), "2026-11"),
        (("team", "dach"), "2026-11"),
        (("team", "emea"), "2026-11"),
        (("company", "company"), "2026-11"),
    }
    assert list(fx.records) == ["r\x1fann\x1f2026-11-02"]
    again = Effects()
    assert not t.admit(activity("c1", "ann", utc(2026, 11, 2, 9)), 2_000, again)
    assert rep_days(t, "ann") == {"2026-11-02": {"calls": 1}}
    assert t.duplicates == 1
    assert again.buckets == fx.buckets and not again.records and not again.figures
    assert t.out_bucket(("team", "emea"), "2026-11").days == {"2026-11-02": {"calls": 1}}


def test_ids_past_the_window_are_dropped_and_a_later_copy_counts_again(
    catalog: MetricCatalog, roster: Roster
) -> None:
    t = tally(catalog, roster, window_days=2)
    t.admit(activity("c1", "ann", utc(2026, 11, 2, 9)), 0, Effects())
    t.admit(activity("c2", "bob", utc(2026, 11, 5, 9)), 3 * DAY_MS, Effects())
    fx = Effects()
    assert t.expire(fx) == 1  # ann's day, last arrival 3 days before the stream time
    assert record_doc(fx.records["r\x1fann\x1f2026-11-02"])["r"]["ids"] is None
    assert t.sizes()["dedupe_ids"] == 1
    t.admit(activity("c1", "ann", utc(2026, 11, 2, 9)), 3 * DAY_MS, Effects())
    assert rep_days(t, "ann") == {"2026-11-02": {"calls": 2}}


def test_credits_keep_the_newest_version_in_any_order(
    catalog: MetricCatalog, roster: Roster
) -> None:
    win, retraction = ledger_credits(
        catalog,
        roster,
        won("w1", "D1", "ann", utc(2026, 11, 3), "100"),
        lost("l1", "D1", "ann", utc(2026, 11, 4)),
    )
    assert retraction.values == {} and retraction.version > win.version
    for order in ([win, retraction], [retraction, win], [win, retraction, win]):
        reps = tally(catalog, roster)
        for credit in order:
            reps.credit(CreditState.from_dict(credit.to_dict()), Effects())
        assert rep_days(reps, "ann") == {}
    reps = tally(catalog, roster)
    reps.credit(win, Effects())
    assert rep_days(reps, "ann") == {"2026-11-03": {"revenue": 100, "deals_won": 1}}


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
        t.admit(activity(f"c{i}", "ann", utc(2026, 11, 2 + i % 2, 9)), i, fx)
        t.admit(won(f"w{i}", f"D{i}", "ann", utc(2026, 11, 3), "10"), i, fx)
        for copy in fx.copies:
            t.deal_copy(copy, fx)
        records.update((key, record_doc(record)) for key, record in fx.records.items())
        records |= claim_records(fx.claims)
    restored = tally(catalog, roster, epoch=2)
    for key, doc in records.items():
        restored.load(key, doc)  # type: ignore[arg-type]
    restored.loaded()

    def ledgers(t: Tally) -> dict[str, object]:
        return {d: (deal.state, deal.reps, deal.version) for d, deal in t.deals.items()}

    assert ledgers(restored) == ledgers(t)
    assert {k: (g.digest, g.deals) for k, g in restored.gates.items()} == {
        k: (g.digest, g.deals) for k, g in t.gates.items()
    }
    assert restored.sizes() == t.sizes()
    fx = Effects()
    restored.resend_all(fx)
    bucket = restored.out_bucket(("company", "company"), "2026-11")
    assert bucket.days == {"2026-11-02": {"calls": D(3)}, "2026-11-03": {"calls": D(2)}}
    assert bucket.version[0] == 2
    scopes = [("rep", "ann"), ("team", "dach"), ("team", "emea"), ("company", "company")]
    assert fx.buckets == {(s, "2026-11") for s in scopes}


def test_a_roster_change_re_attributes_past_days_at_the_next_batch(
    catalog: MetricCatalog, roster: Roster
) -> None:
    t = tally(catalog, roster)
    t.admit(activity("c1", "ann", utc(2026, 11, 2, 9)), 1_000, Effects())
    t.admit(activity("c2", "ann", utc(2026, 11, 20, 9)), 1_000, Effects())
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
    assert rep_days(t, "ann") == {"2026-11-02": {"calls": 1}, "2026-11-20": {"calls": 1}}


def test_a_new_owner_sends_every_claimed_key_even_where_attribution_moved_away(
    catalog: MetricCatalog, roster: Roster
) -> None:
    """The old owner attributed to dach and claimed it; the roster moved ann to us before the
    restore. The new owner must send dach's bucket (now empty), or dach keeps the old days."""
    old = tally(catalog, roster)
    fx = Effects()
    old.admit(activity("c1", "ann", utc(2026, 11, 2, 9)), 1_000, fx)
    records = {k: record_doc(r) for k, r in fx.records.items()}
    records |= claim_records(fx.claims)
    roster.set_team("us", "US", None)
    roster.set_assignment("ann", "Ann", "us", None)

    new = tally(catalog, roster, epoch=2)
    for key, doc in records.items():
        new.load(key, doc)
    new.loaded()
    sent = Effects()
    new.next_batch(sent)
    new.resend_all(sent)

    assert (("team", "dach"), "2026-11") in sent.buckets
    assert new.out_bucket(("team", "dach"), "2026-11").days == {}
    assert new.out_bucket(("team", "us"), "2026-11").days == {"2026-11-02": {"calls": D(1)}}
    assert (("team", "us"), "2026-11") in sent.claims


def by_digest(*copies: Event) -> list[Event]:
    return sorted(copies, key=lambda e: e.copy_digest)


def test_of_conflicting_activity_copies_the_smallest_digest_counts_in_any_order(
    catalog: MetricCatalog, roster: Roster
) -> None:
    """One key re-sent for another rep, another day and as an e-mail: exactly one counts,
    the same one whatever the order, and a replaced copy's rep bucket is emptied."""
    first = activity("c1", "ann", utc(2026, 11, 2, 9))
    copies = [
        first,
        replace(first, rep_id="bob"),
        replace(first, time=utc(2026, 11, 9, 9)),
        replace(first, type="email.sent"),
    ]
    winner = by_digest(*copies)[0]
    for order in (copies, copies[::-1], copies[1:] + copies[:1]):
        t = tally(catalog, roster)
        counted = [t.admit(copy, 0, Effects()) for copy in order]
        assert counted[order.index(winner)]
        metric = "emails" if winner.type == "email.sent" else "calls"
        day = winner.time.date().isoformat()
        for rep in ("ann", "bob"):
            assert rep_days(t, rep) == ({day: {metric: 1}} if rep == winner.rep_id else {})
        assert t.duplicates == len(copies) - sum(counted)
        assert t.sizes()["dedupe_ids"] == 1


def test_a_key_moves_between_an_activity_and_a_deal_by_digest(
    catalog: MetricCatalog, roster: Roster
) -> None:
    call = activity("k1", "ann", utc(2026, 11, 2, 9), source="crm")
    win = won("k1", "D1", "ann", utc(2026, 11, 3), "100")
    other = replace(win, deal_id="D2")
    for order in ([call, win, other], [other, win, call], [win, call, other]):
        t = tally(catalog, roster)
        told: dict[str, object] = {}
        for copy in order:
            fx = Effects()
            t.admit(copy, 0, fx)
            told |= {c.deal_id: c.event for c in fx.copies}
        best = by_digest(call, win, other)[0]
        calls = sum(v.get("calls", D(0)) for v in rep_days(t, "ann").values())
        assert calls == (1 if best is call else 0)
        for deal, event in told.items():  # every deal told ends with the winner or nothing
            assert event == (best if best.deal_id == deal else None)
        assert (best is call) or best.deal_id in told


def test_a_torn_restore_keeps_the_newest_decision(catalog: MetricCatalog, roster: Roster) -> None:
    """A better copy moved the key to another rep-day, but only the new rep-day's record was
    written before the crash: the restored tally counts the key once."""
    first = activity("c1", "ann", utc(2026, 11, 2, 9))
    worse, better = by_digest(replace(first, rep_id="bob"), first)[::-1]
    t = tally(catalog, roster)
    fx = Effects()
    t.admit(worse, 0, fx)
    records = {k: record_doc(r) for k, r in fx.records.items()} | claim_records(fx.claims)
    fx = Effects()
    assert t.admit(better, 0, fx)
    new_day = f"r\x1f{better.rep_id}\x1f2026-11-02"
    records[new_day] = record_doc(fx.records[new_day])  # the old rep-day's rewrite was lost

    restored = tally(catalog, roster, epoch=2)
    for key, doc in records.items():
        restored.load(key, doc)
    restored.loaded()
    assert rep_days(restored, better.rep_id) == {"2026-11-02": {"calls": D(1)}}
    assert rep_days(restored, worse.rep_id) == {}
    assert restored.sizes()["dedupe_ids"] == 1


def test_the_reps_partition_learns_its_latest_activity_from_rep_buckets(
    catalog: MetricCatalog, roster: Roster
) -> None:
    """Activities are counted where their key lands; the rep's own partition (which exports
    the rep's last-activity gauge) learns the time from the rep buckets, newest first."""
    judge, owner = tally(catalog, roster), tally(catalog, roster)
    fx = Effects()
    for n, hour in enumerate((9, 15, 11)):
        judge.admit(activity(f"c{n}", "ann", utc(2026, 11, 2, hour)), 0, fx)
    judge.admit(won("w1", "D1", "ann", utc(2026, 11, 2, 18), "10"), 0, fx)  # not an activity
    sent = BucketState.from_dict(judge.out_bucket(("rep", "ann"), "2026-11").to_dict())
    owner.bucket(sent, Effects())
    assert owner.last_activity == {"ann": utc(2026, 11, 2, 15).timestamp()}
    restored = tally(catalog, roster, epoch=2)
    for key, record in fx.records.items():
        restored.load(key, record_doc(record))
    restored.loaded()
    assert restored.out_bucket(("rep", "ann"), "2026-11").latest == sent.latest
