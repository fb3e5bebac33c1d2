"""Who sold it and in which team: reps with effective-dated team assignments, team tree.

Assignments are effective-dated so that moving a rep does not move past credit: credit goes
to the team the rep belonged to when it was earned (``streams.engine.rollup`` says which
instant counts). An assignment without ``effective_from`` holds from the beginning of time.
Before a rep's first dated assignment the rep has no team. Teams form a tree (team → parent
→ … → root) that credit rolls up; a cycle, which the import should never let in, is cut where
it closes instead of looping. ``version`` counts the changes, so holders of attributions made
with an older roster know to make them again (a change may be effective in the past).
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from datetime import UTC, datetime

_BEGINNING = datetime.min.replace(tzinfo=UTC)


def as_utc(t: datetime) -> datetime:
    """Aware UTC; a naive datetime (e.g. from ``date.isoformat()`` text) is read as UTC."""
    return t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)


class Roster:
    """Mutable roster; lookups by time are binary searches, lineages are cached."""

    __slots__ = ("_assignments", "_children", "_lineages", "_rep_names", "_teams", "version")

    def __init__(self) -> None:
        # rep -> sorted [(effective_from, team_id, name)]
        self._assignments: dict[str, list[tuple[datetime, str, str]]] = {}
        self._rep_names: dict[str, str] = {}
        self._teams: dict[str, tuple[str, str | None]] = {}  # team -> (name, parent)
        self._lineages: dict[str, tuple[str, ...]] = {}
        self._children: dict[str, set[str]] | None = None
        #: Bumped by every change.
        self.version = 0

    def set_assignment(
        self, rep_id: str, name: str, team_id: str | None, effective_from: datetime | None
    ) -> None:
        """Rep ``rep_id`` is in ``team_id`` (None: in no team) from ``effective_from`` on;
        a second assignment with the same ``effective_from`` replaces the first. A naive
        ``effective_from`` is taken as UTC."""
        start = _BEGINNING if effective_from is None else as_utc(effective_from)
        rows = [r for r in self._assignments.get(rep_id, []) if r[0] != start]
        rows.append((start, team_id or "", name))
        rows.sort(key=lambda r: r[0])
        self._assignments[rep_id] = rows
        self._rep_names[rep_id] = rows[-1][2]
        self.version += 1

    def set_team(self, team_id: str, name: str, parent_id: str | None) -> None:
        self._teams[team_id] = (name, parent_id or None)
        self._lineages.clear()
        self._children = None
        self.version += 1

    def team_at(self, rep_id: str, t: datetime) -> str | None:
        rows = self._assignments.get(rep_id)
        if not rows:
            return None
        if len(rows) == 1:
            start, team, _ = rows[0]
            return (team or None) if start <= t else None
        i = bisect_right(rows, t, key=lambda r: r[0]) - 1
        return (rows[i][1] or None) if i >= 0 else None

    def team_before(self, rep_id: str, t: datetime) -> str | None:
        """The team in force just before ``t``: assignments effective at ``t`` or later do not
        count yet."""
        rows = self._assignments.get(rep_id)
        if not rows:
            return None
        i = bisect_left(rows, t, key=lambda r: r[0]) - 1
        return (rows[i][1] or None) if i >= 0 else None

    def lineage(self, team_id: str) -> tuple[str, ...]:
        """The team, its parent, … up to the root."""
        found = self._lineages.get(team_id)
        if found is None:
            chain = [team_id]
            parent = self._teams.get(team_id, ("", None))[1]
            while parent is not None and parent not in chain:
                chain.append(parent)
                parent = self._teams.get(parent, ("", None))[1]
            found = self._lineages[team_id] = tuple(chain)
        return found

    def children(self, team_id: str) -> set[str]:
        """Teams whose parent is ``team_id``."""
        if self._children is None:
            self._children = {}
            for team, (_, parent) in self._teams.items():
                if parent is not None:
                    self._children.setdefault(parent, set()).add(team)
        return set(self._children.get(team_id, ()))

    def reps(self) -> set[str]:
        return set(self._assignments)

    def teams(self) -> set[str]:
        """Declared teams and teams only named as a rep's team or a parent."""
        named = {team for rows in self._assignments.values() for _, team, _ in rows if team}
        parents = {p for _, p in self._teams.values() if p is not None}
        return set(self._teams) | named | parents

    def rep_name(self, rep_id: str) -> str | None:
        return self._rep_names.get(rep_id)

    def team_name(self, team_id: str) -> str | None:
        found = self._teams.get(team_id)
        return found[0] if found else None

    def parent(self, team_id: str) -> str | None:
        found = self._teams.get(team_id)
        return found[1] if found else None

    def members_at(self, team_id: str, t: datetime) -> set[str]:
        """Reps whose team at ``t`` is ``team_id`` or one of its descendants."""
        members = set()
        for rep in self._assignments:
            team = self.team_at(rep, t)
            if team is not None and team_id in self.lineage(team):
                members.add(rep)
        return members
