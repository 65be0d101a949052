"""The transition graph: which policy can hand over to which, where, and whether it survives.

Kept next to the index as its own SQLite file (`LIB/transitions.sqlite`), one row per simulated
hand-over candidate: from clip A (at a policy version) leaving at `exit_frame`, to clip B entering
at `entry_frame`, with its cost (`factory.compose.entry_costs`) and whether the simulated switch
survived (`factory.compose.build_transitions` simulates them; nothing here is guessed). Rows
belong to policy versions, so a retrained clip gets new rows and its old ones are ignored.

`TransitionGraph` reads and writes the rows, answers "where can I go from here" (`edges`) and
routes through intermediate clips (`route`).
"""

from __future__ import annotations

import collections
import dataclasses
import os
import sqlite3
import time
from pathlib import Path
from typing import Iterable, Mapping

TRANSITIONS_FILE = "transitions.sqlite"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS transitions (
    from_clip TEXT NOT NULL,
    from_version INTEGER NOT NULL,
    to_clip TEXT NOT NULL,
    to_version INTEGER NOT NULL,
    exit_frame INTEGER NOT NULL,
    entry_frame INTEGER NOT NULL,
    cost_m REAL NOT NULL,
    survived INTEGER NOT NULL,
    fell_at_s REAL,
    window_s REAL NOT NULL,
    created_at TEXT NOT NULL,
    PRIMARY KEY (from_clip, from_version, to_clip, to_version, exit_frame)
)
"""


@dataclasses.dataclass(frozen=True)
class Transition:
    """One simulated hand-over from `from_clip` at `exit_frame` to `to_clip` at `entry_frame`.

    cost_m: the planned state distance (`factory.compose.entry_costs`) between the two
      reference frames. survived: the simulated switch did not fall within `window_s` after it
      (nor in the run-up to it); fell_at_s: when it fell, counted from the switch.
    """

    from_clip: str
    from_version: int
    to_clip: str
    to_version: int
    exit_frame: int
    entry_frame: int
    cost_m: float
    survived: bool
    fell_at_s: float | None
    window_s: float
    created_at: str = ""

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


_FIELDS = tuple(f.name for f in dataclasses.fields(Transition))


class TransitionGraph:
    """The transition rows of a library (`root`), for the policy versions given as `current`
    ({clip_id: version}; None: every row)."""

    def __init__(self, root: str | os.PathLike, current: Mapping[str, int] | None = None):
        self.path = Path(root) / TRANSITIONS_FILE
        self.current = dict(current) if current is not None else None

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, timeout=60.0)
        db.execute(_SCHEMA)
        return db

    def _is_current(self, t: Transition) -> bool:
        return self.current is None or (
            self.current.get(t.from_clip) == t.from_version and self.current.get(t.to_clip) == t.to_version
        )

    def put(self, transitions: Iterable[Transition]) -> int:
        """Writes (or replaces) rows; returns how many."""
        now = time.strftime("%Y-%m-%dT%H:%M:%S")
        rows = [
            tuple(getattr(dataclasses.replace(t, created_at=t.created_at or now), f) for f in _FIELDS)
            for t in transitions
        ]
        with self._connect() as db:
            db.executemany(
                f"INSERT OR REPLACE INTO transitions ({', '.join(_FIELDS)}) VALUES ({', '.join('?' * len(_FIELDS))})",
                rows,
            )
        return len(rows)

    def all(self) -> list[Transition]:
        """Every row of the current versions, best first within a pair (survived, lowest cost)."""
        if not self.path.is_file():
            return []
        with self._connect() as db:
            rows = db.execute(f"SELECT {', '.join(_FIELDS)} FROM transitions").fetchall()
        found = [Transition(*row[:7], bool(row[7]), *row[8:]) for row in rows]
        return sorted(
            (t for t in found if self._is_current(t)), key=lambda t: (t.from_clip, t.to_clip, not t.survived, t.cost_m)
        )

    def simulated_pairs(self) -> set[tuple[str, int, str, int]]:
        """(from clip, version, to clip, version) of every pair with rows."""
        return {(t.from_clip, t.from_version, t.to_clip, t.to_version) for t in self.all()}

    def edges(
        self, from_clip: str | None = None, to_clip: str | None = None, survived_only: bool = False
    ) -> list[Transition]:
        """The rows from and/or to a clip (best first within a pair)."""
        return [
            t
            for t in self.all()
            if (from_clip is None or t.from_clip == from_clip)
            and (to_clip is None or t.to_clip == to_clip)
            and (t.survived or not survived_only)
        ]

    def best(self) -> dict[tuple[str, str], Transition]:
        """The best row of each ordered pair (a surviving one if any, then the lowest cost)."""
        best: dict[tuple[str, str], Transition] = {}
        for t in self.all():
            best.setdefault((t.from_clip, t.to_clip), t)
        return best

    def route(self, start: str, goal: str) -> list[Transition] | None:
        """The fewest surviving hand-overs from `start` to `goal` (breadth first; among equally
        short routes the first found by lowest cost), or None when none leads there."""
        if start == goal:
            return []
        successors = collections.defaultdict(list)
        for (a, b), t in sorted(self.best().items(), key=lambda item: item[1].cost_m):
            if t.survived:
                successors[a].append(t)
        came_from: dict[str, Transition] = {}
        frontier, seen = collections.deque([start]), {start}
        while frontier:
            clip = frontier.popleft()
            for t in successors[clip]:
                if t.to_clip in seen:
                    continue
                came_from[t.to_clip] = t
                if t.to_clip == goal:
                    path = [t]
                    while path[0].from_clip != start:
                        path.insert(0, came_from[path[0].from_clip])
                    return path
                seen.add(t.to_clip)
                frontier.append(t.to_clip)
        return None
