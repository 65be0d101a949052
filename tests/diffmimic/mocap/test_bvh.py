"""The BVH reader: SYNTHETIC files written here (rigs named as the published ones, the motion
known), bad input, and the real files of ../shared/data/mocap/varied_dev/bvh when present."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from diffmimic.character.skeleton import NEUTRAL_REST_JOINTS_SMPL, SMPL_PARENTS, neutral_skeleton
from diffmimic.mocap.bvh import load_bvh_with_report, map_rig, read_bvh, read_bvh_header, write_bvh
from diffmimic.mocap.dataset_spec import parse_dataset_spec
from diffmimic.mocap.motion import MocapError
from diffmimic.mocap.readers import detect_format, inspect_motion, load_motion
from diffmimic.mocap.smpl_kinematics import joint_positions

from .conftest import synthetic_motion

REAL_BVH = {  # file under varied_dev/bvh: rig, frames
    "mixamo/Gangnam-Style.bvh": "mixamo",
    "mixamo/Walk-In-Circle.bvh": "mixamo",
    "m21/box-2.bvh": "hips_leftupleg",
    "m21/jumping-jack.bvh": "hips_leftupleg",
    "m21/kick.bvh": "hips_leftupleg",
    "m21/wipe.bvh": "hips_leftupleg",
    "cmu/example.bvh": "cmu",
}


def _short_motion(frames: int = 90):
    motion = synthetic_motion()
    return motion.segment(0.0, (frames - 1) / motion.fps)


def _positions(motion) -> np.ndarray:
    return joint_positions(motion.rotations, motion.root_position, neutral_skeleton())


# --------------------------------------------------------------------------- synthetic rigs

# A Mixamo-named rig written as SYNTHETIC test data: each joint the SMPL joint of the same role,
# at the neutral SMPL rest offsets (in centimetres), plus a finger and the End Sites.
_MIXAMO = {
    0: "Hips",
    1: "LeftUpLeg",
    2: "RightUpLeg",
    3: "Spine",
    4: "LeftLeg",
    5: "RightLeg",
    6: "Spine1",
    7: "LeftFoot",
    8: "RightFoot",
    9: "Spine2",
    10: "LeftToeBase",
    11: "RightToeBase",
    12: "Neck",
    13: "LeftShoulder",
    14: "RightShoulder",
    15: "Head",
    16: "LeftArm",
    17: "RightArm",
    18: "LeftForeArm",
    19: "RightForeArm",
    20: "LeftHand",
    21: "RightHand",
    22: "LeftHandMiddle1",
    23: "RightHandMiddle1",
}


def write_named_rig(
    path: Path,
    motion,
    names: dict[int, str],
    prefix: str = "mixamorig:",
    scale: float = 100.0,
    crlf: bool = False,
    order: str = "ZXY",
) -> Path:
    """SYNTHETIC BVH: the SMPL skeleton under other joint names (Y-up, T-pose rest, `scale` units
    per metre), channels in `order`, position channels on every joint (as Mixamo writes them)."""
    offsets = NEUTRAL_REST_JOINTS_SMPL.copy()
    for j in range(1, 24):
        offsets[j] = NEUTRAL_REST_JOINTS_SMPL[j] - NEUTRAL_REST_JOINTS_SMPL[SMPL_PARENTS[j]]
    frames = motion.num_frames
    local = Rotation.from_rotvec(motion.rotations.reshape(-1, 3)).as_matrix().reshape(frames, 24, 3, 3)
    z_to_y = np.array([[1.0, 0, 0], [0, 0, 1.0], [0, -1.0, 0]])
    local[:, 0] = z_to_y @ local[:, 0]
    pelvis = motion.root_position @ z_to_y.T * scale
    children = {j: [c for c in range(24) if SMPL_PARENTS[c] == j] for j in range(24)}
    channels = " ".join(f"{axis}rotation" for axis in order)
    lines, columns = ["HIERARCHY"], []

    def joint(j: int, depth: int) -> None:
        pad = "\t" * depth
        offset = offsets[j] * scale if j else np.zeros(3)
        lines.extend(
            [
                f"{pad}{'ROOT' if j == 0 else 'JOINT'} {prefix}{names[j]}",
                f"{pad}{{",
                f"{pad}\tOFFSET {offset[0]:.6f} {offset[1]:.6f} {offset[2]:.6f}",
                f"{pad}\tCHANNELS 6 Xposition Yposition Zposition {channels}",
            ]
        )
        euler = Rotation.from_matrix(local[:, j]).as_euler(order, degrees=True)
        columns.append(np.concatenate([pelvis if j == 0 else np.broadcast_to(offset, (frames, 3)), euler], axis=1))
        for child in children[j]:
            joint(child, depth + 1)
        if not children[j]:
            lines.extend([f"{pad}\tEnd Site", f"{pad}\t{{", f"{pad}\t\tOFFSET 0 0 {0.05 * scale}", f"{pad}\t}}"])
        lines.append(f"{pad}}}")

    joint(0, 0)
    lines += ["MOTION", f"Frames: {frames}", f"Frame Time: {1.0 / motion.fps:.8f}"]
    table = np.concatenate(columns, axis=1)
    lines += [" ".join(f"{v:.6f}" for v in row) for row in table]
    text = "\n".join(lines) + "\n"
    path.write_bytes(text.replace("\n", "\r\n").encode() if crlf else text.encode())
    return path


@pytest.mark.parametrize("order", ["ZXY", "XYZ", "YZX"])
def test_synthetic_mixamo_rig_reads_back_the_motion(tmp_path, order):
    motion = _short_motion()
    path = write_named_rig(tmp_path / "clip.bvh", motion, _MIXAMO, prefix="mixamorig7:", crlf=True, order=order)
    assert detect_format(path) == "bvh"
    read, info = load_bvh_with_report(path)
    assert info.rig == "mixamo" and info.units == "cm" and info.up_axis == "y" and info.rest_pose_stands
    assert info.scale == pytest.approx(1.0, abs=1e-6)
    assert info.mapped["left_hip"] == "mixamorig7:LeftUpLeg"
    assert read.fps == pytest.approx(motion.fps) and read.num_frames == motion.num_frames
    # the hands take the wrists' rotations (a finger is no SMPL joint): positions are unaffected
    assert np.abs(_positions(read) - _positions(motion)).max() < 1e-4


def test_header_is_read_without_the_frames(tmp_path):
    path = write_named_rig(tmp_path / "clip.bvh", _short_motion(), _MIXAMO)
    header = read_bvh_header(path)
    assert header.frames == 90 and header.fps == pytest.approx(120.0) and len(header.names) == 24
    info = inspect_motion(path)
    assert info["format"] == "bvh" and info["frames"] == 90 and info["duration_s"] == pytest.approx(89 / 120)


@pytest.mark.parametrize(
    "rig, names",
    [
        (
            "lafan1",
            [
                "Hips",
                "LeftUpLeg",
                "LeftLeg",
                "LeftFoot",
                "LeftToe",
                "RightUpLeg",
                "RightLeg",
                "RightFoot",
                "RightToe",
                "Spine",
                "Spine1",
                "Spine2",
                "Neck",
                "Head",
                "LeftShoulder",
                "LeftArm",
                "LeftForeArm",
                "LeftHand",
                "RightShoulder",
                "RightArm",
                "RightForeArm",
                "RightHand",
            ],
        ),
        (
            "bandai_namco",
            [
                "joint_Root",
                "Hips",
                "Spine",
                "Chest",
                "Neck",
                "Head",
                "Shoulder_L",
                "UpperArm_L",
                "LowerArm_L",
                "Hand_L",
                "Shoulder_R",
                "UpperArm_R",
                "LowerArm_R",
                "Hand_R",
                "UpperLeg_L",
                "LowerLeg_L",
                "Foot_L",
                "Toes_L",
                "UpperLeg_R",
                "LowerLeg_R",
                "Foot_R",
                "Toes_R",
            ],
        ),
        (
            "xsens_mvn",
            [
                "Pelvis",
                "L5",
                "L3",
                "T12",
                "T8",
                "Neck",
                "Head",
                "RightShoulder",
                "RightUpperArm",
                "RightForeArm",
                "RightHand",
                "LeftShoulder",
                "LeftUpperArm",
                "LeftForeArm",
                "LeftHand",
                "RightUpperLeg",
                "RightLowerLeg",
                "RightFoot",
                "RightToe",
                "LeftUpperLeg",
                "LeftLowerLeg",
                "LeftFoot",
                "LeftToe",
            ],
        ),
        (
            "cmu",
            [
                "Hips",
                "LHipJoint",
                "LeftUpLeg",
                "LeftLeg",
                "LeftFoot",
                "LeftToeBase",
                "RHipJoint",
                "RightUpLeg",
                "RightLeg",
                "RightFoot",
                "RightToeBase",
                "LowerBack",
                "Spine",
                "Spine1",
                "Neck",
                "Neck1",
                "Head",
                "LeftShoulder",
                "LeftArm",
                "LeftForeArm",
                "LeftHand",
                "LeftFingerBase",
                "RightShoulder",
                "RightArm",
                "RightForeArm",
                "RightHand",
                "RightFingerBase",
            ],
        ),
    ],
)
def test_published_rig_names_are_recognised(tmp_path, rig, names):
    """The maps come from the rigs' published joint names: a chain file with those names (one
    child per joint in the published parent order, enough to test the name map) is recognised."""
    parents = _published_parents(rig, names)
    lines = ["HIERARCHY"]

    def joint(j: int, depth: int) -> None:
        pad = "  " * depth
        lines.extend(
            [
                f"{pad}{'ROOT' if parents[j] < 0 else 'JOINT'} {names[j]}",
                f"{pad}{{",
                f"{pad}  OFFSET 0 {-1 if 'Leg' in names[j] or 'Foot' in names[j] else 1} 0",
                f"{pad}  CHANNELS 3 Zrotation Xrotation Yrotation",
            ]
        )
        for child in [c for c, p in enumerate(parents) if p == j]:
            joint(child, depth + 1)
        lines.append(f"{pad}}}")

    joint(0, 0)
    lines += ["MOTION", "Frames: 2", "Frame Time: 0.0333333", *[" ".join(["0"] * (3 * len(names)))] * 2]
    path = tmp_path / f"{rig}.bvh"
    path.write_text("\n".join(lines) + "\n")
    header, _ = read_bvh(path)
    mapping = map_rig(header)
    assert mapping.rig == rig
    mapped = mapping.mapped(header)
    assert {
        "pelvis",
        "left_hip",
        "left_knee",
        "left_ankle",
        "spine1",
        "spine3",
        "neck",
        "head",
        "left_shoulder",
        "left_elbow",
        "left_wrist",
    } <= set(mapped)
    assert "Right" in mapped["right_knee"] or mapped["right_knee"].endswith("_R")


def _published_parents(rig: str, names: list[str]) -> list[int]:
    """Parent indices of the rigs' published hierarchies (for `test_published_rig_names_are_recognised`)."""
    tree = {
        "lafan1": {
            "LeftUpLeg": "Hips",
            "LeftLeg": "LeftUpLeg",
            "LeftFoot": "LeftLeg",
            "LeftToe": "LeftFoot",
            "Spine": "Hips",
            "Spine1": "Spine",
            "Spine2": "Spine1",
            "Neck": "Spine2",
            "Head": "Neck",
            "LeftShoulder": "Spine2",
            "LeftArm": "LeftShoulder",
            "LeftForeArm": "LeftArm",
            "LeftHand": "LeftForeArm",
        },
        "bandai_namco": {
            "Hips": "joint_Root",
            "Spine": "Hips",
            "Chest": "Spine",
            "Neck": "Chest",
            "Head": "Neck",
            "Shoulder_L": "Chest",
            "UpperArm_L": "Shoulder_L",
            "LowerArm_L": "UpperArm_L",
            "Hand_L": "LowerArm_L",
            "UpperLeg_L": "Hips",
            "LowerLeg_L": "UpperLeg_L",
            "Foot_L": "LowerLeg_L",
            "Toes_L": "Foot_L",
        },
        "xsens_mvn": {
            "L5": "Pelvis",
            "L3": "L5",
            "T12": "L3",
            "T8": "T12",
            "Neck": "T8",
            "Head": "Neck",
            "LeftShoulder": "T8",
            "LeftUpperArm": "LeftShoulder",
            "LeftForeArm": "LeftUpperArm",
            "LeftHand": "LeftForeArm",
            "LeftUpperLeg": "Pelvis",
            "LeftLowerLeg": "LeftUpperLeg",
            "LeftFoot": "LeftLowerLeg",
            "LeftToe": "LeftFoot",
        },
        "cmu": {
            "LHipJoint": "Hips",
            "LeftUpLeg": "LHipJoint",
            "LeftLeg": "LeftUpLeg",
            "LeftFoot": "LeftLeg",
            "LeftToeBase": "LeftFoot",
            "LowerBack": "Hips",
            "Spine": "LowerBack",
            "Spine1": "Spine",
            "Neck": "Spine1",
            "Neck1": "Neck",
            "Head": "Neck1",
            "LeftShoulder": "Spine1",
            "LeftArm": "LeftShoulder",
            "LeftForeArm": "LeftArm",
            "LeftHand": "LeftForeArm",
            "LeftFingerBase": "LeftHand",
        },
    }[rig]
    mirrored = dict(tree)
    for child, parent in tree.items():
        for a, b in (("Left", "Right"), ("_L", "_R"), ("LHip", "RHip")):
            if a in child:
                mirrored[child.replace(a, b)] = parent.replace(a, b) if a in parent else parent
    return [names.index(mirrored[name]) if name in mirrored else -1 for name in names]


def test_joint_map_maps_an_unknown_rig(tmp_path):
    names = {
        0: "root_jnt",
        1: "thigh_a",
        2: "thigh_b",
        3: "s1",
        4: "calf_a",
        5: "calf_b",
        6: "s2",
        7: "ft_a",
        8: "ft_b",
        9: "s3",
        10: "tip_a",
        11: "tip_b",
        12: "nk",
        13: "clav_a",
        14: "clav_b",
        15: "hd",
        16: "up_a",
        17: "up_b",
        18: "lo_a",
        19: "lo_b",
        20: "wr_a",
        21: "wr_b",
        22: "pa_a",
        23: "pa_b",
    }
    motion = _short_motion(30)
    path = write_named_rig(tmp_path / "odd.bvh", motion, names, prefix="")
    with pytest.raises(MocapError, match="not a humanoid rig"):
        load_motion(path)
    from diffmimic.character.skeleton import SMPL_JOINT_NAMES

    joint_map = {SMPL_JOINT_NAMES[j]: name for j, name in names.items()}
    read, info = load_bvh_with_report(path, {"joint_map": joint_map, "units": "cm", "up_axis": "y"})
    assert info.rig.endswith("+joint_map")
    assert np.abs(_positions(read) - _positions(motion)).max() < 1e-4


def test_spec_takes_bvh_settings(tmp_path):
    data = {
        "name": "mine",
        "reader": "bvh",
        "root": str(tmp_path),
        "include": ["**/*.bvh"],
        "fps": 30,
        "obtain": "here",
        "joint_map": {"left_hip": "thigh_l"},
        "units": "cm",
        "up_axis": "z",
    }
    spec = parse_dataset_spec(data)
    assert spec.reader == "bvh" and spec.reader_options == {
        "joint_map": {"left_hip": "thigh_l"},
        "units": "cm",
        "up_axis": "z",
    }
    with pytest.raises(ValueError, match="joint_map"):
        parse_dataset_spec({**data, "joint_map": {"thigh": "thigh_l"}})
    with pytest.raises(ValueError, match="units"):
        parse_dataset_spec({**data, "units": "furlong"})


# --------------------------------------------------------------------------- bad input


def _good_text(tmp_path) -> str:
    return write_named_rig(tmp_path / "good.bvh", _short_motion(10), _MIXAMO).read_text()


def test_truncated_file(tmp_path):
    text = _good_text(tmp_path)
    path = tmp_path / "cut.bvh"
    path.write_text(text[: len(text) * 2 // 3].rsplit("\n", 1)[0] + "\n")
    with pytest.raises(MocapError, match=r"cut\.bvh: truncated: Frames: 10, but only"):
        load_motion(path)
    path.write_text(text[:200])
    with pytest.raises(MocapError, match="cut.bvh"):
        load_motion(path)


def test_channel_count_mismatch(tmp_path):
    lines = _good_text(tmp_path).splitlines()
    lines[-3] = " ".join(lines[-3].split()[:-3])  # a frame with one joint's values missing
    path = tmp_path / "short.bvh"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(
        MocapError,
        match=r"short\.bvh: frame 8 has 141 values, but the hierarchy's 24 joints have "
        r"144 channels",
    ):
        load_motion(path)


def test_not_a_humanoid(tmp_path):
    path = tmp_path / "snake.bvh"
    path.write_text(
        "HIERARCHY\nROOT Head\n{\n OFFSET 0 0 0\n CHANNELS 3 Zrotation Xrotation Yrotation\n"
        " JOINT Segment1\n {\n  OFFSET 0 0 10\n  CHANNELS 3 Zrotation Xrotation Yrotation\n"
        "  End Site\n  {\n   OFFSET 0 0 10\n  }\n }\n}\nMOTION\nFrames: 2\nFrame Time: 0.033333\n"
        "0 0 0 0 0 0\n0 0 0 5 0 0\n"
    )
    with pytest.raises(MocapError, match=r"snake\.bvh: not a humanoid rig: no pelvis, left_hip"):
        load_motion(path)


@pytest.mark.parametrize("bad, match", [("nan", "NaN or infinite"), ("1e9", "beyond"), ("abc", "non-numeric")])
def test_nan_and_absurd_values(tmp_path, bad, match):
    lines = _good_text(tmp_path).splitlines()
    values = lines[-2].split()
    values[5] = bad  # the root's third rotation channel
    lines[-2] = " ".join(values)
    path = tmp_path / "bad.bvh"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(MocapError, match=rf"bad\.bvh: .*{match}"):
        load_motion(path)


def test_cli_exits_2_with_one_line(tmp_path, capsys):
    from diffmimic.mocap.__main__ import main

    path = tmp_path / "empty.bvh"
    path.write_text("HIERARCHY\n")
    assert main(["inspect", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "empty.bvh" in err


def test_written_bvh_reads_back(tmp_path):
    motion = _short_motion()
    for units in ("m", "cm"):
        path = write_bvh(
            tmp_path / f"smpl_{units}.bvh", motion.rotations, motion.root_position, motion.fps, units=units
        )
        read, info = load_bvh_with_report(path)
        assert info.rig == "smpl" and info.units == units and info.up_axis == "y"
        assert np.abs(_positions(read) - _positions(motion)).max() < 1e-4
        assert (
            np.allclose(read.rotations[:, :22], motion.rotations[:, :22], atol=1e-4)
            or np.abs(
                Rotation.from_rotvec(read.rotations[:, :22].reshape(-1, 3)).inv()
                * Rotation.from_rotvec(motion.rotations[:, :22].reshape(-1, 3))
            )
            .magnitude()
            .max()
            < 1e-4
        )


# --------------------------------------------------------------------------- real files


@pytest.mark.parametrize("name", sorted(REAL_BVH))
def test_real_bvh_reads_and_retargets(mocap_fixtures, name):
    from diffmimic.character.character import make_character
    from diffmimic.mocap.retarget import lowest_foot_height, retarget

    path = mocap_fixtures / "varied_dev" / "bvh" / name
    header = read_bvh_header(path)
    start = time.perf_counter()
    motion, info = load_bvh_with_report(path)
    seconds = time.perf_counter() - start
    assert info.rig == REAL_BVH[name] and info.up_axis == "y" and info.rest_pose_stands
    assert motion.num_frames == header.frames and 0.85 < info.scale < 1.1
    if header.frames / header.fps > 40:  # the 45 s, 60 fps files: read (and retargeted) in under a second
        assert seconds < 2.0, seconds  # (2 s: a loaded shared test machine; alone it takes ~0.5 s)
    character = make_character()
    reference = retarget(motion.segment(0.0, min(motion.duration_s, 3.0)), character)
    sole = lowest_foot_height(character, reference.body_pos, reference.body_rot)
    assert sole.min() > -0.03 and np.quantile(sole, 0.1) < 0.03  # grounded: feet on, not in, the floor
