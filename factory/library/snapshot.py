"""Library storage on a cluster: the index on a local disk, read-only snapshots on shared storage.

SQLite needs POSIX locks and, in WAL mode, shared memory that network filesystems (NFS, EFS,
SMB, ...) do not provide reliably: an index there can be corrupted or deadlock. So:

- The writable library (index and policy files) lives on the head node's local disk; only the
  coordinator writes it (`factory.distribution.runlock` keeps it to one). `PolicyLibrary` refuses to open a
  writable index on a network filesystem (`network_filesystem`).
- Workers never touch the library: donors travel as Ray objects, results come back to the
  coordinator. Their scratch checkpoints and status files go to the work directory, which on a
  cluster is shared storage (`--work-dir`): plain files written by rename, which NFS supports.
- `publish_snapshot(library, dest)` copies the library to shared storage for readers on other
  machines: new version directories first (each copied beside its place, then renamed in; version
  directories never change once written), then the index, through SQLite's backup API into a
  temporary file renamed over `dest/index.sqlite` (rollback journal, not WAL). A reader opens
  `dest` with `PolicyLibrary(dest)`: it sees `SNAPSHOT.json`, opens the index read-only and
  immutable (no locks, no shared memory) and refuses writes with a line naming the source. Every
  row of a published index points to files that were complete before the index was renamed in;
  each query opens the index anew, so a long-lived reader sees the next snapshot on its next call.

`factory/run.py --publish DIR` publishes every `--publish-every` seconds and at the end of a run;
`python -m factory.library publish DIR` does it once.
"""

from __future__ import annotations

import datetime
import os
import shutil
import socket
import sqlite3
import time
from contextlib import closing
from pathlib import Path

from factory.library.index import INDEX_FILE, POLICIES_DIR, LibraryError

SNAPSHOT_FILE = "SNAPSHOT.json"

# Filesystem types (as /proc/mounts names them) on which SQLite's locking is not to be trusted.
NETWORK_FILESYSTEMS = frozenset(
    {
        "nfs",
        "nfs4",
        "cifs",
        "smb3",
        "smbfs",
        "9p",
        "afs",
        "ceph",
        "fuse.ceph",
        "glusterfs",
        "fuse.glusterfs",
        "lustre",
        "gpfs",
        "beegfs",
        "fuse.sshfs",
        "fuse.s3fs",
        "fuse.gcsfuse",
        "fuse.rclone",
        "fuse.mountpoint-s3",
        "fuse.juicefs",
        "fuse.goofys",
        "efs",
    }
)
ALLOW_NETWORK_ENV = "DIFFMIMIC_ALLOW_NETWORK_INDEX"


def _unescape_mount(field: str) -> str:
    """/proc/mounts escapes space, tab, newline and backslash as octal."""
    for code, char in (("\\040", " "), ("\\011", "\t"), ("\\012", "\n"), ("\\134", "\\")):
        field = field.replace(code, char)
    return field


def filesystem_type(path: str | os.PathLike, mounts_text: str | None = None) -> str | None:
    """The type of the filesystem holding `path` (its nearest existing ancestor), from
    /proc/mounts (or `mounts_text` in that format); None where that cannot be read (not Linux)."""
    if mounts_text is None:
        try:
            mounts_text = Path("/proc/mounts").read_text()
        except OSError:
            return None
    target = Path(os.path.realpath(Path(path).expanduser()))
    best, best_type = -1, None
    for line in mounts_text.splitlines():
        fields = line.split()
        if len(fields) < 3:
            continue
        mount_point = Path(_unescape_mount(fields[1]))
        if (target == mount_point or mount_point in target.parents) and len(mount_point.parts) > best:
            best, best_type = len(mount_point.parts), fields[2]
    return best_type


def network_filesystem(path: str | os.PathLike, mounts_text: str | None = None) -> str | None:
    """The network filesystem type `path` is on (e.g. 'nfs4'), or None for a local one."""
    kind = filesystem_type(path, mounts_text)
    return kind if kind in NETWORK_FILESYSTEMS else None


def is_snapshot(root: str | os.PathLike) -> bool:
    return (Path(root) / SNAPSHOT_FILE).is_file()


def check_publish_target(library, dest: str | os.PathLike) -> Path:
    """`dest` as an absolute path if a snapshot of `library` may be published there, else
    LibraryError: not the library or inside it, and empty, absent or an earlier snapshot."""
    dest = Path(dest).expanduser().absolute()
    if dest == library.root or library.root in dest.parents:
        raise LibraryError(f"{dest}: inside the library it would snapshot; give a directory elsewhere")
    if dest.exists() and not dest.is_dir():
        raise LibraryError(f"{dest}: a file, not a directory")
    if dest.exists() and any(dest.iterdir()) and not is_snapshot(dest):
        raise LibraryError(f"{dest}: exists, is not empty and is not a published snapshot; not overwritten")
    return dest


def publish_snapshot(library, dest: str | os.PathLike) -> dict:
    """Publishes a read-only snapshot of `library` (a writable `PolicyLibrary`) at `dest`; returns
    what `SNAPSHOT.json` records (source, time, rows, version directories copied this time)."""
    from diffmimic import atomic  # deferred: importing diffmimic loads MuJoCo's MJX and JAX

    dest = check_publish_target(library, dest)
    start = time.perf_counter()
    dest.mkdir(parents=True, exist_ok=True)
    source_info = {"source_host": socket.gethostname(), "source_root": str(library.root)}
    if not is_snapshot(dest):  # marked before any index exists there: readers never take it for a library
        atomic.write_json(dest / SNAPSHOT_FILE, {**source_info, "published_at": None})
    # The index first, into memory: the rows published are those whose files are copied below.
    with closing(sqlite3.connect(":memory:")) as index:
        with closing(sqlite3.connect(library.index_path, timeout=60.0)) as source:
            source.backup(index)
        paths = [row[0] for row in index.execute("SELECT path FROM policies WHERE path IS NOT NULL")]
        rows = index.execute("SELECT COUNT(*) FROM policies").fetchone()[0]
        copied = 0
        for relpath in paths:
            target = dest / relpath
            if target.is_dir():
                continue  # version directories never change once published
            target.parent.mkdir(parents=True, exist_ok=True)
            atomic.replace_directory(
                target, lambda tmp, src=library.root / relpath: shutil.copytree(src, tmp, dirs_exist_ok=True)
            )
            copied += 1
        (dest / POLICIES_DIR).mkdir(exist_ok=True)

        def write_index(tmp: Path) -> None:
            with closing(sqlite3.connect(tmp)) as out:
                index.backup(out)
                out.execute("PRAGMA journal_mode = DELETE")

        atomic.write_with(dest / INDEX_FILE, write_index)
    info = {
        **source_info,
        "published_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "rows": int(rows),
        "version_directories_copied": copied,
        "seconds": round(time.perf_counter() - start, 3),
    }
    atomic.write_json(dest / SNAPSHOT_FILE, info)
    return info
