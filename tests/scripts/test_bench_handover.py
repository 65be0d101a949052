"""scripts/bench_handover.py: the state gap a hand-over brings, on real sample references."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from diffmimic.mocap.retarget import load_reference
from diffmimic.mocap.sample import write_sample_dataset


@pytest.fixture(scope="module")
def bench_handover(load_script):
    return load_script("bench_handover")


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    return {p.name.removesuffix("_poses.npz"): p for p in write_sample_dataset(tmp_path_factory.mktemp("sample"))}


def test_gap_is_zero_at_the_same_state_and_the_joint_rms_otherwise(bench_handover, clips):
    reference = load_reference(clips["wave"])
    same = bench_handover.state_gap(reference, 10, reference, 10)
    assert all(value == pytest.approx(0.0, abs=1e-9) for value in same.values())
    gap = bench_handover.state_gap(reference, 10, reference, 40)
    expected = np.sqrt(np.mean(np.square(reference.qpos[40, 7:] - reference.qpos[10, 7:])))
    assert gap["joint_rad"] == pytest.approx(expected, rel=1e-6) and gap["joint_rad"] > 0.01


def test_every_ordered_pair_is_measured_at_both_exits(bench_handover, clips, tmp_path):
    root = tmp_path / "clips"
    root.mkdir()
    for name in ("wave", "squat"):
        shutil.copy(clips[name], root)
    out = tmp_path / "gap.json"
    assert bench_handover.main([str(root), "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["pairs"] == 2 and len(result["rows"]) == 4
    assert {(r["from"], r["exit_rule"]) for r in result["rows"]} == {
        (c, rule) for c in ("wave_poses", "squat_poses") for rule in ("end", "best")
    }
    for row in result["rows"]:  # the cheapest exit is never dearer than the clip's end
        if row["exit_rule"] == "best":
            end = next(r for r in result["rows"] if r["exit_rule"] == "end" and r["from"] == row["from"])
            assert row["cost_m"] <= end["cost_m"] + 1e-9
    assert set(result["summary"]["best"]) == set(result["check_sizes"])
    assert bench_handover.main([str(tmp_path / "missing"), "--out", str(out)]) == 2
