"""Closed-loop rollouts of a trained policy that keep the trajectory (for replay, rendering, reports).

`rollout_policy(config, params, normaliser, reference, seconds=..., start_frame=...)` resets the
mimic environment at a reference frame, runs observe -> policy -> step without demonstration
replay, and returns every simulated body position with the per-frame pose error. The scan is
jitted once per (compile key of the config, character config) and runs over the whole padded
length bucket, so clips of one bucket share one compiled function; start frame and clip length
are data. Rollouts longer than the clip loop it (`diffmimic.evaluate.loop_reference`).
"""

from __future__ import annotations

import dataclasses
import functools
import os
from pathlib import Path

import jax
import numpy as np

from diffmimic.character.mjcf import CharacterConfig
from diffmimic.env import length_bucket, ref_arrays
from diffmimic.evaluate import EvalMetrics, loop_reference, summarize_rollout
from diffmimic.mocap.retarget import Reference
from diffmimic.policy import make_policy_network


@dataclasses.dataclass(frozen=True)
class Trajectory:
    """A simulated rollout, N control steps from `start_frame` (N + 1 states).

    Attributes:
      fps: control rate (frames per second).
      start_frame: the reference frame the rollout started from.
      qpos: (N + 1, nq) simulated generalized positions (root position, wxyz quaternion, hinges).
      body_pos: (N + 1, 24, 3) simulated body positions, world frame.
      reference_body_pos: (N + 1, 24, 3) the reference's body positions at the same frames.
      pose_error_m: (N,) root-relative mean body position error after each step.
      global_error_m: (N,) mean body position error after each step.
      fell: (N,) whether the character counted as fallen after each step.
      metrics: the rollout's summary (mean pose error, fell, worst frames...).
      body_names: (24,) body names.
    """

    fps: float
    start_frame: int
    qpos: np.ndarray
    body_pos: np.ndarray
    reference_body_pos: np.ndarray
    pose_error_m: np.ndarray
    global_error_m: np.ndarray
    fell: np.ndarray
    metrics: EvalMetrics
    body_names: tuple[str, ...]

    @property
    def steps(self) -> int:
        return int(self.pose_error_m.shape[0])

    @property
    def seconds(self) -> float:
        return self.steps / self.fps

    def save(self, path: str | os.PathLike) -> Path:
        """Writes the trajectory as an .npz (no pickled objects) with `times_s` (N + 1,)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        with open(tmp, "wb") as f:
            np.savez(f, times_s=np.arange(self.steps + 1) / self.fps, fps=np.float64(self.fps),
                     start_frame=np.int64(self.start_frame), qpos=self.qpos, body_pos=self.body_pos,
                     reference_body_pos=self.reference_body_pos, pose_error_m=self.pose_error_m,
                     global_error_m=self.global_error_m, fell=self.fell,
                     body_names=np.array(self.body_names),
                     mean_pose_error_m=np.float64(self.metrics.pose_error_m),
                     fell_any=np.bool_(self.metrics.fell))
        os.replace(tmp, path)
        return path


# Traces of the rollout function (trace time only): how many times it compiled in this process.
trace_counts = {"rollout": 0}


@functools.lru_cache(maxsize=8)
def _rollout_function(config, character_config: CharacterConfig):
    """The jitted (params, normaliser, ref, start_frame) -> arrays for one compile key."""
    from diffmimic.train import compiled_functions

    env = compiled_functions(config, character_config).env
    _, apply = make_policy_network(env.observation_size, env.action_size, config.hidden)

    def rollout(params, normaliser, ref, start_frame):
        trace_counts["rollout"] += 1
        start = env.reset(ref, jax.random.PRNGKey(0), frame=start_frame)

        def control(state, _):
            action = apply(params, normaliser, env.observe(state, ref))
            next_state, metrics = env.step(state, action, ref, replay=False)
            return next_state, (next_state.physics.q, next_state.physics.x.pos, metrics)

        _, (qpos, body_pos, metrics) = jax.lax.scan(control, start, None, length=ref.bucket - 1)
        return start.physics.q, start.physics.x.pos, qpos, body_pos, metrics

    return jax.jit(rollout)


def rollout_policy(config, params, normaliser, reference: Reference, seconds: float | None = None,
                   start_frame: int = 0, character_config: CharacterConfig = CharacterConfig()) -> Trajectory:
    """Simulates the policy tracking `reference` from `start_frame` for `seconds` (default: to the
    clip's end); beyond the clip's end the clip is looped (meant for cyclic clips).

    Args:
      config: the policy's `TrainConfig` (environment, network widths).
      params, normaliser: the policy (as returned by `train` or `load_policy`).
      reference: the clip, at the config's control rate.
      seconds: rollout length; None runs to the end of the clip.
      start_frame: the reference frame to start from (0 <= start_frame < frames - 1).

    Returns:
      A `Trajectory` of round(seconds * fps) control steps (fewer only when `seconds` is None).
    """
    from diffmimic.train import compile_key

    frames = reference.num_frames
    if not 0 <= start_frame < frames - 1:
        raise ValueError(f"start_frame must be in [0, {frames - 2}] for a clip of {frames} frames, got {start_frame}")
    if seconds is None:
        steps = frames - 1 - start_frame
    else:
        if seconds <= 0:
            raise ValueError(f"seconds must be > 0, got {seconds}")
        steps = max(1, int(round(seconds * reference.fps)))
        if start_frame + steps > frames - 1:
            reference = loop_reference(reference, (start_frame + steps) / reference.fps)
    ref = ref_arrays(reference, length_bucket(reference.num_frames))
    function = _rollout_function(compile_key(config), character_config)
    q0, pos0, qpos, body_pos, metrics = jax.device_get(function(params, normaliser, ref, np.int32(start_frame)))
    metrics = jax.tree.map(lambda a: a[:steps], metrics)
    valid = np.ones(steps, bool)
    end = start_frame + steps + 1
    return Trajectory(
        fps=float(reference.fps), start_frame=int(start_frame),
        qpos=np.concatenate([q0[None], qpos[:steps]]), body_pos=np.concatenate([pos0[None], body_pos[:steps]]),
        reference_body_pos=np.asarray(reference.body_pos[start_frame:end], np.float32),
        pose_error_m=np.asarray(metrics.pose_error_m), global_error_m=np.asarray(metrics.global_error_m),
        fell=np.asarray(metrics.fell), metrics=summarize_rollout(metrics, valid, reference.fps),
        body_names=tuple(reference.body_names))
