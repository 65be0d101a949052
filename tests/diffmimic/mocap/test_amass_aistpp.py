"""AMASS and AIST++ readers and the format dispatcher, on the synthetic files (always) and the
real clips in ../shared/data/mocap (when present); see conftest.py for both."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pytest

from diffmimic.character.skeleton import NEUTRAL_REST_JOINTS_SMPL, neutral_skeleton
from diffmimic.mocap.aistpp import load_aistpp, safe_load_pickle
from diffmimic.mocap.amass import load_amass_smplh, load_amass_smplx
from diffmimic.mocap.motion import MocapError
from diffmimic.mocap.readers import detect_format, inspect_motion, load_motion
from diffmimic.mocap.smpl_kinematics import global_rotations, joint_positions

HEAD, PELVIS, LEFT_ANKLE, RIGHT_ANKLE = 15, 0, 7, 8


# --------------------------------------------------------------------------- helpers


def npz_arrays(path: Path, *keys: str, frames: int | None = None) -> dict[str, np.ndarray]:
    """The numeric arrays ``keys`` of the .npz at ``path``, the (T, n) ones cut to ``frames`` frames."""
    with np.load(path, allow_pickle=False) as npz:
        arrays = {key: npz[key] for key in keys}
    return {key: value[:frames] if value.ndim == 2 else value for key, value in arrays.items()}


def smplh_arrays(path: Path, frames: int = 10) -> dict[str, np.ndarray]:
    """The first ``frames`` frames of an SMPL-H clip, its keys the reader reads only."""
    return npz_arrays(path, "poses", "trans", "mocap_framerate", "gender", "betas", frames=frames)


def write_npz(path: Path, arrays: dict[str, np.ndarray]) -> Path:
    np.savez(path, **arrays)
    return path


def assert_names_file(excinfo: pytest.ExceptionInfo, path: Path, *fragments: str) -> None:
    message = str(excinfo.value)
    assert path.name in message, message
    for fragment in fragments:
        assert fragment in message, message


# --------------------------------------------------------------------------- good clips


@pytest.mark.mocap_clips("smplh", "smplh_bytes_gender")
def test_amass_smplh(mocap_clip):
    """Body joints as stored, SMPL hand joints at rest; gender as str or bytes; odd frame rates."""
    motion = load_amass_smplh(mocap_clip.path)
    frames = mocap_clip.frames
    assert (motion.format, motion.num_frames, motion.gender) == ("amass_smplh", frames, mocap_clip.gender)
    assert motion.fps == pytest.approx(mocap_clip.fps)
    assert motion.rotations.shape == (frames, 24, 3) and motion.root_position.shape == (frames, 3)
    assert motion.betas.shape == (16,)
    stored = npz_arrays(mocap_clip.path, "poses", "trans")
    np.testing.assert_array_equal(motion.rotations[:, :22].reshape(frames, 66), stored["poses"][:, :66])
    np.testing.assert_array_equal(motion.rotations[:, 22:], 0.0)  # SMPL hand joints: no SMPL-H body value
    np.testing.assert_allclose(motion.root_position, stored["trans"] + NEUTRAL_REST_JOINTS_SMPL[0])


@pytest.mark.mocap_clips("smplx")
def test_amass_smplx(mocap_clip):
    with np.load(mocap_clip.path, allow_pickle=False) as npz, pytest.raises(ValueError, match="allow_pickle"):
        [npz[key] for key in npz.files]  # stageii files hold object arrays, which the reader never reads
    motion = load_amass_smplx(mocap_clip.path)
    frames = mocap_clip.frames
    assert (motion.format, motion.num_frames, motion.fps, motion.gender) == (
        "amass_smplx",
        frames,
        mocap_clip.fps,
        mocap_clip.gender,
    )
    stored = npz_arrays(mocap_clip.path, "root_orient", "pose_body", "trans")
    np.testing.assert_array_equal(motion.rotations[:, 0], stored["root_orient"])
    np.testing.assert_array_equal(motion.rotations[:, 1:22].reshape(frames, 63), stored["pose_body"])
    np.testing.assert_array_equal(motion.rotations[:, 22:], 0.0)
    np.testing.assert_allclose(motion.root_position, stored["trans"] + NEUTRAL_REST_JOINTS_SMPL[0])


def test_real_smplx_walk_travels_about_four_metres(mocap_fixtures):
    motion = load_amass_smplx(mocap_fixtures / "amass/B20_walk_with_box_stageii.npz")
    travel = np.linalg.norm(motion.root_position[-1, :2] - motion.root_position[0, :2])
    assert 3.6 < travel < 4.2
    assert np.ptp(motion.root_position[:, 2]) < 0.2  # walking on flat ground: pelvis height steady


@pytest.mark.mocap_clips("aistpp", "aistpp_full")
def test_aistpp(mocap_clip):
    motion = load_aistpp(mocap_clip.path)
    assert (motion.format, motion.num_frames, motion.fps) == ("aistpp", mocap_clip.frames, 60.0)
    assert motion.rotations.shape == (mocap_clip.frames, 24, 3)


@pytest.mark.mocap_clips(origins=("synthetic",))
def test_synthetic_file_gives_the_motion_it_encodes(mocap_clip):
    """Every reader, through the dispatcher, returns the motion the synthetic file was written
    from: the same world joint rotations and pelvis path (AIST++ and CMU from Y-up, CMU through
    its own skeleton, to 1e-6 by its 6-decimal text)."""
    motion, expected = load_motion(mocap_clip.path), mocap_clip.motion
    assert (motion.format, motion.num_frames) == (mocap_clip.format, expected.num_frames)
    assert motion.fps == mocap_clip.fps
    np.testing.assert_allclose(global_rotations(motion.rotations), global_rotations(expected.rotations), atol=1e-5)
    np.testing.assert_allclose(motion.root_position, expected.root_position, atol=1e-5)


def test_every_clip_is_upright_in_z_up_world(mocap_clip):
    """Head above pelvis and both ankles along z: checks the axes (AIST++'s Y-up -> Z-up)."""
    motion = load_motion(mocap_clip.path)
    joints = joint_positions(motion.rotations, motion.root_position, neutral_skeleton())
    head_z = joints[:, HEAD, 2]
    upright = (
        (head_z > joints[:, PELVIS, 2]) & (head_z > joints[:, LEFT_ANKLE, 2]) & (head_z > joints[:, RIGHT_ANKLE, 2])
    )
    assert upright.mean() > 0.9


@pytest.mark.mocap_clips("aistpp")
def test_full_format_aistpp_pickle_gives_same_metres(mocap_clip, tmp_path):
    """SYNTHETIC full-format AIST++ pickle built from a trimmed one (real or synthetic).

    Real AIST++ files store trans multiplied by a per-sequence scale in ``smpl_scaling`` and
    carry ``smpl_loss``; here trans is scaled by 95 and those keys are added.
    """
    data = safe_load_pickle(mocap_clip.path)
    scale = 95.0
    full = {
        "smpl_poses": data["smpl_poses"],
        "smpl_trans": data["smpl_trans"].astype(np.float64) * scale,
        "smpl_scaling": np.array([scale]),
        "smpl_loss": np.float64(1.25),
    }
    path = tmp_path / "synthetic_full_aist.pkl"
    path.write_bytes(pickle.dumps(full, protocol=4))
    expected, motion = load_aistpp(mocap_clip.path), load_motion(path)
    np.testing.assert_allclose(motion.root_position, expected.root_position, atol=1e-9)
    np.testing.assert_allclose(motion.rotations, expected.rotations)


def test_detect_and_inspect_match_load(mocap_clip):
    frames, fps = mocap_clip.frames, mocap_clip.fps
    assert detect_format(mocap_clip.path) == mocap_clip.format
    info, motion = inspect_motion(mocap_clip.path), load_motion(mocap_clip.path)
    assert info["format"] == motion.format == mocap_clip.format
    assert info["frames"] == motion.num_frames == frames
    assert info["fps"] == pytest.approx(motion.fps) and info["fps"] == pytest.approx(fps)
    assert info["duration_s"] == pytest.approx((frames - 1) / motion.fps)
    assert info["joints"] == 24


@pytest.mark.mocap_clips("smplh", "smplx")
def test_inspect_amass_reads_no_pose_data(mocap_clip, monkeypatch):
    read_sizes = []
    real_read_array = np.lib.format.read_array

    def spy(*args, **kwargs):
        array = real_read_array(*args, **kwargs)
        read_sizes.append(array.size)
        return array

    monkeypatch.setattr(np.lib.format, "read_array", spy)
    inspect_motion(mocap_clip.path)
    assert read_sizes and max(read_sizes) == 1  # only the frame-rate scalar


# --------------------------------------------------------------------------- bad input


def test_missing_file(tmp_path):
    path = tmp_path / "nowhere.npz"
    with pytest.raises(MocapError) as excinfo:
        load_motion(path)
    assert_names_file(excinfo, path, "file not found")


def test_unknown_format(tmp_path):
    path = tmp_path / "clip.fbx"
    path.write_text("Kaydara FBX Binary")
    with pytest.raises(MocapError) as excinfo:
        load_motion(path)
    assert_names_file(excinfo, path, "unknown format")


def test_missing_key(tmp_path, synthetic_clips):
    arrays = smplh_arrays(synthetic_clips["smplh"].path)
    del arrays["trans"]
    path = write_npz(tmp_path / "no_trans.npz", arrays)
    with pytest.raises(MocapError) as excinfo:
        load_motion(path)
    assert_names_file(excinfo, path, "missing key 'trans'")


def test_wrong_shape(tmp_path, synthetic_clips):
    arrays = smplh_arrays(synthetic_clips["smplh"].path)
    arrays["poses"] = arrays["poses"][:, :150]
    path = write_npz(tmp_path / "narrow_poses.npz", arrays)
    with pytest.raises(MocapError) as excinfo:
        load_amass_smplh(path)
    assert_names_file(excinfo, path, "'poses'", "(T, 156)", "(10, 150)")


def test_nan_values(tmp_path, synthetic_clips):
    arrays = smplh_arrays(synthetic_clips["smplh"].path)
    arrays["trans"][3, 1] = np.nan
    path = write_npz(tmp_path / "nan_trans.npz", arrays)
    with pytest.raises(MocapError) as excinfo:
        load_motion(path)
    assert_names_file(excinfo, path, "'trans'", "NaN")


def test_single_frame_clip(tmp_path, synthetic_clips):
    path = write_npz(tmp_path / "one_frame.npz", smplh_arrays(synthetic_clips["smplh"].path, frames=1))
    with pytest.raises(MocapError) as excinfo:
        load_motion(path)
    assert_names_file(excinfo, path, "at least 2 frames")


def test_zero_framerate(tmp_path, synthetic_clips):
    arrays = smplh_arrays(synthetic_clips["smplh"].path)
    arrays["mocap_framerate"] = np.array(0.0)
    path = write_npz(tmp_path / "zero_fps.npz", arrays)
    with pytest.raises(MocapError) as excinfo:
        load_motion(path)
    assert_names_file(excinfo, path, "'mocap_framerate'", "> 0")
    with pytest.raises(MocapError):
        inspect_motion(path)


def test_truncated_npz(tmp_path, synthetic_clips):
    data = synthetic_clips["smplh"].path.read_bytes()
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


def test_truncated_pickle(tmp_path, synthetic_clips):
    data = synthetic_clips["aistpp"].path.read_bytes()
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


def test_pickle_with_forbidden_callable_is_refused_and_not_run(tmp_path, synthetic_clips):
    marker = tmp_path / "pwned"
    payload = safe_load_pickle(synthetic_clips["aistpp"].path)
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


def test_aistpp_missing_key(tmp_path, synthetic_clips):
    data = safe_load_pickle(synthetic_clips["aistpp"].path)
    del data["smpl_trans"]
    path = tmp_path / "no_trans.pkl"
    path.write_bytes(pickle.dumps(data))
    with pytest.raises(MocapError) as excinfo:
        load_aistpp(path)
    assert_names_file(excinfo, path, "missing key 'smpl_trans'")


def test_smplx_object_array_key_is_not_unpickled(tmp_path, synthetic_clips):
    arrays = npz_arrays(synthetic_clips["smplx"].path, "root_orient", "trans", "mocap_frame_rate", frames=10)
    pose_body = npz_arrays(synthetic_clips["smplx"].path, "pose_body", frames=10)["pose_body"]
    arrays["pose_body"] = np.empty(10, dtype=object)
    arrays["pose_body"][:] = list(pose_body)
    path = write_npz(tmp_path / "object_pose_body_stageii.npz", arrays)
    for read in (load_amass_smplx, load_motion, inspect_motion):
        with pytest.raises(MocapError) as excinfo:
            read(path)
        assert_names_file(excinfo, path, "'pose_body'", "object array")


def test_transient_read_errors_are_retried_and_survive_pickling():
    import pickle

    from diffmimic.mocap.motion import MocapError, retry_transient

    failures = []

    def flaky(path):  # the OS fails the first two reads, as a network file system's hiccup does
        if len(failures) < 2:
            failures.append(path)
            raise MocapError(path, "cannot read file: OSError: [Errno 5] Input/output error", transient=True)
        return "read"

    assert retry_transient(flaky, "clip.npz", first_delay_s=0.01) == "read" and len(failures) == 2

    def corrupt(path):
        failures.append(path)
        raise MocapError(path, "corrupt or truncated file")

    failures.clear()
    with pytest.raises(MocapError, match="corrupt"):
        retry_transient(corrupt, "clip.npz", first_delay_s=0.01)
    assert len(failures) == 1  # a data error is never retried
    error = pickle.loads(pickle.dumps(MocapError("clip.npz", "cannot read", transient=True)))
    assert error.transient and str(error) == "clip.npz: cannot read"
