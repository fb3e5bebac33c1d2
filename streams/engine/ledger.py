"""The deal ledger: what a deal counts for, whatever order its events arrive in.

A deal's state is a join-semilattice: the latest ``deal.won`` and the latest retraction
(``deal.lost``/``deal.reopened``), each by its *rank*. ``merge`` keeps the larger rank of
each, so it is commutative, associative and idempotent, and any permutation of the same
events (with duplicates) ends in the same state — that is what makes replays, backfills and
out-of-order CRMs give exactly the same figures.

Ordering ("later") is by event time; equal times are broken by event ``id`` (then
``source``): of two events at the same instant, the one with the larger id is the later.
A deal is credited iff it has a win and no retraction later than that win; a later win
credits it again (for that win's amount, splits and period).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from streams.engine.catalog import DEAL_WON, RETRACTION_TYPES
from streams.engine.events import Event, Split
from streams.engine.instants import epoch_us, format_instant, parse_instant
from streams.engine.money import decimal_text

Rank = tuple[Any, ...]


@dataclass(frozen=True, slots=True)
class Won:
    """The win in force: the latest ``deal.won``."""

    time: datetime
    source: str
    id: str
    rep_id: str
    amount_base: Decimal
    splits: tuple[Split, ...] | None

    @property
    def rank(self) -> Rank:
        # (time, id, source) orders wins; the rest only makes the order total, so that two
        # conflicting events with one key still merge commutatively.
        return (
            epoch_us(self.time),
            self.id,
            self.source,
            decimal_text(self.amount_base),
            self.rep_id,
            tuple((s.rep_id, decimal_text(s.share)) for s in self.splits or ()),
        )


@dataclass(frozen=True, slots=True)
class Retraction:
    """The latest ``deal.lost``/``deal.reopened``."""

    time: datetime
    source: str
    id: str
    type: str

    @property
    def rank(self) -> Rank:
        return (epoch_us(self.time), self.id, self.source, self.type)


@dataclass(frozen=True, slots=True)
class DealState:
    deal_id: str
    won: Won | None = None
    retracted: Retraction | None = None

    def to_dict(self) -> dict[str, Any]:
        won, ret = self.won, self.retracted
        return {
            "deal_id": self.deal_id,
            "won": None
            if won is None
            else {
                "time": format_instant(won.time),
                "source": won.source,
                "id": won.id,
                "rep_id": won.rep_id,
                "amount_base": decimal_text(won.amount_base),
                "splits": None
                if won.splits is None
                else [{"rep_id": s.rep_id, "share": decimal_text(s.share)} for s in won.splits],
            },
            "retracted": None
            if ret is None
            else {
                "time": format_instant(ret.time),
                "source": ret.source,
                "id": ret.id,
                "type": ret.type,
            },
        }

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> DealState:
        w, r = doc["won"], doc["retracted"]
        won = ret = None
        if w is not None:
            splits = w["splits"]
            if splits is not None:
                splits = tuple(Split(s["rep_id"], Decimal(s["share"])) for s in splits)
            won = Won(
                _instant(w["time"]),
                w["source"],
                w["id"],
                w["rep_id"],
                Decimal(w["amount_base"]),
                splits,
            )
        if r is not None:
            ret = Retraction(_instant(r["time"]), r["source"], r["id"], r["type"])
        return cls(doc["deal_id"], won, ret)


@dataclass(frozen=True, slots=True)
class Credit:
    """A rep's part of a credited deal: ``share`` of it, ``amount`` in base currency, at the
    win's time."""

    rep_id: str
    amount: Decimal
    time: datetime
    share: Decimal = Decimal(1)


def merge(state: DealState | None, event: Event) -> DealState:
    """Join ``event`` into ``state`` (None = deal never seen). Non-deal events are a bug."""
    if event.deal_id is None or (state is not None and state.deal_id != event.deal_id):
        raise ValueError(f"event {event.key} is not about deal {state and state.deal_id}")
    if state is None:
        state = DealState(event.deal_id)
    if event.type == DEAL_WON:
        if event.amount_base is None:
            raise ValueError(f"deal.won {event.key} has no base amount")
        won = Won(event.time, event.source, event.id, event.rep_id, event.amount_base, event.splits)
        if state.won is None or won.rank > state.won.rank:
            return DealState(state.deal_id, won, state.retracted)
        return state
    if event.type in RETRACTION_TYPES:
        ret = Retraction(event.time, event.source, event.id, event.type)
        if state.retracted is None or ret.rank > state.retracted.rank:
            return DealState(state.deal_id, state.won, ret)
        return state
    raise ValueError(f"{event.type} is not a deal event type")


def is_credited(state: DealState) -> bool:
    """Won, and not retracted by anything later than that win (ties: larger id is later)."""
    won, ret = state.won, state.retracted
    if won is None:
        return False
    return ret is None or ret.rank[:3] <= won.rank[:3]


def credits(state: DealState) -> tuple[Credit, ...]:
    """Who gets how much of the deal, in rep_id order; empty if not credited.

    Shares multiply exactly; the last rep (in rep_id order) gets the amount minus the
    others' parts, so the parts always sum to the whole even if a product was rounded
    at Decimal's 28 significant digits.
    """
    won = state.won
    if won is None or not is_credited(state):
        return ()
    if won.splits is None:
        return (Credit(won.rep_id, won.amount_base, won.time),)
    ordered = sorted(won.splits, key=lambda s: s.rep_id)
    parts = [Credit(s.rep_id, won.amount_base * s.share, won.time, s.share) for s in ordered[:-1]]
    rest = won.amount_base - sum((c.amount for c in parts), Decimal(0))
    parts.append(Credit(ordered[-1].rep_id, rest, won.time, ordered[-1].share))
    return tuple(parts)


def _instant(text: str) -> datetime:
    t = parse_instant(text)
    if t is None:
        raise ValueError(f"bad instant {text!r}")
    return t
