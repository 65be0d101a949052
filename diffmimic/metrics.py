"""Evaluation metrics of a rollout: pose error over the whole clip, falls, the worst frames; and
`loop_reference`, which tiles a cyclic clip for rollouts longer than it.

Pure NumPy on the per-step arrays a rollout returns (`CompiledFunctions.rollout`), so the trainer,
the library, compose and the evaluation CLI (`diffmimic.evaluate`) share one definition.
"""

from __future__ import annotations

import dataclasses

import numpy as np


@dataclasses.dataclass(frozen=True)
class EvalMetrics:
    """Metrics of one evaluation rollout.

    pose_error_m: mean root-relative body position error over the clip (the paper's metric).
    global_error_m: mean body position error (root drift included).
    fell: the character fell (pelvis out of range, > 0.5 m off, or NaN) at some frame.
    fell_at_s: when it first fell (None if never).
    absurdity: mean pose error of the worst 1 / 5 / 10 % of frames.
    nonfinite_steps: control steps whose simulated state went NaN/inf.
    frames: evaluated control steps.
    per_frame_pose_error_m, per_frame_global_error_m: per step (entry i: reference frame
      start + i + 1).
    plausibility: torque per joint group against its limit, foot penetration and skating
      (`diffmimic.plausibility.summarize`; empty for metrics stored before it existed).
    robustness: perturbed rollouts of the same policy (`diffmimic.robustness.Robustness.to_dict`;
      empty when not checked: a training run checks the evaluations that meet its target).
    """

    pose_error_m: float
    global_error_m: float
    fell: bool
    fell_at_s: float | None
    absurdity: dict
    nonfinite_steps: int
    frames: int
    per_frame_pose_error_m: tuple = ()
    per_frame_global_error_m: tuple = ()
    plausibility: dict = dataclasses.field(default_factory=dict)  # `diffmimic.plausibility.summarize`
    robustness: dict = dataclasses.field(default_factory=dict)  # `Robustness.to_dict`; empty: not checked

    def rank(self) -> tuple:
        """Sort key, best first: no fall, then the latest fall, then the lowest pose error."""
        return (bool(self.fell), -(self.fell_at_s if self.fell_at_s is not None else float("inf")), self.pose_error_m)

    def to_dict(self, per_frame: bool = False) -> dict:
        data = dataclasses.asdict(self)
        if not per_frame:
            data.pop("per_frame_pose_error_m")
            data.pop("per_frame_global_error_m")
        return data


def worst_fraction_means(errors: np.ndarray, fractions=(0.01, 0.05, 0.10)) -> dict:
    """Mean of the worst `fraction` of frame errors, keyed like 'worst_5pct'."""
    ordered = np.sort(errors)[::-1]
    return {
        f"worst_{round(f * 100)}pct": float(ordered[: max(1, int(np.ceil(f * len(ordered))))].mean()) for f in fractions
    }


def summarize_rollout(metrics, valid, control_hz: float = 30.0) -> EvalMetrics:
    """Reduces per-step rollout metrics (StepMetrics of arrays (T,)) over the valid steps."""
    valid = np.asarray(valid, bool)
    pose = np.asarray(metrics.pose_error_m)[valid]
    fell = np.asarray(metrics.fell)[valid]
    first_fall = int(np.argmax(fell)) if fell.any() else None
    plausibility = {}
    if getattr(metrics, "plausibility", None) is not None:
        from diffmimic.plausibility import summarize

        plausibility = summarize(metrics.plausibility, valid)
    return EvalMetrics(
        pose_error_m=float(pose.mean()),
        global_error_m=float(np.asarray(metrics.global_error_m)[valid].mean()),
        fell=bool(fell.any()),
        fell_at_s=None if first_fall is None else (first_fall + 1) / control_hz,
        absurdity=worst_fraction_means(pose),
        nonfinite_steps=int(np.asarray(metrics.nonfinite)[valid].sum()),
        frames=int(valid.sum()),
        per_frame_pose_error_m=tuple(float(e) for e in pose),
        per_frame_global_error_m=tuple(float(e) for e in np.asarray(metrics.global_error_m)[valid]),
        plausibility=plausibility,
    )


def loop_reference(reference, seconds: float):
    """Tiles a (cyclic) reference to cover `seconds`, re-anchoring each repeat's root position
    horizontally at the previous repeat's end (so a walk keeps walking)."""

    frames_needed = int(round(seconds * reference.fps)) + 1
    if frames_needed <= reference.num_frames:
        return reference.segment(0.0, seconds)
    parts = {k: [getattr(reference, k)] for k in ("qpos", "qvel", "body_pos", "body_rot", "body_vel", "body_ang")}
    total = reference.num_frames
    while total < frames_needed:
        shift = parts["qpos"][-1][-1, :2] - reference.qpos[0, :2]
        qpos = reference.qpos[1:].copy()
        qpos[:, :2] += shift
        body_pos = reference.body_pos[1:].copy()
        body_pos[..., :2] += shift
        parts["qpos"].append(qpos)
        parts["body_pos"].append(body_pos)
        for k in ("qvel", "body_rot", "body_vel", "body_ang"):
            parts[k].append(getattr(reference, k)[1:])
        total += reference.num_frames - 1
    arrays = {k: np.concatenate(v)[:frames_needed] for k, v in parts.items()}
    # the per-frame notes of retargeting describe the clip's own frames, not the repeats
    return dataclasses.replace(reference, **arrays, clamped=None, support_shift=None)


def meets(evaluation: EvalMetrics, pose_error_m: float) -> bool:
    """No fall over the whole clip and pose error at most `pose_error_m`."""
    return not evaluation.fell and evaluation.pose_error_m <= pose_error_m


def robust(evaluation: EvalMetrics, robust_rollouts: int) -> bool:
    """Whether `evaluation`'s perturbed rollouts passed (`diffmimic.robustness`); always True
    when none are required (`robust_rollouts` 0, `TrainConfig.robust_rollouts`)."""
    return robust_rollouts == 0 or bool(evaluation.robustness.get("passed", False))


def converged(evaluation: EvalMetrics, pose_error_m: float, robust_rollouts: int) -> bool:
    """The factory's convergence: no fall from frame 0, pose error at most `pose_error_m`, and
    robust to perturbed starts and a push."""
    return meets(evaluation, pose_error_m) and robust(evaluation, robust_rollouts)


def selection_key(evaluation: EvalMetrics, pose_error_m: float | None, robust_rollouts: int) -> tuple:
    """Sort key of one clip's policies, best first: converged (target `pose_error_m`), then
    meeting the target and surviving the most perturbed rollouts (checked before unchecked), then
    `EvalMetrics.rank` (no fall, the latest fall, the lowest pose error). With no target: `rank`
    alone."""
    if pose_error_m is not None and meets(evaluation, pose_error_m):
        if robust(evaluation, robust_rollouts):
            return (0, 0.0, 0, *evaluation.rank())
        checked = bool(evaluation.robustness)  # a checked one before one not (yet) checked
        return (1, -float(evaluation.robustness.get("survival", 0.0)), 0 if checked else 1, *evaluation.rank())
    return (2, 0.0, 0, *evaluation.rank())


def not_converged_reason(evaluation: EvalMetrics, pose_error_m: float, robust_rollouts: int) -> str | None:
    """Why `evaluation` is not `converged` (one line), or None when it is."""
    if evaluation.fell:
        return f"fell at {evaluation.fell_at_s:.2f} s"
    if evaluation.pose_error_m > pose_error_m:
        return f"pose error {evaluation.pose_error_m:.3f} m over the target {pose_error_m:.3f} m"
    if robust(evaluation, robust_rollouts):
        return None
    data = evaluation.robustness
    if not data:
        return "not checked under perturbation"
    fallen = int(data["rollouts"]) - int(data["survived"])
    first = f", first at {min(data['fell_at_s']):.1f} s" if data.get("fell_at_s") else ""
    return f"fragile: {fallen} of {data['rollouts']} perturbed rollouts fell{first}"
