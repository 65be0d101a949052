"""Robust convergence: a policy tracks its clip from perturbed starts and through a push.

A policy that meets the pose-error target in one evaluation rollout may sit on a knife edge:
another evaluation a bit off (the library's replay, a hand-over from another clip's policy,
another machine's float rounding) falls. `check_robustness` rolls the policy out `rollouts` times
over the whole clip from frame 0, each from the reference's first state perturbed as a hand-over
perturbs it (`MimicEnv.perturb`: pose, heading, height and velocity noise) and pushed once at a
random time in the middle three fifths of the clip, and counts the rollouts that do not fall.

The check reuses the compiled rollout every evaluation uses (`CompiledFunctions.rollout`, the
step count is data): a pushed rollout is two calls, up to the push and on from the pushed state,
so it compiles nothing beyond the small `perturb` function.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from diffmimic.env import EnvState, RefArrays
from diffmimic.metrics import summarize_rollout


@dataclasses.dataclass(frozen=True)
class Robustness:
    """The outcome of `check_robustness`.

    rollouts: perturbed rollouts run; survived: how many did not fall.
    fell_at_s: when each fallen rollout fell (seconds from frame 0).
    pose_error_m: the mean pose error of each rollout (a fallen one's up to its fall).
    min_survival: the share that had to survive; passed: survived / rollouts >= min_survival.
    """

    rollouts: int
    survived: int
    fell_at_s: tuple[float, ...]
    pose_error_m: tuple[float, ...]
    min_survival: float

    @property
    def survival(self) -> float:
        return self.survived / max(self.rollouts, 1)

    @property
    def passed(self) -> bool:
        return self.rollouts > 0 and self.survival >= self.min_survival - 1e-9

    def to_dict(self) -> dict:
        return {
            "rollouts": self.rollouts,
            "survived": self.survived,
            "survival": round(self.survival, 4),
            "passed": self.passed,
            "min_survival": self.min_survival,
            "fell_at_s": [round(t, 3) for t in self.fell_at_s],
            "pose_error_m": [round(e, 5) for e in self.pose_error_m],
            "median_pose_error_m": (round(float(np.median(self.pose_error_m)), 5) if self.pose_error_m else None),
        }

    @classmethod
    def from_dict(cls, data: dict) -> "Robustness":
        return cls(
            rollouts=int(data["rollouts"]),
            survived=int(data["survived"]),
            fell_at_s=tuple(data.get("fell_at_s", ())),
            pose_error_m=tuple(data.get("pose_error_m", ())),
            min_survival=float(data["min_survival"]),
        )


def push_window(frames: int) -> tuple[int, int]:
    """The control steps a push may fall on in a clip of `frames` frames: its middle three
    fifths (a push at the very start or end tests nothing the perturbed start does not)."""
    steps = max(frames - 1, 1)
    low = max(1, steps // 5)
    return low, max(low, steps - steps // 5 - 1)


def check_robustness(
    functions,
    params,
    normaliser,
    ref: RefArrays,
    rollouts: int,
    min_survival: float,
    seed: int = 0,
    control_hz: float = 30.0,
) -> Robustness:
    """Rolls the policy out `rollouts` times over the whole clip, each from a perturbed first
    state and pushed once (`MimicEnv.perturb`), and counts the rollouts that did not fall.

    Args:
      functions: the clip's `diffmimic.train.CompiledFunctions`.
      params, normaliser: the policy.
      ref: the clip's `RefArrays` (prepared or not).
      rollouts: how many perturbed rollouts; min_survival: the share that must not fall.
      seed: the perturbations' seed (the same seed gives the same perturbations).
    """
    ref = functions.prepared(ref)
    frames = int(ref.length)
    steps = frames - 1
    first_state = jax.tree.map(lambda a: a[0], ref.physics)
    low, high = push_window(frames)
    rng = np.random.default_rng(seed)
    keys = jax.random.split(jax.random.PRNGKey(seed), 2 * rollouts)
    survived, fell_at, errors = 0, [], []
    for i in range(rollouts):
        physics = functions.perturb(first_state, keys[2 * i], jnp.float32(1.0), jnp.float32(0.0))
        push_at = int(rng.integers(low, high + 1)) if steps > 1 else steps
        parts = []
        state = EnvState(physics=physics, t=jnp.int32(0), key=jax.random.PRNGKey(0))
        for length, pushed in ((push_at, False), (steps - push_at, True)):
            if length <= 0:
                continue
            if pushed:
                state = state.replace(
                    physics=functions.perturb(state.physics, keys[2 * i + 1], jnp.float32(0.0), jnp.float32(1.0))
                )
            state, (_, _, _, metrics) = functions.rollout(params, normaliser, ref, state, jnp.int32(length))
            metrics = jax.tree.map(lambda a, n=length: np.asarray(a)[:n], jax.device_get(metrics))
            parts.append(metrics)
            if metrics.fell.any():
                break
        joined = jax.tree.map(lambda *a: np.concatenate(a), *parts)
        summary = summarize_rollout(joined, np.ones(len(joined.fell), bool), control_hz)
        errors.append(summary.pose_error_m)
        if summary.fell:
            fell_at.append(float(summary.fell_at_s))
        else:
            survived += 1
    return Robustness(
        rollouts=rollouts,
        survived=survived,
        fell_at_s=tuple(fell_at),
        pose_error_m=tuple(errors),
        min_survival=min_survival,
    )
