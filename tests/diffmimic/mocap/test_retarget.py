"""Retargeting Motion -> Reference: fidelity, grounding, resampling, files, CLI; on the synthetic
files (always) and the real clips in ../shared/data/mocap (when present), see conftest.py."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from diffmimic.character.character import make_character
from diffmimic.character.skeleton import BODY_NAMES, BODY_SMPL_JOINT, neutral_skeleton
from diffmimic.mocap.__main__ import main as mocap_cli
from diffmimic.mocap.motion import MocapError
from diffmimic.mocap.readers import load_motion
from diffmimic.mocap.retarget import (
    Reference,
    fit_floor,
    load_reference,
    lowest_foot_height,
    retarget,
)
from diffmimic.mocap.smpl_kinematics import joint_positions


def test_body_positions_reproduce_smpl_joints(mocap_clip):
    """The character's FK matches SMPL FK of the same pose on the same skeleton (< 1 cm)."""
    motion = load_motion(mocap_clip.path)
    reference = retarget(motion, fps=motion.fps, ground=False)
    assert reference.num_frames == motion.num_frames
    smpl = joint_positions(motion.rotations, motion.root_position, neutral_skeleton())
    smpl = smpl[:, list(BODY_SMPL_JOINT)]
    relative_error = np.linalg.norm((reference.body_pos - reference.body_pos[:, :1]) - (smpl - smpl[:, :1]), axis=-1)
    assert relative_error.max() < 0.01, relative_error.max()
    # The root itself is placed where the clip puts the pelvis.
    np.testing.assert_allclose(reference.body_pos[:, 0], motion.root_position, atol=1e-5)


@pytest.mark.mocap_clips("smplx")
def test_a_floor_tilted_in_the_capture_is_levelled(mocap_clip):
    """The same walk captured on a floor tilted by 0.6 degrees along its path (and 5 cm higher) is
    grounded as the original is, to millimetres; one level offset per clip would leave its feet
    centimetres off the floor at either end."""
    import dataclasses

    motion = load_motion(mocap_clip.path)
    travel = motion.root_position[-1, :2] - motion.root_position[0, :2]
    slope = 0.01 * travel / np.linalg.norm(travel)  # 0.57 degrees, rising along the walk
    tilted_root = motion.root_position.copy()
    tilted_root[:, 2] += 0.05 + motion.root_position[:, :2] @ slope
    tilted = dataclasses.replace(motion, root_position=tilted_root)
    level, regrounded = retarget(motion, fps=30.0), retarget(tilted, fps=30.0)
    difference = regrounded.body_pos[..., 2] - level.body_pos[..., 2]
    assert np.abs(difference).max() < 0.01, np.abs(difference).max()
    # The tilt itself spans centimetres over the walk: a level offset could not have removed it.
    added = tilted_root[:, :2] @ slope
    assert np.ptp(added) > 0.015, np.ptp(added)
    # Vertical velocities agree to centimetres per second: the plane leaves millimetres of
    # difference, and the support shift (on frames whose lowest point is just past its
    # tolerance) follows them over a few frames.
    np.testing.assert_allclose(regrounded.qvel[:, 2], level.qvel[:, 2], atol=0.06)  # m/s


@pytest.mark.mocap_clips("smplx")
def test_resampled_reference_is_grounded_and_smooth(mocap_clip):
    motion = load_motion(mocap_clip.path)
    raw = retarget(motion, fps=30.0, ground=False)
    reference = retarget(motion, fps=30.0)
    assert reference.num_frames == int(np.floor(motion.duration_s * 30 + 1e-9)) + 1
    # Only heights change: each frame moves rigidly by the fitted floor's height under the pelvis
    # and by its support shift (a walk on its own skeleton: millimetres).
    character = make_character()
    shift = reference.body_pos - raw.body_pos
    np.testing.assert_allclose(shift[..., :2], 0.0, atol=1e-9)
    assert np.ptp(shift[..., 2], axis=1).max() < 1e-9
    floor = fit_floor(character.lowest_points(raw.body_pos, raw.body_rot)[0], 30.0)
    expected = floor.at(raw.qpos[:, :2]) + reference.support_shift
    np.testing.assert_allclose(shift[:, 0, 2], -expected, atol=1e-9)
    assert np.abs(reference.support_shift).max() < 0.01
    assert floor.tilt_deg < 2.0  # a lab floor, slightly off level in the capture's frame
    lowest = lowest_foot_height(character, reference.body_pos, reference.body_rot)
    assert lowest.min() > -0.03  # no frame deep in the floor
    # Walking (or marching): the feet take turns on the floor, all along the clip.
    assert np.median(lowest) < 0.02
    seconds = [lowest[s : s + 30].min() for s in range(0, len(lowest) - 29, 30)]
    assert max(seconds) < 0.02, seconds
    # Velocities agree with the positions they came from.
    finite_diff = (reference.body_pos[2:] - reference.body_pos[:-2]) * 15.0
    np.testing.assert_allclose(reference.body_vel[1:-1], finite_diff, atol=1e-6)
    assert np.isfinite(reference.qvel).all()
    assert np.abs(reference.qvel[:, 6:]).max() < 60.0  # no Euler singularity blow-up
    # The root travels as the clip's pelvis does (the real B20 walk: ~3.9 m).
    last = round(reference.duration_s * motion.fps)
    np.testing.assert_allclose(
        reference.qpos[-1, :2] - reference.qpos[0, :2],
        motion.root_position[last, :2] - motion.root_position[0, :2],
        atol=1e-6,
    )


def test_every_clip_gives_an_upright_grounded_reference(mocap_clip):
    reference = load_reference(mocap_clip.path)
    head = reference.body_pos[:, BODY_NAMES.index("Head"), 2]
    pelvis = reference.body_pos[:, 0, 2]
    assert (head > pelvis).mean() > 0.95
    assert 0.5 < np.median(pelvis) < 1.2


@pytest.mark.mocap_clips("aistpp")
def test_reference_file_round_trip_and_segment(mocap_clip, tmp_path):
    reference = load_reference(mocap_clip.path)
    path = reference.save(tmp_path / "ref.npz")
    loaded = Reference.load(path)
    for name in ("qpos", "qvel", "body_pos", "body_rot", "body_vel", "body_ang"):
        np.testing.assert_array_equal(getattr(loaded, name), getattr(reference, name))
    assert loaded.body_names == BODY_NAMES and loaded.fps == 30.0
    part = load_reference(path, start_s=0.5, duration_s=1.0)
    assert part.num_frames == 31
    np.testing.assert_array_equal(part.qpos, reference.qpos[15:46])
    with np.load(path, allow_pickle=False) as data:  # no pickled objects inside
        assert data["qpos"].shape == (reference.num_frames, 76)
        assert data["smpl_joint"].tolist() == list(BODY_SMPL_JOINT)


def test_reference_load_rejects_bad_files(tmp_path):
    bad = tmp_path / "bad_ref.npz"
    np.savez(bad, qpos=np.zeros((3, 76)))
    with pytest.raises(MocapError, match="bad_ref.npz.*missing keys"):
        Reference.load(bad)


@pytest.mark.mocap_clips("smplh_bytes_gender", "cmu")
def test_cli_inspect(mocap_clip, capsys):
    assert mocap_cli(["inspect", str(mocap_clip.path)]) == 0
    info = json.loads(capsys.readouterr().out)
    assert (info["format"], info["frames"], info["joints"]) == (mocap_clip.format, mocap_clip.frames, 24)


@pytest.mark.mocap_clips("cmu")
def test_cli_convert(mocap_clip, tmp_path):
    out = tmp_path / "clip.npz"
    assert (
        mocap_cli(
            ["convert", str(mocap_clip.path), "--out", str(out), "--fps", "30", "--start-s", "1", "--duration-s", "2"]
        )
        == 0
    )
    with np.load(out, allow_pickle=False) as data:
        assert data["qpos"].shape == (61, 76) and data["qvel"].shape == (61, 75)
        assert data["body_pos"].shape == (61, 24, 3) and data["body_rot"].shape == (61, 24, 4)
        assert data["body_vel"].shape == (61, 24, 3) and data["body_ang"].shape == (61, 24, 3)
        assert list(data["body_names"]) == list(BODY_NAMES)
        assert float(data["fps"]) == 30.0 and str(data["source"]) == str(mocap_clip.path)


def test_cli_bad_input_exits_2_with_one_line(tmp_path):
    broken = tmp_path / "broken_poses.npz"
    broken.write_bytes(b"PK\x03\x04 not really a zip")
    result = subprocess.run(
        [sys.executable, "-m", "diffmimic.mocap", "convert", str(broken), "--out", str(tmp_path / "x.npz")],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "broken_poses.npz" in errors[0]
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "x.npz").exists()


def test_hinge_tracks_stay_continuous_through_euler_singularity():
    """The sample wave raises the right arm forward past 90 degrees about the shoulder's middle
    hinge axis: the Euler tracks must pass through without 180-degree jumps, and stay exact."""
    from diffmimic.mocap.motion import Motion
    from diffmimic.mocap.sample import make_clip

    poses, pelvis, fps = make_clip("wave")
    motion = Motion(rotations=poses, root_position=pelvis, fps=fps, source="sample:wave", format="amass_smplh")
    reference = retarget(motion, fps=fps, ground=False)
    steps = np.abs(np.diff(reference.qpos[:, 7:], axis=0))
    # Near the singularity the outer angles turn fast (measured 0.8 rad in one 120 fps frame);
    # the 180-degree branch jumps this prevents were ~2.9 rad.
    assert steps.max() < 1.2, steps.max()
    assert np.median(steps.max(axis=1)) < 0.05
    smpl = joint_positions(poses, pelvis, neutral_skeleton())[:, list(BODY_SMPL_JOINT)]
    assert np.abs(reference.body_pos - smpl).max() < 0.01
