"""The policy library: one Orbax checkpoint per clip and version, indexed by SQLite, found by name.

    python -m factory.library --library LIB list [--status S] [--dataset D] [--json]
    python -m factory.library --library LIB show NAME [--version N] [--json]
    python -m factory.library --library LIB rollout NAME [--seconds S] [--start-frame F] --out TRAJ.npz
    python -m factory.library --library LIB export NAME DIR
    python -m factory.library --library LIB verify [--hashes-only]
    python -m factory.library --library LIB stats [--json]
    python -m factory.library --library LIB put CLIP_ID TRAIN_DIR --status S [--attempts N]

Layout of a library root::

    index.sqlite                          the index (WAL mode; schema_version table)
    policies/<clip_id>/v0001/             one directory per clip and version:
        checkpoint/                         Orbax checkpoint {params, normaliser}
        policy.json  config.json            network sizes; the TrainConfig
        reference.npz                       the clip's Reference (replay without the source data)
        metrics.jsonl result.json meta.json evaluation history; metrics; the index row as JSON
    .staging/                             puts in progress (host-pid-uuid), removed when done

A version directory has the layout of a `python -m diffmimic.train` output directory, so
`python -m diffmimic.evaluate` reads one (and an export) directly.

Writes are atomic: `put` writes everything into `.staging/`, hashes it, then, holding SQLite's
write lock, renames the directory into `policies/` and commits the index row with the file hashes.
A writer killed before the commit leaves at most a staging or version directory that no row
points to; readers never see it, `verify` reports it as a leftover and the next `put` of that clip
(or `remove_leftovers`) deletes it. The index lives on a POSIX filesystem (SQLite's WAL needs
working file locks and shared memory: a local disk, or one shared volume with one writer host);
object-store URIs such as gs:// are refused.

No pickle anywhere: parameters through Orbax, references as npz without objects, metadata as
JSON and SQLite.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime
import difflib
import functools
import hashlib
import json
import math
import os
import re
import shutil
import socket
import sqlite3
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

from factory import snapshot

INDEX_FILE = "index.sqlite"
POLICIES_DIR = "policies"
STAGING_DIR = ".staging"
STATUSES = ("converged", "best_effort", "failed")
BUSY_TIMEOUT_S = 60.0

# Test hooks: called with the staging/version directory at each stage of `put` (a test kills the
# writer there). Empty in normal use.
PUT_HOOKS: dict[str, Callable[[Path], None]] = {}


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


MIGRATIONS: list[Callable[[sqlite3.Connection], None]] = [_migrate_to_v1]


def schema_version() -> int:
    """The index schema version this code writes."""
    return len(MIGRATIONS)


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

    @property
    def ref(self) -> str:
        """`clip_id@version`, unambiguous."""
        return f"{self.clip_id}@{self.version}"

    def to_dict(self, history: bool = True) -> dict:
        data = dataclasses.asdict(self)
        if not history:
            data.pop("history")
        return data


_JSON_COLUMNS = ("character", "pose_absurdity", "config", "history")
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


# --------------------------------------------------------------------------------------------
# Helpers.

_CLIP_COMPONENT = re.compile(r"^[A-Za-z0-9_.+=,-][A-Za-z0-9 _.+=,()-]*$")
_VERSION_DIR = re.compile(r"^v\d{4,}$")


DEFAULT_ROOT = "~/diffmimic-library"


def default_root() -> str:
    """The library used when none is given: $DIFFMIMIC_LIBRARY, else ~/diffmimic-library."""
    return os.environ.get("DIFFMIMIC_LIBRARY", DEFAULT_ROOT)


def check_clip_id(clip_id: str) -> str:
    """Validates a clip id (`dataset/relative/path/without_extension`); returns it."""
    parts = clip_id.split("/")
    if len(parts) < 2:
        raise LibraryError(f"clip id {clip_id!r}: expected 'dataset/relative/path' (e.g. amass/CMU/75/75_09_poses)")
    for part in parts:
        if part in ("", ".", "..") or not _CLIP_COMPONENT.match(part) or _VERSION_DIR.match(part):
            raise LibraryError(f"clip id {clip_id!r}: bad component {part!r} (letters, digits, ' _.+=,()-'; "
                               "not empty, '.', '..' or like 'v0001')")
    return clip_id


def clip_id_for(dataset: str, dataset_root: str | os.PathLike, path: str | os.PathLike) -> str:
    """The clip id of a mocap file: `dataset/` + its path relative to the dataset root, without
    extension (AMASS `.../75_09_poses.npz` -> `amass/CMU/75/75_09_poses`)."""
    relative = Path(path).resolve().relative_to(Path(dataset_root).resolve())
    return check_clip_id("/".join((dataset, *relative.with_suffix("").parts)))


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


@functools.lru_cache(maxsize=1)
def current_code_version() -> str:
    """The git commit of the installed code (with `-dirty` for local changes), else the package
    version."""
    here = Path(__file__).resolve().parent
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True,
                                timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=here,
                               capture_output=True, text=True, timeout=10, check=True).stdout.strip()
        return commit + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        from importlib import metadata

        try:
            return "diffmimic-factory " + metadata.version("diffmimic-factory")
        except metadata.PackageNotFoundError:
            return "unknown"


def _utc_now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="milliseconds")


def _fsync_tree(directory: Path) -> None:
    """Flushes every file and directory under `directory` to disk."""
    for dirpath, _, filenames in os.walk(directory):
        for filename in filenames:
            with open(os.path.join(dirpath, filename), "rb") as f:
                os.fsync(f.fileno())
        _fsync_dir(Path(dirpath))


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _manifest(directory: Path, skip: Iterable[str] = ()) -> dict[str, tuple[int, str]]:
    """relpath -> (size, sha256) of every file under `directory`."""
    skip = set(skip)
    files = {}
    for path in sorted(p for p in directory.rglob("*") if p.is_file()):
        relpath = path.relative_to(directory).as_posix()
        if relpath not in skip:
            files[relpath] = (path.stat().st_size, sha256_file(path))
    return files


def _network_sizes(params) -> tuple[int, int, list[int]]:
    """(observation_size, action_size, hidden widths) of the policy MLP's parameters."""
    layers = params["params"]
    names = sorted(layers, key=lambda n: int(n.rsplit("_", 1)[1]))
    kernels = [layers[n]["kernel"].shape for n in names]
    return int(kernels[0][0]), int(kernels[-1][1]), [int(k[1]) for k in kernels[:-1]]


def character_dict(character_config) -> dict:
    return json.loads(json.dumps(dataclasses.asdict(character_config)))


def character_config_from_dict(data: dict | None):
    from diffmimic.character.mjcf import CharacterConfig

    if not data:
        return CharacterConfig()
    data = dict(data)
    if "solref" in data:
        data["solref"] = tuple(data["solref"])
    return CharacterConfig(**data)


def _metrics_dict(metrics) -> dict:
    if metrics is None:
        return {}
    if hasattr(metrics, "to_dict"):
        return metrics.to_dict()
    return dict(metrics)


# --------------------------------------------------------------------------------------------
# Policies.

@functools.lru_cache(maxsize=8)
def _jitted_apply(observation_size: int, action_size: int, hidden: tuple[int, ...]):
    import jax

    from diffmimic.policy import make_policy_network

    _, apply = make_policy_network(observation_size, action_size, hidden)
    return jax.jit(apply)


@dataclasses.dataclass
class Policy:
    """A loaded library policy: parameters, normaliser, its clip's reference and configs.

    `act(obs)` maps observations (obs_size,) or (batch, obs_size) to PD-target actions;
    `rollout(seconds=..., start_frame=...)` simulates it tracking its reference.
    """

    record: PolicyRecord
    params: Any
    normaliser: Any
    reference: Any  # diffmimic.mocap.retarget.Reference
    config: Any  # diffmimic.train.TrainConfig
    character_config: Any  # diffmimic.character.mjcf.CharacterConfig
    observation_size: int
    action_size: int

    @property
    def clip_id(self) -> str:
        return self.record.clip_id

    @property
    def env(self):
        """The mimic environment the policy was trained in (observe/step/reset)."""
        from diffmimic.train import compiled_functions

        return compiled_functions(self.config, self.character_config).env

    def act(self, obs):
        """Actions (..., action_size) for observations (..., observation_size)."""
        import numpy as np

        obs = np.asarray(obs, np.float32)
        if obs.shape[-1] != self.observation_size:
            raise ValueError(f"{self.record.ref}: observations must have {self.observation_size} features, "
                             f"got shape {obs.shape}")
        apply = _jitted_apply(self.observation_size, self.action_size, tuple(self.config.hidden))
        return np.asarray(apply(self.params, self.normaliser, obs))

    def rollout(self, seconds: float | None = None, start_frame: int = 0):
        """Simulates the policy from reference frame `start_frame` for `seconds` (default: to the
        clip's end; beyond it the clip loops). Returns a `diffmimic.rollout.Trajectory` with body
        positions (N + 1, 24, 3) and per-frame pose error (N,)."""
        from diffmimic.rollout import rollout_policy

        return rollout_policy(self.config, self.params, self.normaliser, self.reference, seconds=seconds,
                              start_frame=start_frame, character_config=self.character_config)


def load_policy_directory(directory: str | os.PathLike, record: PolicyRecord | None = None) -> Policy:
    """Loads a version directory or an export (or a `diffmimic.train` output directory)."""
    from diffmimic.mocap.retarget import Reference
    from diffmimic.policy import load_policy
    from diffmimic.train import TrainConfig

    directory = Path(directory)
    try:
        meta = json.loads((directory / "policy.json").read_text())
        sizes = {key: meta[key] for key in ("observation_size", "action_size", "hidden")}
        config = TrainConfig.from_dict(json.loads((directory / "config.json").read_text()))
    except KeyError as err:
        raise LibraryError(f"{directory / 'policy.json'}: incomplete, no {err} (not a policy directory)") from None
    except (OSError, ValueError, TypeError) as err:
        raise LibraryError(f"{directory}: not a policy directory ({_one_line(err)})") from None
    if record is None:
        meta_path = directory / "meta.json"
        if meta_path.is_file():
            data = json.loads(meta_path.read_text())
            record = PolicyRecord(**{k: data.get(k) for k in _FIELDS})
        else:
            record = PolicyRecord(clip_id=f"local/{directory.name}", version=0, name=directory.name,
                                  dataset="local", status="best_effort", attempts=1, created_at="",
                                  path=str(directory))
    character_config = character_config_from_dict(record.character)
    params, normaliser = load_policy(directory, sizes["observation_size"], sizes["action_size"], sizes["hidden"])
    reference = Reference.load(directory / "reference.npz")
    return Policy(record=record, params=params, normaliser=normaliser, reference=reference, config=config,
                  character_config=character_config, observation_size=int(meta["observation_size"]),
                  action_size=int(meta["action_size"]))


# --------------------------------------------------------------------------------------------
# The library.

@dataclasses.dataclass
class VerifyReport:
    """What `verify` found: `broken` (clip ref, problem) pairs for rows whose files are missing,
    altered or unloadable; `leftovers`: directories of interrupted puts that no row points to."""

    checked: int = 0
    broken: list[tuple[str, str]] = dataclasses.field(default_factory=list)
    leftovers: list[str] = dataclasses.field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.broken


class PolicyLibrary:
    """A policy library at `root` (a local or shared POSIX directory).

    `PolicyLibrary(root)` opens an existing library (NotALibraryError otherwise);
    `PolicyLibrary(root, create=True)` creates one if needed. Opening migrates an older index
    schema. Every method opens its own SQLite connection, so one object may be used from several
    threads, and readers in other processes run alongside one writer (WAL).
    """

    def __init__(self, root: str | os.PathLike, create: bool = False):
        text = os.fspath(root)
        if re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*://", text):
            raise NotALibraryError(f"{text}: a library root must be a filesystem path (the SQLite index needs "
                                   "POSIX file locks); object-store URIs are not supported")
        self.root = Path(text).expanduser().absolute()
        self.index_path = self.root / INDEX_FILE
        self.snapshot = None
        if snapshot.is_snapshot(self.root):
            self._open_snapshot()
            return
        network = snapshot.network_filesystem(self.root)
        if network and not os.environ.get(snapshot.ALLOW_NETWORK_ENV):
            raise LibraryError(f"{self.root}: on a network filesystem ({network}), where SQLite's locks and WAL are "
                               f"unreliable; keep the library on a local disk and publish read-only snapshots to "
                               f"shared storage (factory/run.py --publish DIR); {snapshot.ALLOW_NETWORK_ENV}=1 "
                               f"overrides")
        if not self.index_path.is_file():
            if not create:
                what = "does not exist" if not self.root.exists() else f"has no {INDEX_FILE}"
                raise NotALibraryError(f"{self.root}: not a policy library ({what})")
            self.root.mkdir(parents=True, exist_ok=True)
            (self.root / POLICIES_DIR).mkdir(exist_ok=True)
        self._migrate(create)

    def _open_snapshot(self) -> None:
        """A published snapshot (`factory.snapshot`): read-only, its index opened immutable."""
        try:
            self.snapshot = json.loads((self.root / snapshot.SNAPSHOT_FILE).read_text())
        except (OSError, ValueError) as err:
            raise NotALibraryError(f"{self.root / snapshot.SNAPSHOT_FILE}: unreadable ({_one_line(err)})") from None
        if not self.index_path.is_file():
            raise NotALibraryError(f"{self.root}: a snapshot still being published for the first time (no "
                                   f"{INDEX_FILE} yet)")
        try:
            with self._connect() as db:
                version = self._schema_version(db)
        except sqlite3.DatabaseError as err:
            raise NotALibraryError(f"{self.index_path}: not a policy library index ({err})") from err
        if version != schema_version():
            raise LibraryError(f"{self.root}: snapshot index schema {version}, this code reads {schema_version()}: "
                               f"publish it again with this code")

    @property
    def read_only(self) -> bool:
        return self.snapshot is not None

    def _check_writable(self) -> None:
        if self.snapshot is not None:
            raise LibraryError(f"{self.root}: a read-only snapshot published from {self.snapshot.get('source_host')}:"
                               f"{self.snapshot.get('source_root')}; write to that library")

    # -- connections -------------------------------------------------------------------------
    @contextlib.contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        if self.snapshot is not None:  # no locks, no journal, no shared memory: safe on NFS
            uri = f"{self.index_path.as_uri()}?mode=ro&immutable=1"
            db = sqlite3.connect(uri, uri=True, isolation_level=None)
        else:
            db = sqlite3.connect(self.index_path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
        try:
            db.row_factory = sqlite3.Row
            db.execute("PRAGMA foreign_keys = ON")
            yield db
        finally:
            db.close()

    @contextlib.contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """A connection inside BEGIN IMMEDIATE (the write lock), committed on success."""
        self._check_writable()
        with self._connect() as db:
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

    def _migrate(self, create: bool) -> None:
        try:
            with self._connect() as db:
                mode = db.execute("PRAGMA journal_mode").fetchone()[0]
                current = self._schema_version(db)
                if current == schema_version() and mode == "wal":
                    return
                if current > schema_version():
                    raise LibraryError(f"{self.index_path}: index schema version {current} is newer than this "
                                       f"code supports ({schema_version()}); upgrade diffmimic-factory")
                if current == 0 and not create:
                    raise NotALibraryError(f"{self.root}: not a policy library ({INDEX_FILE} has no schema)")
                db.execute("PRAGMA journal_mode = WAL")
                db.execute("BEGIN IMMEDIATE")
                try:
                    db.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
                    current = self._schema_version(db)  # again, under the lock
                    for step in range(current, schema_version()):
                        MIGRATIONS[step](db)
                    db.execute("DELETE FROM schema_version")
                    db.execute("INSERT INTO schema_version (version) VALUES (?)", (max(current, schema_version()),))
                except BaseException:
                    db.execute("ROLLBACK")
                    raise
                db.execute("COMMIT")
        except sqlite3.DatabaseError as err:
            raise NotALibraryError(f"{self.index_path}: not a policy library index ({err})") from err

    @staticmethod
    def _schema_version(db: sqlite3.Connection) -> int:
        exists = db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_version'").fetchone()
        if not exists:
            return 0
        row = db.execute("SELECT MAX(version) FROM schema_version").fetchone()
        return int(row[0] or 0)

    # -- reading -----------------------------------------------------------------------------
    def _newest_rows_sql(self) -> str:
        return ("SELECT * FROM policies p WHERE version = "
                "(SELECT MAX(version) FROM policies q WHERE q.clip_id = p.clip_id)")

    def versions(self, clip_id: str) -> list[PolicyRecord]:
        """Every version of a clip id (exact), oldest first."""
        with self._connect() as db:
            rows = db.execute("SELECT * FROM policies WHERE clip_id = ? ORDER BY version", (clip_id,)).fetchall()
        return [_record_from_row(r) for r in rows]

    def resolve(self, name: str) -> str:
        """The clip id that `name` (an exact clip id or a unique short name) means.

        Raises AmbiguousNameError (listing the candidates) or UnknownNameError (with close matches).
        """
        with self._connect() as db:
            if db.execute("SELECT 1 FROM policies WHERE clip_id = ? LIMIT 1", (name,)).fetchone():
                return name
            short = name.rsplit("/", 1)[-1]
            candidates = [r[0] for r in db.execute(
                "SELECT DISTINCT clip_id FROM policies WHERE name = ? ORDER BY clip_id", (short,))]
            if "/" in name:  # a partial path: keep the candidates that end with it
                candidates = [c for c in candidates if c.endswith("/" + name)]
            if len(candidates) == 1:
                return candidates[0]
            if candidates:
                raise AmbiguousNameError(f"name {name!r} is ambiguous: {len(candidates)} clips match: "
                                         + ", ".join(candidates) + " (give the full clip id)")
            ids = [r[0] for r in db.execute("SELECT DISTINCT clip_id FROM policies")]
        names = sorted({c.rsplit("/", 1)[-1] for c in ids})
        close = [c for c in sorted(ids) if name.lower() in c.lower()]
        close += [c for c in difflib.get_close_matches(name, ids, n=5, cutoff=0.5) if c not in close]
        close += [c for n in difflib.get_close_matches(short, names, n=5, cutoff=0.5)
                  for c in sorted(ids) if c.rsplit("/", 1)[-1] == n and c not in close]
        hint = f"; did you mean {', '.join(close[:5])}?" if close else ""
        raise UnknownNameError(f"no clip named {name!r} in {self.root} ({len(ids)} clips){hint}")

    def get(self, name: str, version: int | None = None) -> PolicyRecord:
        """The index row of clip `name` (clip id or unique short name): the newest version, or
        `version`."""
        clip_id = self.resolve(name)
        with self._connect() as db:
            if version is None:
                row = db.execute("SELECT * FROM policies WHERE clip_id = ? ORDER BY version DESC LIMIT 1",
                                 (clip_id,)).fetchone()
            else:
                row = db.execute("SELECT * FROM policies WHERE clip_id = ? AND version = ?",
                                 (clip_id, int(version))).fetchone()
        if row is None:
            have = [r.version for r in self.versions(clip_id)]
            raise UnknownNameError(f"{clip_id} has no version {version} (versions: {have})")
        return _record_from_row(row)

    def query(self, dataset: str | None = None, status: str | Sequence[str] | None = None,
              max_pose_error_m: float | None = None, name_glob: str | None = None, limit: int | None = None,
              all_versions: bool = False) -> list[PolicyRecord]:
        """Rows matching every given filter, by clip id: the newest version of each clip (all
        versions with `all_versions`). `name_glob` is a shell pattern over the clip id or the short
        name (`*walk*`, `amass/CMU/*`)."""
        sql = "SELECT * FROM policies" if all_versions else self._newest_rows_sql()
        where, args = [], []
        if dataset is not None:
            where.append("dataset = ?")
            args.append(dataset)
        if status is not None:
            statuses = [status] if isinstance(status, str) else list(status)
            for s in statuses:
                if s not in STATUSES:
                    raise LibraryError(f"unknown status {s!r}; choose from {', '.join(STATUSES)}")
            where.append(f"status IN ({', '.join('?' * len(statuses))})")
            args.extend(statuses)
        if max_pose_error_m is not None:
            where.append("pose_error_m IS NOT NULL AND pose_error_m <= ?")
            args.append(float(max_pose_error_m))
        if name_glob is not None:
            where.append("(clip_id GLOB ? OR name GLOB ?)")
            args.extend([name_glob, name_glob])
        if where:
            sql += (" AND " if not all_versions else " WHERE ") + " AND ".join(where)
        sql += " ORDER BY clip_id, version"
        if limit is not None:
            sql += " LIMIT ?"
            args.append(int(limit))
        with self._connect() as db:
            return [_record_from_row(r) for r in db.execute(sql, args).fetchall()]

    def __len__(self) -> int:
        with self._connect() as db:
            return int(db.execute("SELECT COUNT(DISTINCT clip_id) FROM policies").fetchone()[0])

    def path_of(self, record: PolicyRecord) -> Path:
        if record.path is None:
            raise LibraryError(f"{record.ref} has no checkpoint (status {record.status}: {record.error})")
        return self.root / record.path

    def files(self, record: PolicyRecord) -> dict[str, tuple[int, str]]:
        """relpath -> (size, sha256) of a version's files, as the index recorded them."""
        with self._connect() as db:
            rows = db.execute("SELECT f.relpath, f.size, f.sha256 FROM files f JOIN policies p ON p.id = f.policy_id "
                              "WHERE p.clip_id = ? AND p.version = ? ORDER BY f.relpath",
                              (record.clip_id, record.version)).fetchall()
        return {r[0]: (int(r[1]), r[2]) for r in rows}

    def load_policy(self, name: str, version: int | None = None) -> Policy:
        """The `Policy` of clip `name` (newest version, or `version`)."""
        record = self.get(name, version)
        if record.path is None:
            usable = [r.version for r in self.versions(record.clip_id) if r.path is not None]
            raise LibraryError(f"{record.ref} failed ({record.error}); it has no checkpoint"
                               + (f"; versions with one: {usable}" if usable else ""))
        return load_policy_directory(self.path_of(record), record)

    # -- writing -----------------------------------------------------------------------------
    def put(self, clip_id: str, *, reference, params, normaliser, config, status: str, metrics=None,
            initial_metrics=None, history: Sequence[dict] = (), samples: int | None = None,
            train_s: float | None = None, iterations: int | None = None, attempts: int = 1,
            source_path: str | os.PathLike | None = None, source_sha256: str | None = None,
            character_config=None, code_version: str | None = None, error: str | None = None) -> PolicyRecord:
        """Adds a trained policy as the clip's next version, atomically; returns its row.

        Args:
          clip_id: `dataset/relative/path` (see `clip_id_for`).
          reference: the clip's `Reference` (stored with the policy).
          params, normaliser: the policy (`TrainResult.params/.normaliser` or `load_policy`).
          config: its `TrainConfig`.
          status: `converged` or `best_effort` (use `put_failure` for failed clips).
          metrics, initial_metrics: `EvalMetrics` (or dicts) of the policy and the untrained one.
          history: the evaluation records of training.
          source_path: the mocap file (default `reference.source`); hashed if it exists and
            `source_sha256` is None.
        """
        if status not in ("converged", "best_effort"):
            raise LibraryError(f"put: status must be 'converged' or 'best_effort' (failed clips: put_failure), "
                               f"got {status!r}")
        from diffmimic.character.mjcf import CharacterConfig
        from diffmimic.policy import save_policy

        check_clip_id(clip_id)
        metrics = _metrics_dict(metrics)
        initial = _metrics_dict(initial_metrics)
        character_config = character_config or CharacterConfig()
        source_path = os.fspath(source_path) if source_path is not None else reference.source
        if source_sha256 is None and source_path and os.path.isfile(source_path):
            source_sha256 = sha256_file(source_path)
        observation_size, action_size, hidden = _network_sizes(params)
        if tuple(hidden) != tuple(config.hidden):
            raise LibraryError(f"put {clip_id}: parameters have hidden widths {hidden}, config.hidden is "
                               f"{list(config.hidden)}")

        record = PolicyRecord(
            clip_id=clip_id, version=0, name=clip_id.rsplit("/", 1)[-1], dataset=clip_id.split("/", 1)[0],
            status=status, attempts=int(attempts), created_at="", source_path=source_path,
            source_sha256=source_sha256, character=character_dict(character_config),
            skeleton=reference.skeleton, frames=reference.num_frames, fps=float(reference.fps),
            duration_s=float(reference.duration_s), pose_error_m=_float(metrics.get("pose_error_m")),
            initial_pose_error_m=_float(initial.get("pose_error_m")),
            global_error_m=_float(metrics.get("global_error_m")),
            fell=None if metrics.get("fell") is None else bool(metrics["fell"]),
            fell_at_s=_float(metrics.get("fell_at_s")), pose_absurdity=metrics.get("absurdity"),
            samples=None if samples is None else int(samples), train_s=_float(train_s),
            iterations=int(iterations if iterations is not None else config.iterations), seed=int(config.seed),
            backend=config.env.backend, config=json.loads(json.dumps(config.to_dict())),
            code_version=code_version or current_code_version(), error=error, history=[dict(h) for h in history])

        staging = self._new_staging()
        try:
            save_policy(staging, params, normaliser, {"observation_size": observation_size,
                                                      "action_size": action_size, "hidden": hidden})
            reference.save(staging / "reference.npz")
            (staging / "config.json").write_text(json.dumps(record.config, indent=2))
            with open(staging / "metrics.jsonl", "w") as f:
                for h in record.history:
                    f.write(json.dumps(h) + "\n")
            result = {**{k: v for k, v in metrics.items() if k != "per_frame_pose_error_m"},
                      "pose_absurdity_m": metrics.get("absurdity"),
                      "initial_pose_error_m": record.initial_pose_error_m, "samples": record.samples,
                      "train_s": record.train_s, "iterations": record.iterations, "backend": record.backend,
                      "source": source_path}
            (staging / "result.json").write_text(json.dumps(result, indent=2))
            manifest = _manifest(staging)
            _call_hook("staged", staging)
            return self._publish(record, staging, manifest)
        finally:
            if staging.exists():
                shutil.rmtree(staging, ignore_errors=True)

    def put_result(self, clip_id: str, result, config, reference, *, status: str, attempts: int = 1,
                   source_path: str | os.PathLike | None = None, **kwargs) -> PolicyRecord:
        """`put` of a `diffmimic.train.TrainResult`."""
        return self.put(clip_id, reference=reference, params=result.params, normaliser=result.normaliser,
                        config=config, status=status, metrics=result.metrics,
                        initial_metrics=result.initial_metrics, history=result.history, samples=result.samples,
                        train_s=result.train_s, iterations=result.iterations, attempts=attempts,
                        source_path=source_path, **kwargs)

    def put_directory(self, clip_id: str, directory: str | os.PathLike, *, status: str, attempts: int = 1,
                      source_path: str | os.PathLike | None = None, **kwargs) -> PolicyRecord:
        """`put` of a `python -m diffmimic.train` output directory (checkpoint, config.json,
        result.json, metrics.jsonl, reference.npz)."""
        from diffmimic.mocap.retarget import Reference
        from diffmimic.policy import load_policy
        from diffmimic.train import TrainConfig

        directory = Path(directory)
        try:
            config = TrainConfig.from_dict(json.loads((directory / "config.json").read_text()))
            meta = json.loads((directory / "policy.json").read_text())
            summary = json.loads((directory / "result.json").read_text())
            history = [json.loads(line) for line in (directory / "metrics.jsonl").read_text().splitlines() if line]
            sizes = {key: meta[key] for key in ("observation_size", "action_size", "hidden")}
        except KeyError as err:
            raise LibraryError(f"{directory / 'policy.json'}: incomplete, no {err} (not a policy directory)") from None
        except (OSError, ValueError) as err:
            raise LibraryError(f"{directory}: not a training output directory ({_one_line(err)})") from None
        params, normaliser = load_policy(directory, sizes["observation_size"], sizes["action_size"], sizes["hidden"])
        reference = Reference.load(directory / "reference.npz")
        metrics = {"pose_error_m": summary.get("pose_error_m"), "global_error_m": summary.get("global_error_m"),
                   "fell": summary.get("fell"), "fell_at_s": summary.get("fell_at_s"),
                   "absurdity": summary.get("pose_absurdity_m")}
        return self.put(clip_id, reference=reference, params=params, normaliser=normaliser, config=config,
                        status=status, metrics=metrics,
                        initial_metrics={"pose_error_m": summary.get("initial_pose_error_m")}, history=history,
                        samples=summary.get("samples"), train_s=summary.get("train_s"),
                        iterations=summary.get("iterations"), attempts=attempts,
                        source_path=source_path or summary.get("source"), **kwargs)

    def put_failure(self, clip_id: str, error: str, *, attempts: int = 1, config=None, reference=None,
                    source_path: str | os.PathLike | None = None, history: Sequence[dict] = (),
                    code_version: str | None = None) -> PolicyRecord:
        """Records a clip that could not be trained (status `failed`, no checkpoint)."""
        check_clip_id(clip_id)
        source_path = os.fspath(source_path) if source_path is not None else getattr(reference, "source", None)
        record = PolicyRecord(
            clip_id=clip_id, version=0, name=clip_id.rsplit("/", 1)[-1], dataset=clip_id.split("/", 1)[0],
            status="failed", attempts=int(attempts), created_at="", source_path=source_path,
            source_sha256=sha256_file(source_path) if source_path and os.path.isfile(source_path) else None,
            skeleton=getattr(reference, "skeleton", None),
            frames=None if reference is None else reference.num_frames,
            fps=None if reference is None else float(reference.fps),
            duration_s=None if reference is None else float(reference.duration_s),
            seed=None if config is None else int(config.seed),
            backend=None if config is None else config.env.backend,
            config=None if config is None else json.loads(json.dumps(config.to_dict())),
            code_version=code_version or current_code_version(), error=str(error), history=[dict(h) for h in history])
        return self._publish(record, None, {})

    def _new_staging(self) -> Path:
        self._check_writable()
        staging_root = self.root / STAGING_DIR
        staging_root.mkdir(exist_ok=True)
        self._remove_dead_staging()
        staging = staging_root / f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:12]}"
        staging.mkdir()
        return staging

    def _remove_dead_staging(self) -> list[Path]:
        """Removes staging directories of writers on this host that are no longer running."""
        removed = []
        host = socket.gethostname()
        for path in (self.root / STAGING_DIR).glob("*"):
            owner, pid = _staging_owner(path.name)
            if owner == host and pid is not None and not _pid_alive(pid):
                shutil.rmtree(path, ignore_errors=True)
                removed.append(path)
        return removed

    def _publish(self, record: PolicyRecord, staging: Path | None, manifest: dict) -> PolicyRecord:
        """Under the write lock: pick the version, move `staging` into place, commit the row."""
        if staging is not None:
            _fsync_tree(staging)
        with self._write() as db:
            row = db.execute("SELECT MAX(version) FROM policies WHERE clip_id = ?", (record.clip_id,)).fetchone()
            version = int(row[0] or 0) + 1
            relpath = None
            if staging is not None:
                relpath = f"{POLICIES_DIR}/{record.clip_id}/v{version:04d}"
            record = dataclasses.replace(record, version=version, created_at=_utc_now(), path=relpath)
            if staging is not None:
                meta = staging / "meta.json"
                meta.write_text(json.dumps(record.to_dict(history=False), indent=2))
                with open(meta, "rb") as f:
                    os.fsync(f.fileno())
                manifest = {**manifest, **_manifest(staging, skip=manifest)}
                target = self.root / relpath
                if target.exists():  # left by a writer killed before its commit: we hold the lock
                    shutil.rmtree(target)
                target.parent.mkdir(parents=True, exist_ok=True)
                os.rename(staging, target)
                _fsync_dir(target.parent)
                _call_hook("published", target)
            values = _row_values(record)
            columns = ", ".join(values)
            cursor = db.execute(f"INSERT INTO policies ({columns}) VALUES ({', '.join('?' * len(values))})",
                                list(values.values()))
            db.executemany("INSERT INTO files (policy_id, relpath, size, sha256) VALUES (?, ?, ?, ?)",
                           [(cursor.lastrowid, rel, size, digest) for rel, (size, digest) in manifest.items()])
        return record

    # -- checking ----------------------------------------------------------------------------
    def leftovers(self) -> list[Path]:
        """Directories of interrupted puts: staging directories and version directories that no
        index row points to (a concurrent writer's in-progress staging directory is listed too)."""
        with self._connect() as db:
            known = {r[0] for r in db.execute("SELECT path FROM policies WHERE path IS NOT NULL")}
        found = sorted((self.root / STAGING_DIR).glob("*")) if (self.root / STAGING_DIR).is_dir() else []
        policies = self.root / POLICIES_DIR
        if policies.is_dir():
            for dirpath, dirnames, _ in os.walk(policies):
                for d in list(dirnames):
                    if _VERSION_DIR.match(d):
                        path = Path(dirpath) / d
                        if path.relative_to(self.root).as_posix() not in known:
                            found.append(path)
                        dirnames.remove(d)
        return found

    def remove_leftovers(self) -> list[Path]:
        """Deletes orphan version directories (under the write lock) and dead writers' staging
        directories; returns what it removed."""
        removed = self._remove_dead_staging() if (self.root / STAGING_DIR).is_dir() else []
        with self._write():
            for path in self.leftovers():
                if path.parent.name != STAGING_DIR:
                    shutil.rmtree(path, ignore_errors=True)
                    removed.append(path)
        return removed

    def verify(self, load: bool = True, progress: Callable[[str], None] | None = None) -> VerifyReport:
        """Checks every row's files against the index hashes and (with `load`) loads each
        checkpoint and reference. Returns a `VerifyReport`."""
        report = VerifyReport()
        for record in self.query(all_versions=True):
            if record.path is None:
                continue
            report.checked += 1
            problems = self._check_files(record)
            if load and not problems:
                try:
                    policy = self.load_policy(record.clip_id, record.version)
                    from diffmimic.policy import tree_is_finite

                    if not tree_is_finite(policy.params):
                        problems.append("checkpoint has non-finite parameters")
                except Exception as err:  # any failure to load is the finding
                    problems.append(f"does not load: {type(err).__name__}: {_one_line(err)}")
            for problem in problems:
                report.broken.append((record.ref, problem))
                if progress:
                    progress(f"BROKEN {record.ref}: {problem}")
        report.leftovers = [p.relative_to(self.root).as_posix() for p in self.leftovers()]
        return report

    def _check_files(self, record: PolicyRecord) -> list[str]:
        directory = self.path_of(record)
        expected = self.files(record)
        if not directory.is_dir():
            return [f"directory {record.path} is missing"]
        if not expected:
            return ["the index lists no files"]
        problems = []
        missing = [rel for rel in expected if not (directory / rel).is_file()]
        if missing:
            problems.append(f"{len(missing)} file(s) missing: {', '.join(missing[:3])}")
        altered = [rel for rel, (size, digest) in expected.items() if rel not in missing and (
            (directory / rel).stat().st_size != size or sha256_file(directory / rel) != digest)]
        if altered:
            problems.append(f"{len(altered)} file(s) differ from their index hash: {', '.join(altered[:3])}")
        return problems

    def stats(self) -> dict:
        """Counts by status and pose error quantiles over the newest version of every clip."""
        import numpy as np

        rows = self.query()
        counts = {s: 0 for s in STATUSES}
        for r in rows:
            counts[r.status] += 1
        errors = np.array([r.pose_error_m for r in rows if r.pose_error_m is not None and r.status != "failed"])
        quantiles = ({f"p{q}": float(np.quantile(errors, q / 100)) for q in (10, 50, 90, 99)}
                     | {"min": float(errors.min()), "max": float(errors.max()), "mean": float(errors.mean())}
                     if errors.size else {})
        with self._connect() as db:
            versions = int(db.execute("SELECT COUNT(*) FROM policies").fetchone()[0])
        return {"clips": len(rows), "versions": versions, "by_status": counts,
                "fell": sum(bool(r.fell) for r in rows if r.status != "failed"),
                "pose_error_m": quantiles}

    def export(self, name: str, directory: str | os.PathLike, version: int | None = None) -> Path:
        """Copies one policy into `directory` (new or empty): checkpoint, reference, configs,
        metrics, meta.json and SHA256SUMS. The copy loads with `load_policy_directory` and
        `python -m diffmimic.evaluate`."""
        record = self.get(name, version)
        source = self.path_of(record)
        problems = self._check_files(record)
        if problems:
            raise LibraryError(f"{record.ref} is broken, not exported: {'; '.join(problems)}")
        directory = Path(directory)
        if directory.exists() and not directory.is_dir():
            raise LibraryError(f"{directory}: export target is a file, not a directory")
        if directory.exists() and any(directory.iterdir()):
            raise LibraryError(f"{directory}: export target exists and is not empty")
        from diffmimic import atomic

        sums = "".join(f"{digest}  {rel}\n" for rel, (_, digest) in self.files(record).items())

        def build(tmp: Path) -> None:
            shutil.copytree(source, tmp, dirs_exist_ok=True)
            (tmp / "SHA256SUMS").write_text(sums)

        return atomic.replace_directory(directory, build)


def _float(value) -> float | None:
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _one_line(err: BaseException) -> str:
    return " ".join(str(err).split())[:300]


def _call_hook(stage: str, path: Path) -> None:
    hook = PUT_HOOKS.get(stage)
    if hook:
        hook(path)


def _staging_owner(name: str) -> tuple[str | None, int | None]:
    parts = name.rsplit("-", 2)
    if len(parts) != 3 or not parts[1].isdigit():
        return None, None
    return parts[0], int(parts[1])


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# --------------------------------------------------------------------------------------------
# Command line.

def _fmt(value, spec: str = "") -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return format(value, spec)


def _table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(header)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths)).rstrip()]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    return "\n".join(lines)


def _cmd_list(library: PolicyLibrary, args) -> int:
    records = library.query(dataset=args.dataset, status=args.status, name_glob=args.glob,
                            all_versions=args.all_versions)
    if args.json:
        print(json.dumps([r.to_dict(history=False) for r in records], indent=2))
        return 0
    rows = [[r.clip_id, str(r.version), r.status, _fmt(r.pose_error_m, ".4f"), _fmt(r.fell),
             _fmt(r.frames), _fmt(r.duration_s, ".2f"), str(r.attempts), r.created_at[:19]] for r in records]
    print(_table(rows, ["clip", "ver", "status", "pose_err_m", "fell", "frames", "secs", "tries", "created"]))
    print(f"{len(records)} clip(s)" + (" (all versions)" if args.all_versions else ""))
    return 0


def _cmd_show(library: PolicyLibrary, args) -> int:
    record = library.get(args.name, args.version)
    files = library.files(record) if record.path else {}
    if args.json:
        print(json.dumps({**record.to_dict(), "directory": str(library.root / record.path) if record.path else None,
                          "files": {k: {"size": s, "sha256": d} for k, (s, d) in files.items()},
                          "versions": [r.version for r in library.versions(record.clip_id)]}, indent=2))
        return 0
    data = record.to_dict(history=False)
    for key in ("config", "character"):
        data[key] = "(json, see --json)" if data[key] is not None else None
    width = max(map(len, data))
    for key, value in data.items():
        print(f"{key.ljust(width)}  {json.dumps(value) if isinstance(value, dict) else _fmt(value)}")
    print(f"{'versions'.ljust(width)}  {[r.version for r in library.versions(record.clip_id)]}")
    if record.path:
        directory = library.root / record.path
        print(f"{'directory'.ljust(width)}  {directory}")
        print(f"{'checkpoint'.ljust(width)}  {directory / 'checkpoint'}")
        print(f"{'reference'.ljust(width)}  {directory / 'reference.npz'}")
    history = record.history or []
    print(f"history ({len(history)} evaluations)")
    if history:
        rows = [[_fmt(h.get("iteration")), _fmt(h.get("loss"), ".5f"), _fmt(h.get("pose_error_m"), ".4f"),
                 _fmt(h.get("replay_rate"), ".2f"), _fmt(h.get("fell")), _fmt(h.get("samples")),
                 _fmt(h.get("train_s"), ".1f")] for h in history]
        print(_table(rows, ["iter", "loss", "pose_err_m", "replay", "fell", "samples", "train_s"]))
    return 0


def _cmd_rollout(library: PolicyLibrary, args) -> int:
    policy = library.load_policy(args.name, args.version)
    last = policy.reference.num_frames - 2  # a rollout needs at least one step inside the clip
    if not 0 <= args.start_frame <= last:
        raise LibraryError(f"{policy.record.ref}: --start-frame {args.start_frame} is outside the clip "
                           f"(frames 0..{last} can start a rollout)")
    if args.seconds is not None and not args.seconds > 0:
        raise LibraryError(f"--seconds must be positive, got {args.seconds}")
    trajectory = policy.rollout(seconds=args.seconds, start_frame=args.start_frame)
    out = trajectory.save(args.out, meta={"title": f"{policy.record.clip_id} v{policy.record.version}",
                                          "kind": "rollout", "character": character_dict(policy.character_config)})
    m = trajectory.metrics
    fell = f"yes, at {m.fell_at_s:.2f} s" if m.fell else "no"
    print(f"{policy.record.ref}: {trajectory.steps} steps ({trajectory.seconds:.2f} s) from frame "
          f"{args.start_frame}: pose error {m.pose_error_m:.4f} m, worst 5% {m.absurdity['worst_5pct']:.4f} m, "
          f"fell: {fell}; wrote {out}")
    return 0


def _cmd_render(args) -> int:
    from factory.render import FORMATS, render, scene_for_policy, scene_from_file

    out = Path(args.out)
    if out.suffix.lower() not in FORMATS:
        raise LibraryError(f"{out}: unknown output format (use {', '.join(FORMATS)})")
    if args.name.endswith(".npz"):
        if not Path(args.name).is_file():
            raise LibraryError(f"{args.name}: no such trajectory file")
        try:
            scene = scene_from_file(args.name)
        except ValueError as err:
            raise LibraryError(str(err)) from None
        what = args.name
    else:
        library = PolicyLibrary(args.root)
        from diffmimic.train import enable_compilation_cache

        enable_compilation_cache()
        policy = library.load_policy(args.name, args.version)
        scene, _ = scene_for_policy(policy, seconds=args.seconds, start_frame=args.start_frame)
        what = policy.record.ref
    progress = lambda k, n: print(f"  frame {k}/{n}", flush=True)
    path = render(scene, out, progress=progress)
    print(f"rendered {what} ({scene.frames} frames, {scene.frames / scene.fps:.1f} s) to {path}")
    return 0


def _cmd_report(library: PolicyLibrary, args) -> int:
    from factory.library_report import write_library_report

    renders = args.renders
    if renders not in ("all", "none"):
        try:
            renders = int(renders)
        except ValueError:
            raise LibraryError(f"--renders must be all, none or a number, got {renders!r}") from None
    if renders != "none" and renders != 0:
        from diffmimic.train import enable_compilation_cache

        enable_compilation_cache()
    path = write_library_report(library, args.out, dataset=args.dataset, renders=renders,
                                render_seconds=args.seconds, progress=lambda line: print(line, flush=True))
    print(f"wrote {path}")
    return 0


def _cmd_export(library: PolicyLibrary, args) -> int:
    record = library.get(args.name, args.version)
    out = library.export(record.clip_id, args.dir, record.version)
    print(f"exported {record.ref} to {out}")
    return 0


def _cmd_verify(library: PolicyLibrary, args) -> int:
    report = library.verify(load=not args.hashes_only, progress=lambda line: print(line, flush=True))
    for path in report.leftovers:
        print(f"LEFTOVER {path} (an interrupted put; no index row points to it)")
    if args.remove_leftovers and report.leftovers:
        for path in library.remove_leftovers():
            print(f"removed {path.relative_to(library.root)}")
    print(f"{report.checked} checkpoint(s) checked: {len(report.broken)} problem(s), "
          f"{len(report.leftovers)} leftover(s)")
    return 0 if report.ok else 1


def _cmd_stats(library: PolicyLibrary, args) -> int:
    stats = library.stats()
    if args.json:
        print(json.dumps(stats, indent=2))
        return 0
    print(f"{stats['clips']} clips, {stats['versions']} versions")
    for status, count in stats["by_status"].items():
        print(f"  {status:<12} {count}")
    print(f"  fell         {stats['fell']}")
    if stats["pose_error_m"]:
        print("pose error (m): " + "  ".join(f"{k} {v:.4f}" for k, v in stats["pose_error_m"].items()))
    return 0


def _cmd_put(library: PolicyLibrary, args) -> int:
    record = library.put_directory(args.clip_id, args.train_dir, status=args.status, attempts=args.attempts)
    print(f"added {record.ref} ({record.status}, pose error {_fmt(record.pose_error_m, '.4f')} m)")
    return 0


def _cmd_publish(library: PolicyLibrary, args) -> int:
    info = snapshot.publish_snapshot(library, args.dir)
    print(f"published {info['rows']} rows to {Path(args.dir).expanduser().absolute()} "
          f"({info['version_directories_copied']} new version directories, {info['seconds']:.1f} s); "
          f"readers: python -m factory.library --library {args.dir} list")
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m factory.library", description=__doc__.splitlines()[0])
    parser.add_argument("--library", "--root", dest="root", default=default_root(),
                        help="the library directory (default $DIFFMIMIC_LIBRARY or ~/diffmimic-library; "
                             "--root is the old spelling)")
    commands = parser.add_subparsers(dest="command", required=True)

    p = commands.add_parser("list", help="clips in the library (newest version of each)")
    p.add_argument("--status", choices=STATUSES)
    p.add_argument("--dataset")
    p.add_argument("--glob", help="shell pattern over clip id or short name")
    p.add_argument("--all-versions", action="store_true")
    p.add_argument("--json", action="store_true")
    p.set_defaults(run=_cmd_list)

    for command, help_text, run in (("show", "one clip's row, metric history and paths", _cmd_show),
                                    ("rollout", "simulate a policy and save the trajectory", _cmd_rollout),
                                    ("export", "copy one policy into a self-contained directory", _cmd_export)):
        p = commands.add_parser(command, help=help_text)
        p.add_argument("name", help="clip id or unique short name")
        p.add_argument("--version", type=int, help="default: the newest")
        p.set_defaults(run=run)
        if command == "show":
            p.add_argument("--json", action="store_true")
        elif command == "rollout":
            p.add_argument("--seconds", type=float, help="default: to the clip's end; longer loops the clip")
            p.add_argument("--start-frame", type=int, default=0)
            p.add_argument("--out", required=True, help="trajectory .npz")
        else:
            p.add_argument("dir", help="target directory (new or empty)")

    p = commands.add_parser("render", help="draw a policy (or a trajectory .npz) beside its reference: "
                                           "HTML viewer, GIF or MP4")
    p.add_argument("name", help="clip name, or a trajectory .npz from `rollout` or `python -m factory.compose`")
    p.add_argument("--out", required=True, help="FILE.html (offline viewer), FILE.gif or FILE.mp4")
    p.add_argument("--version", type=int, help="default: the newest")
    p.add_argument("--seconds", type=float, help="default: to the clip's end; longer loops the clip")
    p.add_argument("--start-frame", type=int, default=0)
    p.set_defaults(run=_cmd_render, needs_library=False)

    p = commands.add_parser("report", help="one HTML page for the whole library (sortable table, histogram, "
                                           "failures, renders)")
    p.add_argument("--out", required=True, help="directory for index.html and renders/")
    p.add_argument("--dataset", help="only this dataset")
    p.add_argument("--renders", default="all", help="render policies without a render in DIR/renders: all (default), "
                                                   "none, or at most N new ones")
    p.add_argument("--seconds", type=float, help="render length (default: each clip's length)")
    p.set_defaults(run=_cmd_report)

    p = commands.add_parser("verify", help="check every checkpoint against the index")
    p.add_argument("--hashes-only", action="store_true", help="skip loading checkpoints")
    p.add_argument("--remove-leftovers", action="store_true", help="delete directories of interrupted puts")
    p.set_defaults(run=_cmd_verify)

    p = commands.add_parser("stats", help="counts by status, pose error quantiles")
    p.add_argument("--json", action="store_true")
    p.set_defaults(run=_cmd_stats)

    p = commands.add_parser("put", help="add a `python -m diffmimic.train` output directory (creates the library)")
    p.add_argument("clip_id", help="dataset/relative/path, e.g. sample/squat_poses")
    p.add_argument("train_dir")
    p.add_argument("--status", required=True, choices=("converged", "best_effort"))
    p.add_argument("--attempts", type=int, default=1)
    p.set_defaults(run=_cmd_put)

    p = commands.add_parser("publish", help="copy a read-only snapshot of the library to DIR (shared storage), "
                                            "safe to read on NFS; run again to update it")
    p.add_argument("dir")
    p.set_defaults(run=_cmd_publish)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if not getattr(args, "needs_library", True):
            return args.run(args)
        library = PolicyLibrary(args.root, create=args.command == "put")
        if args.command in ("rollout", "verify", "put"):  # (render and report turn it on when they simulate)
            from diffmimic.train import enable_compilation_cache

            enable_compilation_cache()
        return args.run(library, args)
    except LibraryError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
