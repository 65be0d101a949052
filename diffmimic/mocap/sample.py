"""The embedded default dataset: a few deterministic synthetic clips made by code.

Every clip is built in the SMPL "upright" frame (x to the body's left, y up, z forward, the
ground at y = 0) and mapped into the Z-up, X-forward world with
:data:`~diffmimic.character.skeleton.SMPL_TO_CHARACTER` at the end. A clip is specified by a
pelvis trajectory (position and orientation), the two ankle targets with the feet's
orientations, and the upper-body joint rotations; the legs are then solved by analytic
two-bone inverse kinematics on the neutral SMPL skeleton, so planted feet stay exactly where
they were put and a squatting pelvis drops as far as the bent legs allow.

Feet: a planted foot is flat (the SMPL rest foot orientation) with its ankle joint
:data:`ANKLE_HEIGHT_M` above the ground, which puts the simulated character's sole
(``diffmimic.character.mjcf.SOLE_BELOW_ANKLE_M`` below the ankle) on the floor; the SMPL
toe ("foot") joints are then 2.9 cm (left) and 3.7 cm (right) above the ground, like real
AMASS standing poses. The only foot ever lifted is the swing foot of ``march_in_place``.

The clips are written as AMASS SMPL-H ``*_poses.npz`` files (see :func:`write_sample_dataset`)
so the same reader serves the sample and the real dataset. Run
``python -m diffmimic.mocap.sample [--out DIR]`` to write them.
"""

from __future__ import annotations

import argparse
import io
import os
import zipfile
from pathlib import Path
from typing import Callable

import numpy as np
from scipy.spatial.transform import Rotation, Slerp

from diffmimic import atomic
from diffmimic.character.skeleton import (
    NEUTRAL_REST_JOINTS_SMPL,
    NUM_JOINTS,
    SMPL_TO_CHARACTER,
    neutral_skeleton,
)

FPS = 120.0
# Height of a planted foot's ankle joint above the ground (metres). Matches the character's
# sole depth below the ankle (diffmimic.character.mjcf.SOLE_BELOW_ANKLE_M).
ANKLE_HEIGHT_M = 0.085
SAMPLE_DIR_ENV = "DIFFMIMIC_SAMPLE_DIR"
SMPLH_POSE_DIM = 156
SMPLH_NUM_BETAS = 16

# SMPL joint indices used below.
_PELVIS, _L_HIP, _R_HIP, _SPINE1, _L_KNEE, _R_KNEE, _SPINE2 = 0, 1, 2, 3, 4, 5, 6
_L_ANKLE, _R_ANKLE, _SPINE3, _L_FOOT, _R_FOOT, _NECK = 7, 8, 9, 10, 11, 12
_L_COLLAR, _R_COLLAR, _HEAD, _L_SHOULDER, _R_SHOULDER = 13, 14, 15, 16, 17
_L_ELBOW, _R_ELBOW, _L_WRIST, _R_WRIST = 18, 19, 20, 21

# Arms hanging at the sides (A-pose, about 18 degrees out from the body) and slightly bent.
_ARM_DOWN = 1.25
_ELBOW_REST = 0.2
# How much lower than with straight legs the standing pelvis is (soft knees).
_KNEE_SOFTNESS_M = 0.006


# --------------------------------------------------------------------------------------------
# Small rotation helpers (vectorised over frames, matrices act on column vectors).


def _axis_rot(axis: int, angle) -> np.ndarray:
    angle = np.atleast_1d(np.asarray(angle, dtype=np.float64))
    rotvec = np.zeros(angle.shape + (3,))
    rotvec[..., axis] = angle
    return Rotation.from_rotvec(rotvec.reshape(-1, 3)).as_matrix().reshape(angle.shape + (3, 3))


def _rx(angle) -> np.ndarray:
    return _axis_rot(0, angle)


def _ry(angle) -> np.ndarray:
    return _axis_rot(1, angle)


def _rz(angle) -> np.ndarray:
    return _axis_rot(2, angle)


def _rotvec(matrices: np.ndarray) -> np.ndarray:
    return Rotation.from_matrix(matrices.reshape(-1, 3, 3)).as_rotvec().reshape(matrices.shape[:-2] + (3,))


def _slerp(r0: np.ndarray, r1: np.ndarray, s: np.ndarray) -> np.ndarray:
    """Per-frame interpolation from rotation r0 (3,3) to r1 (3,3) by fractions s (T,)."""
    return Slerp([0.0, 1.0], Rotation.from_matrix(np.stack([r0, r1])))(np.asarray(s)).as_matrix()


def _normalize(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def _smoothstep(x: np.ndarray) -> np.ndarray:
    """C2-continuous ramp from 0 (x <= 0) to 1 (x >= 1)."""
    x = np.clip(x, 0.0, 1.0)
    return x * x * x * (x * (6.0 * x - 15.0) + 10.0)


def _bump(t: np.ndarray, start: float, duration: float) -> np.ndarray:
    """Raised-cosine bump: 0 outside [start, start + duration], 1 in the middle."""
    u = np.clip((t - start) / duration, 0.0, 1.0)
    return 0.5 * (1.0 - np.cos(2.0 * np.pi * u))


# --------------------------------------------------------------------------------------------
# Clip assembly.


class _Builder:
    """Collects a clip's trajectories in the SMPL upright frame, then solves the legs."""

    def __init__(self, duration_s: float):
        self.num_frames = int(round(duration_s * FPS))
        self.t = np.arange(self.num_frames) / FPS
        self.skeleton = neutral_skeleton()
        offsets = self.skeleton.offsets_smpl
        rest = self.skeleton.rest_joints_smpl
        n = self.num_frames
        # Local rotation matrices of every joint (legs are overwritten by the IK).
        self.local = np.tile(np.eye(3), (n, NUM_JOINTS, 1, 1))
        self.pelvis_orientation = np.tile(np.eye(3), (n, 1, 1))
        # Feet where the rest pose puts them, relative to a pelvis at x = z = 0.
        self.ankle = {}
        self.foot_orientation = {}
        for side, ankle in (("l", _L_ANKLE), ("r", _R_ANKLE)):
            pos = rest[ankle] - rest[_PELVIS]
            self.ankle[side] = np.tile([pos[0], ANKLE_HEIGHT_M, pos[2]], (n, 1))
            self.foot_orientation[side] = np.tile(np.eye(3), (n, 1, 1))
        # Standing pelvis height: the shorter leg almost straight.
        reach = min(_max_reach(offsets, _L_KNEE, _L_ANKLE), _max_reach(offsets, _R_KNEE, _R_ANKLE))
        hip_drop = -offsets[_L_HIP][1]
        self.stand_height = ANKLE_HEIGHT_M + hip_drop + reach - _KNEE_SOFTNESS_M
        self.pelvis = np.tile([0.0, self.stand_height, 0.0], (n, 1))
        self.set_arms_down()

    def set(self, joint: int, rotation: np.ndarray) -> None:
        self.local[:, joint] = rotation

    def set_arms_down(self, swing_l=0.0, swing_r=0.0, elbow_l=_ELBOW_REST, elbow_r=_ELBOW_REST):
        """Arms hanging; ``swing_*`` > 0 swings the arm forward (flexion about the left axis)."""
        self.set(_L_SHOULDER, _rx(-np.broadcast_to(swing_l, self.t.shape)) @ _rz(-_ARM_DOWN))
        self.set(_R_SHOULDER, _rx(-np.broadcast_to(swing_r, self.t.shape)) @ _rz(_ARM_DOWN))
        self.set(_L_ELBOW, _ry(-np.broadcast_to(elbow_l, self.t.shape)))
        self.set(_R_ELBOW, _ry(np.broadcast_to(elbow_r, self.t.shape)))

    def spread(
        self, joints: tuple[int, ...], rotation_fn: Callable[[np.ndarray], np.ndarray], angle: np.ndarray
    ) -> None:
        """Splits ``angle`` evenly over ``joints`` (composed after their current rotations)."""
        part = rotation_fn(angle / len(joints))
        for joint in joints:
            self.local[:, joint] = self.local[:, joint] @ part

    def build(self) -> tuple[np.ndarray, np.ndarray]:
        """(T, 24, 3) axis-angle pose with a Z-up world root, and (T, 3) Z-up pelvis positions."""
        offsets = self.skeleton.offsets_smpl
        P = self.pelvis_orientation
        self.local[:, _PELVIS] = P
        legs = (("l", _L_HIP, _L_KNEE, _L_ANKLE, _L_FOOT), ("r", _R_HIP, _R_KNEE, _R_ANKLE, _R_FOOT))
        for side, hip, knee, ankle, foot in legs:
            hip_pos = self.pelvis + P @ offsets[hip]
            G, K = _leg_ik(
                offsets[knee],
                offsets[ankle],
                self.ankle[side] - hip_pos,
                hinge=_normalize(P[:, :, 0] + self.foot_orientation[side][:, :, 0]),
            )
            self.local[:, hip] = np.swapaxes(P, 1, 2) @ G
            self.local[:, knee] = K
            self.local[:, ankle] = np.swapaxes(G @ K, 1, 2) @ self.foot_orientation[side]
            self.local[:, foot] = np.eye(3)
        # SMPL-H has no SMPL hand joints (22, 23): they stay at rest.
        self.local[:, 22:] = np.eye(3)
        self.local[:, _PELVIS] = SMPL_TO_CHARACTER @ P
        poses = _rotvec(self.local)
        pelvis_world = self.pelvis @ SMPL_TO_CHARACTER.T
        return poses, pelvis_world


def _max_reach(offsets: np.ndarray, knee: int, ankle: int) -> float:
    t, s = offsets[knee], offsets[ankle]
    return float(np.sqrt(t @ t + s @ s + 2.0 * (t[0] * s[0] + np.hypot(t[1], t[2]) * np.hypot(s[1], s[2]))))


def _leg_ik(thigh: np.ndarray, shin: np.ndarray, target: np.ndarray, hinge: np.ndarray):
    """Two-bone IK with a knee hinge about the thigh's x (left) axis.

    Args:
      thigh: (3,) rest offset hip -> knee; shin: (3,) rest offset knee -> ankle.
      target: (T, 3) hip -> ankle vectors wanted, upright frame.
      hinge: (T, 3) where the knee hinge axis should point (the knee bends in the plane
        normal to it, so the knee points forward).

    Returns:
      (G, K): (T, 3, 3) global thigh rotations and (T, 3, 3) local knee rotations (Rx).
    """
    dist = np.linalg.norm(target, axis=-1)
    reach = np.sqrt(
        thigh @ thigh + shin @ shin + 2.0 * (thigh[0] * shin[0] + np.hypot(*thigh[1:]) * np.hypot(*shin[1:]))
    )
    if np.any(dist > reach * (1.0 - 1e-6)):
        raise ValueError(f"sample clip: an ankle target is out of reach ({dist.max():.4f} > {reach:.4f} m)")
    # |thigh + Rx(k) shin| = dist; in the (y, z) plane Rx is a plain 2D rotation.
    u, v = thigh[1:], shin[1:]
    c = 0.5 * (dist**2 - thigh @ thigh - shin @ shin) - thigh[0] * shin[0]
    offset = np.arctan2(u[1], u[0]) - np.arctan2(v[1], v[0])
    offset = (offset + np.pi) % (2.0 * np.pi) - np.pi
    knee_angle = offset + np.arccos(np.clip(c / (np.linalg.norm(u) * np.linalg.norm(v)), -1.0, 1.0))
    K = _rx(knee_angle)
    leg = thigh + K @ shin  # hip -> ankle in the thigh frame
    x = np.array([1.0, 0.0, 0.0])
    a1 = _normalize(leg)
    b1 = _normalize(x - np.sum(x * a1, axis=-1, keepdims=True) * a1)
    a2 = _normalize(target)
    b2 = _normalize(hinge - np.sum(hinge * a2, axis=-1, keepdims=True) * a2)
    src = np.stack([a1, b1, np.cross(a1, b1)], axis=-1)
    dst = np.stack([a2, b2, np.cross(a2, b2)], axis=-1)
    return dst @ np.swapaxes(src, 1, 2), K


# --------------------------------------------------------------------------------------------
# The clips. Angles follow SMPL conventions in the upright frame: +x rotation of the pelvis or
# spine leans forward, -x at the hip flexes the thigh forward, +x at the knee flexes it.


def _idle_sway() -> _Builder:
    """4 s loop: a relaxed standing weight shift side to side with small breathing motions."""
    b = _Builder(4.0)
    t = b.t
    w = 2.0 * np.pi / 4.0
    b.pelvis[:, 0] = 0.03 * np.sin(w * t)
    b.pelvis[:, 2] = 0.01 * np.sin(2.0 * w * t)
    b.pelvis[:, 1] -= 0.004 * (1.0 - np.cos(2.0 * w * t))
    roll = 0.03 * np.sin(w * t)  # the hip of the unloaded leg drops a little
    yaw = 0.03 * np.sin(w * t + 0.7)
    b.pelvis_orientation = _ry(yaw) @ _rz(-roll)
    b.spread((_SPINE1, _SPINE2, _SPINE3), _rz, roll - 0.01 * np.sin(w * t))
    b.spread((_SPINE1, _SPINE2, _SPINE3), _ry, -yaw)
    b.spread((_SPINE1, _SPINE2, _SPINE3), _rx, 0.015 * np.sin(2.0 * w * t))  # breathing
    b.set(_NECK, _rx(0.04 * np.sin(w * t + 1.3)))
    b.set(_HEAD, _ry(0.08 * np.sin(w * t + 2.0)))
    b.set_arms_down(
        swing_l=0.05 * np.sin(w * t + 0.5),
        swing_r=0.05 * np.sin(w * t + 2.0),
        elbow_l=_ELBOW_REST + 0.05 * np.sin(w * t),
        elbow_r=_ELBOW_REST - 0.05 * np.sin(w * t),
    )
    return b


def _squat() -> _Builder:
    """4 s loop: two slow half squats (2 s each), hips back, torso leaning, arms forward."""
    b = _Builder(4.0)
    t = b.t
    depth = 0.5 * (1.0 - np.cos(2.0 * np.pi * t / 2.0))  # 0 standing .. 1 at the bottom
    for side, sign in (("l", 1.0), ("r", -1.0)):  # a slightly wider stance
        b.ankle[side][:, 0] += sign * 0.02
    b.pelvis[:, 1] -= 0.20 * depth
    b.pelvis[:, 2] -= 0.12 * depth
    lean = 0.40 * depth
    b.pelvis_orientation = _rx(lean)
    b.spread((_SPINE1, _SPINE2, _SPINE3), _rx, 0.12 * depth)
    b.set(_NECK, _rx(-0.25 * depth))
    b.set(_HEAD, _rx(-0.20 * depth))
    # Arms swing forward to about horizontal as a counterweight.
    b.set_arms_down(
        swing_l=1.3 * depth, swing_r=1.3 * depth, elbow_l=_ELBOW_REST - 0.1 * depth, elbow_r=_ELBOW_REST - 0.1 * depth
    )
    return b


def _arm_swings() -> _Builder:
    """4 s loop: arms swinging forward and back in opposition, the torso counter-rotating."""
    b = _Builder(4.0)
    t = b.t
    phase = 2.0 * np.pi * t / 2.0
    swing = 0.7 * np.sin(phase)
    b.set_arms_down(
        swing_l=swing + 0.1,
        swing_r=-swing + 0.1,
        elbow_l=_ELBOW_REST + 0.15 * (1.0 + np.sin(phase)),
        elbow_r=_ELBOW_REST + 0.15 * (1.0 - np.sin(phase)),
    )
    b.spread((_SPINE1, _SPINE2, _SPINE3), _ry, -0.12 * np.sin(phase))
    b.set(_HEAD, _ry(0.06 * np.sin(phase)))
    b.pelvis[:, 1] -= 0.004 * (1.0 - np.cos(2.0 * phase))
    b.pelvis_orientation = _ry(0.03 * np.sin(phase))
    return b


def _march_in_place() -> _Builder:
    """4 s loop: marching on the spot, one step per second, the pelvis shifting over the stance foot."""
    b = _Builder(4.0)
    t = b.t
    cycle = 2.0
    # Squared raised-cosine lifts: zero velocity and acceleration at lift-off and touch-down.
    lift_l = sum(_bump(t, k * cycle + 0.1, 0.8) ** 2 for k in range(2))
    lift_r = sum(_bump(t, k * cycle + 1.1, 0.8) ** 2 for k in range(2))
    for side, lift in (("l", lift_l), ("r", lift_r)):
        b.ankle[side][:, 1] += 0.11 * lift
        b.ankle[side][:, 2] += 0.035 * lift
        b.foot_orientation[side] = _rx(0.25 * lift)  # toes point down a little in the air
    phase = 2.0 * np.pi * t / cycle
    b.pelvis[:, 0] = -0.06 * np.sin(phase)  # over the right foot while the left one is up
    b.pelvis[:, 1] -= 0.01 * (1.0 - np.cos(2.0 * phase)) * 0.5
    roll = 0.04 * np.sin(phase)
    b.pelvis_orientation = _rz(roll) @ _ry(0.04 * np.sin(phase))
    b.spread((_SPINE1, _SPINE2, _SPINE3), _rz, -roll)
    b.spread((_SPINE1, _SPINE2, _SPINE3), _ry, -0.07 * np.sin(phase))
    swing = 0.35 * np.sin(phase)
    b.set_arms_down(
        swing_l=-swing,
        swing_r=swing,
        elbow_l=_ELBOW_REST + 0.2 + 0.15 * np.sin(phase),
        elbow_r=_ELBOW_REST + 0.2 - 0.15 * np.sin(phase),
    )
    return b


def _torso_twist() -> _Builder:
    """4 s loop: the trunk twisting left and right (2 s period), arms following loosely."""
    b = _Builder(4.0)
    t = b.t
    phase = 2.0 * np.pi * t / 2.0
    twist = 0.6 * np.sin(phase)
    b.pelvis_orientation = _ry(0.08 * np.sin(phase))
    b.spread((_SPINE1, _SPINE2, _SPINE3), _ry, twist - 0.08 * np.sin(phase))
    b.set(_HEAD, _ry(-0.15 * np.sin(phase)))
    # The arms lag the trunk and open a little as it turns.
    lag = np.sin(phase - 0.5)
    b.set_arms_down(swing_l=0.25 * lag, swing_r=-0.25 * lag, elbow_l=_ELBOW_REST + 0.1, elbow_r=_ELBOW_REST + 0.1)
    open_ = 0.15 * np.abs(np.sin(phase)) ** 2
    b.local[:, _L_SHOULDER] = _rz(open_) @ b.local[:, _L_SHOULDER]
    b.local[:, _R_SHOULDER] = _rz(-open_) @ b.local[:, _R_SHOULDER]
    b.pelvis[:, 1] -= 0.005 * np.abs(np.sin(phase)) ** 2
    return b


def _wave() -> _Builder:
    """4 s: raise the right arm, wave three times, lower it (ends in the starting pose)."""
    b = _Builder(4.0)
    t = b.t
    up = _smoothstep(t / 1.1) * (1.0 - _smoothstep((t - 2.9) / 1.1))
    envelope = _smoothstep((t - 0.9) / 0.4) * (1.0 - _smoothstep((t - 2.5) / 0.4))
    wave_phase = 2.0 * np.pi * 1.5 * (t - 0.9)
    osc = 0.35 * envelope * np.sin(wave_phase)
    # Right upper arm raised to the side a little above horizontal, rotated so the flexed
    # forearm points up; waving rotates the upper arm about its own axis.
    raised = _rz(-0.35)[0] @ _rx(-0.5 * np.pi)[0]
    shoulder = _slerp(_rz(_ARM_DOWN)[0], raised, up) @ _rx(osc)
    b.set_arms_down(elbow_r=_ELBOW_REST + 1.3 * up)
    b.set(_R_SHOULDER, shoulder)
    b.set(_R_WRIST, _rz(-0.3 * envelope * np.sin(wave_phase - 0.6)))
    b.set(_R_COLLAR, _rz(-0.12 * up))
    # Weight shifts slightly to the left, the head turns towards the waving hand.
    b.pelvis[:, 0] = 0.02 * up
    b.spread((_SPINE1, _SPINE2, _SPINE3), _rz, 0.05 * up)
    b.set(_HEAD, _ry(-0.2 * up) @ _rx(0.05 * up))
    return b


_CLIP_BUILDERS: dict[str, Callable[[], _Builder]] = {
    "idle_sway": _idle_sway,
    "squat": _squat,
    "arm_swings": _arm_swings,
    "march_in_place": _march_in_place,
    "torso_twist": _torso_twist,
    "wave": _wave,
}
SAMPLE_CLIPS: tuple[str, ...] = tuple(_CLIP_BUILDERS)


def make_clip(name: str) -> tuple[np.ndarray, np.ndarray, float]:
    """Builds one sample clip.

    Returns:
      poses: (T, 24, 3) SMPL axis-angle rotations; joint 0 maps the SMPL body frame into the
        Z-up world (facing +X); joints 22, 23 (SMPL hands, absent from SMPL-H) are zero.
      pelvis: (T, 3) pelvis world positions, Z-up, metres.
      fps: the frame rate (120).
    """
    if name not in _CLIP_BUILDERS:
        raise KeyError(f"unknown sample clip {name!r}; known clips: {', '.join(SAMPLE_CLIPS)}")
    poses, pelvis = _CLIP_BUILDERS[name]().build()
    return poses, pelvis, FPS


# --------------------------------------------------------------------------------------------
# Writing the dataset.


def sample_data_dir() -> Path:
    """Where the sample dataset lives: ``$DIFFMIMIC_SAMPLE_DIR`` or ``~/.cache/diffmimic/sample``."""
    env = os.environ.get(SAMPLE_DIR_ENV)
    if env:
        return Path(env).expanduser()
    return Path("~/.cache/diffmimic/sample").expanduser()


def clip_arrays(name: str) -> dict[str, np.ndarray]:
    """The AMASS SMPL-H arrays of one clip (``poses``, ``trans``, ``mocap_framerate``, ...)."""
    poses, pelvis, fps = make_clip(name)
    frames = poses.shape[0]
    flat = np.zeros((frames, SMPLH_POSE_DIM))
    flat[:, :66] = poses[:, :22].reshape(frames, 66)
    return {
        "poses": flat,
        "trans": pelvis - NEUTRAL_REST_JOINTS_SMPL[0],  # AMASS: pelvis = trans + rest pelvis
        "mocap_framerate": np.array(fps, dtype=np.float64),
        "gender": np.array("neutral"),
        "betas": np.zeros(SMPLH_NUM_BETAS),
    }


def _npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    """A compressed .npz archive with fixed timestamps, so equal arrays give equal bytes."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for key, value in arrays.items():
            info = zipfile.ZipInfo(f"{key}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            with archive.open(info, "w", force_zip64=True) as member:
                np.lib.format.write_array(member, np.asanyarray(value), allow_pickle=False)
    return buffer.getvalue()


def write_sample_dataset(out_dir: str | os.PathLike | None = None, overwrite: bool = False) -> list[Path]:
    """Writes every sample clip as ``<clip>_poses.npz`` (AMASS SMPL-H) into ``out_dir``.

    Args:
      out_dir: target directory, :func:`sample_data_dir` when None; created if missing.
      overwrite: rewrite every file. Otherwise a file whose bytes already equal the generated
        ones is left untouched, and a stale or damaged one is replaced.

    Returns:
      The paths of the clip files, in :data:`SAMPLE_CLIPS` order.

    Files are written atomically (`diffmimic.atomic`).
    """
    directory = Path(out_dir).expanduser() if out_dir is not None else sample_data_dir()
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for name in SAMPLE_CLIPS:
        path = directory / f"{name}_poses.npz"
        data = _npz_bytes(clip_arrays(name))
        if not overwrite and path.is_file() and path.stat().st_size == len(data) and path.read_bytes() == data:
            paths.append(path)
            continue
        paths.append(atomic.write_bytes(path, data))
    return paths


def generate(out_dir: str | os.PathLike) -> list[Path]:
    """Dataset-spec hook (``generate: diffmimic.mocap.sample``): writes the clips into ``out_dir``."""
    return write_sample_dataset(out_dir)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m diffmimic.mocap.sample",
        description="Write the synthetic sample clips as AMASS SMPL-H npz files.",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help=f"output directory (default: ${SAMPLE_DIR_ENV} or ~/.cache/diffmimic/sample)",
    )
    parser.add_argument("--overwrite", action="store_true", help="rewrite files that are already up to date")
    args = parser.parse_args(argv)
    for path in write_sample_dataset(args.out, overwrite=args.overwrite):
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
