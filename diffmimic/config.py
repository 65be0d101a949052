"""The training configuration: `TrainConfig` (every knob, paper defaults), its schema versions
and migrations, the named presets and `compile_key` (the part of a config that shapes the
compiled functions)."""

from __future__ import annotations

import dataclasses
import warnings

from diffmimic.env import EnvConfig

START_SAMPLING = ("uniform", "adaptive")


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """All training knobs. The defaults are the DiffMimic paper's (envs, horizon, network,
    optimiser), plus what real clips of ordinary length needed: full-clip evaluation every 10
    iterations deciding best parameters and early stop, failure-directed starts and a parameter
    average (README: Training on real clips).

    Attributes:
      env: the mimic environment (backend, rates, loss weights, replay...).
      num_envs: parallel rollouts per iteration (paper: 300).
      horizon: control steps per rollout (paper: 60 = 2 s at 30 Hz).
      truncation_length: stop gradients between chunks of this many steps (0: full horizon).
      iterations: optimiser steps.
      learning_rate: Adam's initial rate, decayed linearly to `final_learning_rate_fraction` of it.
      grad_clip_norm: global gradient-norm clipping.
      hidden: MLP hidden layer widths (swish).
      eval_every: iterations between evaluations (each one rolls out the whole clip from frame 0
        without replay, as convergence is judged; the best parameters, early stop and the start
        distribution follow it).
      seed: PRNG seed.
      start_sampling: ``uniform`` (plain RSI) or ``adaptive``: after each evaluation a
        `focus_share` of the rollouts starts shortly before the frames where the full-clip
        evaluation drifted or fell (`diffmimic.curriculum`).
      focus_share: the failure-directed share of the start frames (``adaptive``).
      warm_start_learning_rate_scale: multiplies the learning rate of a run that starts from a
        trained policy (`init_policy`: an earlier attempt's or a similar clip's): the optimiser
        state starts afresh, and full-size first steps of Adam throw away what the policy knew.
      ema_decay: decay of an exponential moving average of the parameters (Polyak averaging;
        0: none). Each evaluation rolls out both the current and the averaged parameters and keeps
        the better: with a handful of rollouts per iteration every update moves the closed-loop
        behaviour, and the average is the steadier policy.
      polish_iterations, polish_pose_error_m: with a convergence target (`train`'s
        `stop_at_pose_error_m`), training does not stop at the first evaluation that meets it:
        it goes on for at most `polish_iterations` more iterations, or until an evaluation without
        a fall reaches `polish_pose_error_m`, and keeps the best evaluation. The first success is
        often just under the target; more iterations at the decayed learning rate lower the pose
        error of the kept policy on most clips (README: Training on real clips).
      polish_learning_rate_scale: multiplies the learning rate while polishing (1: the schedule
        goes on). Continuing an already polished policy at 1e-4 instead of 3e-4 fell less and got
        as low, but polishing a just-converged one at 0.3x the scheduled rate (about 1e-4) fell
        as often and improved less than at the full rate (README: Training on real clips).
      polish_eval_every: iterations between evaluations while polishing (0: `eval_every`). An
        evaluation costs a tenth of a `cpu`-preset iteration, and a converged policy's evaluations
        scatter by millimetres from one iteration to the next: evaluating every iteration keeps
        the best of them and stops polishing as soon as one reaches `polish_pose_error_m`.
      robust_rollouts, robust_min_survival: with a convergence target, an evaluation that meets
        it is checked with `robust_rollouts` perturbed and pushed rollouts of the whole clip
        (`diffmimic.robustness`); it is robust when at least `robust_min_survival` of them do not
        fall. The kept policy is the best robust one (then the one surviving most), polishing
        stops early only on a robust one, and the factory stores a fragile one as `best_effort`.
        0 rollouts: no check (every evaluation that meets the target counts as robust).
      robust_check_every: at most one check per this many iterations while no robust policy is
        kept, or the best one is (a check costs about `robust_rollouts` evaluations).
    """

    env: EnvConfig = EnvConfig()
    num_envs: int = 300
    horizon: int = 60
    truncation_length: int = 0
    iterations: int = 1000
    learning_rate: float = 3e-4
    final_learning_rate_fraction: float = 0.0
    grad_clip_norm: float = 0.3
    hidden: tuple[int, ...] = (512, 256)
    eval_every: int = 10
    seed: int = 0
    start_sampling: str = "adaptive"
    focus_share: float = 0.5
    ema_decay: float = 0.95
    warm_start_learning_rate_scale: float = 0.3
    polish_iterations: int = 100
    polish_pose_error_m: float = 0.03
    polish_learning_rate_scale: float = 1.0
    polish_eval_every: int = 0
    robust_rollouts: int = 10
    robust_min_survival: float = 0.9
    robust_check_every: int = 5

    def __post_init__(self):
        if self.start_sampling not in START_SAMPLING:
            raise ValueError(f"TrainConfig.start_sampling must be one of {START_SAMPLING}, got {self.start_sampling!r}")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ValueError(f"TrainConfig.ema_decay must be in [0, 1), got {self.ema_decay}")
        if not 0.0 < self.polish_learning_rate_scale <= 1.0:
            raise ValueError(
                f"TrainConfig.polish_learning_rate_scale must be in (0, 1], got {self.polish_learning_rate_scale}"
            )
        if not 0.0 < self.warm_start_learning_rate_scale <= 1.0:
            raise ValueError(
                f"TrainConfig.warm_start_learning_rate_scale must be in (0, 1], "
                f"got {self.warm_start_learning_rate_scale}"
            )
        if not 0.0 <= self.focus_share <= 1.0:
            raise ValueError(f"TrainConfig.focus_share must be in [0, 1], got {self.focus_share}")
        if self.polish_iterations < 0 or self.polish_eval_every < 0 or not self.polish_pose_error_m >= 0:
            raise ValueError("TrainConfig: polish_iterations, polish_eval_every and polish_pose_error_m must be >= 0")
        if self.robust_rollouts < 0 or self.robust_check_every < 1 or not 0.0 <= self.robust_min_survival <= 1.0:
            raise ValueError(
                "TrainConfig: robust_rollouts must be >= 0, robust_check_every >= 1 and robust_min_survival in [0, 1]"
            )
        if min(self.eval_every, self.horizon, self.num_envs, self.iterations) < 1:
            raise ValueError("TrainConfig: eval_every, horizon, num_envs and iterations must be >= 1")
        if not (self.learning_rate > 0 and self.grad_clip_norm > 0):
            raise ValueError("TrainConfig: learning_rate and grad_clip_norm must be > 0")

    def to_dict(self) -> dict:
        """The config as JSON-ready data, with its schema version (`from_dict` reads every
        version since 1)."""
        return {"schema": CONFIG_SCHEMA, **dataclasses.asdict(self)}

    @classmethod
    def from_dict(cls, data: dict, strict: bool = False) -> "TrainConfig":
        """A config from `to_dict` data of any schema version (renamed fields are renamed;
        fields missing take today's defaults). Unknown fields raise with `strict` (a user's
        overrides: a typo must not pass) and are otherwise dropped with a warning (a stored
        policy of an older or newer version still loads)."""
        data = dict(data)
        version = int(data.pop("schema", 1))
        if version > CONFIG_SCHEMA:
            warnings.warn(f"TrainConfig schema {version} is newer than this code's ({CONFIG_SCHEMA})")
        env = dict(data.pop("env", {}))
        for fields, known, what in ((data, TrainConfig, "TrainConfig"), (env, EnvConfig, "EnvConfig")):
            for old, new in CONFIG_RENAMES.get(what, {}).items():
                if old in fields:
                    fields.setdefault(new, fields.pop(old))
            for added, values in CONFIG_ADDED.items():
                if version < added:  # what a config of that version did, not today's default
                    for name, value in values.get(what, {}).items():
                        fields.setdefault(name, value)
            for retired, names in CONFIG_RETIRED.items():
                if version < retired:  # replaced by another rule: nothing to warn about
                    for name in names.get(what, ()):
                        fields.pop(name, None)
            unknown = sorted(set(fields) - {f.name for f in dataclasses.fields(known)} - {"env"})
            if unknown and strict:
                raise ValueError(f"unknown {what} field(s): {', '.join(unknown)}")
            if unknown:
                warnings.warn(f"ignoring unknown {what} field(s) {unknown} (config schema {version})")
                for name in unknown:
                    fields.pop(name)
        if "hidden" in data:
            data["hidden"] = tuple(data["hidden"])
        return cls(env=EnvConfig(**env), **data)


# The version of `TrainConfig.to_dict`'s layout, stored with every policy, and the renames since
# version 1 ({class: {old name: new name}}): a stored config of any version loads.
CONFIG_SCHEMA = 3
CONFIG_RENAMES: dict[str, dict[str, str]] = {"TrainConfig": {}, "EnvConfig": {}}
# Fields added in a version whose default changes behaviour, with the value that reproduces what
# a config of an earlier version did ({version: {class: {field: value}}}).
# Fields retired in a version ({version: {class: names}}): dropped silently from older configs.
# 3: the absolute pelvis-height fall test became one relative to the reference's pelvis.
CONFIG_RETIRED: dict[int, dict[str, tuple]] = {3: {"EnvConfig": ("fall_min_pelvis_m", "fall_max_pelvis_m")}}
CONFIG_ADDED: dict[int, dict[str, dict]] = {
    3: {"TrainConfig": {"robust_rollouts": 0}, "EnvConfig": {"train_perturbed_share": 0.0, "train_push_share": 0.0}},
}


# Named presets are overrides of the defaults (nested "env" keys override EnvConfig fields).
PRESETS: dict[str, dict] = {
    "paper": {},
    # 3 s rollouts: on real 5-10 s clips, 1 s rollouts (horizon 30) never tracked a whole clip
    # (README: Training on real clips).
    "cpu": {
        "num_envs": 16,
        "horizon": 90,
        "iterations": 300,
        "eval_every": 5,
        "polish_eval_every": 1,
        "learning_rate": 1e-3,
        "hidden": (256, 128),
    },
}


def make_config(preset: str = "paper", **overrides) -> TrainConfig:
    """The preset's config with `overrides` (env fields go in overrides["env"] as a dict)."""
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose one of {sorted(PRESETS)}")
    merged = {**PRESETS[preset], **{k: v for k, v in overrides.items() if k != "env"}}
    env = {**PRESETS[preset].get("env", {}), **overrides.get("env", {})}
    merged.pop("env", None)
    return dataclasses.replace(TrainConfig(), env=dataclasses.replace(EnvConfig(), **env), **merged)


def compile_key(config: TrainConfig) -> TrainConfig:
    """The part of a config that shapes the compiled functions: run length, cadence, seed, start
    sampling, polishing, the replay threshold and the warm-start learning-rate scale are data
    (`Curriculum`), so configs that differ only in them share one compile."""
    env = dataclasses.replace(config.env, replay_threshold_m=EnvConfig.replay_threshold_m)
    return dataclasses.replace(
        config,
        env=env,
        iterations=1,
        eval_every=1,
        seed=0,
        start_sampling=TrainConfig.start_sampling,
        focus_share=TrainConfig.focus_share,
        warm_start_learning_rate_scale=TrainConfig.warm_start_learning_rate_scale,
        polish_iterations=TrainConfig.polish_iterations,
        polish_pose_error_m=TrainConfig.polish_pose_error_m,
        polish_eval_every=TrainConfig.polish_eval_every,
        polish_learning_rate_scale=TrainConfig.polish_learning_rate_scale,
        robust_rollouts=TrainConfig.robust_rollouts,
        robust_min_survival=TrainConfig.robust_min_survival,
        robust_check_every=TrainConfig.robust_check_every,
    )
