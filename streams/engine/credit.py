"""Who gets credit for what: the contributions an event or a deal change gives each scope.

These functions are the one place where events become contributions, shared by the in-process
:class:`~streams.engine.engine.Engine` and by the streaming agents, so both count alike:

1. an activity gives its rep 1 per metric that counts its type (``activity_contributions``);
2. a deal's ledger state gives each credited rep, per deal metric, its credit amount
   (``amount`` metrics, e.g. revenue) or its share of the deal (``count`` metrics, e.g.
   deals_won: a deal split 60/40 is 0.6 and 0.4 won deals, an unsplit one 1)
   (``deal_contributions``);
3. every rep contribution rolls up unchanged to the rep's team lineage *at the contribution's
   time* and to the company (``team_contributions``), so a team's or the company's value is
   always the sum of its members' — a deal split inside one team counts 1 for the team, and
   each deal counts exactly 1 for the company.

Every contribution is keyed and versioned so that applying it is idempotent and order-free:
an activity's key is its idempotency key (first one wins, a re-sent event changes nothing); a
deal's key is the deal id and its version the ledger state's version, so a newer deal state
replaces an older one whatever order they arrive in, and a deal that no longer credits a scope
is written as a zero contribution with the newer version rather than deleted. Keys
length-prefix the free-form parts, so no source, id or rep id can make two keys collide.

Scope ids: the rep book is keyed by plain rep id; the team book by ``team:<id>`` and
``company:company`` (``team_scope``, ``COMPANY``).
"""

from __future__ import annotations

from decimal import Decimal
from functools import lru_cache

from streams.engine.catalog import MetricCatalog
from streams.engine.contributions import Change, Contribution
from streams.engine.events import Event
from streams.engine.ledger import DealState, credits, version
from streams.engine.rollup import teams_for
from streams.engine.roster import Roster

#: Scope key of the whole company in the team-level book.
COMPANY = "company:company"

ZERO = Decimal(0)
_ONE = Decimal(1)

#: (scope id, contribution key, contribution)
Credit = tuple[str, str, Contribution]


def team_scope(team_id: str) -> str:
    return f"team:{team_id}"


@lru_cache(maxsize=65536)
def _lineage_scopes(lineage: tuple[str, ...]) -> tuple[str, ...]:
    """Team-book scopes a rep in ``lineage`` rolls up to (hot path, so cached)."""
    return (*(team_scope(t) for t in lineage), COMPANY)


def activity_key(source: str, event_id: str, metric: str) -> str:
    return f"act:{metric}:{len(source)}:{source}:{event_id}"


def deal_key(deal_id: str, metric: str) -> str:
    return f"deal:{metric}:{deal_id}"


def member_key(rep_id: str, key: str) -> str:
    """A rep's contribution as seen in a team/company book."""
    return f"{len(rep_id)}:{rep_id}|{key}"


def activity_contributions(event: Event, catalog: MetricCatalog) -> list[Credit]:
    """One contribution per metric that counts the activity, to the rep who did it."""
    return [
        (
            event.rep_id,
            activity_key(event.source, event.id, metric.name),
            Contribution(metric.name, event.time, _ONE, ()),
        )
        for metric in catalog.activity_metrics_for(event.type)
    ]


def deal_contributions(
    deal_id: str, before: DealState | None, after: DealState, catalog: MetricCatalog
) -> list[Credit]:
    """The contributions of one deal after its ledger state moved from ``before`` to ``after``.

    Reps that lost their share get a zero contribution (same key, newer version), so a
    retraction or a re-split takes back exactly what was given.
    """
    now = {c.rep_id: c for c in credits(after)}
    then = {c.rep_id: c for c in credits(before)} if before is not None else {}
    stamp = version(after)
    result: list[Credit] = []
    for rep_id in sorted(now.keys() | then.keys()):
        credit = now.get(rep_id)
        for metric in catalog.deal_metrics:
            key = deal_key(deal_id, metric.name)
            if credit is None:
                contribution = Contribution(metric.name, then[rep_id].time, ZERO, stamp)
            else:
                amount = credit.amount if metric.kind == "amount" else credit.share
                contribution = Contribution(metric.name, credit.time, amount, stamp)
            result.append((rep_id, key, contribution))
    return result


def team_contributions(change: Change, key: str, roster: Roster) -> list[Credit]:
    """A rep's changed contribution, rolled up to its team lineage at the contribution's time.

    The team is looked up at the contribution's event time, so moving a rep does not move past
    credit; a contribution whose time moved across a transfer is taken back from the old
    lineage with a zero contribution of the newer version.
    """
    rep_id, new, old = change.scope_id, change.new, change.old
    team_key = member_key(rep_id, key)
    scopes_now = _lineage_scopes(teams_for(roster, rep_id, new.time))
    result: list[Credit] = [(scope, team_key, new) for scope in scopes_now]
    if old is not None:
        gone = Contribution(old.metric, old.time, ZERO, new.version)
        result.extend(
            (team_scope(t), team_key, gone)
            for t in teams_for(roster, rep_id, old.time)
            if team_scope(t) not in scopes_now
        )
    return result
