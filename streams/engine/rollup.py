"""Roll-up: which team a rep's credit counts for, and so which scopes it also counts for.

Membership is by day: credit earned on a day (organisation's time zone) counts for the team the
rep is in at the end of that day, so a transfer, hire or departure counts for the whole day it
happens on. Credit of a rep without a team that day (not on the roster yet, before the first
assignment, after leaving) counts for the pseudo-team ``unassigned``, a root team, so that the
company is always the sum of its root teams. A roster change re-attributes past days whenever
it arrives (``Tally.next_batch``): the figures equal a recomputation with the final roster.
One function, shared by the engine and the recomputation.
"""

from __future__ import annotations

from datetime import datetime

from streams.engine.roster import Roster

#: The pseudo-team of credit without a team; imports refuse it as a real team's id.
UNASSIGNED = "unassigned"


def team_of_day(roster: Roster, rep_id: str, day_end: datetime) -> str:
    """The team a rep's credit on the day ending (exclusive) at ``day_end`` counts for."""
    return roster.team_before(rep_id, day_end) or UNASSIGNED


def teams_for(roster: Roster, rep_id: str, day_end: datetime) -> tuple[str, ...]:
    """That team and its ancestors up to the root."""
    return roster.lineage(team_of_day(roster, rep_id, day_end))
