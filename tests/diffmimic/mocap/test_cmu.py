"""CMU ASF/AMC reader and SMPL retargeting, on the synthetic clip (always) and the real subject 11
soccer kick in ../shared/data/mocap (when present); see conftest.py for both."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from diffmimic.character.skeleton import Y_UP_TO_Z_UP, neutral_skeleton
from diffmimic.mocap import cmu
from diffmimic.mocap.motion import MocapError
from diffmimic.mocap.smpl_kinematics import global_rotations, joint_positions

pytestmark = pytest.mark.mocap_clips("cmu")

# SMPL (joint, child) segment -> CMU (first bone, last bone) whose start->end it must follow.
SEGMENTS = {
    "left thigh": ((1, 4), ("lfemur", "lfemur")),
    "right thigh": ((2, 5), ("rfemur", "rfemur")),
    "left shin": ((4, 7), ("ltibia", "ltibia")),
    "right shin": ((5, 8), ("rtibia", "rtibia")),
    "left upper arm": ((16, 18), ("lhumerus", "lhumerus")),
    "right upper arm": ((17, 19), ("rhumerus", "rhumerus")),
    "left forearm": ((18, 20), ("lradius", "lradius")),
    "right forearm": ((19, 21), ("rradius", "rradius")),
    "lower spine": ((3, 6), ("lowerback", "lowerback")),
    "upper spine": ((9, 12), ("thorax", "thorax")),
    "whole spine": ((3, 12), ("lowerback", "thorax")),
    "whole left leg": ((1, 7), ("lfemur", "ltibia")),
    "whole right arm": ((17, 21), ("rhumerus", "rradius")),
}


def _unit(vectors):
    return vectors / np.linalg.norm(vectors, axis=-1, keepdims=True)


@pytest.fixture(scope="module")
def clip(mocap_clip):
    amc = mocap_clip.path
    motion = cmu.load_cmu(amc)
    asf = cmu.parse_asf(cmu.find_asf(amc))
    pose = cmu.cmu_forward_kinematics(asf, cmu.parse_amc(amc, asf))
    joints = joint_positions(motion.rotations, motion.root_position, neutral_skeleton())
    return motion, pose, joints


def test_clip_loads(mocap_clip, clip):
    motion, _, _ = clip
    amc, frames = mocap_clip.path, mocap_clip.frames
    assert motion.format == "cmu"
    assert motion.num_frames == frames
    assert motion.fps == 120.0
    assert motion.duration_s == pytest.approx((frames - 1) / 120)
    assert motion.rotations.shape == (frames, 24, 3) and motion.root_position.shape == (frames, 3)
    assert motion.source == str(amc)
    assert cmu.inspect_cmu(amc) == {
        "format": "cmu",
        "frames": frames,
        "fps": 120.0,
        "duration_s": pytest.approx((frames - 1) / 120),
        "joints": 24,
    }
    assert cmu.load_cmu(amc, cmu.find_asf(amc), fps=60.0).fps == 60.0


def test_real_asf_parse(mocap_fixtures):
    asf = cmu.parse_asf(mocap_fixtures / "cmu/11.asf")
    assert asf.length_scale == 0.45 and asf.angle_unit == "deg"
    assert asf.root_order == ("TX", "TY", "TZ", "RX", "RY", "RZ")
    assert len(asf.bones) == 30
    femur = asf.bones["lfemur"]
    assert femur.id == 2 and femur.dof == ("rx", "ry", "rz")
    assert femur.limits == ((-160.0, 20.0), (-70.0, 70.0), (-60.0, 70.0))
    assert femur.axis == pytest.approx(np.radians([0.0, 0.0, 20.0]))
    assert asf.parents["lfemur"] == "lhipjoint" and asf.parents["lhipjoint"] == "root"
    assert asf.to_metres(femur.length) == pytest.approx(7.33161 / 0.45 * 0.0254)


def test_retarget_follows_cmu_bone_directions(clip):
    _, pose, joints = clip
    figures = {}
    for name, ((joint, child), (first, last)) in SEGMENTS.items():
        cmu_direction = _unit(pose.ends[:, pose.index(last)] - pose.starts[:, pose.index(first)])
        smpl_direction = _unit(joints[:, child] - joints[:, joint])
        figures[name] = float(np.mean(np.sum(cmu_direction * smpl_direction, axis=-1)))
    print("mean cosine similarity:", {k: round(v, 4) for k, v in figures.items()})
    assert min(figures.values()) > 0.95, figures


def test_subject_stands_upright(clip):
    motion, pose, joints = clip
    z = joints[..., 2]
    upright = (z[:, 15] > z[:, 0]) & (z[:, 0] > z[:, 7]) & (z[:, 0] > z[:, 8])
    assert upright.mean() > 0.95
    # The CMU skeleton itself is upright in the Z-up world too.
    assert np.all(pose.ends[:, pose.index("head"), 2] > pose.starts[:, 0, 2])
    # Root height: pelvis ~0.8-0.9 m above the ankles (knees slightly bent at frame 0).
    height = z[0, 0] - min(z[0, 7], z[0, 8])
    assert 0.75 < height < 1.1
    assert 0.7 < motion.root_position[:, 2].min() and motion.root_position[:, 2].max() < 1.1


def test_feet_do_not_swap(clip):
    motion, pose, joints = clip
    pelvis_left = global_rotations(motion.rotations)[:, 0, :, 0]  # SMPL body x is the body's left
    assert np.all(np.sum((joints[:, 1] - joints[:, 2]) * pelvis_left, axis=-1) > 0)
    feet = np.sum((joints[:, 7] - joints[:, 8]) * pelvis_left, axis=-1)
    assert feet[0] > 0.05
    assert (feet > 0).mean() > 0.75  # the kicking right foot crosses over in the follow-through
    # ...exactly as in the CMU data (its 'l' bones are the subject's left).
    cmu_left = pose.starts[:, pose.index("lfemur")] - pose.starts[:, pose.index("rfemur")]
    cmu_feet = np.sum((pose.ends[:, pose.index("ltibia")] - pose.ends[:, pose.index("rtibia")]) * cmu_left, axis=-1)
    assert (np.sign(cmu_feet) == np.sign(feet)).mean() > 0.95


@pytest.mark.mocap_clips("cmu", origins=("real",))
def test_soccer_kick_raises_one_foot(clip):
    _, _, joints = clip
    assert np.abs(joints[:, 7, 2] - joints[:, 8, 2]).max() > 0.3


def test_rest_pose_maps_body_frame_into_z_up_world(mocap_clip, tmp_path):
    """All-zero dofs: the pelvis orientation is the plain Y-up -> Z-up turn, limbs hang in the
    skeleton's rest pose (CMU's: a T-pose)."""
    text = mocap_clip.path.read_text()
    first_frames = text[: text.index("\n3\n")]
    zeroed = re.sub(
        r"(?m)^(\w+)((?:[ \t]+\S+)+)\r?$",
        lambda match: match.group(1) + " 0" * len(match.group(2).split()),
        first_frames,
    )
    asf = cmu.find_asf(mocap_clip.path)
    (tmp_path / asf.name).write_text(asf.read_text())
    (tmp_path / f"{asf.stem}_02.amc").write_text(zeroed)
    motion = cmu.load_cmu(tmp_path / f"{asf.stem}_02.amc")
    world = global_rotations(motion.rotations)
    np.testing.assert_allclose(world[:, 0], np.broadcast_to(Y_UP_TO_Z_UP, (2, 3, 3)), atol=1e-12)
    joints = joint_positions(motion.rotations, motion.root_position, neutral_skeleton())
    humerus = cmu.parse_asf(asf).bones["lhumerus"].direction  # (1, 0, 0) in CMU's files
    np.testing.assert_allclose(_unit(joints[0, 18] - joints[0, 16]), Y_UP_TO_Z_UP @ humerus, atol=1e-9)
    assert _unit(joints[0, 4] - joints[0, 1])[2] < -0.9


# --------------------------------------------------------------------------- bad input (synthetic clip)


@pytest.fixture
def amc(synthetic_clips) -> Path:
    """The synthetic clip's .amc (its .asf beside it)."""
    return synthetic_clips["cmu"].path


def _text(path: Path) -> str:
    return path.read_bytes().decode("latin-1")  # keeps the CRLF line ends


@pytest.fixture
def broken(tmp_path, amc):
    """Writes an AMC variant (and the skeleton beside it) into tmp_path; returns its path."""
    asf = cmu.find_asf(amc)
    (tmp_path / asf.name).write_bytes(asf.read_bytes())

    def write(text: str, name: str = "99.amc") -> Path:
        path = tmp_path / f"{asf.stem}_{name}"
        path.write_bytes(text.encode("latin-1"))
        return path

    return write


def _raises(path: Path, *fragments: str):
    with pytest.raises(MocapError) as info:
        cmu.load_cmu(path)
    message = str(info.value)
    assert path.name in message
    for fragment in fragments:
        assert fragment in message, message
    return message


def _first_line_of(bone: str, text: str, values: str) -> str:
    """``text`` with the values on the first line of ``bone`` replaced by ``values``."""
    return re.sub(rf"(?m)^{bone} [^\r\n]*", f"{bone} {values}", text, count=1)


def test_missing_skeleton(tmp_path, amc):
    moved = tmp_path / "42_01.amc"
    moved.write_bytes(amc.read_bytes())
    with pytest.raises(MocapError, match=r"42_01\.amc.*42\.asf"):
        cmu.load_cmu(moved)
    with pytest.raises(MocapError, match=r"42_01\.amc.*nowhere\.asf"):
        cmu.load_cmu(moved, tmp_path / "nowhere.asf")
    with pytest.raises(MocapError, match="42.asf"):
        cmu.inspect_cmu(moved)


def test_unknown_bone(broken, amc):
    _raises(broken(_text(amc).replace("\nltoes ", "\nlpinky ", 1)), "unknown bone 'lpinky'")


def test_wrong_value_count(broken, amc):
    _raises(broken(_first_line_of("rtibia", _text(amc), "45.891 3.0")), "'rtibia'", "2 values")


def test_non_numeric_and_nan(broken, amc):
    _raises(broken(_first_line_of("rtibia", _text(amc), "abc")), "non-numeric")
    _raises(broken(_first_line_of("rtibia", _text(amc), "nan")), "NaN")


@pytest.mark.parametrize("cut", ["after a bone name", "after one of three values", "after the frame number"])
def test_truncated_last_frame(broken, amc, synthetic_clips, cut):
    text, last = _text(amc), str(synthetic_clips["cmu"].frames)
    end = {
        "after a bone name": "\r\nrfemur",
        "after one of three values": re.findall(r"\r\nlfoot \S+", text)[-1],
        "after the frame number": f"\r\n{last}\r\n",
    }[cut]
    _raises(broken(text[: text.rindex(end) + len(end)]), last)


def test_one_frame(broken, amc):
    text = amc.read_text()
    path = broken(text[: text.index("\n2\n") + 1])
    _raises(path, "at least 2 frames")
    with pytest.raises(MocapError, match=path.name):
        cmu.inspect_cmu(path)


def test_line_endings_do_not_matter(broken, amc):
    assert "\r\n" in _text(amc)  # CRLF line ends, as the real files have
    lf = broken(amc.read_text(), "98.amc")  # text mode turns CRLF into LF
    asf = cmu.parse_asf(cmu.find_asf(amc))
    crlf_values, lf_values = cmu.parse_amc(amc, asf).values, cmu.parse_amc(lf, asf).values
    assert crlf_values.keys() == lf_values.keys()
    for name in crlf_values:
        np.testing.assert_array_equal(crlf_values[name], lf_values[name])


def test_bone_missing_from_hierarchy(tmp_path, amc):
    asf = tmp_path / cmu.find_asf(amc).name
    asf.write_text(re.sub(r"(?m)^\s*lfoot ltoes\n", "", cmu.find_asf(amc).read_text()))
    with pytest.raises(MocapError, match=rf"{asf.name}.*ltoes"):
        cmu.parse_asf(asf)
