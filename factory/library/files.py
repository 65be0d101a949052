"""Names and files of a library: clip ids, the default root, hashes, fsync, manifests, the code
version recorded with each policy."""

from __future__ import annotations

import datetime
import functools
import hashlib
import os
import re
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Iterable

from factory.library.index import LibraryError

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
            raise LibraryError(
                f"clip id {clip_id!r}: bad component {part!r} (letters, digits, ' _.+=,()-'; "
                "not empty, '.', '..' or like 'v0001')"
            )
    return clip_id


def clip_id_for(dataset: str, dataset_root: str | os.PathLike, path: str | os.PathLike) -> str:
    """The clip id of a mocap file: `dataset/` + its path relative to the dataset root, without
    extension (AMASS `.../75_09_poses.npz` -> `amass/CMU/75/75_09_poses`). A file linked into
    the root from elsewhere takes the link's path; a path that reaches the root through a link
    (the root itself linked) is compared resolved."""
    path, root = Path(path), Path(dataset_root)
    try:
        relative = Path(os.path.abspath(path)).relative_to(os.path.abspath(root))
    except ValueError:
        relative = (path.parent.resolve() / path.name).relative_to(root.resolve())
    return check_clip_id("/".join((dataset, *relative.with_suffix("").parts)))


def sha256_file(path: str | os.PathLike) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


@functools.lru_cache(maxsize=1)
def current_code_version() -> str:
    """The git commit of the installed code (with `-dirty` for local changes), else the package
    version."""
    here = Path(__file__).resolve().parent
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=here,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
        return commit + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
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
