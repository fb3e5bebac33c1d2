"""A generated organisation and event stream full of the cases that make numbers go wrong.

Duplicates (identical bytes re-sent), conflicting copies (one source and id re-sent for another
rep, day, type, deal or amount), shuffled arrival, deal amendments (a later deal.won with
another amount, time or split), retractions (lost, reopened) and re-wins, split credit, reps
transferred mid-period, an explicit team quota beside summed ones, a mid-period quota change,
events of a type no metric counts, and malformed messages of every kind the ingest rejects.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from streams.engine.events import Event
from streams.engine.imports import QuotaRow, RosterRow, TeamRow

START = datetime(2026, 10, 1, tzinfo=UTC)
END = datetime(2026, 11, 20, tzinfo=UTC)
#: The instant every comparison is made at (fixed, so expected/pace are reproducible).
AS_OF = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
#: The API's ``as_of`` is day-granular: asked ``AS_OF`` it answers as of the end of its day (the
#: test calendar is UTC), counting the credit dated before that instant.
AS_OF_CUT = datetime(2026, 11, 22, tzinfo=UTC)
TRANSFER_AT = datetime(2026, 11, 1, tzinfo=UTC)

TEAMS = [
    ("emea", "EMEA", None),
    ("amer", "Americas", None),
    ("emea-north", "EMEA North", "emea"),
    ("emea-south", "EMEA South", "emea"),
    ("amer-east", "Americas East", "amer"),
]
ACTIVITY_TYPES = ["call.completed", "email.sent", "meeting.held", "proposal.sent"]


@dataclass
class Scenario:
    teams: list[TeamRow] = field(default_factory=list)
    roster: list[RosterRow] = field(default_factory=list)
    quotas: list[QuotaRow] = field(default_factory=list)
    #: Valid events in send order (duplicates included), as the bytes sent.
    events: list[bytes] = field(default_factory=list)
    #: Malformed messages and the error code each must be dead-lettered with.
    malformed: list[tuple[bytes, str]] = field(default_factory=list)

    @property
    def reps(self) -> list[str]:
        return sorted({r.rep_id for r in self.roster})


def _event(kind: str, n: int, when: datetime, data: dict[str, Any], source: str) -> dict[str, Any]:
    return {
        "specversion": "1.0",
        "id": f"{kind}-{n}",
        "source": source,
        "type": kind,
        "time": when.isoformat(),
        "data": data,
    }


def _when(rng: random.Random) -> datetime:
    span = (END - START).total_seconds()
    return START + timedelta(seconds=int(rng.random() * span))


def _conflicting(
    rng: random.Random, event: dict[str, Any], reps: list[str], deals: int
) -> dict[str, Any]:
    """A copy of ``event`` (same source and id) that carries something else."""
    copy = json.loads(json.dumps(event))
    data = copy["data"]
    change = rng.choice(["rep", "day", "type", "deal", "deal"])
    if change == "rep":
        data["rep_id"] = rng.choice(reps)
    elif change == "day":
        later = datetime.fromisoformat(copy["time"]) + timedelta(days=rng.randrange(1, 8))
        copy["time"] = min(later, END).isoformat()
    elif change == "type" and "deal_id" in data:  # the key re-sent as an activity
        copy["type"], copy["data"] = "call.completed", {"rep_id": data["rep_id"]}
    elif change == "type":
        copy["type"] = rng.choice([t for t in ACTIVITY_TYPES if t != copy["type"]])
    elif "deal_id" in data:  # another deal, or the same one for another amount
        if rng.random() < 0.5 or "amount" not in data:
            data["deal_id"] = f"D{rng.randrange(deals)}"
        else:
            data["amount"] = f"{rng.randrange(100, 20000)}"
    else:
        data["rep_id"] = rng.choice(reps)
    return copy


def conflict_kinds(events: list[Event]) -> set[str]:
    """What conflicting copies of one (source, id) differ in, over decoded ``events``."""
    copies: dict[tuple[str, str], set[Event]] = {}
    for e in events:
        copies.setdefault(e.key, set()).add(replace(e, data=None))
    kinds: set[str] = set()
    for found in copies.values():
        for a in found:
            for b in found - {a}:
                kinds |= {"rep"} if a.rep_id != b.rep_id else set()
                kinds |= {"day"} if a.time.date() != b.time.date() else set()
                kinds |= {"type"} if a.type != b.type else set()
                kinds |= {"deal"} if None is not a.deal_id != b.deal_id is not None else set()
                kinds |= {"amount"} if None is not a.amount != b.amount is not None else set()
                kinds |= {"deal/activity"} if (a.deal_id is None) != (b.deal_id is None) else set()
    return kinds


def generate(
    seed: int = 7, reps_per_team: int = 3, activities: int = 2000, deals: int = 250
) -> Scenario:
    rng = random.Random(seed)
    sc = Scenario()
    sc.teams = [TeamRow(t, n, p) for t, n, p in TEAMS]
    leaf_teams = [t for t, _, p in TEAMS if p is not None]
    reps: list[str] = []
    for team in leaf_teams:
        for i in range(reps_per_team):
            rep = f"{team}-rep{i}"
            reps.append(rep)
            sc.roster.append(RosterRow(rep, f"Rep {rep}", team, None))
    # Two transfers on TRANSFER_AT: credit before stays with the old team.
    sc.roster.append(RosterRow(reps[0], f"Rep {reps[0]}", "amer-east", TRANSFER_AT))
    sc.roster.append(RosterRow(reps[-1], f"Rep {reps[-1]}", "emea-south", TRANSFER_AT))
    for rep in reps:
        for metric, period, target in (
            ("revenue", "2026-Q4", 60000 + rng.randrange(0, 40000)),
            ("revenue", "2026-11", 20000 + rng.randrange(0, 10000)),
            ("calls", "2026-Q4", 150 + rng.randrange(0, 100)),
            ("calls", "2026-11", 60),
            ("deals_won", "2026-Q4", 8),
            ("meetings", "2026-W46", 3),
        ):
            sc.quotas.append(QuotaRow("rep", rep, metric, period, Decimal(target), None))
    # A mid-period raise for one rep, an explicit team target and a company target.
    sc.quotas.append(QuotaRow("rep", reps[1], "revenue", "2026-Q4", Decimal(150000), TRANSFER_AT))
    sc.quotas.append(QuotaRow("team", "emea-north", "revenue", "2026-Q4", Decimal(250000), None))
    sc.quotas.append(QuotaRow("company", "company", "calls", "2026-Q4", Decimal(2500), None))

    events: list[dict[str, Any]] = []
    for n in range(activities):
        kind = rng.choice(ACTIVITY_TYPES + ["call.completed"] * 3)
        events.append(_event(kind, n, _when(rng), {"rep_id": rng.choice(reps)}, "dialer.test"))
    for n in range(40):  # accepted, kept in history, counted toward nothing
        events.append(
            _event("note.created", n, _when(rng), {"rep_id": rng.choice(reps)}, "crm.test")
        )
    for n in range(deals):
        deal_id = f"D{n}"
        owner = rng.choice(reps)
        won_at = _when(rng)
        data: dict[str, Any] = {
            "rep_id": owner,
            "deal_id": deal_id,
            "amount": f"{rng.randrange(100, 20000)}.{rng.randrange(0, 100):02d}",
            "currency": rng.choice(["USD", "USD", "EUR", "GBP"]),
        }
        if rng.random() < 0.25:
            partner = rng.choice([r for r in reps if r != owner])
            third = rng.choice([r for r in reps if r not in (owner, partner)])
            data["splits"] = rng.choice(
                [
                    [{"rep_id": owner, "share": "0.5"}, {"rep_id": partner, "share": "0.5"}],
                    [
                        {"rep_id": owner, "share": 0.6},
                        {"rep_id": partner, "share": "0.3"},
                        {"rep_id": third, "share": "0.1"},
                    ],
                    [{"rep_id": owner, "share": "0.3333"}, {"rep_id": partner, "share": "0.6667"}],
                ]
            )
        events.append(_event("deal.won", n, won_at, data, "crm.test"))
        roll = rng.random()
        if roll < 0.15:  # amendment: a later won with another amount (and maybe no split)
            amended = dict(data, amount=f"{rng.randrange(100, 30000)}")
            amended.pop("splits", None)
            later = won_at + timedelta(days=rng.randrange(0, 20))
            events.append(_event("deal.won", n + 10_000, min(later, END), amended, "crm.test"))
        elif roll < 0.25:  # lost after the win: retracted
            events.append(
                _event(
                    "deal.lost",
                    n,
                    won_at + timedelta(hours=rng.randrange(1, 200)),
                    {"rep_id": owner, "deal_id": deal_id},
                    "crm.test",
                )
            )
        elif roll < 0.32:  # reopened, then won again later
            reopened = won_at + timedelta(hours=rng.randrange(1, 100))
            events.append(
                _event(
                    "deal.reopened", n, reopened, {"rep_id": owner, "deal_id": deal_id}, "crm.test"
                )
            )
            events.append(
                _event(
                    "deal.won",
                    n + 20_000,
                    reopened + timedelta(days=2),
                    dict(data, amount="999.99"),
                    "crm.test",
                )
            )
        elif roll < 0.36:  # a stale lost from before the win: changes nothing
            events.append(
                _event(
                    "deal.lost",
                    n,
                    won_at - timedelta(hours=5),
                    {"rep_id": owner, "deal_id": deal_id},
                    "crm.test",
                )
            )

    conflicting = [_conflicting(rng, e, reps, deals) for e in rng.sample(events, len(events) // 20)]
    encoded = [json.dumps(e).encode() for e in events + conflicting]
    duplicates = rng.sample(encoded, k=len(encoded) // 10)
    sc.events = encoded + duplicates
    rng.shuffle(sc.events)
    sc.malformed = [
        (b"\xff\xfe not utf-8", "not_utf8"),
        (b"{not json", "not_json"),
        (
            json.dumps(
                {
                    "specversion": "1.0",
                    "id": "x1",
                    "source": "s",
                    "type": "call.completed",
                    "time": "2026-11-01T10:00:00Z",
                    "data": {},
                }
            ).encode(),
            "schema",
        ),
        (
            json.dumps(
                _event("call.completed", 1, START, {"rep_id": reps[0]}, "bad.test")
                | {"time": "2026-11-01 10:00"}
            ).encode(),
            "bad_time",
        ),
        (
            json.dumps(
                _event(
                    "deal.won",
                    900001,
                    START,
                    {"rep_id": reps[0], "deal_id": "X1", "amount": "-5", "currency": "USD"},
                    "bad.test",
                )
            ).encode(),
            "bad_amount",
        ),
        (
            json.dumps(
                _event(
                    "deal.won",
                    900002,
                    START,
                    {
                        "rep_id": reps[0],
                        "deal_id": "X2",
                        "amount": "10",
                        "currency": "USD",
                        "splits": [
                            {"rep_id": reps[0], "share": "0.5"},
                            {"rep_id": reps[1], "share": "0.4"},
                        ],
                    },
                    "bad.test",
                )
            ).encode(),
            "bad_splits",
        ),
        (
            json.dumps(
                _event(
                    "deal.won",
                    900003,
                    START,
                    {"rep_id": reps[0], "deal_id": "X3", "amount": "10", "currency": "XYZ"},
                    "bad.test",
                )
            ).encode(),
            "unknown_currency",
        ),
        (
            json.dumps(
                _event(
                    "call.completed",
                    900004,
                    START,
                    {"rep_id": reps[0], "pad": "x" * 70_000},
                    "bad.test",
                )
            ).encode(),
            "too_large",
        ),
    ]
    return sc
