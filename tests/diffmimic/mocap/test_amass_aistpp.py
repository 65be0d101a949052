"""AMASS and AIST++ readers and the format dispatcher, on the real fixtures in shared/data/mocap."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pytest

from diffmimic.character.skeleton import neutral_skeleton
from diffmimic.mocap.aistpp import load_aistpp
from diffmimic.mocap.amass import load_amass_smplh, load_amass_smplx
from diffmimic.mocap.motion import MocapError
from diffmimic.mocap.readers import detect_format, inspect_motion, load_motion
from diffmimic.mocap.smpl_kinematics import joint_positions

MOCAP = Path(__file__).resolve().parents[3] / ".." / "shared" / "data" / "mocap"
AMASS_SAMPLE = MOCAP / "amass" / "amass_sample.npz"
DMPL_SAMPLE = MOCAP / "amass" / "dmpl_sample.npz"
B20_WALK = MOCAP / "amass" / "B20_walk_with_box_stageii.npz"
AIST_SLICE = MOCAP / "aistpp" / "aist_slice.pkl"

FIXTURES = {  # path: (format, frames, fps)
    AMASS_SAMPLE: ("amass_smplh", 601, 120.0),
    DMPL_SAMPLE: ("amass_smplh", 235, 120.00004577),
    B20_WALK: ("amass_smplx", 514, 120.0),
    AIST_SLICE: ("aistpp", 127, 60.0),
}
HEAD, PELVIS, LEFT_ANKLE, RIGHT_ANKLE = 15, 0, 7, 8


# --------------------------------------------------------------------------- helpers

def smplh_arrays(frames: int = 10) -> dict[str, np.ndarray]:
    """The first ``frames`` frames of amass_sample.npz, SMPL-H keys only."""
    with np.load(AMASS_SAMPLE, allow_pickle=False) as npz:
        return {"poses": npz["poses"][:frames], "trans": npz["trans"][:frames],
                "mocap_framerate": npz["mocap_framerate"], "gender": npz["gender"], "betas": npz["betas"]}


def write_npz(path: Path, arrays: dict[str, np.ndarray]) -> Path:
    np.savez(path, **arrays)
    return path


def aist_slice_data() -> dict[str, np.ndarray]:
    with open(AIST_SLICE, "rb") as stream:  # a trusted test fixture
        return pickle.load(stream)


def assert_names_file(excinfo: pytest.ExceptionInfo, path: Path, *fragments: str) -> None:
    message = str(excinfo.value)
    assert path.name in message, message
    for fragment in fragments:
        assert fragment in message, message


# --------------------------------------------------------------------------- real fixtures

def test_amass_smplh_sample():
    motion = load_amass_smplh(AMASS_SAMPLE)
    poses = smplh_arrays(601)["poses"]
    assert (motion.format, motion.num_frames, motion.fps, motion.gender) == ("amass_smplh", 601, 120.0, "male")
    assert motion.rotations.shape == (601, 24, 3) and motion.root_position.shape == (601, 3)
    assert motion.betas.shape == (16,)
    np.testing.assert_array_equal(motion.rotations[:, :22].reshape(601, 66), poses[:, :66])
    np.testing.assert_array_equal(motion.rotations[:, 22:], 0.0)  # SMPL hand joints: no SMPL-H body value


def test_amass_dmpl_sample_bytes_gender_and_odd_framerate():
    motion = load_amass_smplh(DMPL_SAMPLE)
    assert (motion.num_frames, motion.gender) == (235, "female")
    assert motion.fps == pytest.approx(120.00004577)


def test_amass_smplx_walk_travels_about_four_metres():
    motion = load_amass_smplx(B20_WALK)
    assert (motion.format, motion.num_frames, motion.fps, motion.gender) == ("amass_smplx", 514, 120.0, "neutral")
    travel = np.linalg.norm(motion.root_position[-1, :2] - motion.root_position[0, :2])
    assert 3.6 < travel < 4.2
    assert np.ptp(motion.root_position[:, 2]) < 0.2  # walking on flat ground: pelvis height steady


def test_aistpp_slice():
    motion = load_aistpp(AIST_SLICE)
    assert (motion.format, motion.num_frames, motion.fps) == ("aistpp", 127, 60.0)
    assert motion.rotations.shape == (127, 24, 3)


@pytest.mark.parametrize("path", list(FIXTURES), ids=lambda p: p.name)
def test_every_fixture_is_upright_in_z_up_world(path):
    """Head above pelvis and both ankles along z: checks the axes (AIST++'s Y-up -> Z-up)."""
    motion = load_motion(path)
    joints = joint_positions(motion.rotations, motion.root_position, neutral_skeleton())
    head_z = joints[:, HEAD, 2]
    upright = ((head_z > joints[:, PELVIS, 2]) & (head_z > joints[:, LEFT_ANKLE, 2])
               & (head_z > joints[:, RIGHT_ANKLE, 2]))
    assert upright.mean() > 0.9


def test_full_format_aistpp_pickle_gives_same_metres(tmp_path):
    """SYNTHETIC fixture: a full-format AIST++ pickle built from aist_slice.pkl.

    Real AIST++ files store trans multiplied by a per-sequence scale in ``smpl_scaling`` and
    carry ``smpl_loss``; here trans is scaled by 95 and those keys are added.
    """
    data = aist_slice_data()
    scale = 95.0
    full = {"smpl_poses": data["smpl_poses"], "smpl_trans": data["smpl_trans"].astype(np.float64) * scale,
            "smpl_scaling": np.array([scale]), "smpl_loss": np.float64(1.25)}
    path = tmp_path / "synthetic_full_aist.pkl"
    path.write_bytes(pickle.dumps(full, protocol=4))
    expected, motion = load_aistpp(AIST_SLICE), load_motion(path)
    np.testing.assert_allclose(motion.root_position, expected.root_position, atol=1e-9)
    np.testing.assert_allclose(motion.rotations, expected.rotations)


@pytest.mark.parametrize("path", list(FIXTURES), ids=lambda p: p.name)
def test_detect_and_inspect_match_load(path):
    fmt, frames, fps = FIXTURES[path]
    assert detect_format(path) == fmt
    info, motion = inspect_motion(path), load_motion(path)
    assert info["format"] == motion.format == fmt
    assert info["frames"] == motion.num_frames == frames
    assert info["fps"] == pytest.approx(motion.fps) and info["fps"] == pytest.approx(fps)
    assert info["duration_s"] == pytest.approx((frames - 1) / motion.fps)
    assert info["joints"] == 24


@pytest.mark.parametrize("path", [AMASS_SAMPLE, B20_WALK], ids=lambda p: p.name)
def test_inspect_amass_reads_no_pose_data(path, monkeypatch):
    read_sizes = []
    real_read_array = np.lib.format.read_array

    def spy(*args, **kwargs):
        array = real_read_array(*args, **kwargs)
        read_sizes.append(array.size)
        return array

    monkeypatch.setattr(np.lib.format, "read_array", spy)
    inspect_motion(path)
    assert read_sizes and max(read_sizes) == 1  # only the frame-rate scalar


# --------------------------------------------------------------------------- bad input

def test_missing_file(tmp_path):
    path = tmp_path / "nowhere.npz"
    with pytest.raises(MocapError) as excinfo:
        load_motion(path)
    assert_names_file(excinfo, path, "file not found")


def test_unknown_format(tmp_path):
    path = tmp_path / "clip.bvh"
    path.write_text("HIERARCHY\n")
    with pytest.raises(MocapError) as excinfo:
        load_motion(path)
    assert_names_file(excinfo, path, "unknown format")


def test_missing_key(tmp_path):
    arrays = smplh_arrays()
    del arrays["trans"]
    path = write_npz(tmp_path / "no_trans.npz", arrays)
    with pytest.raises(MocapError) as excinfo:
        load_motion(path)
    assert_names_file(excinfo, path, "missing key 'trans'")


def test_wrong_shape(tmp_path):
    arrays = smplh_arrays()
    arrays["poses"] = arrays["poses"][:, :150]
    path = write_npz(tmp_path / "narrow_poses.npz", arrays)
    with pytest.raises(MocapError) as excinfo:
        load_amass_smplh(path)
    assert_names_file(excinfo, path, "'poses'", "(T, 156)", "(10, 150)")


def test_nan_values(tmp_path):
    arrays = smplh_arrays()
    arrays["trans"][3, 1] = np.nan
    path = write_npz(tmp_path / "nan_trans.npz", arrays)
    with pytest.raises(MocapError) as excinfo:
        load_motion(path)
    assert_names_file(excinfo, path, "'trans'", "NaN")


def test_single_frame_clip(tmp_path):
    path = write_npz(tmp_path / "one_frame.npz", smplh_arrays(frames=1))
    with pytest.raises(MocapError) as excinfo:
        load_motion(path)
    assert_names_file(excinfo, path, "at least 2 frames")


def test_zero_framerate(tmp_path):
    arrays = smplh_arrays()
    arrays["mocap_framerate"] = np.array(0.0)
    path = write_npz(tmp_path / "zero_fps.npz", arrays)
    with pytest.raises(MocapError) as excinfo:
        load_motion(path)
    assert_names_file(excinfo, path, "'mocap_framerate'", "> 0")
    with pytest.raises(MocapError):
        inspect_motion(path)


def test_truncated_npz(tmp_path):
    data = AMASS_SAMPLE.read_bytes()
    path = tmp_path / "truncated.npz"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(MocapError) as excinfo:
        load_amass_smplh(path)
    assert_names_file(excinfo, path, "corrupt or truncated")


@pytest.mark.parametrize("suffix", [".npz", ".pkl"])
def test_garbage_bytes(tmp_path, suffix):
    path = tmp_path / f"garbage{suffix}"
    path.write_bytes(np.random.default_rng(0).bytes(4096))
    with pytest.raises(MocapError) as excinfo:
        load_motion(path)
    assert_names_file(excinfo, path)


def test_truncated_pickle(tmp_path):
    data = AIST_SLICE.read_bytes()
    path = tmp_path / "truncated.pkl"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(MocapError) as excinfo:
        load_aistpp(path)
    assert_names_file(excinfo, path, "corrupt or truncated")


class _RunsShellCommand:
    """Unpickling this would call os.system(command)."""

    def __init__(self, command: str):
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


def test_pickle_with_forbidden_callable_is_refused_and_not_run(tmp_path):
    marker = tmp_path / "pwned"
    payload = aist_slice_data()
    payload["smpl_loss"] = _RunsShellCommand(f"touch {marker}")
    path = tmp_path / "malicious.pkl"
    path.write_bytes(pickle.dumps(payload))
    with pytest.raises(MocapError) as excinfo:
        load_motion(path)
    assert_names_file(excinfo, path, "forbidden pickle content", "system")
    assert not marker.exists()


def test_pickle_top_level_must_be_a_dict(tmp_path):
    path = tmp_path / "list.pkl"
    path.write_bytes(pickle.dumps([1, 2, 3]))
    with pytest.raises(MocapError) as excinfo:
        load_aistpp(path)
    assert_names_file(excinfo, path, "dict")


def test_aistpp_missing_key(tmp_path):
    data = aist_slice_data()
    del data["smpl_trans"]
    path = tmp_path / "no_trans.pkl"
    path.write_bytes(pickle.dumps(data))
    with pytest.raises(MocapError) as excinfo:
        load_aistpp(path)
    assert_names_file(excinfo, path, "missing key 'smpl_trans'")


def test_smplx_object_array_key_is_not_unpickled(tmp_path):
    with np.load(B20_WALK, allow_pickle=False) as npz:
        arrays = {key: npz[key][:10] for key in ("root_orient", "trans")}
        arrays["mocap_frame_rate"] = npz["mocap_frame_rate"]
        pose_body = npz["pose_body"][:10]
    arrays["pose_body"] = np.empty(10, dtype=object)
    arrays["pose_body"][:] = list(pose_body)
    path = write_npz(tmp_path / "object_pose_body_stageii.npz", arrays)
    for read in (load_amass_smplx, load_motion, inspect_motion):
        with pytest.raises(MocapError) as excinfo:
            read(path)
        assert_names_file(excinfo, path, "'pose_body'", "object array")
