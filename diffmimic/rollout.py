"""Closed-loop rollouts of a trained policy that keep the trajectory (for replay, rendering, reports).

`rollout_policy(config, params, normaliser, reference, seconds=..., start_frame=...)` resets the
mimic environment at a reference frame, runs observe -> policy -> step without demonstration
replay, and returns every simulated body position with the per-frame pose error. The scan is
jitted once per (compile key of the config, character config) and runs over the whole padded
length bucket, so clips of one bucket share one compiled function; start frame and clip length
are data. Rollouts longer than the clip loop it (`diffmimic.metrics.loop_reference`).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from diffmimic import atomic
from diffmimic.character.mjcf import CharacterConfig
from diffmimic.compile import jit
from diffmimic.config import compile_key
from diffmimic.env import EnvState, length_bucket, ref_arrays
from diffmimic.metrics import EvalMetrics, loop_reference, summarize_rollout
from diffmimic.mocap.retarget import Reference
from diffmimic.step import compiled_functions, simulated_character_config


@dataclasses.dataclass(frozen=True)
class Trajectory:
    """A simulated rollout, N control steps from `start_frame` (N + 1 states).

    Attributes:
      fps: control rate (frames per second).
      start_frame: the reference frame the rollout started from.
      qpos: (N + 1, nq) simulated generalized positions (root position, wxyz quaternion, hinges).
      body_pos: (N + 1, 24, 3) simulated body positions, world frame.
      body_rot: (N + 1, 24, 4) simulated body orientations (wxyz quaternions).
      reference_body_pos: (N + 1, 24, 3) the reference's body positions at the same frames.
      reference_body_rot: (N + 1, 24, 4) the reference's body orientations.
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
    body_rot: np.ndarray
    reference_body_pos: np.ndarray
    reference_body_rot: np.ndarray
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

    def save(self, path: str | os.PathLike, meta: dict | None = None) -> Path:
        """Writes the trajectory as an .npz (no pickled objects) with `times_s` (N + 1,), the
        summary metrics and `meta` (any JSON-able dict, e.g. a title or composition segments) as
        JSON strings."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)

        def write(tmp: Path) -> None:
            np.savez(
                tmp,
                times_s=np.arange(self.steps + 1) / self.fps,
                fps=np.float64(self.fps),
                start_frame=np.int64(self.start_frame),
                qpos=self.qpos,
                body_pos=self.body_pos,
                body_rot=self.body_rot,
                reference_body_pos=self.reference_body_pos,
                reference_body_rot=self.reference_body_rot,
                pose_error_m=self.pose_error_m,
                global_error_m=self.global_error_m,
                fell=self.fell,
                body_names=np.array(self.body_names),
                mean_pose_error_m=np.float64(self.metrics.pose_error_m),
                fell_any=np.bool_(self.metrics.fell),
                metrics_json=np.array(json.dumps(self.metrics.to_dict())),
                meta_json=np.array(json.dumps(meta or {})),
            )

        atomic.write_with(path, write, suffix=".tmp.npz")  # savez keeps a name ending in .npz
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> tuple["Trajectory", dict]:
        """Reads a file written by `save`: (trajectory, meta). Raises ValueError naming the file
        when it is not one."""
        try:
            with np.load(path, allow_pickle=False) as data:
                arrays = {k: data[k] for k in data.files}
        except (OSError, ValueError, EOFError) as err:
            raise ValueError(f"{path}: not a readable trajectory .npz ({err})") from None
        missing = [
            k
            for k in (
                "fps",
                "qpos",
                "body_pos",
                "body_rot",
                "reference_body_pos",
                "reference_body_rot",
                "pose_error_m",
                "global_error_m",
                "fell",
                "body_names",
                "metrics_json",
            )
            if k not in arrays
        ]
        if missing:
            raise ValueError(
                f"{path}: not a trajectory file of this version (missing {', '.join(missing)}); "
                "write it again with `python -m factory.library rollout` or `python -m factory.compose`"
            )
        metrics = json.loads(str(arrays["metrics_json"]))
        metrics["per_frame_pose_error_m"] = tuple(float(e) for e in arrays["pose_error_m"])
        trajectory = cls(
            fps=float(arrays["fps"]),
            start_frame=int(arrays.get("start_frame", 0)),
            qpos=arrays["qpos"],
            body_pos=arrays["body_pos"],
            body_rot=arrays["body_rot"],
            reference_body_pos=arrays["reference_body_pos"],
            reference_body_rot=arrays["reference_body_rot"],
            pose_error_m=arrays["pose_error_m"],
            global_error_m=arrays["global_error_m"],
            fell=arrays["fell"],
            metrics=EvalMetrics(**metrics),
            body_names=tuple(str(n) for n in arrays["body_names"]),
        )
        meta = json.loads(str(arrays["meta_json"])) if "meta_json" in arrays else {}
        return trajectory, meta


# Traces of the rollout function (trace time only): how many times it compiled in this process.
def _rollout_function(config, character_config: CharacterConfig):
    """(params, normaliser, ref, start_frame, physics, steps) -> (final physics, qpos, body pos,
    body rot, metrics): `steps` control steps from the physics state `physics` at reference frame
    `start_frame`, by the same compiled rollout that evaluates policies during training
    (`CompiledFunctions.rollout`), so the step count is data and the compile is shared."""
    functions = compiled_functions(config, character_config)

    def rollout(params, normaliser, ref, start_frame, physics, steps):
        start = EnvState(physics=physics, t=jnp.asarray(start_frame, jnp.int32), key=jax.random.PRNGKey(0))
        final, (qpos, body_pos, body_rot, metrics) = functions.rollout(params, normaliser, ref, start, steps)
        return final.physics, qpos, body_pos, body_rot, metrics

    return rollout


@functools.lru_cache(maxsize=8)
def _initial_physics_function(config, character_config: CharacterConfig):
    """The jitted (qpos, qvel) -> physics state of the config's pipeline."""
    env = compiled_functions(config, character_config).env
    return jit(env._init_physics)


def initial_physics(config, character_config: CharacterConfig, qpos, qvel):
    """The physics state of `config`'s pipeline at generalized coordinates (qpos, qvel)."""
    function = _initial_physics_function(compile_key(config), simulated_character_config(config, character_config))
    return function(jnp.asarray(qpos, jnp.float32), jnp.asarray(qvel, jnp.float32))


def _prepared(config, character_config: CharacterConfig, reference: Reference):
    """The clip's `RefArrays` prepared as training's evaluation prepares them (one call of the
    compiled `prepare`), so a rollout here and the evaluation start from the same bits."""
    functions = compiled_functions(config, character_config)
    return functions.prepared(ref_arrays(reference, length_bucket(reference.num_frames)))


def reference_physics(config, character_config: CharacterConfig, reference: Reference, frame: int):
    """The physics state of `reference` at `frame` exactly as the evaluation during training
    starts from it (the prepared reference's state)."""
    return jax.tree.map(lambda a: a[frame], _prepared(config, character_config, reference).physics)


@dataclasses.dataclass(frozen=True)
class SegmentArrays:
    """What `simulate` returns: the final physics state and per-step arrays (numpy, `steps` long)."""

    physics: object
    qpos: np.ndarray
    body_pos: np.ndarray
    body_rot: np.ndarray
    metrics: object  # StepMetrics of (steps,) arrays


def simulate(
    config,
    params,
    normaliser,
    reference: Reference,
    physics,
    start_frame: int,
    steps: int,
    character_config: CharacterConfig = CharacterConfig(),
) -> SegmentArrays:
    """Runs the policy for `steps` control steps from the physics state `physics`, tracking
    `reference` from frame `start_frame` (start_frame + steps <= frames - 1)."""
    if not 0 <= start_frame or start_frame + steps > reference.num_frames - 1 or steps < 1:
        raise ValueError(f"cannot run {steps} steps from frame {start_frame} of a {reference.num_frames}-frame clip")
    ref = _prepared(config, character_config, reference)
    function = _rollout_function(compile_key(config), simulated_character_config(config, character_config))
    final, qpos, body_pos, body_rot, metrics = function(
        params, normaliser, ref, np.int32(start_frame), physics, np.int32(steps)
    )
    qpos, body_pos, body_rot, metrics = jax.device_get((qpos, body_pos, body_rot, metrics))
    cut = lambda a: np.asarray(a[:steps])
    return SegmentArrays(
        physics=final,
        qpos=cut(qpos),
        body_pos=cut(body_pos),
        body_rot=cut(body_rot),
        metrics=jax.tree.map(cut, metrics),
    )


def rollout_policy(
    config,
    params,
    normaliser,
    reference: Reference,
    seconds: float | None = None,
    start_frame: int = 0,
    character_config: CharacterConfig = CharacterConfig(),
) -> Trajectory:
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
    # The prepared reference's state, as the training evaluation starts: the library's replay of a
    # policy from frame 0 is the evaluation that judged it, to the bit.
    physics = reference_physics(config, character_config, reference, start_frame)
    run = simulate(config, params, normaliser, reference, physics, start_frame, steps, character_config)
    x0 = jax.device_get(physics.x)
    end = start_frame + steps + 1
    return Trajectory(
        fps=float(reference.fps),
        start_frame=int(start_frame),
        qpos=np.concatenate([np.asarray(jax.device_get(physics.q))[None], run.qpos]),
        body_pos=np.concatenate([np.asarray(x0.pos)[None], run.body_pos]),
        body_rot=np.concatenate([np.asarray(x0.rot)[None], run.body_rot]),
        reference_body_pos=np.asarray(reference.body_pos[start_frame:end], np.float32),
        reference_body_rot=np.asarray(reference.body_rot[start_frame:end], np.float32),
        pose_error_m=np.asarray(run.metrics.pose_error_m),
        global_error_m=np.asarray(run.metrics.global_error_m),
        fell=np.asarray(run.metrics.fell),
        metrics=summarize_rollout(run.metrics, np.ones(steps, bool), reference.fps),
        body_names=tuple(reference.body_names),
    )
