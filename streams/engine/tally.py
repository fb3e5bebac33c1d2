"""The tally of one partition: day buckets that make every figure, kept so that re-delivery,
replay and reordering are harmless by construction.

The pipeline partitions everything by key: events by idempotency key, deals by deal, reps,
teams and the company by scope. Partition ``p`` holds

* **rep-days** ``(rep, day)`` of the activities whose keys it judges: the copy that counts per
  idempotency key (its digest and type; the duplicate window) and the counts per metric. One
  record, so keys and counts never disagree;
* **gates**: each idempotency key a deal event copy ever counted for, the winning copy and
  every deal it told. Of all copies of a key, the one with the smallest digest counts
  (``Event.copy_digest``), so which one does not depend on arrival order; a better copy
  arriving later un-counts the one before (an activity here, a deal event at its ledger);
* **deals**: each deal's ledger (``streams.engine.ledger``) of the copies that count for it,
  and every rep it ever credited;
* **deal credits** ``(rep, deal)``: what a deal gives a rep, versioned by the deal's copies
  (their number, then their digests: every change makes a newer version);
* **buckets** ``(scope, origin partition, month)``: what partition ``origin`` adds to a rep, a
  team or the company on each day of that month, versioned by ``(origin epoch, batch
  sequence)``. A month per message keeps the messages few when a batch spans many days (a
  backfill) and small enough to carry the whole month's state;
* **claims**: every (scope, month) this partition ever sent buckets for. A new owner restores
  the state but not the roster the old one attributed it with, so it sends every claimed key
  again (emptied where the attribution moved away). Claims are made durable before the
  buckets they name are sent.

Between partitions only *state* travels: the copy of a key that counts for a deal, a deal's
current credit to a rep, a partition's current buckets for a scope and month. A receiver keeps
the newest version per key, so a message applied twice, late or out of order changes nothing.
Period figures are sums of day buckets (kept per label as the buckets change). Which team a
rep-day or credit counts for is not stored: outgoing buckets are a function of the state and
the roster, made again whenever the roster changed (``next_batch``), so a late roster change
re-attributes the past. Nothing here does I/O; ``streams.pipeline`` moves the messages and
persists the records.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

from streams.engine.catalog import DEAL_TYPES, MetricCatalog
from streams.engine.errors import Invalid
from streams.engine.events import Event
from streams.engine.instants import format_instant, parse_instant
from streams.engine.ledger import DealState, credits, merge
from streams.engine.money import decimal_text
from streams.engine.periods import Calendar, Period
from streams.engine.rollup import team_of_day
from streams.engine.roster import Roster
from streams.engine.scopes import Scope, lineage

SEP = "\x1f"
#: What parsing a malformed internal message (``CreditState``/``BucketState``/records) raises.
MALFORMED = (ValueError, KeyError, TypeError, ArithmeticError, IndexError)
_ZERO = Decimal(0)
_DAY_MS = 86_400_000

Values = dict[str, Decimal]  # metric -> amount
Version = tuple[int, int]  # a deal credit's: (copies, -sum of their digests), see Deal.version
#: A team bucket's key: (team or company scope, origin partition, month of its days).
BucketKey = tuple[Scope, int, str]


# --- messages between partitions -------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class CreditState:
    """A deal's current credit to one rep; ``time`` None and no values once it credits none."""

    rep_id: str
    deal_id: str
    version: Version
    time: datetime | None
    values: Values

    def to_dict(self) -> dict[str, Any]:
        return {
            "rep": self.rep_id,
            "deal": self.deal_id,
            "v": self.version,
            "t": None if self.time is None else format_instant(self.time),
            "values": {m: decimal_text(a) for m, a in self.values.items()},
        }

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> CreditState:
        count, digests = doc["v"]  # (copies, -sum of their digests): see Deal.version
        return cls(
            doc["rep"],
            doc["deal"],
            (int(count), int(digests)),
            None if doc["t"] is None else _instant(doc["t"]),
            {m: Decimal(a) for m, a in doc["values"].items()},
        )


@dataclass(frozen=True, slots=True)
class BucketState:
    """Partition ``origin``'s current totals for scope ``scope`` on each day of ``month``; for
    a rep, ``latest`` is the time (epoch seconds) of the latest activity counted there."""

    scope: Scope
    origin: int
    month: str
    version: tuple[int, int]
    days: dict[str, Values]
    latest: float = 0.0

    @property
    def key(self) -> BucketKey:
        return (self.scope, self.origin, self.month)

    def to_dict(self) -> dict[str, Any]:
        return {
            "scope": list(self.scope),
            "origin": self.origin,
            "month": self.month,
            "v": list(self.version),
            "days": {
                day: {m: decimal_text(a) for m, a in values.items()}
                for day, values in self.days.items()
            },
            "l": self.latest,
        }

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> BucketState:
        e, s = doc["v"]
        kind, scope_id = doc["scope"]
        return cls(
            (kind, scope_id),
            int(doc["origin"]),
            doc["month"],
            (int(e), int(s)),
            {
                day: {m: Decimal(a) for m, a in values.items()}
                for day, values in doc["days"].items()
            },
            float(doc.get("l", 0.0)),
        )


@dataclass(frozen=True, slots=True)
class CopyState:
    """Which copy of idempotency key ``key`` counts for deal ``deal_id``: ``event``, or None
    once a copy with a smaller digest (``digest``, that copy's) counts elsewhere or not at
    all. The winning digest only ever gets smaller, so a smaller digest is the newer state."""

    deal_id: str
    key: str
    digest: int
    event: Event | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "deal": self.deal_id,
            "key": self.key,
            "digest": self.digest,
            "event": None if self.event is None else self.event.to_json().decode(),
        }

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> CopyState:
        event = doc["event"]
        return cls(
            doc["deal"],
            doc["key"],
            int(doc["digest"]),
            None if event is None else Event.from_json(event.encode()),
        )


# --- state -----------------------------------------------------------------------------------
@dataclass(slots=True)
class RepDay:
    """A rep's activities on one day: the copy that counts per idempotency key, as (digest,
    event type), None once past the window; counts per metric; ``at`` is the latest arrival
    (Kafka timestamp, ms), ``last`` the latest event time counted (epoch seconds)."""

    ids: dict[str, tuple[int, str]] | None
    counts: dict[str, int]
    at: int
    last: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "ids": None if self.ids is None else {k: list(v) for k, v in sorted(self.ids.items())},
            "c": dict(sorted(self.counts.items())),
            "at": self.at,
            "t": self.last,
        }

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> RepDay:
        ids = doc["ids"]
        counts: dict[str, int] = {metric: int(n) for metric, n in doc.get("c", {}).items()}
        for row in doc.get("n", ()):  # written before team attribution was derived
            counts[row[-2]] = counts.get(row[-2], 0) + int(row[-1])
        if isinstance(ids, list):  # written before copies were told apart: those always win
            ids = {k: (0, "") for k in ids}
        elif ids is not None:
            ids = {k: (int(d), t) for k, (d, t) in ids.items()}
        return cls(ids, counts, int(doc["at"]), float(doc.get("t", 0.0)))


@dataclass(slots=True)
class Gate:
    """An idempotency key some deal event copy ever counted for: the winning copy's digest,
    that copy if it is a deal event (None if an activity copy won), and every deal told."""

    digest: int
    event: Event | None
    deals: set[str]

    def to_dict(self) -> dict[str, Any]:
        return {
            "digest": self.digest,
            "event": None if self.event is None else self.event.to_json().decode(),
            "deals": sorted(self.deals),
        }

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> Gate:
        event = doc["event"]
        return cls(
            int(doc["digest"]),
            None if event is None else Event.from_json(event.encode()),
            set(doc["deals"]),
        )


@dataclass(slots=True)
class Deal:
    """A deal's ledger: the copy that counts per idempotency key of its events (None where a
    copy elsewhere won) and every rep the deal ever credited (they get a zero credit once it
    no longer does). ``state`` is the ledger of the present copies."""

    copies: dict[str, tuple[int, Event | None]]
    reps: set[str]
    state: DealState

    @classmethod
    def new(cls, deal_id: str) -> Deal:
        return cls({}, set(), DealState(deal_id))

    def settle(self) -> None:
        """The ledger of the present copies again (a copy may have left: no merge undoes)."""
        state = DealState(self.state.deal_id)
        for _, event in self.copies.values():
            if event is not None:
                state = merge(state, event)
        self.state = state

    @property
    def version(self) -> Version:
        """Grows with every change: a copy is added, or a key's copy is replaced by one with a
        smaller digest; so the newest credit state always supersedes the ones before."""
        return (len(self.copies), -sum(digest for digest, _ in self.copies.values()))

    def to_dict(self) -> dict[str, Any]:
        return {
            "copies": {
                key: [digest, None if event is None else event.to_json().decode()]
                for key, (digest, event) in sorted(self.copies.items())
            },
            "reps": sorted(self.reps),
        }

    @classmethod
    def from_dict(cls, deal_id: str, doc: dict[str, Any]) -> Deal:
        copies = {
            key: (int(digest), None if raw is None else Event.from_json(raw.encode()))
            for key, (digest, raw) in doc["copies"].items()
        }
        deal = cls(copies, set(doc["reps"]), DealState(deal_id))
        deal.settle()
        return deal


@dataclass(slots=True)
class Credit:
    """A deal credit as the rep's partition holds it (its day decided on arrival)."""

    version: Version
    day: str
    values: Values


@dataclass(slots=True)
class Effects:
    """What applying messages asks the shell to do: persist records, send state onward, and
    publish the figures that changed."""

    #: Changelog records to write (key -> state, serialised once per batch by ``record_doc``).
    records: dict[str, Any] = field(default_factory=dict)
    #: Deal credits for reps (sent to the rep's partition).
    credits: list[CreditState] = field(default_factory=list)
    #: Deal event copies for ledgers (sent to the deal's partition).
    copies: list[CopyState] = field(default_factory=list)
    #: (scope, month) whose buckets of this partition must be sent (again).
    buckets: set[tuple[Scope, str]] = field(default_factory=set)
    #: (scope, month) sent for the first time: durable before any bucket is sent.
    claims: set[tuple[Scope, str]] = field(default_factory=set)
    #: (scope, metric, day) whose figures may have changed.
    figures: set[tuple[Scope, str, str]] = field(default_factory=set)


class Tally:
    """The state of one partition and the rules that change it."""

    def __init__(
        self,
        partition: int,
        calendar: Calendar,
        catalog: MetricCatalog,
        roster: Roster,
        *,
        window_ms: int,
        epoch: int = 1,
    ) -> None:
        self.partition = partition
        self.calendar = calendar
        self.catalog = catalog
        #: The live roster (shared, read-only here): team at event time, team lineages.
        self.roster = roster
        self.window_ms = window_ms
        #: Ownership generation: bumped each time a worker restores this partition, so every
        #: bucket it sends supersedes whatever an earlier owner sent.
        self.epoch = epoch
        self.seq = 0
        self.rep_days: dict[tuple[str, str], RepDay] = {}
        self.gates: dict[str, Gate] = {}
        self.deals: dict[str, Deal] = {}
        self.credits: dict[tuple[str, str], Credit] = {}
        self.buckets: dict[BucketKey, BucketState] = {}
        self.claimed: set[tuple[Scope, str]] = set()
        #: Derived (rebuilt on restore): sums per scope → metric → period label; this
        #: partition's outgoing bucket per (team or company scope, day); rep-days by arrival day.
        self._sums: dict[Scope, dict[str, dict[str, Decimal]]] = {}
        self._out: dict[tuple[Scope, str], dict[str, Values]] = {}  # (scope, month) -> day
        self._arrivals: dict[int, set[tuple[str, str]]] = defaultdict(set)
        #: Idempotency key -> the rep-day holding its counted activity copy.
        self._acts: dict[str, tuple[str, str]] = {}
        #: (rep, month) -> latest activity time counted here (sent with the rep's buckets);
        #: rep -> latest activity time any partition counted (from the rep's buckets).
        self._latest: dict[tuple[str, str], float] = {}
        self.last_activity: dict[str, float] = {}
        self._labels: dict[str, tuple[str, ...]] = {}
        self._day_ends: dict[str, datetime] = {}
        #: Attributions made with the roster at ``_roster_version``: (rep, day) -> its team's
        #: scopes, team -> its lineage.
        self._roster_version = roster.version
        self._teams: dict[tuple[str, str], tuple[Scope, ...]] = {}
        self._lineages: dict[str, tuple[Scope, ...]] = {}
        self.stream_ms = 0
        #: Copies of an idempotency key seen again within the window that do not count
        #: (the same copy again, or one with a larger digest).
        self.duplicates = 0

    # --- reading ---------------------------------------------------------------------------
    def value(self, scope: Scope, metric: str, label: str) -> Decimal:
        return self._sums.get(scope, {}).get(metric, {}).get(label, _ZERO)

    def value_through(self, scope: Scope, metric: str, period: Period, day: str) -> Decimal:
        """``period``'s value counting only its days up to and including the day labelled
        ``day`` (``as_of``: credit dated after that day is left out). Day labels are
        ``YYYY-MM-DD`` in every calendar, and a period's bounds are local midnights, so its
        days are the dates from its start's to the one before its end's."""
        first, end = period.start.date(), period.end.date()
        through = date.fromisoformat(day)
        if through >= end - timedelta(days=1):
            return self.value(scope, metric, period.label)
        by_label = self._sums.get(scope, {}).get(metric, {})
        total = _ZERO
        for n in range((through - first).days + 1):
            total += by_label.get((first + timedelta(days=n)).isoformat(), _ZERO)
        return total

    def scopes(self) -> Iterable[Scope]:
        """Scopes holding data in this partition."""
        return self._sums.keys()

    def labels(self, scope: Scope, metric: str) -> set[str]:
        return set(self._sums.get(scope, {}).get(metric, {}))

    @property
    def roster_changed(self) -> bool:
        """The roster changed since the buckets were attributed (``next_batch`` catches up)."""
        return self.roster.version != self._roster_version

    def out_bucket(self, scope: Scope, month: str) -> BucketState:
        """This partition's current buckets for a scope and month, at the current version.
        Its days are the tally's own: serialise or copy them before the tally changes."""
        days = self._out.get((scope, month), {})
        latest = self._latest.get((scope[1], month), 0.0) if scope[0] == "rep" else 0.0
        return BucketState(scope, self.partition, month, (self.epoch, self.seq), days, latest)

    def sizes(self) -> dict[str, int]:
        """Entry counts of each part of the state (the duplicate window's ids separately)."""
        return {
            "rep_days": len(self.rep_days),
            "dedupe_ids": len(self._acts),
            "deal_event_keys": len(self.gates),
            "deals": len(self.deals),
            "deal_credits": len(self.credits),
            "team_buckets": len(self.buckets),
            "out_buckets": sum(len(days) for days in self._out.values()),
        }

    # --- applying --------------------------------------------------------------------------
    def next_batch(self, fx: Effects) -> None:
        """Start a batch: buckets sent from now on carry a newer version. If the roster
        changed since the last attribution, every rep-day and credit is attributed again and
        the buckets that changed are sent (a change may be effective in the past)."""
        self.seq += 1
        if not self.roster_changed:
            return
        self._roster_version = self.roster.version
        self._teams.clear()
        self._lineages.clear()
        before, self._out = self._out, {}
        rebuilt = Effects()
        for (rep_id, day), rd in self.rep_days.items():
            for metric, n in rd.counts.items():
                self._add(rep_id, metric, day, Decimal(n), rebuilt)
        for (rep_id, _), credit in self.credits.items():
            for metric, amount in credit.values.items():
                self._add(rep_id, metric, credit.day, amount, rebuilt)
        fx.claims |= rebuilt.claims
        fx.buckets.update(
            key for key in before.keys() | self._out.keys() if before.get(key) != self._out.get(key)
        )

    def admit(self, event: Event, arrival_ms: int, fx: Effects) -> bool:
        """Judge a copy of the event's idempotency key (this is the key's partition): it counts
        if no copy with a smaller or equal digest did, replacing the one that counted. An
        activity is counted here; a deal event goes to its deal's ledger. Returns whether it
        counts; a copy that does not re-sends what the key's counting copy sent."""
        key, digest = event.partition_key, event.copy_digest
        self._observe(arrival_ms)
        best = self._best(key)
        if best is not None and digest >= best:
            self.duplicates += 1
            self._repeat(key, fx)
            return False
        self._withdraw(key, fx)
        gate = self.gates.get(key)
        if event.type in DEAL_TYPES and event.deal_id is not None:
            if gate is None:
                gate = self.gates[key] = Gate(digest, event, set())
            gate.digest, gate.event = digest, event
            gate.deals.add(event.deal_id)
        elif gate is not None:
            gate.digest, gate.event = digest, None
        if gate is not None:
            fx.records[_gate_key(key)] = gate
            self._send_copies(key, gate, fx)
        if event.type not in DEAL_TYPES:
            self._count(event, key, digest, arrival_ms, fx)
        return True

    def deal_copy(self, msg: CopyState, fx: Effects) -> None:
        """Take the newest copy state per idempotency key into the deal's ledger and (re-)send
        the deal's credit to every rep it ever credited; an old or repeated state only
        re-sends, so a replayed one repairs a credit that was lost on the way."""
        deal = self.deals.get(msg.deal_id)
        held = None if deal is None else deal.copies.get(msg.key)
        if deal is None:
            deal = self.deals[msg.deal_id] = Deal.new(msg.deal_id)
        if held is None or msg.digest < held[0]:
            deal.copies[msg.key] = (msg.digest, msg.event)
            deal.settle()
            fx.records[_deal_key(msg.deal_id)] = deal
        now = {c.rep_id: c for c in credits(deal.state)}
        if not now.keys() <= deal.reps:
            deal.reps |= now.keys()
            fx.records[_deal_key(msg.deal_id)] = deal
        stamp = deal.version
        for rep_id in sorted(deal.reps):
            credit = now.get(rep_id)
            values: Values = {}
            if credit is not None:
                for metric in self.catalog.deal_metrics:
                    values[metric.name] = credit.amount if metric.kind == "amount" else credit.share
            time = None if credit is None else credit.time
            fx.credits.append(CreditState(rep_id, msg.deal_id, stamp, time, values))

    def credit(self, msg: CreditState, fx: Effects) -> None:
        """Keep the newest credit per (rep, deal); an old or repeated one re-sends buckets."""
        key = (msg.rep_id, msg.deal_id)
        old = self.credits.get(key)
        if old is not None and not msg.version > old.version:
            self._resend(msg.rep_id, old.day, fx)
            return
        if old is not None:
            for metric, amount in old.values.items():
                self._add(msg.rep_id, metric, old.day, -amount, fx)
        if msg.time is None:
            self.credits[key] = Credit(msg.version, old.day if old else "", {})
            return
        day = self._day(msg.time)
        self.credits[key] = Credit(msg.version, day, dict(msg.values))
        for metric, amount in msg.values.items():
            self._add(msg.rep_id, metric, day, amount, fx)

    def bucket(self, msg: BucketState, fx: Effects) -> None:
        """Keep the newest buckets per (scope, origin, month) and sum them into the scope."""
        old = self.buckets.get(msg.key)
        if old is not None and not msg.version > old.version:
            return
        self.buckets[msg.key] = msg
        kind, scope_id = msg.scope
        if kind == "rep" and msg.latest > self.last_activity.get(scope_id, 0.0):
            self.last_activity[scope_id] = msg.latest
        sums = self._sums.setdefault(msg.scope, {})
        before = old.days if old is not None else {}
        gone = [day for day in before if day not in msg.days]  # re-attributed elsewhere
        for day, new in [*msg.days.items(), *((day, {}) for day in gone)]:
            was = before.get(day, {})
            if new == was:
                continue
            labels = self.labels_of_day(day)
            for metric in new.keys() | was.keys():
                delta = new.get(metric, _ZERO) - was.get(metric, _ZERO)
                if delta or metric not in sums:
                    by_label = sums.setdefault(metric, {})
                    for label in labels:
                        by_label[label] = by_label.get(label, _ZERO) + delta
                if delta:
                    fx.figures.add((msg.scope, metric, day))

    def expire(self, fx: Effects) -> int:
        """Drop the ids of rep-days whose latest arrival is older than the window (by stream
        time, the newest Kafka timestamp seen): bounded state. Returns how many."""
        cutoff = self.stream_ms - self.window_ms
        expired = 0
        for arrival_day in sorted(d for d in self._arrivals if (d + 1) * _DAY_MS <= cutoff):
            for rd_key in self._arrivals.pop(arrival_day):
                rd = self.rep_days.get(rd_key)
                if rd is None or rd.ids is None or rd.at > cutoff:
                    continue
                for key in rd.ids:
                    self._acts.pop(key, None)
                rd.ids = None
                fx.records[_rep_day_key(*rd_key)] = rd
                expired += 1
        return expired

    def resend_all(self, fx: Effects) -> None:
        """Every claimed bucket again (after a restore, under the new epoch), and the claims:
        restoring may have attributed days to scopes the old owner never claimed."""
        fx.buckets.update(self.claimed)
        fx.claims.update(self.claimed)

    # --- restoring -------------------------------------------------------------------------
    def load(self, key: str, doc: dict[str, Any]) -> None:
        """Take one changelog record (the newest per key) into the state."""
        kind, _, rest = key.partition(SEP)
        if kind == "r":
            rep_id, day = rest.split(SEP, 1)
            rd = self.rep_days[(rep_id, day)] = RepDay.from_dict(doc["r"])
            self._arrivals[rd.at // _DAY_MS].add((rep_id, day))
            self._observe(rd.at)
            self._note_latest(rep_id, day, rd.last)
            sink = Effects()
            for metric, n in rd.counts.items():
                self._add(rep_id, metric, day, Decimal(n), sink)
        elif kind == "g":
            self.gates[rest] = Gate.from_dict(doc["g"])
        elif kind == "d":
            self.deals[rest] = Deal.from_dict(rest, doc["d"])
        elif kind == "o":
            scope_kind, scope_id, month = rest.split(SEP)
            self.claimed.add(((scope_kind, scope_id), month))

    def loaded(self) -> None:
        """After ``load``: index the counted activity copies. A crash may have persisted only
        some of a batch's records, so a key can look counted twice (an old rep-day or gate not
        rewritten yet). The smallest digest is the newest decision; a gate holding a smaller
        one than every rep-day means a later copy won whose rep-day is replayed (or a deal
        event won). The stale ones are withdrawn again, as the batch that decided did."""
        sink = Effects()
        found: dict[str, list[tuple[int, tuple[str, str]]]] = defaultdict(list)
        for rd_key, rd in self.rep_days.items():
            for key, (digest, _) in (rd.ids or {}).items():
                found[key].append((digest, rd_key))
        for key, held in found.items():
            held.sort()
            digest, stale = held[0][0], held[1:]
            gate = self.gates.get(key)
            if gate is not None and gate.digest < digest:
                stale = held
            else:
                self._acts[key] = held[0][1]
                if gate is not None:
                    gate.digest, gate.event = digest, None
            for _, rd_key in stale:
                self._uncount(key, rd_key, sink)

    # --- internals -------------------------------------------------------------------------
    def _best(self, key: str) -> int | None:
        """The digest of the key's counting copy: a deal event's, or an activity's within the
        window; None if no copy counts."""
        gate = self.gates.get(key)
        if gate is not None and gate.event is not None:
            return gate.digest
        rd_key = self._acts.get(key)
        if rd_key is None:
            return None
        ids = self.rep_days[rd_key].ids
        assert ids is not None
        return ids[key][0]

    def _repeat(self, key: str, fx: Effects) -> None:
        held = self._acts.get(key)
        if held is not None:
            self._resend(*held, fx)
        gate = self.gates.get(key)
        if gate is not None:
            self._send_copies(key, gate, fx)

    def _withdraw(self, key: str, fx: Effects) -> None:
        """Un-count the key's counted activity copy, if any (a better copy arrived)."""
        rd_key = self._acts.pop(key, None)
        if rd_key is not None:
            self._uncount(key, rd_key, fx)

    def _uncount(self, key: str, rd_key: tuple[str, str], fx: Effects) -> None:
        rd = self.rep_days[rd_key]
        assert rd.ids is not None
        _, event_type = rd.ids.pop(key)
        for metric in self.catalog.activity_metrics_for(event_type):
            name = metric.name
            rd.counts[name] -= 1
            if not rd.counts[name]:
                del rd.counts[name]
            self._add(rd_key[0], name, rd_key[1], Decimal(-1), fx)
        fx.records[_rep_day_key(*rd_key)] = rd

    def _count(self, event: Event, key: str, digest: int, arrival_ms: int, fx: Effects) -> None:
        """Count an activity copy (or note a copy of a type no metric counts)."""
        day = self._day(event.time)
        rd_key = (event.rep_id, day)
        rd = self.rep_days.get(rd_key)
        if rd is None:
            rd = self.rep_days[rd_key] = RepDay({}, {}, arrival_ms)
        if rd.ids is None:  # past the window: only later copies are caught again
            rd.ids = {}
        rd.ids[key] = (digest, event.type)
        self._acts[key] = rd_key
        if arrival_ms > rd.at:
            rd.at = arrival_ms
        self._arrivals[rd.at // _DAY_MS].add(rd_key)
        metrics = self.catalog.activity_metrics_for(event.type)
        if metrics:
            rd.last = max(rd.last, event.time.timestamp())
            self._note_latest(event.rep_id, day, rd.last)
        for metric in metrics:
            name = metric.name
            rd.counts[name] = rd.counts.get(name, 0) + 1
            self._add(event.rep_id, name, day, Decimal(1), fx)
        fx.records[_rep_day_key(event.rep_id, day)] = rd

    def _note_latest(self, rep_id: str, day: str, last: float) -> None:
        key = (rep_id, day[:7])
        if last > self._latest.get(key, 0.0):
            self._latest[key] = last

    def _send_copies(self, key: str, gate: Gate, fx: Effects) -> None:
        """Tell every deal the key ever counted for which copy counts now (theirs or none)."""
        event = gate.event
        for deal_id in sorted(gate.deals):
            mine = event if event is not None and event.deal_id == deal_id else None
            fx.copies.append(CopyState(deal_id, key, gate.digest, mine))

    def _add(self, rep_id: str, metric: str, day: str, amount: Decimal, fx: Effects) -> None:
        """Add to this partition's outgoing buckets of the scopes the rep's day counts for —
        the rep, its team's lineage, the company — and send them (the rep's own sums are kept
        by the rep's partition, from every partition's rep buckets)."""
        month = day[:7]  # day labels are YYYY-MM-DD, in every calendar
        for scope in self._scopes_of(rep_id, day):
            key = (scope, month)
            out = self._out.get(key)
            if out is None:
                out = self._out[key] = {}
                if key not in self.claimed:
                    self.claimed.add(key)
                    fx.claims.add(key)
            values = out.setdefault(day, {})
            values[metric] = values.get(metric, _ZERO) + amount
            fx.buckets.add(key)

    def _resend(self, rep_id: str, day: str, fx: Effects) -> None:
        if day:
            fx.buckets.update((scope, day[:7]) for scope in self._scopes_of(rep_id, day))

    def _scopes_of(self, rep_id: str, day: str) -> tuple[Scope, ...]:
        """The scopes a rep's credit on ``day`` counts for: the rep, its team's lineage and
        the company."""
        key = (rep_id, day)
        found = self._teams.get(key)
        if found is None:
            team = team_of_day(self.roster, rep_id, self._day_end(day))
            teams = self._lineages.get(team)
            if teams is None:
                teams = self._lineages[team] = lineage(self.roster, team)
            found = self._teams[key] = (("rep", rep_id), *teams)
        return found

    def _day_end(self, day: str) -> datetime:
        end = self._day_ends.get(day)
        if end is None:
            period = self.calendar.parse(day)
            if isinstance(period, Invalid):
                raise ValueError(f"not a day label: {day!r}")
            end = self._day_ends[day] = period.end
        return end

    def _observe(self, arrival_ms: int) -> None:
        if arrival_ms > self.stream_ms:
            self.stream_ms = arrival_ms

    def _day(self, t: datetime) -> str:
        labels = self.calendar.labels_at(t)
        day = labels[0]
        if day not in self._labels:
            self._labels[day] = labels
        return day

    def labels_of_day(self, day: str) -> tuple[str, ...]:
        """The period labels (day, week, month, quarter, year) a day label belongs to."""
        labels = self._labels.get(day)
        if labels is None:
            period = self.calendar.parse(day)
            if isinstance(period, Invalid):
                raise ValueError(f"not a day label: {day!r}")
            labels = self._labels[day] = self.calendar.labels_at(period.start)
        return labels


def record_doc(record: Any) -> dict[str, Any]:
    """The changelog document of a record: a rep-day under ``r``, a deal under ``d``; any
    other record (an alert status) is its own document."""
    if isinstance(record, RepDay):
        return {"r": record.to_dict()}
    if isinstance(record, Deal):
        return {"d": record.to_dict()}
    if isinstance(record, Gate):
        return {"g": record.to_dict()}
    doc: dict[str, Any] = record
    return doc


def _rep_day_key(rep_id: str, day: str) -> str:
    return f"r{SEP}{rep_id}{SEP}{day}"


def _deal_key(deal_id: str) -> str:
    return f"d{SEP}{deal_id}"


def _gate_key(key: str) -> str:
    return f"g{SEP}{key}"


def claim_records(claims: Iterable[tuple[Scope, str]]) -> dict[str, Any]:
    """The changelog records of claimed (scope, month) keys."""
    return {
        f"o{SEP}{kind}{SEP}{scope_id}{SEP}{month}": {"o": 1} for (kind, scope_id), month in claims
    }


def _instant(text: str) -> datetime:
    t = parse_instant(text)
    if t is None:
        raise ValueError(f"bad instant {text!r}")
    return t
