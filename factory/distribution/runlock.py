"""One coordinator per library: an advisory lock that dies with its holder.

Two coordinators on one library would train the same clips twice and write duplicate versions.
`CoordinatorLock` takes an exclusive `fcntl.flock` on ``LIB/.factory/coordinator.lock`` and writes
who holds it (host, pid, since) into the file. The kernel drops the lock when the holding process
ends in any way (exit, crash, SIGKILL), so a killed run leaves no lock to clean up: the next
coordinator takes it at once, and the stale holder text is simply overwritten. The library index
lives on a local disk (see the README's cluster section), where flock is reliable.
"""

from __future__ import annotations

import datetime
import fcntl
import json
import os
import socket
from pathlib import Path


class LockHeld(RuntimeError):
    """Another live coordinator holds the library."""

    def __init__(self, path: Path, holder: dict):
        self.path, self.holder = path, holder
        who = (
            f"host {holder.get('host', '?')}, pid {holder.get('pid', '?')}, since {holder.get('since', '?')}"
            if holder
            else "a process that has not written its name yet"
        )
        super().__init__(
            f"{path.parent.parent}: another coordinator is running on this library ({who}); "
            f"wait for it or stop it (the lock goes with its process)"
        )


class CoordinatorLock:
    """``with CoordinatorLock(library_root): ...`` or `acquire()` / `release()`."""

    def __init__(self, library_root: str | os.PathLike, work_dir: str = ".factory"):
        self.path = Path(library_root) / work_dir / "coordinator.lock"
        self._fd: int | None = None

    def holder(self) -> dict:
        """Who holds (or last held) the lock, from the file; {} when unknown."""
        try:
            return json.loads(self.path.read_text() or "{}")
        except (OSError, ValueError):
            return {}

    def acquire(self) -> "CoordinatorLock":
        """Takes the lock or raises `LockHeld` naming the holder. Never blocks."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise LockHeld(self.path, self.holder()) from None
        since = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps({"host": socket.gethostname(), "pid": os.getpid(), "since": since}).encode(), 0)
        os.fsync(fd)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is None:
            return
        try:
            os.ftruncate(self._fd, 0)  # no holder any more (the file stays: unlinking would race)
            fcntl.flock(self._fd, fcntl.LOCK_UN)
        finally:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> "CoordinatorLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
