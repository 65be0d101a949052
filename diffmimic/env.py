"""The mimic environment: the SMPL character on a Brax pipeline tracking a reference trajectory.

Pure functions of (config, character, reference arrays, state): `reset` (Reference State
Initialization), `step` (PD targets -> physics substeps -> state-matching loss, fall and NaN
detection, demonstration replay) and `observe`. The reference is an argument (`RefArrays`, padded
to a length bucket with its valid length), never a constant, so one compiled rollout serves every
clip of a bucket.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
from brax import math as brax_math
from flax import struct

from diffmimic.character.character import Character
from diffmimic.geometry import heading_inverse
from diffmimic.mocap.retarget import Reference
from diffmimic.physics import BODIES, check_backend, check_timestep, pipeline
from diffmimic.plausibility import PlausibilityMeter, StepPlausibility

REPLAY_MODES = ("threshold", "random", "none")
ACTION_MODES = ("residual", "absolute")
OBSERVATIONS = ("target_state", "phase")


@dataclasses.dataclass(frozen=True)
class EnvConfig:
    """Mimic environment settings (defaults follow the DiffMimic paper where it gives one).

    Attributes:
      backend: Brax pipeline: spring, positional, generalized or mjx.
      body: ``uniform`` (the character as configured: one density, unlimited hinges, one torque
        limit) or ``human`` (de Leva masses, human joint ranges and torque limits;
        `diffmimic.physics.body_config`).
      control_hz: policy rate; the reference is resampled to it.
      substeps: physics steps per control step (16 at 30 Hz = 480 Hz simulation; `mjx` needs
        64: `diffmimic.physics.MAX_TIMESTEP_S`).
      action_mode: ``residual`` (targets = reference hinge angles + action_scale * action) or
        ``absolute`` (targets = action_scale_absolute * action, the paper's).
      observation: ``target_state`` (own state + next reference state) or ``phase``.
      w_pos, w_rot, w_vel, w_ang: state-matching loss weights (position, 6D rotation, linear and
        angular velocity).
      replay: demonstration replay: ``threshold``, ``random`` or ``none``.
      replay_threshold_m: mean body-position error above which the reference state replaces the
        simulated one for the next step.
      replay_rate: Bernoulli replacement probability for ``random`` replay.
      fall_pelvis_drop_m, fall_pelvis_drop_fraction, fall_pelvis_rise_m: the body fell when its
        pelvis is lower than the reference's pelvis at the same frame by `fall_pelvis_drop_m` or
        by `fall_pelvis_drop_fraction` of the reference's pelvis height, whichever is less, or
        higher by `fall_pelvis_rise_m`: relative, so a clip that kneels, sits or lies on the floor
        is judged by where its reference is. Standing (0.93 m pelvis) it falls at 0.33 m, as the
        absolute 0.3 m test did; from a 0.55 m crouch at 0.19 m.
      fall_pose_error_m: mean body-position error beyond which it fell.
      perturb_joint_rad, perturb_root_m, perturb_yaw_rad, perturb_root_vel_mps,
      perturb_joint_vel_radps: the size of a perturbed state (`MimicEnv.perturb`), about what a
        hand-over from another clip's policy brings: Gaussian noise of these standard deviations
        on every hinge angle, the root's horizontal position, its heading, its linear velocity
        (angular: 2 rad/s per m/s) and the hinge velocities; the root is also raised by up to
        `perturb_root_m` (never lowered into the floor).
      push_mps: a push: the root's horizontal velocity changed by this much in a random direction.
      train_perturbed_share: the share of training rollouts that start from a perturbed reference
        state instead of the reference state itself (robustness is learnt, not only tested).
      train_push_share: the share of training rollouts pushed as they start (at a random frame
        of the clip, so at a random time of it). Every start perturbed and half pushed grew a
        basin about twice as fast from scratch as a quarter and a quarter, at the same pose
        error (docs/training.md, "Robustness is learnt from scratch").
    """

    backend: str = "spring"
    body: str = "uniform"
    control_hz: float = 30.0
    substeps: int = 16
    action_mode: str = "residual"
    action_scale: float = 0.5
    action_scale_absolute: float = float(np.pi)
    observation: str = "target_state"
    w_pos: float = 1.0
    w_rot: float = 0.5
    w_vel: float = 0.01
    w_ang: float = 0.01
    replay: str = "threshold"
    replay_threshold_m: float = 0.2
    replay_rate: float = 0.05
    fall_pelvis_drop_m: float = 0.6
    fall_pelvis_drop_fraction: float = 0.65
    fall_pelvis_rise_m: float = 2.0
    fall_pose_error_m: float = 0.5
    perturb_joint_rad: float = 0.05
    perturb_root_m: float = 0.02
    perturb_yaw_rad: float = 0.05
    perturb_root_vel_mps: float = 0.1
    perturb_joint_vel_radps: float = 0.3
    push_mps: float = 0.3
    train_perturbed_share: float = 1.0
    train_push_share: float = 0.5

    def __post_init__(self):
        check_backend(self.backend)
        for field, allowed in (
            ("action_mode", ACTION_MODES),
            ("replay", REPLAY_MODES),
            ("observation", OBSERVATIONS),
            ("body", BODIES),
        ):
            if getattr(self, field) not in allowed:
                raise ValueError(f"EnvConfig.{field} must be one of {allowed}, got {getattr(self, field)!r}")
        if self.substeps < 1 or self.control_hz <= 0:
            raise ValueError("EnvConfig: substeps must be >= 1 and control_hz > 0")
        check_timestep(self.backend, self.timestep_s)
        for field in ("train_perturbed_share", "train_push_share"):
            if not 0.0 <= getattr(self, field) <= 1.0:
                raise ValueError(f"EnvConfig.{field} must be in [0, 1], got {getattr(self, field)}")

    @property
    def timestep_s(self) -> float:
        return 1.0 / (self.control_hz * self.substeps)


@struct.dataclass
class RefArrays:
    """A reference as JAX arrays padded to a bucket length L (pytree, a jit argument).

    qpos (L, nq), qvel (L, nv), body_pos (L, 24, 3), body_rot (L, 24, 4) wxyz, body_vel and
    body_ang (L, 24, 3); length: the number of valid frames (int32 scalar).

    What depends only on the clip is computed once (`MimicEnv.prepare`: once per clip by a clip's
    run, else once per call of a compiled function), not at every control step: physics: the
    backend's state at every frame (the start and replay states, stacked (L, ...));
    target_features: `state_features` of every frame (L, 361). None until prepared; the env then
    computes the one frame it needs.
    """

    qpos: jax.Array
    qvel: jax.Array
    body_pos: jax.Array
    body_rot: jax.Array
    body_vel: jax.Array
    body_ang: jax.Array
    length: jax.Array
    physics: object = None
    target_features: jax.Array | None = None

    @property
    def bucket(self) -> int:
        return int(self.qpos.shape[-2])


def length_bucket(frames: int, minimum: int = 64) -> int:
    """The padded length for a clip of `frames` frames: the next power of two >= minimum."""
    return max(minimum, 1 << (int(frames) - 1).bit_length())


def ref_arrays(reference: Reference, bucket: int | None = None) -> RefArrays:
    """Pads a `Reference` (repeating its last frame) to `bucket` frames (default: its bucket)."""
    frames = reference.num_frames
    bucket = bucket or length_bucket(frames)
    if bucket < frames:
        raise ValueError(f"bucket {bucket} is shorter than the reference ({frames} frames)")

    def pad(a):
        a = np.asarray(a, dtype=np.float32)
        return jnp.asarray(np.concatenate([a, np.repeat(a[-1:], bucket - frames, axis=0)]))

    return RefArrays(
        qpos=pad(reference.qpos),
        qvel=pad(reference.qvel),
        body_pos=pad(reference.body_pos),
        body_rot=pad(reference.body_rot),
        body_vel=pad(reference.body_vel),
        body_ang=pad(reference.body_ang),
        length=jnp.asarray(frames, jnp.int32),
    )


def _body_frame(ref: RefArrays, t: jax.Array):
    """The reference's body positions, rotations, linear and angular velocities at frame t."""
    return ref.body_pos[t], ref.body_rot[t], ref.body_vel[t], ref.body_ang[t]


@struct.dataclass
class EnvState:
    """One environment: the physics state and the reference frame it is at."""

    physics: object
    t: jax.Array  # current reference frame index
    key: jax.Array


@struct.dataclass
class StepMetrics:
    loss: jax.Array
    pose_error_m: jax.Array  # mean root-relative body position error
    global_error_m: jax.Array  # mean body position error
    replayed: jax.Array  # the reference state replaced the simulated one
    fell: jax.Array
    nonfinite: jax.Array  # the simulated state went NaN/inf (replaced, not propagated)
    plausibility: StepPlausibility | None = None  # torques against limits, feet (zero if nonfinite)


def quat_to_6d(rot: jax.Array) -> jax.Array:
    """Quaternions (..., 4) wxyz -> 6D rotation features (..., 6): the first two matrix columns."""
    w, x, y, z = (rot[..., i] for i in range(4))
    col0 = jnp.stack([1 - 2 * (y * y + z * z), 2 * (x * y + w * z), 2 * (x * z - w * y)], -1)
    col1 = jnp.stack([2 * (x * y - w * z), 1 - 2 * (x * x + z * z), 2 * (y * z + w * x)], -1)
    return jnp.concatenate([col0, col1], -1)


def state_features(pos, rot, vel, ang) -> jax.Array:
    """DiffMimic state features in the root's heading frame (361,): root-relative body positions,
    root height, body 6D rotations, linear and angular velocities."""
    inv = heading_inverse(rot[0])
    to_heading = jax.vmap(brax_math.rotate, in_axes=(0, None))
    rel = to_heading(pos - pos[0], inv)
    rot_h = jax.vmap(brax_math.quat_mul, in_axes=(None, 0))(inv, rot)
    return jnp.concatenate(
        [
            rel.ravel(),
            pos[0, 2:3],
            quat_to_6d(rot_h).ravel(),
            to_heading(vel, inv).ravel(),
            to_heading(ang, inv).ravel(),
        ]
    )


def fell_by_height(pelvis_z, reference_pelvis_z, drop_m: float, drop_fraction: float, rise_m: float):
    """Whether a pelvis at height `pelvis_z` has fallen (or flown off) relative to the
    reference's pelvis at the same frame: lower by more than `drop_m` or `drop_fraction` of the
    reference's height (whichever is less), or higher by more than `rise_m`. Works on JAX and
    NumPy arrays alike (elementwise)."""
    drop = drop_fraction * reference_pelvis_z
    drop = drop_m + (drop - drop_m) * (drop < drop_m)  # min(), for NumPy and JAX arrays alike
    return (pelvis_z < reference_pelvis_z - drop) | (pelvis_z > reference_pelvis_z + rise_m)


class MimicEnv:
    """The mimic environment for one character and config; methods are pure and jittable."""

    def __init__(self, character: Character, config: EnvConfig):
        if abs(character.sys.opt.timestep - config.timestep_s) > 1e-9:
            raise ValueError(
                f"character timestep {character.sys.opt.timestep} != control_hz * substeps "
                f"-> {config.timestep_s}; build the character with timestep_s={config.timestep_s}"
            )
        self.character = character
        self.config = config
        self.sys = character.sys
        self._pipeline = pipeline(config.backend)
        self.action_size = character.num_actuators
        self._meter = PlausibilityMeter(character)

    # -- physics ---------------------------------------------------------------------------
    def _init_physics(self, qpos, qvel):
        return self._pipeline.init(self.sys, qpos, qvel)

    def _reference_physics(self, ref: RefArrays, t):
        if ref.physics is not None:
            return jax.tree.map(lambda a: a[t], ref.physics)
        return self._init_physics(ref.qpos[t], ref.qvel[t])

    def prepare(self, ref: RefArrays) -> RefArrays:
        """`ref` with its per-frame physics states and target features computed (jittable; a
        prepared `ref` is returned as it is). A clip's run prepares its reference once
        (`CompiledFunctions.prepared`); the compiled functions prepare an unprepared one once per
        call. Either way the control steps only index these arrays."""
        if ref.physics is not None:
            return ref
        physics = jax.vmap(self._init_physics)(ref.qpos, ref.qvel)
        features = jax.vmap(state_features)(ref.body_pos, ref.body_rot, ref.body_vel, ref.body_ang)
        return ref.replace(physics=physics, target_features=features)

    def _body_state(self, physics):
        return physics.x.pos, physics.x.rot, physics.xd.vel, physics.xd.ang

    def _targets(self, action, ref: RefArrays, t_next):
        if self.config.action_mode == "residual":
            return ref.qpos[t_next, 7:] + self.config.action_scale * action
        return self.config.action_scale_absolute * action

    # -- API ---------------------------------------------------------------------------------
    def reset(
        self,
        ref: RefArrays,
        key: jax.Array,
        horizon: int = 0,
        frame: jax.Array | None = None,
        start_probs: jax.Array | None = None,
    ) -> EnvState:
        """Reference State Initialization: start at a random frame with room for `horizon` steps
        when the clip allows, or drawn from `start_probs` ((L,) probabilities over the padded
        frames, see `diffmimic.curriculum.start_probabilities`), or at `frame` when given."""
        key, sample = jax.random.split(key)
        if frame is not None:
            t = jnp.asarray(frame, jnp.int32)
        elif start_probs is not None:
            t = jax.random.categorical(sample, jnp.log(start_probs)).astype(jnp.int32)
        else:
            last_start = jnp.maximum(ref.length - 1 - horizon, 0)
            t = jax.random.randint(sample, (), 0, last_start + 1)
        return EnvState(physics=self._reference_physics(ref, t), t=t, key=key)

    def perturb(self, physics, key: jax.Array, scale: jax.Array | float = 1.0, push: jax.Array | float = 0.0):
        """`physics` perturbed as a hand-over from another policy perturbs it (jittable): the
        `EnvConfig.perturb_*` noise times `scale` (0: none) on pose, heading, root height and
        velocities, and a horizontal push of `push` times `EnvConfig.push_mps` (0: none) on the
        root's velocity. Returns a physics state of the same pipeline."""
        cfg = self.config
        k_joint, k_root, k_lift, k_yaw, k_vel, k_push = jax.random.split(key, 6)
        q, qd = physics.q, physics.qd
        shift = jnp.concatenate(
            [
                cfg.perturb_root_m * jax.random.normal(k_root, (2,)),
                cfg.perturb_root_m * jax.random.uniform(k_lift, (1,)),
            ]
        )
        yaw = brax_math.quat_rot_axis(
            jnp.array([0.0, 0.0, 1.0]), cfg.perturb_yaw_rad * scale * jax.random.normal(k_yaw, ())
        )
        hinges = q[7:] + scale * cfg.perturb_joint_rad * jax.random.normal(k_joint, q[7:].shape)
        q = jnp.concatenate([q[:3] + scale * shift, brax_math.quat_mul(yaw, q[3:7]), hinges])
        sigma = jnp.concatenate(
            [
                jnp.full(3, cfg.perturb_root_vel_mps),
                jnp.full(3, 2.0 * cfg.perturb_root_vel_mps),
                jnp.full(qd.shape[0] - 6, cfg.perturb_joint_vel_radps),
            ]
        )
        angle = jax.random.uniform(k_push, (), minval=0.0, maxval=2 * jnp.pi)
        kick = (
            push
            * cfg.push_mps
            * jnp.concatenate([jnp.stack([jnp.cos(angle), jnp.sin(angle)]), jnp.zeros(qd.shape[0] - 2)])
        )
        qd = qd + scale * sigma * jax.random.normal(k_vel, qd.shape) + kick
        return self._init_physics(q, qd)

    def observe(self, state: EnvState, ref: RefArrays) -> jax.Array:
        own = state_features(*self._body_state(state.physics))
        if self.config.observation == "phase":
            phase = state.t / jnp.maximum(ref.length - 1, 1)
            return jnp.concatenate([own, jnp.stack([jnp.sin(2 * jnp.pi * phase), jnp.cos(2 * jnp.pi * phase)])])
        t_next = jnp.minimum(state.t + 1, ref.length - 1)
        pos = ref.body_pos[t_next]
        if ref.target_features is not None:
            target = ref.target_features[t_next]
        else:
            target = state_features(pos, ref.body_rot[t_next], ref.body_vel[t_next], ref.body_ang[t_next])
        inv = heading_inverse(state.physics.x.rot[0])
        offset = jax.vmap(brax_math.rotate, in_axes=(0, None))(pos - state.physics.x.pos, inv)
        return jnp.concatenate([own, target, offset.ravel()])

    @property
    def observation_size(self) -> int:
        return 361 + (2 if self.config.observation == "phase" else 361 + 72)

    def step(
        self,
        state: EnvState,
        action: jax.Array,
        ref: RefArrays,
        replay: bool = True,
        replay_threshold_m: jax.Array | float | None = None,
        measure: bool = False,
    ):
        """One control step. Returns (next state, StepMetrics).

        The loss compares the simulated body states after the step with reference frame t + 1.
        `replay_threshold_m` (data, so a schedule does not recompile) overrides the config's.
        `measure` (static): also measure physical plausibility (evaluation rollouts; training
        steps leave it out of the hot path).
        """
        cfg = self.config
        t_next = jnp.minimum(state.t + 1, ref.length - 1)
        targets = self._targets(action, ref, t_next)

        def substep(physics, _):
            return self._pipeline.step(self.sys, physics, targets), None

        physics, _ = jax.lax.scan(substep, state.physics, None, length=cfg.substeps)
        pos, rot, vel, ang = self._body_state(physics)
        r_pos, r_rot, r_vel, r_ang = _body_frame(ref, t_next)

        finite = jnp.all(jnp.isfinite(physics.q)) & jnp.all(jnp.isfinite(physics.qd)) & jnp.all(jnp.isfinite(pos))
        plausibility = None
        if measure:
            plausibility = jax.tree.map(
                lambda a: jnp.where(finite, a, jnp.zeros_like(a)), self._meter.measure(state.physics, targets, physics)
            )
        # Keep NaNs out of every formula (and its gradient): measure a stand-in state instead.
        safe = lambda a, b: jnp.where(finite, a, jax.lax.stop_gradient(b))
        pos, rot, vel, ang = safe(pos, r_pos), safe(rot, r_rot), safe(vel, r_vel), safe(ang, r_ang)

        body_dist = jnp.linalg.norm(pos - r_pos, axis=-1)
        global_error = jnp.mean(body_dist)
        pose_error = jnp.mean(jnp.linalg.norm((pos - pos[0]) - (r_pos - r_pos[0]), axis=-1))
        loss = (
            cfg.w_pos * jnp.mean(jnp.sum((pos - r_pos) ** 2, -1))
            + cfg.w_rot * jnp.mean(jnp.sum((quat_to_6d(rot) - quat_to_6d(r_rot)) ** 2, -1))
            + cfg.w_vel * jnp.mean(jnp.sum((vel - r_vel) ** 2, -1))
            + cfg.w_ang * jnp.mean(jnp.sum((ang - r_ang) ** 2, -1))
        )
        fell = (
            fell_by_height(
                pos[0, 2], r_pos[0, 2], cfg.fall_pelvis_drop_m, cfg.fall_pelvis_drop_fraction, cfg.fall_pelvis_rise_m
            )
            | (global_error > cfg.fall_pose_error_m)
            | ~finite
        )

        key, sample = jax.random.split(state.key)
        if replay and cfg.replay == "threshold":
            threshold = cfg.replay_threshold_m if replay_threshold_m is None else replay_threshold_m
            replace = global_error > threshold
        elif replay and cfg.replay == "random":
            replace = jax.random.bernoulli(sample, cfg.replay_rate)
        else:
            replace = jnp.asarray(False)
        replace = replace | ~finite
        reference_state = self._reference_physics(ref, t_next)
        physics = jax.tree.map(lambda r, s: jnp.where(replace, jax.lax.stop_gradient(r), s), reference_state, physics)
        metrics = StepMetrics(
            loss=loss,
            pose_error_m=pose_error,
            global_error_m=global_error,
            replayed=replace & finite,
            fell=fell,
            nonfinite=~finite,
            plausibility=plausibility,
        )
        return EnvState(physics=physics, t=t_next, key=key), metrics
