"""`python -m factory.library export-motion`: a policy's simulated motion as AMASS npz and BVH,
read back by the project's own readers."""

from __future__ import annotations

import numpy as np

from diffmimic.character.character import make_character
from diffmimic.character.skeleton import BODY_SMPL_JOINT, neutral_skeleton
from diffmimic.mocap.amass import load_amass_smplh
from diffmimic.mocap.bvh import load_bvh_with_report
from diffmimic.mocap.readers import detect_format
from diffmimic.mocap.smpl_kinematics import joint_positions
from diffmimic.rollout import Trajectory
from factory.library.cli import main

SMPL_ORDER = np.argsort(BODY_SMPL_JOINT)  # body order -> SMPL joint order


def _run(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def _character_positions(qpos: np.ndarray) -> np.ndarray:
    """(T, 24, 3) the character's body positions for its coordinates, SMPL joint order."""
    character = make_character()
    body_pos, _, _, _ = character.forward_kinematics(qpos, np.zeros((len(qpos), character.nv)))
    return np.asarray(body_pos)[:, SMPL_ORDER]


def test_export_motion_round_trips_through_the_readers(small_library, tmp_path, capsys):
    root = small_library.root
    code, out, _ = _run(
        capsys, "--library", root, "rollout", "wave_poses", "--seconds", "1.0", "--out", tmp_path / "wave.npz"
    )
    assert code == 0
    trajectory, _ = Trajectory.load(tmp_path / "wave.npz")
    expected = _character_positions(trajectory.qpos)
    # The export is the simulated coordinates (a valid SMPL pose). The simulated bodies sit within a
    # few cm of where those coordinates put them (soft joints of the maximal-coordinate backends;
    # measured up to 4 cm for this 2-iteration policy's flailing, docs/bvh.md).
    assert np.abs(expected - trajectory.body_pos[:, SMPL_ORDER]).max() < 0.1

    # from the trajectory file: AMASS, read back by the AMASS reader, FK on the SMPL skeleton, to 1 mm
    code, out, _ = _run(
        capsys,
        "--library",
        root,
        "export-motion",
        tmp_path / "wave.npz",
        "--format",
        "amass",
        "--out",
        tmp_path / "wave_poses.npz",
    )
    assert code == 0 and "as amass" in out
    assert detect_format(tmp_path / "wave_poses.npz") == "amass_smplh"
    motion = load_amass_smplh(tmp_path / "wave_poses.npz")
    assert motion.fps == trajectory.fps and motion.num_frames == len(trajectory.qpos)
    read = joint_positions(motion.rotations, motion.root_position, neutral_skeleton())
    assert np.abs(read - expected).max() < 1e-3
    with np.load(tmp_path / "wave_poses.npz") as data:
        assert data["poses"].shape == (len(trajectory.qpos), 156) and data["betas"].shape == (16,)
        assert str(data["gender"]) == "neutral" and float(data["mocap_framerate"]) == trajectory.fps

    # from the library by name: a fresh rollout of the policy, as BVH, read back by the BVH reader
    code, out, _ = _run(
        capsys,
        "--library",
        root,
        "export-motion",
        "wave_poses",
        "--seconds",
        "1.0",
        "--format",
        "bvh",
        "--units",
        "cm",
        "--out",
        tmp_path / "wave.bvh",
    )
    assert code == 0 and "sample/wave_poses@1" in out
    text = (tmp_path / "wave.bvh").read_text()
    assert text.startswith("HIERARCHY\nROOT pelvis") and "Frames: 31" in text
    motion, info = load_bvh_with_report(tmp_path / "wave.bvh")
    assert info.rig == "smpl" and info.units == "cm" and info.up_axis == "y" and abs(info.scale - 1) < 1e-6
    read = joint_positions(motion.rotations, motion.root_position, neutral_skeleton())
    assert np.abs(read - expected).max() < 1e-3  # the same deterministic rollout


def test_export_motion_bad_input_exits_2(small_library, tmp_path, capsys):
    root = small_library.root
    code, _, err = _run(
        capsys,
        "--library",
        root,
        "export-motion",
        tmp_path / "none.npz",
        "--format",
        "bvh",
        "--out",
        tmp_path / "x.bvh",
    )
    assert code == 2 and err.count("\n") == 1 and "no such trajectory file" in err
    (tmp_path / "junk.npz").write_bytes(b"junk")
    code, _, err = _run(
        capsys,
        "--library",
        root,
        "export-motion",
        tmp_path / "junk.npz",
        "--format",
        "amass",
        "--out",
        tmp_path / "x.npz",
    )
    assert code == 2 and "junk.npz" in err
