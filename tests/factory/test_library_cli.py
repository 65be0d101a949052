"""`python -m factory.library` on a real small library."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest

from factory.library.cli import main


def _run(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_list_show_stats(small_library, capsys):
    root = small_library.root
    code, out, _ = _run(capsys, "--library", root, "list")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split()[:4] == ["clip", "ver", "status", "pose_err_m"]
    assert [line.split()[0] for line in lines[1:5]] == [
        "other/mocap/squat_poses",
        "sample/squat_poses",
        "sample/torso_twist_poses",
        "sample/wave_poses",
    ]
    assert lines[2].split()[1:3] == ["2", "converged"] and lines[-1] == "4 clip(s)"

    code, out, _ = _run(capsys, "--root", root, "list", "--status", "converged", "--dataset", "sample", "--json")
    assert code == 0
    rows = json.loads(out)
    assert [(r["clip_id"], r["version"]) for r in rows] == [("sample/squat_poses", 2), ("sample/wave_poses", 1)]
    assert rows[0]["pose_error_m"] == pytest.approx(small_library.get("sample/squat_poses").pose_error_m)

    code, out, _ = _run(capsys, "--root", root, "show", "wave_poses")
    assert code == 0
    assert "sample/wave_poses" in out and "converged" in out
    assert str(root / "policies" / "sample" / "wave_poses" / "v0001" / "checkpoint") in out
    assert "history (1 evaluations)" in out and "pose_err_m" in out
    code, out, _ = _run(capsys, "--root", root, "show", "sample/squat_poses", "--version", "1", "--json")
    shown = json.loads(out)
    assert shown["version"] == 1 and shown["versions"] == [1, 2] and shown["history"]
    assert "checkpoint/_CHECKPOINT_METADATA" in shown["files"]

    code, out, _ = _run(capsys, "--root", root, "stats", "--json")
    stats = json.loads(out)
    assert stats["clips"] == 4 and stats["versions"] == 5
    assert stats["by_status"] == {"converged": 2, "best_effort": 1, "failed": 1}
    errors = sorted(r.pose_error_m for r in small_library.query() if r.status != "failed")
    assert stats["pose_error_m"]["p50"] == pytest.approx(np.median(errors))
    assert stats["pose_error_m"]["max"] == pytest.approx(errors[-1])
    code, out, _ = _run(capsys, "--root", root, "stats")
    assert code == 0 and "4 clips, 5 versions" in out and "pose error (m):" in out


def test_rollout_export_verify(small_library, tmp_path, capsys):
    root = small_library.root
    code, out, _ = _run(
        capsys, "--root", root, "rollout", "wave_poses", "--seconds", "1.5", "--out", tmp_path / "wave.npz"
    )
    assert code == 0
    assert "sample/wave_poses@1: 45 steps (1.50 s)" in out and "pose error" in out and "fell:" in out
    with np.load(tmp_path / "wave.npz", allow_pickle=False) as data:
        assert data["body_pos"].shape == (46, 24, 3) and data["pose_error_m"].shape == (45,)
        assert f"{float(data['mean_pose_error_m']):.4f}" in out

    code, out, _ = _run(capsys, "--root", root, "export", "sample/squat_poses", tmp_path / "squat")
    assert code == 0 and "exported sample/squat_poses@2" in out
    assert (tmp_path / "squat" / "checkpoint").is_dir() and (tmp_path / "squat" / "SHA256SUMS").is_file()
    # The export is also a training output directory that diffmimic.evaluate reads.
    from diffmimic.evaluate import main as evaluate_main

    assert evaluate_main([str(tmp_path / "squat")]) == 0
    evaluated = json.loads(capsys.readouterr().out)
    assert evaluated["pose_error_m"] == pytest.approx(small_library.get("sample/squat_poses").pose_error_m, rel=1e-4)

    code, out, _ = _run(capsys, "--root", root, "verify")
    assert code == 0 and "4 checkpoint(s) checked: 0 problem(s), 0 leftover(s)" in out
    (root / small_library.get("wave_poses").path / "reference.npz").write_bytes(b"truncated")
    code, out, _ = _run(capsys, "--root", root, "verify", "--hashes-only")
    assert code == 1
    assert "BROKEN sample/wave_poses@1: 1 file(s) differ from their index hash: reference.npz" in out
    assert "1 problem(s)" in out


def test_put_from_a_training_directory(tmp_path, trained, capsys):
    root = tmp_path / "new_lib"
    code, out, _ = _run(
        capsys,
        "--root",
        root,
        "put",
        "sample/wave_poses",
        trained["wave"].out_dir,
        "--status",
        "converged",
        "--attempts",
        "2",
    )
    assert code == 0 and out.startswith("added sample/wave_poses@1 (converged")
    from factory.library import PolicyLibrary

    record = PolicyLibrary(root).get("wave_poses")
    assert record.attempts == 2 and record.history == trained["wave"].result.history
    assert record.pose_error_m == pytest.approx(trained["wave"].result.metrics.pose_error_m)


def test_unknown_names_and_non_libraries_exit_2_with_one_line(small_library, tmp_path, capsys):
    root = small_library.root
    (tmp_path / "a_file").write_text("not a directory")
    incomplete = tmp_path / "incomplete"
    shutil.copytree(small_library.path_of(small_library.get("wave_poses")), incomplete)
    (incomplete / "policy.json").write_text(json.dumps({"observation_size": 794}))
    for argv in (
        ["show", "wave_pose"],
        ["rollout", "backflip", "--out", tmp_path / "x.npz"],
        ["export", "nothing", tmp_path / "x"],
        ["show", "squat_poses"],
        ["rollout", "wave_poses", "--start-frame", "999", "--out", tmp_path / "x.npz"],
        ["export", "wave_poses", tmp_path / "a_file"],
        ["put", "sample/other", incomplete, "--status", "converged"],
    ):
        code, out, err = _run(capsys, "--library", root, *argv)
        assert code == 2 and out == "" and len(err.strip().splitlines()) == 1, (argv, err)
        assert err.startswith("error: ")
    assert (
        "outside the clip"
        in _run(
            capsys, "--library", root, "rollout", "wave_poses", "--start-frame", "999", "--out", tmp_path / "x.npz"
        )[2]
    )
    assert (
        "incomplete, no 'action_size'"
        in _run(capsys, "--library", root, "put", "sample/other", incomplete, "--status", "converged")[2]
    )
    assert "did you mean sample/wave_poses" in _run(capsys, "--root", root, "show", "wave_pose")[2]
    assert "ambiguous" in _run(capsys, "--root", root, "show", "squat_poses")[2]

    # As a real command (the module's __main__), on a directory that is not a library.
    (tmp_path / "plain").mkdir()
    done = subprocess.run(
        [sys.executable, "-m", "factory.library", "--root", str(tmp_path / "plain"), "list"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.strip() == f"error: {tmp_path / 'plain'}: not a policy library (has no index.sqlite)"
