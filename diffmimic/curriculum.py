"""Where training rollouts start: failure-directed Reference State Initialization.

A policy is judged on one rollout over the whole clip from frame 0 without demonstration replay,
while it trains on short rollouts (the horizon) that start at reference frames. Uniform starts
spend most rollouts on frames the policy already tracks; errors that compound over seconds, and
the frame where the full-clip rollout falls, get a small share. After every evaluation the
trainer therefore redraws the start distribution (`start_probabilities`): a `focus_share` of the
rollouts starts shortly before the frames where the last full-clip evaluation drifted or fell
(`trouble_from_evaluation`), the rest uniformly as in plain RSI. The distribution is data of the
compiled train step, so it changes without recompiling.

All functions are pure NumPy on small arrays.
"""

from __future__ import annotations

import numpy as np


def uniform_starts(length: int, bucket: int, horizon: int) -> np.ndarray:
    """Plain RSI: (bucket,) probabilities, uniform over the frames that leave `horizon` steps
    before the clip's last frame (frame 0 alone when the clip is shorter than the horizon)."""
    if not 1 <= length <= bucket:
        raise ValueError(f"clip length {length} must be in 1..bucket ({bucket})")
    last = max(length - 1 - horizon, 0)
    probs = np.zeros(bucket, np.float64)
    probs[: last + 1] = 1.0
    return probs / probs.sum()


def trouble_from_evaluation(
    per_frame_global_error_m, fell_at_frame: int | None, length: int, fall_weight: float = 1.0
) -> np.ndarray:
    """How much each reference frame needs training, from one full-clip evaluation.

    Args:
      per_frame_global_error_m: (N,) mean body-position error after each evaluation step; entry i
        belongs to reference frame i + 1 (the rollout starts at frame 0).
      fell_at_frame: the reference frame at which the evaluation first fell (None: no fall).
        Frames after it say nothing about the policy (it is lying on the floor) and get none.
      length: the clip's frame count.
      fall_weight: the fall frame gets `fall_weight` times the summed trouble of the frames before
        it (at least as much as one frame's worst error): reaching and passing it matters most.

    Returns (length,) non-negative scores: the squared global error per frame (large errors count
    more than many small ones), zero at frame 0.
    """
    errors = np.nan_to_num(np.asarray(per_frame_global_error_m, np.float64), nan=1.0, posinf=1.0)
    trouble = np.zeros(length, np.float64)
    count = min(len(errors), length - 1)
    trouble[1 : count + 1] = errors[:count] ** 2
    if fell_at_frame is not None:
        fall = int(np.clip(fell_at_frame, 1, length - 1))
        trouble[fall + 1 :] = 0.0
        before = trouble[:fall].sum()
        trouble[fall] = max(fall_weight * before, trouble[: fall + 1].max(initial=0.0), 1e-6)
    return trouble


def start_probabilities(
    length: int,
    bucket: int,
    horizon: int,
    trouble: np.ndarray | None = None,
    focus_share: float = 0.5,
    lead_fraction: float = 0.5,
) -> np.ndarray:
    """The start-frame distribution (bucket,) of the next training iterations.

    `1 - focus_share` of the mass is plain RSI (`uniform_starts`). The rest goes to start frames
    s in proportion to the trouble of the frames s+1 .. s+lead the rollout meets in its first
    `lead = ceil(lead_fraction * horizon)` steps: rollouts start before a hard stretch, so they
    cross it with the policy's own state rather than a freshly reset one, and the rest of their
    horizon trains what follows it. With no trouble (or none given) it is plain RSI.
    """
    uniform = uniform_starts(length, bucket, horizon)
    if trouble is None or focus_share <= 0:
        return uniform
    trouble = np.asarray(trouble, np.float64)
    if trouble.shape != (length,) or not np.all(np.isfinite(trouble)) or np.any(trouble < 0):
        raise ValueError(f"trouble must be (length,) = ({length},) finite and >= 0, got {trouble.shape}")
    if trouble.sum() <= 0:
        return uniform
    lead = max(1, int(np.ceil(lead_fraction * horizon)))
    # window[s] = trouble[s+1] + ... + trouble[s+lead], by a cumulative sum.
    cumulative = np.concatenate([[0.0], np.cumsum(trouble)])
    starts = np.arange(max(length - 1, 1))
    window = cumulative[np.minimum(starts + lead + 1, length)] - cumulative[np.minimum(starts + 1, length)]
    focus = np.zeros(bucket, np.float64)
    focus[: len(starts)] = window
    if focus.sum() <= 0:
        return uniform
    share = float(np.clip(focus_share, 0.0, 1.0))
    return (1.0 - share) * uniform + share * focus / focus.sum()
