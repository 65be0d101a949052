"""The library index: its SQLite schema and migrations, the row type (`PolicyRecord`) and its
codec, the layout constants and the errors."""

from __future__ import annotations

import dataclasses
import json
import sqlite3
from typing import Callable

INDEX_FILE = "index.sqlite"
POLICIES_DIR = "policies"
STAGING_DIR = ".staging"
STATUSES = ("converged", "best_effort", "failed")
BUSY_TIMEOUT_S = 60.0


class LibraryError(Exception):
    """A library problem the user can act on; the message is one line."""


class NotALibraryError(LibraryError):
    pass


class UnknownNameError(LibraryError, KeyError):
    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class AmbiguousNameError(LibraryError, KeyError):
    def __str__(self) -> str:
        return str(self.args[0])


# --------------------------------------------------------------------------------------------
# Schema and migrations.

_SCHEMA_V1 = """
CREATE TABLE policies (
    id INTEGER PRIMARY KEY,
    clip_id TEXT NOT NULL,
    version INTEGER NOT NULL,
    name TEXT NOT NULL,
    dataset TEXT NOT NULL,
    source_path TEXT,
    source_sha256 TEXT,
    character TEXT,
    skeleton TEXT,
    frames INTEGER,
    fps REAL,
    duration_s REAL,
    status TEXT NOT NULL CHECK (status IN ('converged', 'best_effort', 'failed')),
    pose_error_m REAL,
    initial_pose_error_m REAL,
    global_error_m REAL,
    fell INTEGER,
    fell_at_s REAL,
    pose_absurdity TEXT,
    samples INTEGER,
    train_s REAL,
    iterations INTEGER,
    attempts INTEGER NOT NULL,
    seed INTEGER,
    backend TEXT,
    config TEXT,
    code_version TEXT,
    created_at TEXT NOT NULL,
    error TEXT,
    path TEXT,
    history TEXT,
    UNIQUE (clip_id, version)
);
CREATE INDEX policies_name ON policies (name);
CREATE INDEX policies_dataset_status ON policies (dataset, status);
CREATE TABLE files (
    policy_id INTEGER NOT NULL REFERENCES policies (id) ON DELETE CASCADE,
    relpath TEXT NOT NULL,
    size INTEGER NOT NULL,
    sha256 TEXT NOT NULL,
    PRIMARY KEY (policy_id, relpath)
);
"""


# MIGRATIONS[i] takes a database at schema version i to version i + 1, inside one transaction.
def _migrate_to_v1(db: sqlite3.Connection) -> None:
    # executescript would COMMIT the surrounding transaction: run the statements one by one.
    for statement in (s.strip() for s in _SCHEMA_V1.split(";")):
        if statement:
            db.execute(statement)


def _migrate_to_v2(db: sqlite3.Connection) -> None:
    # Robust convergence: the perturbed-rollout check of the stored policy, and why a
    # best_effort policy did not converge.
    db.execute("ALTER TABLE policies ADD COLUMN robustness TEXT")
    db.execute("ALTER TABLE policies ADD COLUMN reason TEXT")


MIGRATIONS: list[Callable[[sqlite3.Connection], None]] = [_migrate_to_v1, _migrate_to_v2]


def schema_version() -> int:
    """The index schema version this code writes."""
    return len(MIGRATIONS)


def migrate(db: sqlite3.Connection, current: int) -> None:
    """Runs the migrations from schema version `current` to this code's, in the caller's transaction."""
    for step in range(current, schema_version()):
        MIGRATIONS[step](db)


# --------------------------------------------------------------------------------------------
# Records.


@dataclasses.dataclass(frozen=True)
class PolicyRecord:
    """One index row: a clip's trained (or failed) policy at one version.

    `path` is the version directory relative to the library root (None for a failed clip);
    `config`, `character`, `pose_absurdity` and `history` are decoded JSON.
    """

    clip_id: str
    version: int
    name: str
    dataset: str
    status: str
    attempts: int
    created_at: str
    source_path: str | None = None
    source_sha256: str | None = None
    character: dict | None = None
    skeleton: str | None = None
    frames: int | None = None
    fps: float | None = None
    duration_s: float | None = None
    pose_error_m: float | None = None
    initial_pose_error_m: float | None = None
    global_error_m: float | None = None
    fell: bool | None = None
    fell_at_s: float | None = None
    pose_absurdity: dict | None = None
    samples: int | None = None
    train_s: float | None = None
    iterations: int | None = None
    seed: int | None = None
    backend: str | None = None
    config: dict | None = None
    code_version: str | None = None
    error: str | None = None
    path: str | None = None
    history: list | None = None
    robustness: dict | None = None  # `diffmimic.robustness.Robustness.to_dict` (None: not checked)
    reason: str | None = None  # why a best_effort policy is not converged

    @property
    def ref(self) -> str:
        """`clip_id@version`, unambiguous."""
        return f"{self.clip_id}@{self.version}"

    def to_dict(self, history: bool = True) -> dict:
        data = dataclasses.asdict(self)
        if not history:
            data.pop("history")
        return data


_JSON_COLUMNS = ("character", "pose_absurdity", "config", "history", "robustness")
_FIELDS = tuple(f.name for f in dataclasses.fields(PolicyRecord))


def _record_from_row(row: sqlite3.Row) -> PolicyRecord:
    values = {}
    for field in _FIELDS:
        value = row[field]
        if field in _JSON_COLUMNS and value is not None:
            value = json.loads(value)
        elif field == "fell" and value is not None:
            value = bool(value)
        values[field] = value
    return PolicyRecord(**values)


def _row_values(record: PolicyRecord) -> dict:
    values = {}
    for field in _FIELDS:
        value = getattr(record, field)
        if field in _JSON_COLUMNS and value is not None:
            value = json.dumps(value, sort_keys=True)
        elif field == "fell" and value is not None:
            value = int(bool(value))
        values[field] = value
    return values


def _one_line(err: BaseException) -> str:
    return " ".join(str(err).split())[:300]
