"""The library under concurrent use: readers in threads while a writer process adds clips, and a
writer killed with SIGKILL in the middle of a put."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from factory.library import PolicyLibrary, UnknownNameError

# The writer process: puts a trained output directory as clips writer/clip_000, 001, ... and
# prints one line per put. `pause_at` (staged | published) makes it print PAUSED and sleep at that
# stage of its put of clip `pause_clip`, so the test can kill it exactly there. It loads and
# saves parameters (Orbax) but compiles nothing.
WRITER = r"""
import sys, time
import factory.library as lib

root, train_dir, count, pause_at, pause_clip = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], int(sys.argv[5])
library = lib.PolicyLibrary(root, create=True)
for i in range(count):
    if pause_at != "none" and i == pause_clip:
        def pause(path):
            print("PAUSED", path, flush=True)
            time.sleep(600)
        lib.PUT_HOOKS[pause_at] = pause
    record = library.put_directory(f"writer/clip_{i:03d}", train_dir, status="best_effort", attempts=i + 1)
    print("PUT", record.ref, flush=True)
print("DONE", flush=True)
"""


def _start_writer(
    tmp_path: Path, root: Path, train_dir: Path, count: int, pause_at: str = "none", pause_clip: int = 0
) -> subprocess.Popen:
    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    return subprocess.Popen(
        [sys.executable, str(script), str(root), str(train_dir), str(count), pause_at, str(pause_clip)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "JAX_PLATFORMS": "cpu"},
    )


def _wait_for_line(process: subprocess.Popen, prefix: str, timeout_s: float = 300.0) -> str:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if line.startswith(prefix):
            return line.strip()
        if not line and process.poll() is not None:
            raise AssertionError(
                f"writer exited ({process.returncode}) before {prefix!r}: {process.stderr.read()[-3000:]}"
            )
    raise AssertionError(f"no {prefix!r} from the writer in {timeout_s} s")


def _kill(process: subprocess.Popen) -> None:
    os.kill(process.pid, signal.SIGKILL)
    process.wait(timeout=30)
    assert process.returncode == -signal.SIGKILL
    process.stdout.close()
    process.stderr.close()


def test_readers_run_while_a_writer_process_adds_clips(tmp_path, trained, put_trained):
    root = tmp_path / "lib"
    library = PolicyLibrary(root, create=True)
    put_trained(library, "sample/squat_poses", trained["squat"], status="converged")
    count = 5
    writer = _start_writer(tmp_path, root, trained["wave"].out_dir, count)

    seen_by_reader: list[list[int]] = [[], []]  # one list per query thread: appends of two threads interleave
    errors: list[BaseException] = []
    loaded: list[str] = []
    stop = threading.Event()

    def query_reader(seen_counts: list[int]):
        reader = PolicyLibrary(root)
        try:
            while not stop.is_set():
                records = reader.query(dataset="writer")
                seen_counts.append(len(records))
                for record in records:
                    # Every row a reader sees points to a complete checkpoint, byte for byte.
                    assert reader._check_files(record) == [], record.ref
                    assert reader.get(record.clip_id).attempts == record.attempts
                time.sleep(0.01)
        except BaseException as err:  # reported by the test thread
            errors.append(err)

    def loading_reader():
        reader = PolicyLibrary(root)
        try:
            while not stop.is_set():
                for record in reader.query(dataset="writer"):
                    if record.clip_id not in loaded:
                        policy = reader.load_policy(record.clip_id)
                        assert policy.record == record
                        loaded.append(record.clip_id)
                reader.load_policy("squat_poses")
                time.sleep(0.05)
        except BaseException as err:
            errors.append(err)

    threads = [threading.Thread(target=query_reader, args=(seen,)) for seen in seen_by_reader]
    threads.append(threading.Thread(target=loading_reader))
    for thread in threads:
        thread.start()
    try:
        _wait_for_line(writer, "DONE")
        writer.wait(timeout=60)
        time.sleep(0.3)
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=120)
        if writer.poll() is None:
            _kill(writer)
    assert writer.returncode == 0, writer.stderr.read()
    assert not errors, errors
    # The readers saw the library grow (not just before and after) and never shrink.
    for seen_counts in seen_by_reader:
        assert seen_counts[-1] == count and len(set(seen_counts)) >= 3
        assert seen_counts == sorted(seen_counts)
    assert len(set(loaded)) == count
    final = PolicyLibrary(root)
    assert [r.version for r in final.versions("writer/clip_004")] == [1]
    report = final.verify(load=False)
    assert report.ok and report.checked == count + 1 and report.leftovers == []


@pytest.mark.parametrize("kill_at", ["published", "staged", "anywhere"])
def test_a_writer_killed_mid_put_leaves_a_consistent_library(tmp_path, trained, put_trained, kill_at):
    root = tmp_path / "lib"
    library = PolicyLibrary(root, create=True)
    put_trained(library, "sample/squat_poses", trained["squat"], status="converged")
    if kill_at == "anywhere":  # kill a writer putting in a loop at a random moment after its first put
        writer = _start_writer(tmp_path, root, trained["wave"].out_dir, 50)
        _wait_for_line(writer, "PUT writer/clip_000@1")
        delay_s = random.uniform(0.0, 0.5)
        time.sleep(delay_s)
    else:  # kill it at a given stage of its second put
        writer = _start_writer(tmp_path, root, trained["wave"].out_dir, 3, pause_at=kill_at, pause_clip=1)
        _wait_for_line(writer, "PUT writer/clip_000@1")
        paused = _wait_for_line(writer, "PAUSED")
        paused_path = Path(paused.split(" ", 1)[1])
        assert paused_path.is_dir()
    _kill(writer)

    after = PolicyLibrary(root)
    rows = after.query(all_versions=True)
    committed = sorted(r.clip_id for r in rows if r.dataset == "writer")
    assert committed and committed == [f"writer/clip_{i:03d}" for i in range(len(committed))]
    # No row points to a partial checkpoint: every listed file is there with its hash, and loads.
    report = after.verify()
    assert report.ok, (kill_at, locals().get("delay_s"), report.broken)
    assert report.checked == len(rows)
    if kill_at != "anywhere":
        assert committed == ["writer/clip_000"]
        with pytest.raises(UnknownNameError):
            after.get("writer/clip_001")
        # What the killed put left is reported, not indexed.
        leftover = paused_path.relative_to(root).as_posix()
        assert leftover in report.leftovers

    # The next put of the interrupted clip takes its place cleanly.
    nxt = f"writer/clip_{len(committed):03d}"
    record = after.put_directory(nxt, trained["wave"].out_dir, status="best_effort")
    assert record.version == 1
    final = after.verify(load=False)
    assert final.ok and final.leftovers == []
    assert after.load_policy(nxt).record == record
