"""Retargeting: a `Motion` (SMPL pose) -> a `Reference` (character states at the control rate).

The character's bodies are the SMPL joints and its rest frames are the SMPL rest frames turned
into the Z-up world (`SMPL_TO_CHARACTER`), so a SMPL local rotation R becomes the hinge triple
of that body's hinge order, e.g. C R C^T = Ry(a) Rx(b) Rz(c), and the root orientation is
R_root C^T. Body positions and rotations come from Brax forward kinematics of the character, so
they are exactly what the simulator shows for the same generalized coordinates. Body linear and
angular velocities are central differences of those FK positions and rotations: Brax's
`kinematics.forward` maps the rates of stacked hinges to angular velocity only approximately
(measured: up to tens of rad/s off on real clips), while a simulated body's velocity is physical.
"""

from __future__ import annotations

import dataclasses
import os
import warnings
from pathlib import Path

import numpy as np
from scipy.spatial.transform import Rotation, Slerp

from diffmimic import atomic
from diffmimic.character.anthropometry import hinge_ranges_rad
from diffmimic.character.character import Character, make_character
from diffmimic.character.constants import HINGE_ORDER
from diffmimic.character.skeleton import BODY_NAMES, BODY_SMPL_JOINT, NUM_JOINTS, SMPL_TO_CHARACTER
from diffmimic.mocap.amass import npz_keys
from diffmimic.mocap.motion import MocapError, Motion, segment_frames
from diffmimic.mocap.readers import load_motion

# Fraction of frames allowed below the floor when grounding a clip: the lowest foot point of this
# quantile of frames (heights taken above the clip's fitted floor) is put at z = 0, so a few noisy
# frames do not lift it.
GROUND_QUANTILE = 0.02
# The floor a clip was captured on is fitted as a plane through the lowest foot point of every
# FLOOR_WINDOW_S window (half-overlapping): walking, turning, hopping or crouching, some foot
# touches the floor within a second. A real capture's floor is not level in the clip's frame: the
# 11 ACCAD dev clips' floors tilt 0.2-0.65 degrees, so a level offset left the stance feet of a
# 7.7 s walk 4 cm above the floor at its start and 3 cm below it at its end. Slopes are
# ridge-regularised over FLOOR_SPREAD_M (a direction the feet cover less than that keeps ~no slope:
# an in-place clip gets a level floor) and capped at FLOOR_MAX_TILT_DEG. Windows whose lowest
# point is more than FLOOR_ABOVE_M above the fitted plane (no foot flat on the floor: a flight, or
# a crouch the neutral skeleton makes with its feet up) are left out and the plane refitted: with
# 2 cm, the 1.5 s crouch that opens a dev clip tilted its floor 1.6 degrees; with 1 cm, all 11 dev
# clips (one lab) get 0.2-0.6 degrees, the same way.
FLOOR_WINDOW_S = 1.0
FLOOR_SPREAD_M = 0.25
FLOOR_MAX_TILT_DEG = 5.0
FLOOR_ABOVE_M = 0.01
# Contact-aware support. Nothing but the floor holds a body up, so on every frame that is not in
# flight the body's lowest point (any collision geom: feet, hands, knees, back, head) must be on
# the floor. Retargeted clips break that when the source's skeleton is not the performer's (some
# CMU trials ship with another subject's ASF) or its root height drifts: a CMU acrobatics clip
# stands 8 cm above the floor for its last second, a cartwheel's hands stay 24 cm up while it is
# inverted. Each frame in support is shifted vertically until its lowest point is within
# SUPPORT_TOLERANCE_M of the floor (a dead band: frames already that close, such as the walks',
# are left as they are). A frame is in flight when the centre of mass falls freely: its vertical
# acceleration (smoothed over FLIGHT_SMOOTH_S) is within FLIGHT_ACCEL_MARGIN of -g (only the floor
# pushes up, so an acceleration near -g means nothing pushes). Flight frames keep their height
# above the shifts of the frames around them (interpolated: a parabola stays a parabola).
SUPPORT_TOLERANCE_M = 0.02
GRAVITY_M_S2 = 9.81
FLIGHT_ACCEL_MARGIN = 3.0
FLIGHT_SMOOTH_S = 0.05


@dataclasses.dataclass(frozen=True)
class Reference:
    """A reference trajectory for the character, at the control rate.

    Attributes:
      qpos: (T, nq) generalized positions: root position, root quaternion (wxyz), 69 hinges.
      qvel: (T, nv) generalized velocities: root linear (world), root angular (body), hinges.
      body_pos: (T, 24, 3) body (joint) positions, world frame.
      body_rot: (T, 24, 4) body orientations, quaternions wxyz.
      body_vel: (T, 24, 3) body linear velocities, world frame.
      body_ang: (T, 24, 3) body angular velocities, world frame.
      body_names: (24,) character body names.
      smpl_joint: (24,) the SMPL joint index of each body.
      fps: frames per second (the control rate).
      source: the mocap file it was made from.
      skeleton: the skeleton's name.
      clamped: (T,) how many hinge angles of each frame retargeting clamped into the character's
        joint ranges (`CharacterConfig.joint_ranges`); None when the character has none.
      support_shift: (T,) how far retargeting lowered each frame (m; negative: raised) to put the
        body's lowest point on the floor when not in flight (`support_shift`); None when it did not.
    """

    qpos: np.ndarray
    qvel: np.ndarray
    body_pos: np.ndarray
    body_rot: np.ndarray
    body_vel: np.ndarray
    body_ang: np.ndarray
    fps: float
    source: str
    skeleton: str = "smpl_neutral"
    body_names: tuple[str, ...] = BODY_NAMES
    smpl_joint: tuple[int, ...] = BODY_SMPL_JOINT
    clamped: np.ndarray | None = None
    support_shift: np.ndarray | None = None

    @property
    def clamped_values(self) -> int:
        """Hinge angles clamped into the joint ranges, over all frames (0 without ranges)."""
        return 0 if self.clamped is None else int(np.sum(self.clamped))

    @property
    def num_frames(self) -> int:
        return int(self.qpos.shape[0])

    @property
    def duration_s(self) -> float:
        return (self.num_frames - 1) / self.fps

    def save(self, path: str | os.PathLike) -> Path:
        """Writes the reference as an .npz (no pickled objects), atomically."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        arrays = dict(
            qpos=self.qpos,
            qvel=self.qvel,
            body_pos=self.body_pos,
            body_rot=self.body_rot,
            body_vel=self.body_vel,
            body_ang=self.body_ang,
            body_names=np.array(self.body_names),
            smpl_joint=np.array(self.smpl_joint, dtype=np.int32),
            fps=np.float64(self.fps),
            source=np.array(self.source),
            skeleton=np.array(self.skeleton),
        )
        if self.clamped is not None:
            arrays["clamped"] = np.asarray(self.clamped, np.int32)
        if self.support_shift is not None:
            arrays["support_shift"] = np.asarray(self.support_shift, np.float64)
        # savez keeps a temporary name that ends in .npz as it is
        return atomic.write_with(path, lambda tmp: np.savez(tmp, **arrays), suffix=".tmp.npz")

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Reference":
        """Reads a reference written by `save`; raises MocapError naming the file and the problem."""
        try:
            with np.load(path, allow_pickle=False) as data:
                missing = [k for k in _REFERENCE_KEYS if k not in data.files]
                if missing:
                    raise MocapError(path, f"not a reference file: missing keys {missing}")
                arrays = {k: data[k] for k in _REFERENCE_KEYS}
                clamped = data["clamped"] if "clamped" in data.files else None  # optional
                shift = data["support_shift"] if "support_shift" in data.files else None  # optional
        except MocapError:
            raise
        except (OSError, ValueError, EOFError) as err:
            raise MocapError(path, f"cannot read reference: {err}") from err
        reference = cls(
            qpos=arrays["qpos"],
            qvel=arrays["qvel"],
            body_pos=arrays["body_pos"],
            body_rot=arrays["body_rot"],
            body_vel=arrays["body_vel"],
            body_ang=arrays["body_ang"],
            fps=float(arrays["fps"]),
            source=str(arrays["source"]),
            skeleton=str(arrays["skeleton"]),
            body_names=tuple(str(n) for n in arrays["body_names"]),
            smpl_joint=tuple(int(j) for j in arrays["smpl_joint"]),
            clamped=clamped,
            support_shift=shift,
        )
        reference.validate(path)
        return reference

    def validate(self, path: str | os.PathLike = "<reference>") -> None:
        frames = self.num_frames
        if frames < 2:
            raise MocapError(path, f"a reference needs at least 2 frames, got {frames}")
        for name in ("qpos", "qvel", "body_pos", "body_rot", "body_vel", "body_ang"):
            value = getattr(self, name)
            if value.shape[0] != frames:
                raise MocapError(path, f"{name} has {value.shape[0]} frames, qpos has {frames}")
            if not np.isfinite(value).all():
                raise MocapError(path, f"{name} contains NaN or inf values")
        for name in ("clamped", "support_shift"):
            value = getattr(self, name)
            if value is not None and np.shape(value) != (frames,):
                raise MocapError(path, f"{name} must be ({frames},), got {np.shape(value)}")
        if self.body_pos.shape[1:] != (NUM_JOINTS, 3) or self.body_rot.shape[1:] != (NUM_JOINTS, 4):
            raise MocapError(
                path, f"body arrays must be (T, 24, 3|4), got {self.body_pos.shape}, {self.body_rot.shape}"
            )
        if not self.fps > 0:
            raise MocapError(path, f"fps must be > 0, got {self.fps}")

    def segment(self, start_s: float = 0.0, duration_s: float | None = None) -> "Reference":
        """Frames from `start_s` for `duration_s` seconds (to the end when None)."""
        cut = segment_frames(self.num_frames, self.fps, start_s, duration_s, self.source)
        return dataclasses.replace(
            self,
            qpos=self.qpos[cut],
            qvel=self.qvel[cut],
            body_pos=self.body_pos[cut],
            body_rot=self.body_rot[cut],
            body_vel=self.body_vel[cut],
            body_ang=self.body_ang[cut],
            clamped=None if self.clamped is None else self.clamped[cut],
            support_shift=None if self.support_shift is None else self.support_shift[cut],
        )


_REFERENCE_KEYS = (
    "qpos",
    "qvel",
    "body_pos",
    "body_rot",
    "body_vel",
    "body_ang",
    "body_names",
    "smpl_joint",
    "fps",
    "source",
    "skeleton",
)


def resample(motion: Motion, fps: float) -> tuple[np.ndarray, np.ndarray]:
    """Resamples a motion to `fps`: slerp for joint rotations, linear for the root.

    Returns:
      (rotations (T', 24, 3, 3) matrices, root_position (T', 3)), T' = floor(duration * fps) + 1.
    """
    frames_out = int(np.floor(motion.duration_s * fps + 1e-9)) + 1
    if frames_out < 2:
        raise MocapError(
            motion.source, f"clip of {motion.duration_s:.3f} s is shorter than one control step at {fps} Hz"
        )
    source_t = np.arange(frames_out) / fps * motion.fps
    lower = np.minimum(np.floor(source_t).astype(int), motion.num_frames - 2)
    weight = source_t - lower
    frame_times = np.arange(motion.num_frames, dtype=np.float64)
    at = np.clip(source_t, 0.0, frame_times[-1])
    matrices = np.stack(
        [Slerp(frame_times, Rotation.from_rotvec(motion.rotations[:, j]))(at).as_matrix() for j in range(NUM_JOINTS)],
        axis=1,
    )
    root = (1.0 - weight)[:, None] * motion.root_position[lower] + weight[:, None] * motion.root_position[lower + 1]
    return matrices, root


def _continuous_euler(euler: np.ndarray) -> np.ndarray:
    """Makes Euler-angle tracks (T, J, 3) continuous.

    Every rotation has two Tait-Bryan triples, (a, b, c) and (a + pi, pi - b, c + pi), and each
    angle is defined up to 2 pi. Frame by frame this picks the equivalent triple nearest the
    previous frame, so a track passing the +-90 degree middle angle (a shoulder raised forward
    from the side) keeps going instead of jumping by 180 degrees in two hinges.
    """
    alternate = euler + np.array([np.pi, 0.0, np.pi])
    alternate[..., 1] = np.pi - euler[..., 1]
    out = np.empty_like(euler)
    out[0] = euler[0]
    for t in range(1, len(euler)):
        best, best_distance = None, None
        for candidate in (euler[t], alternate[t]):
            candidate = candidate - 2 * np.pi * np.round((candidate - out[t - 1]) / (2 * np.pi))
            distance = np.abs(candidate - out[t - 1]).sum(axis=-1, keepdims=True)
            if best is None:
                best, best_distance = candidate, distance
            else:
                best = np.where(distance < best_distance, candidate, best)
                best_distance = np.minimum(distance, best_distance)
        out[t] = best
    return out


def hinge_angles(rotations: np.ndarray) -> np.ndarray:
    """SMPL local rotation matrices (T, 24, 3, 3) -> hinge angles (T, 69) in body order.

    Each non-root body's rotation C R C^T is decomposed as intrinsic Euler angles in that body's
    hinge order (`HINGE_ORDER`), then made continuous over time (`_continuous_euler`).
    """
    frames = rotations.shape[0]
    angles = np.empty((frames, NUM_JOINTS - 1, 3))
    with warnings.catch_warnings():
        # At an exact singularity scipy sets the third angle to 0: still the same rotation.
        warnings.filterwarnings("ignore", message="Gimbal lock detected")
        for body, name in enumerate(BODY_NAMES[1:], start=1):
            local = SMPL_TO_CHARACTER @ rotations[:, BODY_SMPL_JOINT[body]] @ SMPL_TO_CHARACTER.T
            angles[:, body - 1] = Rotation.from_matrix(local).as_euler(HINGE_ORDER[name].upper())
    return _continuous_euler(angles).reshape(frames, -1)


def clamp_hinges(hinges: np.ndarray, low: np.ndarray, high: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Hinge angles (T, H) clamped into [low, high] (H,) radians, and how many of each frame's
    angles were outside (T,)."""
    clamped = np.clip(hinges, low, high)
    return clamped, np.sum(clamped != hinges, axis=1).astype(np.int32)


def root_quaternions(root_rotations: np.ndarray) -> np.ndarray:
    """Root rotations (T, 3, 3) mapping SMPL body frame to world -> character root quats (T, 4) wxyz.

    Signs are chosen so consecutive quaternions are in the same hemisphere.
    """
    xyzw = Rotation.from_matrix(root_rotations @ SMPL_TO_CHARACTER.T).as_quat()
    wxyz = np.concatenate([xyzw[:, 3:], xyzw[:, :3]], axis=1)
    for t in range(1, len(wxyz)):
        if np.dot(wxyz[t], wxyz[t - 1]) < 0:
            wxyz[t] = -wxyz[t]
    return wxyz


def _central_difference(values: np.ndarray, dt: float) -> np.ndarray:
    return np.gradient(values, dt, axis=0)


def _neighbours(frames: int, dt: float):
    nxt = np.minimum(np.arange(frames) + 1, frames - 1)
    prv = np.maximum(np.arange(frames) - 1, 0)
    return prv, nxt, (nxt - prv) * dt


def _wxyz_to_rotation(wxyz: np.ndarray) -> Rotation:
    return Rotation.from_quat(np.concatenate([wxyz[..., 1:], wxyz[..., :1]], axis=-1).reshape(-1, 4))


def _root_angular_velocity_body(quats_wxyz: np.ndarray, dt: float) -> np.ndarray:
    """Body-frame angular velocity (T, 3) of a quaternion track by central differences."""
    rotations = _wxyz_to_rotation(quats_wxyz)
    prv, nxt, span = _neighbours(len(quats_wxyz), dt)
    return (rotations[prv].inv() * rotations[nxt]).as_rotvec() / span[:, None]


def body_angular_velocity(body_rot: np.ndarray, dt: float) -> np.ndarray:
    """World-frame angular velocities (T, B, 3) of body quaternion tracks (T, B, 4) wxyz."""
    frames, bodies = body_rot.shape[:2]
    prv, nxt, span = _neighbours(frames, dt)
    after = _wxyz_to_rotation(body_rot[nxt])
    before = _wxyz_to_rotation(body_rot[prv])
    return (after * before.inv()).as_rotvec().reshape(frames, bodies, 3) / span[:, None, None]


def lowest_foot_points(character: Character, body_pos: np.ndarray, body_rot: np.ndarray) -> np.ndarray:
    """(T, 3) the lowest foot-box corner of each frame (world position)."""
    lowest = np.full((body_pos.shape[0], 3), np.inf)
    for name, corners in character.foot_sole_points().items():
        index = BODY_NAMES.index(name)
        wxyz = body_rot[:, index]
        matrices = Rotation.from_quat(np.concatenate([wxyz[:, 1:], wxyz[:, :1]], axis=1)).as_matrix()
        world = body_pos[:, index, None, :] + np.einsum("tij,kj->tki", matrices, corners)
        points = world[np.arange(world.shape[0]), world[..., 2].argmin(axis=1)]
        lowest = np.where((points[:, 2] < lowest[:, 2])[:, None], points, lowest)
    return lowest


def lowest_foot_height(character: Character, body_pos: np.ndarray, body_rot: np.ndarray) -> np.ndarray:
    """(T,) the lowest foot-box corner height of each frame."""
    return lowest_foot_points(character, body_pos, body_rot)[:, 2]


@dataclasses.dataclass(frozen=True)
class Floor:
    """The plane a clip's feet stand on: z = height + slope . (xy - center)."""

    height: float
    slope: np.ndarray  # (2,) dz/dx, dz/dy
    center: np.ndarray  # (2,) xy

    def at(self, xy: np.ndarray) -> np.ndarray:
        """Floor height under each horizontal position (..., 2)."""
        return self.height + (np.asarray(xy) - self.center) @ self.slope

    @property
    def tilt_deg(self) -> float:
        return float(np.degrees(np.arctan(np.hypot(*self.slope))))


def fit_floor(lowest: np.ndarray, fps: float) -> Floor:
    """The floor under a clip, from its per-frame lowest foot points (T, 3): see FLOOR_WINDOW_S.

    The plane goes through the windows' lowest points (least squares with ridge-regularised,
    capped slopes); its height is then set so that the GROUND_QUANTILE of frames' lowest points
    lie on or under it, as a level clip was grounded before.
    """
    window = max(int(round(FLOOR_WINDOW_S * fps)), 1)
    starts = range(0, max(len(lowest) - window, 0) + 1, max(window // 2, 1))
    samples = np.array([lowest[s + int(np.argmin(lowest[s : s + window, 2]))] for s in starts])
    center = samples[:, :2].mean(axis=0)
    keep = np.ones(len(samples), bool)
    slope = np.zeros(2)
    for _ in range(3):  # refit without the windows far above the plane (no foot down)
        xy, z = samples[keep, :2] - samples[keep, :2].mean(axis=0), samples[keep, 2]
        gram = xy.T @ xy + len(z) * FLOOR_SPREAD_M**2 * np.eye(2)
        slope = np.linalg.solve(gram, xy.T @ (z - z.mean()))
        limit = np.tan(np.radians(FLOOR_MAX_TILT_DEG))
        slope *= min(1.0, limit / max(float(np.hypot(*slope)), 1e-12))
        offset = z.mean() - (samples[keep, :2].mean(axis=0) - center) @ slope
        above = samples[:, 2] - (offset + (samples[:, :2] - center) @ slope)
        keep = above < FLOOR_ABOVE_M
        if keep.sum() < 2:
            keep = np.ones(len(samples), bool)
    detrended = lowest[:, 2] - (lowest[:, :2] - center) @ slope
    return Floor(height=float(np.quantile(detrended, GROUND_QUANTILE)), slope=slope, center=center)


def flight_frames(com_height: np.ndarray, lowest_height: np.ndarray, fps: float) -> np.ndarray:
    """(T,) bool: the frames of a flight (see SUPPORT_TOLERANCE_M).

    A flight's core is where the centre of mass falls freely. At 30 fps the take-off and landing
    impulses blur the acceleration of the frames next to it, so each core is widened, on either
    side, over the frames whose lowest point still descends toward the floor away from the core
    (a leap's last 17 cm before touch-down are flight, not a body floating to be lowered).
    """
    frames = len(com_height)
    if frames < 3:
        return np.zeros(frames, bool)
    smooth = _smooth(np.asarray(com_height, float), FLIGHT_SMOOTH_S * fps)
    acceleration = np.gradient(np.gradient(smooth, 1.0 / fps), 1.0 / fps)
    core = acceleration < -GRAVITY_M_S2 + FLIGHT_ACCEL_MARGIN
    flight = core.copy()
    height = np.asarray(lowest_height, float)
    for t in np.flatnonzero(core):
        for step in (-1, 1):
            i = t + step
            while 0 <= i < frames and not core[i] and height[i] > SUPPORT_TOLERANCE_M and height[i] < height[i - step]:
                flight[i] = True
                i += step
    return flight


def support_shift(lowest_height: np.ndarray, flight: np.ndarray, fps: float) -> np.ndarray:
    """(T,) how far to lower each frame (negative: raise) so that its lowest point is within
    SUPPORT_TOLERANCE_M of the floor when in support; flight frames take the shifts of the
    support frames around them (linearly interpolated), and the shifts are smoothed over
    FLIGHT_SMOOTH_S (a shift that follows a swinging foot frame by frame would add its speed to
    the whole body's)."""
    excess = np.abs(lowest_height) - SUPPORT_TOLERANCE_M
    shift = np.where(excess > 0, np.sign(lowest_height) * excess, 0.0)
    support = ~np.asarray(flight, bool)
    if not support.any():
        return np.zeros_like(shift)
    frames = np.arange(len(shift))
    return _smooth(np.interp(frames, frames[support], shift[support]), FLIGHT_SMOOTH_S * fps)


def _smooth(values: np.ndarray, sigma_frames: float) -> np.ndarray:
    """Gaussian smoothing of a (T,) series over `sigma_frames`, edges held."""
    radius = max(int(np.ceil(3 * sigma_frames)), 1)
    kernel = np.exp(-0.5 * (np.arange(-radius, radius + 1) / max(sigma_frames, 1e-6)) ** 2)
    return np.convolve(np.pad(values, radius, mode="edge"), kernel / kernel.sum(), mode="valid")


def retarget(
    motion: Motion, character: Character | None = None, fps: float = 30.0, ground: bool = True, support: bool = True
) -> Reference:
    """Turns a mocap `Motion` into a `Reference` for the character at `fps` (the control rate).

    Args:
      motion: the clip (SMPL pose, Z-up world).
      character: the simulated humanoid (default: the neutral one).
      fps: output frame rate.
      ground: shift the clip vertically so that the floor it was captured on (`fit_floor`: a
        plane, which a real capture's often tilts slightly, fitted to the lowest point of the
        whole body) becomes z = 0: each frame by the floor's height under the pelvis.
      support: then shift each frame not in flight so that its lowest point touches the floor
        (SUPPORT_TOLERANCE_M); the shifts are kept in `Reference.support_shift`. Needs `ground`.

    When the character's hinges have ranges (`CharacterConfig.joint_ranges`), angles outside
    them are clamped before velocities and body states are computed (the reference is then a
    pose the simulated body can take), and counted per frame in `Reference.clamped`.
    """
    character = character or make_character()
    rotations, root = resample(motion, fps)
    dt = 1.0 / fps
    quats = root_quaternions(rotations[:, 0])
    hinges = hinge_angles(rotations)
    clamped = None
    if character.config.joint_ranges:
        hinges, clamped = clamp_hinges(hinges, *hinge_ranges_rad())
    qpos = np.concatenate([root, quats, hinges], axis=1)
    body_pos, body_rot, _, _ = character.forward_kinematics(qpos, np.zeros((len(qpos), character.nv)))
    shift = None
    if ground:  # the whole body moves with the floor under the pelvis, one vertical shift per frame
        lowest, _ = character.lowest_points(body_pos, body_rot)
        floor = fit_floor(lowest, fps)
        offset = floor.at(qpos[:, :2])
        if support:
            lowest_height = lowest[:, 2] - floor.at(lowest[:, :2])
            com_height = character.center_of_mass(body_pos, body_rot)[:, 2] - offset
            shift = support_shift(lowest_height, flight_frames(com_height, lowest_height, fps), fps)
            offset = offset + shift
        qpos[:, 2] -= offset
        body_pos = body_pos - offset[:, None, None] * np.array([0.0, 0.0, 1.0])
    qvel = np.concatenate(
        [_central_difference(qpos[:, :3], dt), _root_angular_velocity_body(quats, dt), _central_difference(hinges, dt)],
        axis=1,
    )
    body_vel = _central_difference(body_pos, dt)
    body_ang = body_angular_velocity(body_rot, dt)
    reference = Reference(
        qpos=qpos,
        qvel=qvel,
        body_pos=body_pos,
        body_rot=body_rot,
        body_vel=body_vel,
        body_ang=body_ang,
        fps=float(fps),
        source=motion.source,
        skeleton=character.skeleton.name,
        clamped=clamped,
        support_shift=shift,
    )
    reference.validate(motion.source)
    return reference


def is_reference_file(path: str | os.PathLike) -> bool:
    """Whether `path` is a converted reference (.npz with qpos and body_pos), not a mocap clip."""
    path = Path(path)  # `npz_keys` reads only the headers
    return path.suffix.lower() == ".npz" and {"qpos", "body_pos"} <= npz_keys(path)


def load_reference(
    path: str | os.PathLike,
    fps: float = 30.0,
    start_s: float = 0.0,
    duration_s: float | None = None,
    skeleton_path: str | os.PathLike | None = None,
    character: Character | None = None,
    reader_options: dict | None = None,
) -> Reference:
    """A reference from a mocap file (any reader) or a converted REF.npz, optionally a segment.

    A mocap clip is cut before retargeting; a REF.npz keeps its own frame rate (`fps` unused).
    `reader_options`: a dataset spec's reader settings (`DatasetSpec.reader_options`).
    """
    if is_reference_file(path):
        reference = Reference.load(path)
        if start_s or duration_s is not None:
            reference = reference.segment(start_s, duration_s)
        return reference
    motion = load_motion(path, skeleton_path, reader_options)
    if start_s or duration_s is not None:
        motion = motion.segment(start_s, duration_s)
    return retarget(motion, character, fps=fps)
