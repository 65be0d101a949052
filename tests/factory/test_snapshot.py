"""Cluster storage: the index never on a network filesystem; read-only snapshots for readers."""

from __future__ import annotations

import sqlite3
import subprocess
import sys

import jax
import numpy as np
import pytest

from factory.library import LibraryError, PolicyLibrary, snapshot

MOUNTS = """\
/dev/nvme0n1p1 / ext4 rw,relatime 0 0
fs-1234.efs.us-west-2.amazonaws.com:/ /mnt/shared nfs4 rw,vers=4.1,hard 0 0
/dev/nvme1n1 /mnt/shared/local\\040scratch xfs rw 0 0
tmpfs /tmp tmpfs rw 0 0
"""


def test_the_filesystem_of_a_path_is_its_longest_mount_prefix():
    assert snapshot.filesystem_type("/home/ubuntu/lib", MOUNTS) == "ext4"
    assert snapshot.filesystem_type("/mnt/shared/diffmimic-library/index.sqlite", MOUNTS) == "nfs4"
    assert snapshot.filesystem_type("/mnt/shared", MOUNTS) == "nfs4"
    assert snapshot.filesystem_type("/mnt/shared/local scratch/lib", MOUNTS) == "xfs"  # escaped space
    assert snapshot.filesystem_type("/mnt/sharedother", MOUNTS) == "ext4"  # a prefix of the name only
    assert snapshot.network_filesystem("/mnt/shared/lib", MOUNTS) == "nfs4"
    assert snapshot.network_filesystem("/tmp/lib", MOUNTS) is None
    assert snapshot.filesystem_type("/tmp") is not None  # this machine's /proc/mounts


def test_a_writable_library_refuses_a_network_filesystem(tmp_path, monkeypatch):
    monkeypatch.setattr(snapshot, "network_filesystem", lambda path, mounts_text=None: "nfs4")
    with pytest.raises(LibraryError, match=r"network filesystem \(nfs4\).*--publish"):
        PolicyLibrary(tmp_path / "lib", create=True)
    assert not (tmp_path / "lib").exists()
    monkeypatch.setenv(snapshot.ALLOW_NETWORK_ENV, "1")
    assert PolicyLibrary(tmp_path / "lib", create=True).index_path.is_file()


def _leaves_equal(a, b) -> bool:
    return all(np.array_equal(np.asarray(x), np.asarray(y)) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def test_a_published_snapshot_reads_like_the_library_and_refuses_writes(tmp_path, trained, put_trained):
    library = PolicyLibrary(tmp_path / "lib", create=True)
    put_trained(library, "sample/squat_poses", trained["squat"], status="converged")
    library.put_failure("sample/bad_poses", "not a mocap file", attempts=1)
    dest = tmp_path / "shared" / "lib"
    info = snapshot.publish_snapshot(library, dest)
    assert info["rows"] == 2 and info["version_directories_copied"] == 1

    reader = PolicyLibrary(dest)
    assert reader.read_only and reader.snapshot["source_root"] == str(library.root)
    assert reader.query(all_versions=True) == library.query(all_versions=True)
    policy = reader.load_policy("squat_poses")
    assert _leaves_equal(policy.params, trained["squat"].result.params)
    assert reader.verify().ok
    # A rollback-journal index opened immutable: no WAL or shared-memory files on shared storage.
    with sqlite3.connect(dest / "index.sqlite") as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
    assert sorted(p.name for p in dest.iterdir()) == ["SNAPSHOT.json", "index.sqlite", "policies"]

    with pytest.raises(LibraryError, match="read-only snapshot published from"):
        put_trained(reader, "sample/wave_poses", trained["wave"], status="converged")
    with pytest.raises(LibraryError, match="read-only snapshot"):
        reader.put_failure("sample/x", "boom")
    with pytest.raises(LibraryError, match="read-only snapshot"):
        reader.remove_leftovers()

    # The next publish copies only the new version directory; an open reader sees the new rows.
    put_trained(library, "sample/wave_poses", trained["wave"], status="converged")
    info = snapshot.publish_snapshot(library, dest)
    assert info["rows"] == 3 and info["version_directories_copied"] == 1
    assert {r.clip_id for r in reader.query()} == {"sample/squat_poses", "sample/bad_poses", "sample/wave_poses"}


def test_publishing_refuses_targets_that_would_lose_data(tmp_path, trained, put_trained):
    library = PolicyLibrary(tmp_path / "lib", create=True)
    with pytest.raises(LibraryError, match="inside the library"):
        snapshot.publish_snapshot(library, tmp_path / "lib" / "snap")
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "thesis.tex").write_text("keep me")
    with pytest.raises(LibraryError, match="not a published snapshot"):
        snapshot.publish_snapshot(library, tmp_path / "busy")
    assert (tmp_path / "busy" / "thesis.tex").read_text() == "keep me"


def test_the_cli_publishes_and_reads_a_snapshot(tmp_path, trained, put_trained):
    library = PolicyLibrary(tmp_path / "lib", create=True)
    put_trained(library, "sample/squat_poses", trained["squat"], status="converged")
    run = lambda *args: subprocess.run(
        [sys.executable, "-m", "factory.library", *map(str, args)], capture_output=True, text=True, timeout=300
    )
    done = run("--library", library.root, "publish", tmp_path / "snap")
    assert done.returncode == 0, done.stderr
    assert "published 1 rows" in done.stdout
    listed = run("--library", tmp_path / "snap", "list")
    assert listed.returncode == 0 and "squat_poses" in listed.stdout, listed.stderr
    refused = run(
        "--library", tmp_path / "snap", "put", "sample/wave_poses", trained["wave"].out_dir, "--status", "converged"
    )
    assert refused.returncode == 2 and refused.stderr.count("\n") == 1
    assert "read-only snapshot" in refused.stderr
