"""One coordinator per library: a live holder is named, a killed one leaves no lock."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from factory.distribution.runlock import CoordinatorLock, LockHeld

HOLD = (
    "import sys, time\nfrom factory.distribution.runlock import CoordinatorLock\n"
    "CoordinatorLock(sys.argv[1]).acquire()\nprint('held', flush=True)\ntime.sleep(600)\n"
)


def test_second_coordinator_exits_2_naming_the_holder_and_a_killed_holder_leaves_no_lock(
    tmp_path, sample_clips, capsys
):
    from factory.run import main

    library = tmp_path / "lib"
    data = tmp_path / "data"
    data.mkdir()
    (data / sample_clips["squat"].name).write_bytes(sample_clips["squat"].read_bytes())
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(library)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(LockHeld, match=f"pid {holder.pid}, since "):
            CoordinatorLock(library).acquire()
        # The factory's command: exit 2 and one line naming the holder, before Ray starts.
        code = main(
            ["--dataset", "sample", "--data-root", str(data), "--library", str(library), "--report-renders", "0"]
        )
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 2 and len(err) == 1 and f"pid {holder.pid}" in err[0], err
        assert "another coordinator is running" in err[0]
    finally:
        holder.kill()  # SIGKILL: no chance to release anything
        holder.wait(timeout=30)
    # The kernel dropped the dead holder's lock: the next coordinator takes it at once.
    with CoordinatorLock(library) as lock:
        assert lock.holder()["pid"] != holder.pid
        with pytest.raises(LockHeld):
            CoordinatorLock(library).acquire()  # held by this process now (a second open file)
    again = CoordinatorLock(library).acquire()  # released: free again
    assert again.holder()["pid"] == os.getpid()
    again.release()
    assert CoordinatorLock(library).holder() == {}  # no holder written after a release


@pytest.mark.parametrize("flag, value", [("--clips-per-worker", "0"), ("--max-attempts", "0")])
def test_bad_counts_exit_2_with_one_line(tmp_path, flag, value, capsys):
    from factory.run import main

    code = main(["--dataset", "sample", "--library", str(tmp_path / "lib"), flag, value])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and flag in err[0], err


def test_a_data_root_without_clips_exits_2_saying_why(tmp_path, capsys):
    """A root that holds no clip the spec takes (or none that --clips names) is bad input: one
    line naming the root and the reason, before any worker starts."""
    from factory.run import main

    empty, flat = tmp_path / "empty", tmp_path / "flat"
    empty.mkdir()
    flat.mkdir()
    (flat / "B3_walk1_poses.npz").write_bytes(b"")  # AMASS wants DATASET/SUBJECT/CLIP
    (flat / "11_01.amc").write_bytes(b"")
    cases = [
        (["--dataset", "amass", "--data-root", str(empty)], ["include patterns"]),
        (["--dataset", "amass", "--data-root", str(flat)], ["skipped", "B3_walk1_poses.npz", "subsets"]),
        (["--dataset", "cmu", "--data-root", str(flat), "--clips", "nothing*"], ["--clips 'nothing*'"]),
    ]
    for args, words in cases:
        code = main([*args, "--library", str(tmp_path / "lib")])
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 2 and len(err) == 1, err
        assert all(word in err[0] for word in words) and str(args[3]) in err[0], err
