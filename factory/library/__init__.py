"""The policy library: one Orbax checkpoint per clip and version, indexed by SQLite, found by name.

    python -m factory.library --library LIB list [--status S] [--dataset D] [--json]
    python -m factory.library --library LIB show NAME [--version N] [--json]
    python -m factory.library --library LIB rollout NAME [--seconds S] [--start-frame F] --out TRAJ.npz
    python -m factory.library --library LIB export NAME DIR
    python -m factory.library --library LIB verify [--hashes-only]
    python -m factory.library --library LIB stats [--json]
    python -m factory.library --library LIB put CLIP_ID TRAIN_DIR --status S [--attempts N]
    python -m factory.library --library LIB publish DIR

The package's parts: `index` (the SQLite schema and migrations, `PolicyRecord` and its codec,
the errors), `files` (clip ids, hashes, fsync, code version), `store` (`PolicyLibrary`),
`runtime` (`Policy`: a stored policy that acts and rolls out), `snapshot` (read-only copies on
shared storage) and `cli` (the command line).

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
(or `remove_leftovers`) deletes it. The index lives on a local POSIX filesystem (SQLite's WAL
needs working file locks and shared memory): a writable library on NFS/EFS/SMB is refused and
object-store URIs such as gs:// too; readers elsewhere open a published snapshot (`snapshot`).

No pickle anywhere: parameters through Orbax, references as npz without objects, metadata as
JSON and SQLite.
"""

from factory.library.files import (
    DEFAULT_ROOT,
    check_clip_id,
    clip_id_for,
    current_code_version,
    default_root,
    sha256_file,
)
from factory.library.index import (
    BUSY_TIMEOUT_S,
    INDEX_FILE,
    MIGRATIONS,
    POLICIES_DIR,
    STAGING_DIR,
    STATUSES,
    AmbiguousNameError,
    LibraryError,
    NotALibraryError,
    PolicyRecord,
    UnknownNameError,
    schema_version,
)
from factory.library.runtime import Policy, character_config_from_dict, character_dict, load_policy_directory
from factory.library.snapshot import publish_snapshot
from factory.library.store import PUT_HOOKS, PolicyLibrary, VerifyReport

__all__ = [
    "AmbiguousNameError",
    "BUSY_TIMEOUT_S",
    "DEFAULT_ROOT",
    "INDEX_FILE",
    "LibraryError",
    "MIGRATIONS",
    "NotALibraryError",
    "POLICIES_DIR",
    "PUT_HOOKS",
    "Policy",
    "PolicyLibrary",
    "PolicyRecord",
    "STAGING_DIR",
    "STATUSES",
    "UnknownNameError",
    "VerifyReport",
    "character_config_from_dict",
    "character_dict",
    "check_clip_id",
    "clip_id_for",
    "current_code_version",
    "default_root",
    "load_policy_directory",
    "publish_snapshot",
    "schema_version",
    "sha256_file",
]
