"""The embedded synthetic sample clips: determinism, AMASS file layout and physical plausibility."""

from __future__ import annotations

import functools

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from diffmimic.character.skeleton import NEUTRAL_REST_JOINTS_SMPL, SMPL_TO_CHARACTER, neutral_skeleton
from diffmimic.mocap import sample
from diffmimic.mocap.smpl_kinematics import joint_positions

FEET = [7, 8, 10, 11]  # ankles and toe ("foot") joints
HEAD, PELVIS = 15, 0


@functools.lru_cache(maxsize=None)
def _clip(name):
    poses, pelvis, fps = sample.make_clip(name)
    return poses, pelvis, fps, joint_positions(poses, pelvis, neutral_skeleton())


def test_clip_list():
    assert 5 <= len(sample.SAMPLE_CLIPS) <= 6
    assert {"idle_sway", "squat", "march_in_place", "wave"} <= set(sample.SAMPLE_CLIPS)
    with pytest.raises(KeyError, match="unknown sample clip"):
        sample.make_clip("backflip")


@pytest.mark.parametrize("name", sample.SAMPLE_CLIPS)
def test_clip_shapes_and_determinism(name):
    poses, pelvis, fps = sample.make_clip(name)
    again = sample.make_clip(name)
    assert fps == 120.0
    assert 2.0 * fps <= poses.shape[0] <= 4.0 * fps
    assert poses.shape == (poses.shape[0], 24, 3) and pelvis.shape == (poses.shape[0], 3)
    np.testing.assert_array_equal(poses, again[0])
    np.testing.assert_array_equal(pelvis, again[1])
    assert np.all(poses[:, 22:] == 0.0)  # SMPL hand joints are not part of SMPL-H


@pytest.mark.parametrize("name", sample.SAMPLE_CLIPS)
def test_feet_on_the_ground(name):
    poses, pelvis, fps, pos = _clip(name)
    heights = pos[:, FEET, 2]
    assert heights.min() >= 0.0
    lowest = heights.min(axis=1)
    # Every frame has a planted foot: the lowest foot joint is the (flat) left toe joint,
    # 2.9 cm up with the ankle at ANKLE_HEIGHT_M, or the right one (3.7 cm) while marching.
    assert np.all(np.abs(lowest - 0.029) < 0.01), (lowest.min(), lowest.max())
    ankles = pos[:, [7, 8], 2]
    np.testing.assert_allclose(ankles.min(axis=1), sample.ANKLE_HEIGHT_M, atol=1e-6)
    # A planted foot does not slide.
    for ankle in (7, 8):
        planted = pos[:, ankle, 2] < sample.ANKLE_HEIGHT_M + 1e-6
        assert planted.sum() > 0.5 * len(planted)
        assert np.ptp(pos[planted, ankle, :2], axis=0).max() < 1e-6


def test_only_the_march_lifts_a_foot():
    for name in sample.SAMPLE_CLIPS:
        lift = _clip(name)[3][:, [7, 8], 2].max() - sample.ANKLE_HEIGHT_M
        if name == "march_in_place":
            assert 0.08 < lift < 0.2
        else:
            assert lift < 1e-6, name


@pytest.mark.parametrize("name", sample.SAMPLE_CLIPS)
def test_pose_is_human(name):
    poses, pelvis, fps, pos = _clip(name)
    assert np.linalg.norm(poses[:, 1:], axis=-1).max() < 2.5
    # The root maps the SMPL body frame into the Z-up world facing +X, give or take a sway.
    root = Rotation.from_rotvec(poses[:, 0])
    deviation = (root * Rotation.from_matrix(SMPL_TO_CHARACTER).inv()).magnitude()
    assert deviation.max() < 0.5
    # Upright: head well above the pelvis, pelvis at standing or squatting height.
    assert np.all(pos[:, HEAD, 2] - pos[:, PELVIS, 2] > 0.4)
    assert 0.6 < pelvis[:, 2].min() and pelvis[:, 2].max() < 1.0
    # Balance: the pelvis stays over the area spanned by the feet.
    feet = pos[:, FEET, :2]
    assert np.all(pelvis[:, :2] > feet.min(axis=1) - 0.13)
    assert np.all(pelvis[:, :2] < feet.max(axis=1) + 0.13)
    # The character stays on the spot.
    assert np.ptp(pelvis[:, :2], axis=0).max() < 0.2


@pytest.mark.parametrize("name", sample.SAMPLE_CLIPS)
def test_motion_is_smooth(name):
    poses, pelvis, fps, pos = _clip(name)
    rotations = Rotation.from_rotvec(poses.reshape(-1, 3)).as_matrix().reshape(poses.shape + (3,))
    step = Rotation.from_matrix((np.swapaxes(rotations[:-1], -1, -2) @ rotations[1:]).reshape(-1, 3, 3)).magnitude()
    assert step.max() * fps < 5.0  # rad/s
    assert np.linalg.norm(np.diff(pos, axis=0), axis=-1).max() * fps < 3.0  # m/s, any joint
    # Loopable: the step from the last frame back to the first is like any other step.
    wrap = np.abs(pos[0] - pos[-1]).max()
    assert wrap < 3.0 / fps


def test_squat_bends_the_legs():
    poses, pelvis, fps, pos = _clip("squat")
    drop = pelvis[0, 2] - pelvis[:, 2].min()
    assert 0.15 < drop < 0.3
    bottom = int(np.argmin(pelvis[:, 2]))
    knee = np.linalg.norm(poses[bottom, [4, 5]], axis=-1)
    assert np.all(knee > 1.0)
    # Knees ahead of the ankles, hips behind them.
    assert np.all(pos[bottom, [4, 5], 0] > pos[bottom, [7, 8], 0])
    assert np.all(pos[bottom, [1, 2], 0] < pos[bottom, [7, 8], 0])


def test_written_files(tmp_path):
    paths = sample.write_sample_dataset(tmp_path)
    assert [p.name for p in paths] == [f"{name}_poses.npz" for name in sample.SAMPLE_CLIPS]
    for name, path in zip(sample.SAMPLE_CLIPS, paths):
        poses, pelvis, fps, _ = _clip(name)
        with np.load(path, allow_pickle=False) as data:
            frames = poses.shape[0]
            assert data["poses"].shape == (frames, 156) and data["poses"].dtype == np.float64
            assert data["trans"].shape == (frames, 3)
            assert float(data["mocap_framerate"]) == 120.0
            assert str(data["gender"]) == "neutral"
            assert data["betas"].shape == (16,)
            np.testing.assert_array_equal(data["poses"][:, :66], poses[:, :22].reshape(frames, 66))
            assert np.all(data["poses"][:, 66:] == 0.0)
            np.testing.assert_allclose(data["trans"] + NEUTRAL_REST_JOINTS_SMPL[0], pelvis, atol=1e-12)

    # Up-to-date files are left alone, stale ones replaced, no temporary files left behind.
    stamps = [p.stat().st_mtime_ns for p in paths]
    assert sample.write_sample_dataset(tmp_path) == paths
    assert [p.stat().st_mtime_ns for p in paths] == stamps
    paths[0].write_bytes(b"stale")
    sample.write_sample_dataset(tmp_path)
    assert np.load(paths[0])["poses"].shape[1] == 156
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in paths)


def test_default_dir_and_cli(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(sample.SAMPLE_DIR_ENV, str(tmp_path / "env"))
    assert sample.sample_data_dir() == tmp_path / "env"
    monkeypatch.delenv(sample.SAMPLE_DIR_ENV)
    assert sample.sample_data_dir().parts[-3:] == (".cache", "diffmimic", "sample")
    assert sample.main(["--out", str(tmp_path / "cli")]) == 0
    printed = capsys.readouterr().out.split()
    assert printed == [str(tmp_path / "cli" / f"{name}_poses.npz") for name in sample.SAMPLE_CLIPS]


def test_amass_reader_loads_the_sample(tmp_path):
    amass = pytest.importorskip("diffmimic.mocap.amass")
    for name, path in zip(sample.SAMPLE_CLIPS, sample.write_sample_dataset(tmp_path)):
        poses, pelvis, fps, _ = _clip(name)
        motion = amass.load_amass_smplh(path)
        assert motion.fps == 120.0 and motion.gender == "neutral"
        np.testing.assert_allclose(motion.rotations, poses, atol=1e-12)
        np.testing.assert_allclose(motion.root_position, pelvis, atol=1e-12)
