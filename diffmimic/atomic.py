"""Atomic writes: a reader of a path sees its old content or its new content, never a part.

Every file the project writes for others to read (policy files, library rows' files, reports,
benchmark figures, worker snapshots) goes through here:

- `write_text`, `write_json`, `write_bytes`, `write_with`: the content goes to a temporary file
  beside the target (a name unique to this process and call, so concurrent writers never share
  one), is flushed to disk, then renamed over the target (`os.replace`, atomic on POSIX).
- `replace_directory`: a whole directory (e.g. an Orbax checkpoint) is built beside the target,
  then swapped in. On Linux the swap is one `renameat2(RENAME_EXCHANGE)`: the target path always
  names a complete directory, old or new. Where the kernel or filesystem lacks it (NFS, macOS) the
  old directory is renamed aside before the new one is renamed in, and deleted only after: it is
  never deleted before the new one exists.

A failed write leaves the target as it was and removes its temporary file or directory.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import json
import os
import shutil
import uuid
from pathlib import Path
from typing import Any, Callable

_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def temporary_sibling(path: str | os.PathLike, suffix: str = ".tmp") -> Path:
    """A hidden name beside `path`, unique to this process and call (same filesystem, so a rename
    onto `path` is atomic)."""
    path = Path(path)
    return path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}{suffix}")


def _fsync_path(path: Path) -> None:
    flags = os.O_RDONLY | (os.O_DIRECTORY if path.is_dir() else 0)
    try:
        fd = os.open(path, flags)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:  # some filesystems refuse fsync on directories: the rename still stands
        pass
    finally:
        os.close(fd)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def write_with(
    path: str | os.PathLike, write: Callable[[Path], Any], *, durable: bool = True, suffix: str | None = None
) -> Path:
    """Calls `write(tmp)` to create the content at a temporary path beside `path`, then renames it
    onto `path`. `suffix` keeps an extension on the temporary name for writers that need one (e.g.
    matplotlib infers the format from it). `durable` flushes the file and its directory to disk."""
    path = Path(path)
    tmp = temporary_sibling(path, suffix if suffix is not None else ".tmp")
    try:
        write(tmp)
        if durable:
            _fsync_path(tmp)
        os.replace(tmp, path)
    except BaseException:
        _remove(tmp)
        raise
    if durable:
        _fsync_path(path.parent)
    return path


def write_bytes(path: str | os.PathLike, data: bytes, *, durable: bool = True) -> Path:
    return write_with(path, lambda tmp: tmp.write_bytes(data), durable=durable)


def write_text(path: str | os.PathLike, text: str, *, durable: bool = True) -> Path:
    return write_with(path, lambda tmp: tmp.write_text(text, encoding="utf-8"), durable=durable)


def write_json(
    path: str | os.PathLike, data: Any, *, indent: int | None = 2, durable: bool = True, **dumps_kwargs
) -> Path:
    return write_text(path, json.dumps(data, indent=indent, **dumps_kwargs), durable=durable)


def _exchange(a: Path, b: Path) -> bool:
    """Swaps two paths in one step (Linux renameat2 RENAME_EXCHANGE). False where unsupported."""
    libc_name = ctypes.util.find_library("c")
    if libc_name is None:
        return False
    try:
        libc = ctypes.CDLL(libc_name, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    renameat2.restype = ctypes.c_int
    if renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.EXDEV, errno.EPERM):
        return False
    raise OSError(code, os.strerror(code), str(b))


def replace_directory(
    path: str | os.PathLike, build: Callable[[Path], Any], *, durable: bool = True, create: bool = True
) -> Path:
    """Calls `build(staging)` to fill a new directory beside `path`, then puts it at `path`,
    replacing any directory there without deleting it first (see the module docstring).
    `create=False` hands `build` a path that does not exist yet, for writers that insist on
    creating their directory themselves (Orbax)."""
    path = Path(path)
    staging = temporary_sibling(path)
    if create:
        staging.mkdir(parents=True)
    try:
        build(staging)
        if not staging.is_dir():
            raise FileNotFoundError(f"{staging}: the writer created no directory")
        if durable:
            for sub in sorted(staging.rglob("*")):
                if sub.is_file():
                    _fsync_path(sub)
            _fsync_path(staging)
    except BaseException:
        _remove(staging)
        raise
    leftover: Path | None = staging  # removed at the end: the new directory on failure, else the old one
    try:
        if not path.exists():
            os.rename(staging, path)
            leftover = None
        elif not _exchange(staging, path):  # on success, staging holds the old directory
            old = temporary_sibling(path, ".old")
            os.rename(path, old)
            try:
                os.rename(staging, path)
            except BaseException:
                os.rename(old, path)
                raise
            leftover = old
    finally:
        if leftover is not None:
            _remove(leftover)
    if durable:
        _fsync_path(path.parent)
    return path
