"""Scopes and their keys: the one place that says how a rep, a team and the company are named
inside the pipeline (sums, partition keys, API routing).

A scope is ``(kind, id)``: ``("rep", id)``, ``("team", id)`` or ``("company", "company")``.
Its *key* — the partition key on Kafka — is the rep id for a rep (producers key activities
by rep), ``team:<id>`` for a team and ``company:company`` for the company.
"""

from __future__ import annotations

from streams.engine.roster import Roster

SCOPES = ("rep", "team", "company")
COMPANY = ("company", "company")

Scope = tuple[str, str]


def scope_key(scope: Scope) -> str:
    """The partition key of a scope."""
    kind, scope_id = scope
    if kind == "rep":
        return scope_id
    if kind in ("team", "company"):
        return f"{kind}:{scope_id}"
    raise ValueError(f"scope must be one of {SCOPES}: {kind!r}")


def lineage(roster: Roster, team_id: str) -> tuple[Scope, ...]:
    """The scopes a rep's credit in ``team_id`` rolls up to: the team, its ancestors and the
    company."""
    return (*(("team", t) for t in roster.lineage(team_id)), COMPANY)
