"""Mocap files for the reader tests: SYNTHETIC ones written here by code, and the real ones.

The synthetic files are not captured motion. Each encodes the one made-up clip of
`synthetic_motion` in one format the readers take (AMASS SMPL-H and SMPL-X, AIST++, CMU ASF/AMC),
written into a temporary directory, so the readers are tested in a fresh clone too. The real
clips (../shared/data/mocap, not redistributable) come only through `mocap_fixtures`
(tests/conftest.py), which skips without them, or fails in CI.

A test taking `mocap_clip` runs once per clip: every synthetic and every real one, or those a
``@pytest.mark.mocap_clips("cmu", ..., origins=("synthetic",))`` marker names (roles are the
keys of `SYNTHETIC_CLIPS` and `REAL_CLIPS`; both origins by default).
"""

from __future__ import annotations

import dataclasses
import pickle
from pathlib import Path

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from diffmimic.character.skeleton import NEUTRAL_REST_JOINTS_SMPL, Y_UP_TO_Z_UP
from diffmimic.mocap.cmu import INCH
from diffmimic.mocap.motion import Motion
from diffmimic.mocap.sample import make_clip

REST = NEUTRAL_REST_JOINTS_SMPL  # SMPL body frame (x left, y up, z forward), metres
HEADING_RAD = -np.pi / 3  # diagonal, so no format's root Euler angles sit at a gimbal lock
SPEED_M_S = 0.4


@dataclasses.dataclass(frozen=True)
class MocapClip:
    """A mocap test file and what `load_motion` must make of it.

    Attributes:
      path: the file (for CMU the .amc, its <subject>.asf beside it).
      format, frames, fps, gender: what the reader must report.
      motion: for a synthetic file the motion it encodes ((T, 24, 3) rotations, (T, 3) pelvis,
        Z-up); None for a real one.
    """

    path: Path
    format: str
    frames: int
    fps: float
    gender: str = "neutral"
    motion: Motion | None = None


# --------------------------------------------------------------------------- the synthetic motion


def synthetic_motion() -> Motion:
    """SYNTHETIC walking-like motion, 4 s at 120 fps (480 frames).

    The sample `march_in_place` clip (legs lifting in turn, arms swinging, pelvis swaying: see
    diffmimic.mocap.sample) turned to face `HEADING_RAD` about the vertical, the pelvis moving
    forward at `SPEED_M_S` on top. The feet slide: it is for the readers, not for physics.
    """
    poses, pelvis, fps = make_clip("march_in_place")
    turn = Rotation.from_euler("z", HEADING_RAD)
    rotations = poses.copy()
    rotations[:, 0] = (turn * Rotation.from_rotvec(poses[:, 0])).as_rotvec()
    travel = np.outer(SPEED_M_S * np.arange(len(pelvis)) / fps, turn.apply([1.0, 0.0, 0.0]))
    return Motion(
        rotations=rotations, root_position=turn.apply(pelvis) + travel, fps=fps, source="synthetic", format="synthetic"
    )


def _finger_curl(frames: int, fps: float) -> np.ndarray:
    """(T, 90) SMPL-H/SMPL-X hand poses, slowly curling: values the body readers must ignore."""
    return np.outer(0.15 * np.sin(np.pi * np.arange(frames) / fps), np.ones(90))


def _clip(path: Path, fmt: str, motion: Motion, fps: float | None = None, gender: str = "neutral") -> MocapClip:
    return MocapClip(path, fmt, motion.num_frames, motion.fps if fps is None else fps, gender, motion)


# --------------------------------------------------------------------------- AMASS and AIST++


def write_amass_smplh(path: Path, motion: Motion, gender: str | bytes = "male", fps: float | None = None) -> MocapClip:
    """SYNTHETIC AMASS SMPL-H ``*_poses.npz``: poses (T, 156), trans, betas (16,), gender (str or
    bytes), mocap_framerate (``fps``, default the motion's), dmpls (T, 8)."""
    frames = motion.num_frames
    fps = motion.fps if fps is None else fps
    np.savez(
        path,
        poses=np.concatenate([motion.rotations[:, :22].reshape(frames, 66), _finger_curl(frames, motion.fps)], axis=1),
        trans=motion.root_position - REST[0],
        betas=np.linspace(-0.5, 0.5, 16),
        gender=np.array(gender),
        mocap_framerate=np.array(fps),
        dmpls=np.zeros((frames, 8)),
    )
    text = gender.decode() if isinstance(gender, bytes) else gender
    return _clip(path, "amass_smplh", motion, fps, text)


def write_amass_smplx(path: Path, motion: Motion) -> MocapClip:
    """SYNTHETIC AMASS SMPL-X ``*_stageii.npz`` (compressed): root_orient, pose_body (T, 63),
    pose_hand (T, 90), pose_jaw, pose_eye, poses (T, 165), trans, betas, mocap_frame_rate,
    mocap_time_length, gender, surface_model_type, and object arrays (need allow_pickle)."""
    frames = motion.num_frames
    body = motion.rotations[:, :22].reshape(frames, 66)
    hands, jaw, eyes = _finger_curl(frames, motion.fps), np.zeros((frames, 3)), np.zeros((frames, 6))
    np.savez_compressed(
        path,
        root_orient=body[:, :3],
        pose_body=body[:, 3:],
        pose_hand=hands,
        pose_jaw=jaw,
        pose_eye=eyes,
        poses=np.concatenate([body, jaw, eyes, hands], axis=1),
        trans=motion.root_position - REST[0],
        betas=np.zeros(16),
        num_betas=np.array(16),
        gender=np.array("neutral"),
        surface_model_type=np.array("smplx"),
        mocap_frame_rate=np.array(motion.fps),
        mocap_time_length=np.array(frames / motion.fps),
        markers_latent_vids=np.array({"C7": 3832, "CLAV": 5533}),
        labels_obs=np.array([["C7", "CLAV"]] * frames, dtype=object),
    )
    return _clip(path, "amass_smplx", motion)


def write_aistpp(path: Path, motion: Motion, scaling: float | None = None) -> MocapClip:
    """SYNTHETIC AIST++ ``.pkl``: every other frame (60 fps), Y-up; smpl_poses (T, 72),
    smpl_trans in metres, or times ``scaling`` with smpl_scaling and smpl_loss when given."""
    motion = dataclasses.replace(
        motion, rotations=motion.rotations[::2], root_position=motion.root_position[::2], fps=motion.fps / 2
    )
    poses = motion.rotations.copy()
    poses[:, 0] = Rotation.from_matrix(Y_UP_TO_Z_UP.T @ Rotation.from_rotvec(poses[:, 0]).as_matrix()).as_rotvec()
    data = {"smpl_poses": poses.reshape(-1, 72), "smpl_trans": motion.root_position @ Y_UP_TO_Z_UP - REST[0]}
    if scaling is not None:
        data.update(
            smpl_trans=data["smpl_trans"] * scaling, smpl_scaling=np.array([scaling]), smpl_loss=np.float64(1.25)
        )
    path.write_bytes(pickle.dumps(data, protocol=4))
    return _clip(path, "aistpp", motion)


# --------------------------------------------------------------------------- CMU ASF/AMC

CMU_LENGTH_SCALE = 0.45  # as CMU: lengths in inches / 0.45
# Left side and spine: (bone, parent, the SMPL joint whose local rotation its dofs carry (None:
# at rest), rest bone (a SMPL joint pair, with the part of its length; or a direction in the
# body frame and a length in metres), dofs, axis angle about z in degrees). Every carrying bone
# points where the SMPL bone from that joint points, so the reader's alignments are identities.
_CMU_LEFT = (
    ("lhipjoint", "root", None, (0, 1, 1.0), "", 0.0),
    ("lfemur", "lhipjoint", 1, (1, 4, 1.0), "rx ry rz", 20.0),
    ("ltibia", "lfemur", 4, (4, 7, 1.0), "rx", 0.0),
    ("lfoot", "ltibia", 7, (7, 10, 1.0), "rx ry rz", 0.0),
    ("ltoes", "lfoot", 10, ((0.0, 0.0, 1.0), 0.05), "rx", 0.0),
    ("lclavicle", "thorax", 13, (13, 16, 1.0), "ry rz", 0.0),
    ("lhumerus", "lclavicle", 16, (16, 18, 1.0), "rx ry rz", 0.0),
    ("lradius", "lhumerus", 18, (18, 20, 1.0), "rx", 90.0),  # the elbow: rx in a turned frame
    ("lwrist", "lradius", 20, (20, 22, 1.0), "ry", 0.0),
    ("lhand", "lwrist", 22, ((1.0, 0.0, 0.0), 0.08), "rx rz", 0.0),
    ("lfingers", "lhand", None, ((1.0, 0.0, 0.0), 0.03), "rx", 0.0),
    ("lthumb", "lwrist", None, ((1.0, 0.0, 1.0), 0.04), "rx rz", 0.0),
)
_CMU_SPINE = (
    ("lowerback", "root", 3, (3, 6, 1.0), "rx ry rz", 0.0),
    ("upperback", "lowerback", 6, (6, 9, 1.0), "rx ry rz", 0.0),
    ("thorax", "upperback", 9, (9, 12, 1.0), "rx ry rz", 0.0),
    ("lowerneck", "thorax", 12, (12, 15, 0.5), "rx ry rz", 0.0),
    ("upperneck", "lowerneck", None, (12, 15, 0.5), "rx ry rz", 0.0),
    ("head", "upperneck", 15, ((0.0, 1.0, 0.0), 0.2), "rx ry rz", 0.0),
)
_LEFT_TO_RIGHT = {0: 0, 1: 2, 4: 5, 7: 8, 10: 11, 13: 14, 16: 17, 18: 19, 20: 21, 22: 23}


def _right(bone: tuple) -> tuple:
    """The right-side twin of a `_CMU_LEFT` bone (mirrored in x)."""
    name, parent, joint, rest, dofs, axis_z = bone
    if isinstance(rest[0], tuple):
        rest = ((-rest[0][0],) + rest[0][1:], rest[1])
    else:
        rest = (_LEFT_TO_RIGHT[rest[0]], _LEFT_TO_RIGHT[rest[1]], rest[2])
    return (
        "r" + name[1:],
        parent if parent in ("root", "thorax") else "r" + parent[1:],
        None if joint is None else _LEFT_TO_RIGHT[joint],
        rest,
        dofs,
        -axis_z,
    )


CMU_BONES = (*_CMU_LEFT[:5], *map(_right, _CMU_LEFT[:5]), *_CMU_SPINE, *_CMU_LEFT[5:], *map(_right, _CMU_LEFT[5:]))


def _rest_bone(rest: tuple) -> tuple[np.ndarray, float]:
    """(unit direction, length in metres) of a `CMU_BONES` rest bone."""
    if isinstance(rest[0], tuple):
        direction, length = np.array(rest[0]), rest[1]
    else:
        direction, length = REST[rest[1]] - REST[rest[0]], rest[2] * np.linalg.norm(REST[rest[1]] - REST[rest[0]])
    return direction / np.linalg.norm(direction), length


def _numbers(values) -> str:
    return " ".join(f"{value:.6f}" for value in values)


def write_cmu(directory: Path, motion: Motion, subject: str = "01") -> MocapClip:
    """SYNTHETIC CMU clip: ``<subject>.asf`` and ``<subject>_01.amc`` in ``directory``.

    The skeleton is CMU's 30 bones and hierarchy, in the SMPL T-pose (bone lengths from the
    neutral SMPL skeleton, so the leg-length scale is 1); the AMC holds ``motion`` as each
    carrying bone's dofs (degrees, ``C^T R C`` in its axis frame C). CRLF line ends and ``#``
    comment lines, as the real files have.
    """
    directory.mkdir(parents=True, exist_ok=True)
    to_file_units = CMU_LENGTH_SCALE / INCH
    asf = [
        "# SYNTHETIC skeleton written by tests/diffmimic/mocap/conftest.py (not captured)",
        ":version 1.10",
        ":name SYNTHETIC",
        ":units",
        "  mass 1.0",
        f"  length {CMU_LENGTH_SCALE}",
        "  angle deg",
        ":documentation",
        "  A T-pose with neutral SMPL bone lengths.",
        ":root",
        "   order TX TY TZ RX RY RZ",
        "   axis XYZ",
        "   position 0 0 0",
        "   orientation 0 0 0",
        ":bonedata",
    ]
    for number, (name, _, _, rest, dofs, axis_z) in enumerate(CMU_BONES, 1):
        direction, length = _rest_bone(rest)
        asf += [
            "  begin",
            f"     id {number}",
            f"     name {name}",
            f"     direction {_numbers(direction)}",
            f"     length {length * to_file_units:.6f}",
            f"     axis 0 0 {axis_z + 0.0:g}  XYZ",
        ]
        if dofs:
            limits = ["(-180.0 180.0)"] * len(dofs.split())
            asf += [f"    dof {dofs}", f"    limits {limits[0]}", *(f"           {pair}" for pair in limits[1:])]
        asf.append("  end")
    children: dict[str, list[str]] = {}
    for name, parent, *_ in CMU_BONES:
        children.setdefault(parent, []).append(name)
    asf += [
        ":hierarchy",
        "  begin",
        *(f"    {parent} {' '.join(names)}" for parent, names in children.items()),
        "  end",
    ]

    local = Rotation.from_rotvec(motion.rotations.reshape(-1, 3)).as_matrix().reshape(motion.num_frames, 24, 3, 3)
    root = np.concatenate(
        [
            motion.root_position @ Y_UP_TO_Z_UP * to_file_units,
            Rotation.from_matrix(Y_UP_TO_Z_UP.T @ local[:, 0]).as_euler("xyz", degrees=True),
        ],
        axis=1,
    )
    dof_values = {}
    for name, _, joint, _, dofs, axis_z in CMU_BONES:
        if not dofs:
            continue
        axis = Rotation.from_euler("z", axis_z, degrees=True).as_matrix()
        rotation = np.broadcast_to(np.eye(3), local[:, 0].shape) if joint is None else local[:, joint]
        euler = Rotation.from_matrix(axis.T @ rotation @ axis).as_euler("xyz", degrees=True)
        kept = ["xyz".index(dof[1]) for dof in dofs.split()]
        dropped = np.delete(euler, kept, axis=1)
        assert np.abs(dropped).max(initial=0.0) < 1e-6, f"synthetic CMU: {name} turns outside its dofs {dofs}"
        dof_values[name] = euler[:, kept]
    amc = [
        "# SYNTHETIC motion written by tests/diffmimic/mocap/conftest.py (not captured)",
        ":FULLY-SPECIFIED",
        ":DEGREES",
    ]
    for frame in range(motion.num_frames):
        amc += [
            str(frame + 1),
            f"root {_numbers(root[frame])}",
            *(f"{name} {_numbers(values[frame])}" for name, values in dof_values.items()),
        ]
    asf_path, amc_path = directory / f"{subject}.asf", directory / f"{subject}_01.amc"
    for path, lines in ((asf_path, asf), (amc_path, amc)):
        path.write_bytes(("\r\n".join(lines) + "\r\n").encode("latin-1"))
    return _clip(amc_path, "cmu", motion)


# --------------------------------------------------------------------------- the clips

SYNTHETIC_CLIPS = {  # role: (file name, writer, its keyword arguments)
    "smplh": ("synthetic_walk_poses.npz", write_amass_smplh, {}),
    "smplh_bytes_gender": (
        "synthetic_walk_bytes_gender_poses.npz",
        write_amass_smplh,
        {"gender": b"female", "fps": 120.00004577},
    ),
    "smplx": ("synthetic_walk_stageii.npz", write_amass_smplx, {}),
    "aistpp": ("synthetic_walk.pkl", write_aistpp, {}),
    "aistpp_full": ("synthetic_walk_full.pkl", write_aistpp, {"scaling": 95.0}),
    "cmu": ("cmu", write_cmu, {}),
}
REAL_CLIPS = {  # role: file under ../shared/data/mocap, format, frames, fps, gender
    "smplh": ("amass/amass_sample.npz", "amass_smplh", 601, 120.0, "male"),
    "smplh_bytes_gender": ("amass/dmpl_sample.npz", "amass_smplh", 235, 120.00004577, "female"),
    "smplx": ("amass/B20_walk_with_box_stageii.npz", "amass_smplx", 514, 120.0, "neutral"),
    "aistpp": ("aistpp/aist_slice.pkl", "aistpp", 127, 60.0, "neutral"),
    "cmu": ("cmu/11_01.amc", "cmu", 597, 120.0, "neutral"),
}
ORIGINS = {"synthetic": tuple(SYNTHETIC_CLIPS), "real": tuple(REAL_CLIPS)}


@pytest.fixture(scope="session")
def synthetic_clips(tmp_path_factory) -> dict[str, MocapClip]:
    """Every `SYNTHETIC_CLIPS` file, written once per session; role -> `MocapClip`."""
    directory, motion = tmp_path_factory.mktemp("synthetic_mocap"), synthetic_motion()
    return {role: write(directory / name, motion, **kwargs) for role, (name, write, kwargs) in SYNTHETIC_CLIPS.items()}


@pytest.fixture(scope="module")
def mocap_clip(request, synthetic_clips) -> MocapClip:
    """One clip, ``<origin>-<role>``, parametrized by `pytest_generate_tests`."""
    origin, role = request.param.split("-", 1)
    if origin == "synthetic":
        return synthetic_clips[role]
    name, fmt, frames, fps, gender = REAL_CLIPS[role]
    return MocapClip(request.getfixturevalue("mocap_fixtures") / name, fmt, frames, fps, gender)


def pytest_configure(config):
    config.addinivalue_line(
        "markers",
        "mocap_clips(*roles, origins=('synthetic', 'real')): the clips a test taking "
        "`mocap_clip` runs on (tests/diffmimic/mocap/conftest.py; default all)",
    )


def pytest_generate_tests(metafunc):
    if "mocap_clip" not in metafunc.fixturenames:
        return
    marker = metafunc.definition.get_closest_marker("mocap_clips")
    roles = marker.args if marker and marker.args else None
    origins = marker.kwargs.get("origins", tuple(ORIGINS)) if marker else tuple(ORIGINS)
    metafunc.parametrize(
        "mocap_clip",
        [f"{origin}-{role}" for origin in origins for role in ORIGINS[origin] if roles is None or role in roles],
        indirect=True,
    )
