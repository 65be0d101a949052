"""The character's motion (a simulated rollout or a reference) written back as mocap:
an AMASS-style SMPL-H ``.npz`` and a BVH on the SMPL skeleton.

The character's generalized coordinates are SMPL parameters in another frame (see
`diffmimic.mocap.retarget`): the root quaternion is ``R_root C^T`` and each body's hinge triple
``E`` (intrinsic, in the body's `HINGE_ORDER`) is ``C R C^T``, with ``C = SMPL_TO_CHARACTER``;
`motion_from_qpos` inverts both, so the SMPL pose drives the SMPL skeleton exactly as the
character's forward kinematics drives its bodies (the tests check it to well under a millimetre).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from scipy.spatial.transform import Rotation

from diffmimic import atomic
from diffmimic.character.constants import HINGE_ORDER
from diffmimic.character.skeleton import (
    BODY_NAMES,
    BODY_SMPL_JOINT,
    NEUTRAL_REST_JOINTS_SMPL,
    NUM_JOINTS,
    SMPL_TO_CHARACTER,
    Skeleton,
    neutral_skeleton,
)
from diffmimic.mocap.bvh import write_bvh
from diffmimic.mocap.motion import Motion

FORMATS = ("amass", "bvh")
SMPLH_POSE_WIDTH = 156  # SMPL-H: root + 21 body joints + 2 x 15 finger joints, axis-angle


def motion_from_qpos(qpos: np.ndarray, fps: float, source: str = "character") -> Motion:
    """Character generalized positions (T, 7 + 69) -> a `Motion` (SMPL axis-angle, pelvis, Z-up)."""
    qpos = np.asarray(qpos, dtype=np.float64)
    frames = qpos.shape[0]
    local = np.empty((frames, NUM_JOINTS, 3, 3))
    wxyz = qpos[:, 3:7]
    root = Rotation.from_quat(np.concatenate([wxyz[:, 1:], wxyz[:, :1]], axis=1)).as_matrix()
    local[:, 0] = root @ SMPL_TO_CHARACTER
    hinges = qpos[:, 7:].reshape(frames, NUM_JOINTS - 1, 3)
    for body, name in enumerate(BODY_NAMES[1:], start=1):
        euler = Rotation.from_euler(HINGE_ORDER[name].upper(), hinges[:, body - 1]).as_matrix()
        local[:, BODY_SMPL_JOINT[body]] = SMPL_TO_CHARACTER.T @ euler @ SMPL_TO_CHARACTER
    rotations = Rotation.from_matrix(local.reshape(-1, 3, 3)).as_rotvec().reshape(frames, NUM_JOINTS, 3)
    return Motion(rotations=rotations, root_position=qpos[:, :3], fps=fps, source=source, format="character")


def write_amass(path: str | os.PathLike, motion: Motion, gender: str = "neutral") -> Path:
    """Writes `motion` as an AMASS SMPL-H ``*_poses.npz``: ``poses`` (T, 156) axis-angle (root and
    21 body joints; the finger joints, and SMPL's two hand joints, which SMPL-H replaces by
    fingers, are zero), ``trans`` (T, 3) metres with the pelvis at ``trans + J0`` of the neutral
    body, ``betas`` (16,) zeros, ``mocap_framerate``, ``gender``; Z-up, as AMASS."""
    frames = motion.num_frames
    poses = np.zeros((frames, SMPLH_POSE_WIDTH))
    poses[:, :66] = motion.rotations[:, :22].reshape(frames, 66)
    arrays = {
        "poses": poses,
        "trans": motion.root_position - NEUTRAL_REST_JOINTS_SMPL[0],
        "betas": np.zeros(16),
        "mocap_framerate": np.float64(motion.fps),
        "gender": np.array(gender),
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return atomic.write_with(path, lambda tmp: np.savez(tmp, **arrays), suffix=".tmp.npz")


def export_motion(
    path: str | os.PathLike, qpos: np.ndarray, fps: float, fmt: str, skeleton: Skeleton | None = None, units: str = "m"
) -> Path:
    """Writes the character motion `qpos` (T, nq) at `fps` as `fmt` (``amass`` or ``bvh``, in
    `units` ``m`` or ``cm``) to `path`."""
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    motion = motion_from_qpos(qpos, fps, source=str(path))
    if fmt == "amass":
        return write_amass(path, motion)
    skeleton = neutral_skeleton() if skeleton is None else skeleton
    return write_bvh(path, motion.rotations, motion.root_position, motion.fps, skeleton, units=units)
