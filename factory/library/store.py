"""`PolicyLibrary`: put, get, query, load, verify and export policies (see the package docstring)."""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import json
import math
import os
import re
import shutil
import socket
import sqlite3
import uuid
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np

from factory.library import snapshot
from factory.library.files import (
    _VERSION_DIR,
    _fsync_dir,
    _fsync_tree,
    _manifest,
    _utc_now,
    check_clip_id,
    current_code_version,
    sha256_file,
)
from factory.library.index import (
    BUSY_TIMEOUT_S,
    INDEX_FILE,
    POLICIES_DIR,
    STAGING_DIR,
    STATUSES,
    AmbiguousNameError,
    LibraryError,
    NotALibraryError,
    PolicyRecord,
    UnknownNameError,
    _one_line,
    _record_from_row,
    _row_values,
    migrate,
    schema_version,
)
from factory.library.runtime import Policy, _metrics_dict, _network_sizes, character_dict, load_policy_directory

# Test hooks: called with the staging/version directory at each stage of `put` (a test kills the
# writer there). Empty in normal use.
PUT_HOOKS: dict[str, Callable[[Path], None]] = {}


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
            raise NotALibraryError(
                f"{text}: a library root must be a filesystem path (the SQLite index needs "
                "POSIX file locks); object-store URIs are not supported"
            )
        self.root = Path(text).expanduser().absolute()
        self.index_path = self.root / INDEX_FILE
        self.snapshot = None
        if snapshot.is_snapshot(self.root):
            self._open_snapshot()
            return
        network = snapshot.network_filesystem(self.root)
        if network and not os.environ.get(snapshot.ALLOW_NETWORK_ENV):
            raise LibraryError(
                f"{self.root}: on a network filesystem ({network}), where SQLite's locks and WAL are "
                f"unreliable; keep the library on a local disk and publish read-only snapshots to "
                f"shared storage (factory/run.py --publish DIR); {snapshot.ALLOW_NETWORK_ENV}=1 "
                f"overrides"
            )
        if not self.index_path.is_file():
            if not create:
                what = "does not exist" if not self.root.exists() else f"has no {INDEX_FILE}"
                raise NotALibraryError(f"{self.root}: not a policy library ({what})")
            self.root.mkdir(parents=True, exist_ok=True)
            (self.root / POLICIES_DIR).mkdir(exist_ok=True)
        self._migrate(create)

    def _open_snapshot(self) -> None:
        """A published snapshot (`factory.library.snapshot`): read-only, its index opened immutable."""
        try:
            self.snapshot = json.loads((self.root / snapshot.SNAPSHOT_FILE).read_text())
        except (OSError, ValueError) as err:
            raise NotALibraryError(f"{self.root / snapshot.SNAPSHOT_FILE}: unreadable ({_one_line(err)})") from None
        if not self.index_path.is_file():
            raise NotALibraryError(
                f"{self.root}: a snapshot still being published for the first time (no {INDEX_FILE} yet)"
            )
        try:
            with self._connect() as db:
                version = self._schema_version(db)
        except sqlite3.DatabaseError as err:
            raise NotALibraryError(f"{self.index_path}: not a policy library index ({err})") from err
        if version != schema_version():
            raise LibraryError(
                f"{self.root}: snapshot index schema {version}, this code reads {schema_version()}: "
                f"publish it again with this code"
            )

    @property
    def read_only(self) -> bool:
        return self.snapshot is not None

    def _check_writable(self) -> None:
        if self.snapshot is not None:
            raise LibraryError(
                f"{self.root}: a read-only snapshot published from {self.snapshot.get('source_host')}:"
                f"{self.snapshot.get('source_root')}; write to that library"
            )

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
                    raise LibraryError(
                        f"{self.index_path}: index schema version {current} is newer than this "
                        f"code supports ({schema_version()}); upgrade diffmimic-factory"
                    )
                if current == 0 and not create:
                    raise NotALibraryError(f"{self.root}: not a policy library ({INDEX_FILE} has no schema)")
                db.execute("PRAGMA journal_mode = WAL")
                db.execute("BEGIN IMMEDIATE")
                try:
                    db.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
                    current = self._schema_version(db)  # again, under the lock
                    migrate(db, current)
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
        return (
            "SELECT * FROM policies p WHERE version = (SELECT MAX(version) FROM policies q WHERE q.clip_id = p.clip_id)"
        )

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
            candidates = [
                r[0]
                for r in db.execute("SELECT DISTINCT clip_id FROM policies WHERE name = ? ORDER BY clip_id", (short,))
            ]
            if "/" in name:  # a partial path: keep the candidates that end with it
                candidates = [c for c in candidates if c.endswith("/" + name)]
            if len(candidates) == 1:
                return candidates[0]
            if candidates:
                raise AmbiguousNameError(
                    f"name {name!r} is ambiguous: {len(candidates)} clips match: "
                    + ", ".join(candidates)
                    + " (give the full clip id)"
                )
            ids = [r[0] for r in db.execute("SELECT DISTINCT clip_id FROM policies")]
        names = sorted({c.rsplit("/", 1)[-1] for c in ids})
        close = [c for c in sorted(ids) if name.lower() in c.lower()]
        close += [c for c in difflib.get_close_matches(name, ids, n=5, cutoff=0.5) if c not in close]
        close += [
            c
            for n in difflib.get_close_matches(short, names, n=5, cutoff=0.5)
            for c in sorted(ids)
            if c.rsplit("/", 1)[-1] == n and c not in close
        ]
        hint = f"; did you mean {', '.join(close[:5])}?" if close else ""
        raise UnknownNameError(f"no clip named {name!r} in {self.root} ({len(ids)} clips){hint}")

    def get(self, name: str, version: int | None = None) -> PolicyRecord:
        """The index row of clip `name` (clip id or unique short name): the newest version, or
        `version`."""
        clip_id = self.resolve(name)
        with self._connect() as db:
            if version is None:
                row = db.execute(
                    "SELECT * FROM policies WHERE clip_id = ? ORDER BY version DESC LIMIT 1", (clip_id,)
                ).fetchone()
            else:
                row = db.execute(
                    "SELECT * FROM policies WHERE clip_id = ? AND version = ?", (clip_id, int(version))
                ).fetchone()
        if row is None:
            have = [r.version for r in self.versions(clip_id)]
            raise UnknownNameError(f"{clip_id} has no version {version} (versions: {have})")
        return _record_from_row(row)

    def query(
        self,
        dataset: str | None = None,
        status: str | Sequence[str] | None = None,
        max_pose_error_m: float | None = None,
        name_glob: str | None = None,
        limit: int | None = None,
        all_versions: bool = False,
    ) -> list[PolicyRecord]:
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
            rows = db.execute(
                "SELECT f.relpath, f.size, f.sha256 FROM files f JOIN policies p ON p.id = f.policy_id "
                "WHERE p.clip_id = ? AND p.version = ? ORDER BY f.relpath",
                (record.clip_id, record.version),
            ).fetchall()
        return {r[0]: (int(r[1]), r[2]) for r in rows}

    def load_policy(self, name: str, version: int | None = None) -> Policy:
        """The `Policy` of clip `name` (newest version, or `version`)."""
        record = self.get(name, version)
        if record.path is None:
            usable = [r.version for r in self.versions(record.clip_id) if r.path is not None]
            raise LibraryError(
                f"{record.ref} failed ({record.error}); it has no checkpoint"
                + (f"; versions with one: {usable}" if usable else "")
            )
        return load_policy_directory(self.path_of(record), record)

    # -- writing -----------------------------------------------------------------------------
    def put(
        self,
        clip_id: str,
        *,
        reference,
        params,
        normaliser,
        config,
        status: str,
        metrics=None,
        initial_metrics=None,
        history: Sequence[dict] = (),
        samples: int | None = None,
        train_s: float | None = None,
        iterations: int | None = None,
        attempts: int = 1,
        source_path: str | os.PathLike | None = None,
        source_sha256: str | None = None,
        character_config=None,
        code_version: str | None = None,
        error: str | None = None,
        reason: str | None = None,
    ) -> PolicyRecord:
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
          reason: why a `best_effort` policy did not converge (e.g. "fragile: 3 of 10 perturbed
            rollouts fell"); its robustness figures come with `metrics` (`EvalMetrics.robustness`).
        """
        if status not in ("converged", "best_effort"):
            raise LibraryError(
                f"put: status must be 'converged' or 'best_effort' (failed clips: put_failure), got {status!r}"
            )
        from diffmimic.character.mjcf import CharacterConfig
        from diffmimic.policy import save_policy
        from diffmimic.train import simulated_character_config

        check_clip_id(clip_id)
        metrics = _metrics_dict(metrics)
        initial = _metrics_dict(initial_metrics)
        # The row records the body exactly as simulated: the backend's tuning and the timestep.
        character_config = simulated_character_config(config, character_config or CharacterConfig())
        source_path = os.fspath(source_path) if source_path is not None else reference.source
        if source_sha256 is None and source_path and os.path.isfile(source_path):
            source_sha256 = sha256_file(source_path)
        observation_size, action_size, hidden = _network_sizes(params)
        if tuple(hidden) != tuple(config.hidden):
            raise LibraryError(
                f"put {clip_id}: parameters have hidden widths {hidden}, config.hidden is {list(config.hidden)}"
            )

        record = PolicyRecord(
            clip_id=clip_id,
            version=0,
            name=clip_id.rsplit("/", 1)[-1],
            dataset=clip_id.split("/", 1)[0],
            status=status,
            attempts=int(attempts),
            created_at="",
            source_path=source_path,
            source_sha256=source_sha256,
            character=character_dict(character_config),
            skeleton=reference.skeleton,
            frames=reference.num_frames,
            fps=float(reference.fps),
            duration_s=float(reference.duration_s),
            pose_error_m=_float(metrics.get("pose_error_m")),
            initial_pose_error_m=_float(initial.get("pose_error_m")),
            global_error_m=_float(metrics.get("global_error_m")),
            fell=None if metrics.get("fell") is None else bool(metrics["fell"]),
            fell_at_s=_float(metrics.get("fell_at_s")),
            pose_absurdity=metrics.get("absurdity"),
            samples=None if samples is None else int(samples),
            train_s=_float(train_s),
            iterations=int(iterations if iterations is not None else config.iterations),
            seed=int(config.seed),
            backend=config.env.backend,
            config=json.loads(json.dumps(config.to_dict())),
            code_version=code_version or current_code_version(),
            error=error,
            history=[dict(h) for h in history],
            robustness=metrics.get("robustness") or None,
            reason=reason,
        )

        staging = self._new_staging()
        try:
            save_policy(
                staging,
                params,
                normaliser,
                {"observation_size": observation_size, "action_size": action_size, "hidden": hidden},
            )
            reference.save(staging / "reference.npz")
            (staging / "config.json").write_text(json.dumps(record.config, indent=2))
            with open(staging / "metrics.jsonl", "w") as f:
                for h in record.history:
                    f.write(json.dumps(h) + "\n")
            result = {
                **{k: v for k, v in metrics.items() if k != "per_frame_pose_error_m"},
                "pose_absurdity_m": metrics.get("absurdity"),
                "initial_pose_error_m": record.initial_pose_error_m,
                "samples": record.samples,
                "train_s": record.train_s,
                "iterations": record.iterations,
                "backend": record.backend,
                "source": source_path,
            }
            (staging / "result.json").write_text(json.dumps(result, indent=2))
            manifest = _manifest(staging)
            _call_hook("staged", staging)
            return self._publish(record, staging, manifest)
        finally:
            if staging.exists():
                shutil.rmtree(staging, ignore_errors=True)

    def put_result(
        self,
        clip_id: str,
        result,
        config,
        reference,
        *,
        status: str,
        attempts: int = 1,
        source_path: str | os.PathLike | None = None,
        **kwargs,
    ) -> PolicyRecord:
        """`put` of a `diffmimic.train.TrainResult`."""
        return self.put(
            clip_id,
            reference=reference,
            params=result.params,
            normaliser=result.normaliser,
            config=config,
            status=status,
            metrics=result.metrics,
            initial_metrics=result.initial_metrics,
            history=result.history,
            samples=result.samples,
            train_s=result.train_s,
            iterations=result.iterations,
            attempts=attempts,
            source_path=source_path,
            **kwargs,
        )

    def put_directory(
        self,
        clip_id: str,
        directory: str | os.PathLike,
        *,
        status: str,
        attempts: int = 1,
        source_path: str | os.PathLike | None = None,
        **kwargs,
    ) -> PolicyRecord:
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
        metrics = {
            "pose_error_m": summary.get("pose_error_m"),
            "global_error_m": summary.get("global_error_m"),
            "fell": summary.get("fell"),
            "fell_at_s": summary.get("fell_at_s"),
            "absurdity": summary.get("pose_absurdity_m"),
        }
        return self.put(
            clip_id,
            reference=reference,
            params=params,
            normaliser=normaliser,
            config=config,
            status=status,
            metrics=metrics,
            initial_metrics={"pose_error_m": summary.get("initial_pose_error_m")},
            history=history,
            samples=summary.get("samples"),
            train_s=summary.get("train_s"),
            iterations=summary.get("iterations"),
            attempts=attempts,
            source_path=source_path or summary.get("source"),
            **kwargs,
        )

    def put_failure(
        self,
        clip_id: str,
        error: str,
        *,
        attempts: int = 1,
        config=None,
        reference=None,
        source_path: str | os.PathLike | None = None,
        history: Sequence[dict] = (),
        code_version: str | None = None,
    ) -> PolicyRecord:
        """Records a clip that could not be trained (status `failed`, no checkpoint)."""
        check_clip_id(clip_id)
        source_path = os.fspath(source_path) if source_path is not None else getattr(reference, "source", None)
        record = PolicyRecord(
            clip_id=clip_id,
            version=0,
            name=clip_id.rsplit("/", 1)[-1],
            dataset=clip_id.split("/", 1)[0],
            status="failed",
            attempts=int(attempts),
            created_at="",
            source_path=source_path,
            source_sha256=sha256_file(source_path) if source_path and os.path.isfile(source_path) else None,
            skeleton=getattr(reference, "skeleton", None),
            frames=None if reference is None else reference.num_frames,
            fps=None if reference is None else float(reference.fps),
            duration_s=None if reference is None else float(reference.duration_s),
            seed=None if config is None else int(config.seed),
            backend=None if config is None else config.env.backend,
            config=None if config is None else json.loads(json.dumps(config.to_dict())),
            code_version=code_version or current_code_version(),
            error=str(error),
            history=[dict(h) for h in history],
        )
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
            cursor = db.execute(
                f"INSERT INTO policies ({columns}) VALUES ({', '.join('?' * len(values))})", list(values.values())
            )
            db.executemany(
                "INSERT INTO files (policy_id, relpath, size, sha256) VALUES (?, ?, ?, ?)",
                [(cursor.lastrowid, rel, size, digest) for rel, (size, digest) in manifest.items()],
            )
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
        self._check_writable()
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
        altered = [
            rel
            for rel, (size, digest) in expected.items()
            if rel not in missing
            and ((directory / rel).stat().st_size != size or sha256_file(directory / rel) != digest)
        ]
        if altered:
            problems.append(f"{len(altered)} file(s) differ from their index hash: {', '.join(altered[:3])}")
        return problems

    def stats(self) -> dict:
        """Counts by status and pose error quantiles over the newest version of every clip."""
        rows = self.query()
        counts = {s: 0 for s in STATUSES}
        for r in rows:
            counts[r.status] += 1
        errors = np.array([r.pose_error_m for r in rows if r.pose_error_m is not None and r.status != "failed"])
        quantiles = (
            {f"p{q}": float(np.quantile(errors, q / 100)) for q in (10, 50, 90, 99)}
            | {"min": float(errors.min()), "max": float(errors.max()), "mean": float(errors.mean())}
            if errors.size
            else {}
        )
        with self._connect() as db:
            versions = int(db.execute("SELECT COUNT(*) FROM policies").fetchone()[0])
        return {
            "clips": len(rows),
            "versions": versions,
            "by_status": counts,
            "fell": sum(bool(r.fell) for r in rows if r.status != "failed"),
            "pose_error_m": quantiles,
        }

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
        from diffmimic import atomic  # deferred: importing diffmimic loads MuJoCo's MJX and JAX

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
