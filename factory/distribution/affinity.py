"""CPU workers pinned to cores of their own.

Ray gives a CPU actor a share of the node's CPUs but no particular cores, and XLA's CPU runtime
then spreads each actor's threads over all of them. Two workers on a 2-core machine, unpinned,
ran a `cpu`-preset train step in 9.8-9.9 s each; pinned one per core, in 6.2-6.7 s (README:
Run the factory). `claim_cores` pins the calling process to `count` cores that no other worker
on the node holds: one lock file per core under a node-local directory, each held with `flock`
for the process's life, so a worker that dies frees its cores at once and a restarted one claims
them again. When too few cores are free (more workers than cores, other jobs' workers) it pins
nothing.
"""

from __future__ import annotations

import fcntl
import os
import tempfile
from pathlib import Path

LOCK_DIR_ENV = "DIFFMIMIC_CORE_LOCK_DIR"


def default_lock_dir() -> Path:
    """Node-local: `$DIFFMIMIC_CORE_LOCK_DIR`, else the temp directory's diffmimic-cores-<uid>."""
    return Path(os.environ.get(LOCK_DIR_ENV) or Path(tempfile.gettempdir()) / f"diffmimic-cores-{os.getuid()}")


def _pin_process(cores: list[int]) -> None:
    """Every thread of this process (and the threads it starts later) on `cores`."""
    for task in Path("/proc/self/task").iterdir():
        try:
            os.sched_setaffinity(int(task.name), cores)
        except (ProcessLookupError, PermissionError, OSError):
            pass  # a thread that ended meanwhile
    os.sched_setaffinity(0, cores)


def claim_cores(count: int, lock_dir: Path | None = None) -> tuple[list[int], list]:
    """Pins this process to `count` cores no other claimant holds; returns (cores, lock handles:
    keep them open for as long as the pin holds). ([], []) when fewer than `count` are free or
    pinning is unsupported here."""
    if count < 1 or not hasattr(os, "sched_setaffinity"):
        return [], []
    lock_dir = lock_dir or default_lock_dir()
    try:
        lock_dir.mkdir(parents=True, exist_ok=True)
        allowed = sorted(os.sched_getaffinity(0))
    except OSError:
        return [], []
    cores, handles = [], []
    for core in allowed:
        if len(cores) == count:
            break
        handle = open(lock_dir / f"core-{core}.lock", "a")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.close()
            continue
        cores.append(core)
        handles.append(handle)
    if len(cores) < count:
        for handle in handles:
            handle.close()  # releases the flock
        return [], []
    try:
        _pin_process(cores)
    except OSError:
        for handle in handles:
            handle.close()
        return [], []
    return cores, handles
