"""Roll-up: which scopes a rep's credit at an instant also counts for.

Kept apart from the roster so the rule (team at the event's time, then every ancestor, then
the company) is one function that the engine and the pipeline's agents share.
"""

from __future__ import annotations

from datetime import datetime

from streams.engine.roster import Roster


def teams_for(roster: Roster, rep_id: str, t: datetime) -> tuple[str, ...]:
    """The rep's team at ``t`` and its ancestors up to the root; empty without a team."""
    team = roster.team_at(rep_id, t)
    return () if team is None else roster.lineage(team)
