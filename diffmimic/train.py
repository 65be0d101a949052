"""DiffMimic training: analytic policy gradients through the simulated rollout.

    python -m diffmimic.train CLIP_OR_REF --out DIR [--preset cpu|paper] [--iterations N]
        [--backend NAME] [--seed S] [--start-s S] [--duration-s D]

One jitted `train_step(state, ref, curriculum)` rolls `num_envs` environments for `horizon` control steps in
`jax.lax.scan` (each control step under `jax.checkpoint`, so memory scales with control steps, not
substeps), backpropagates the mean state-matching loss through the whole horizon (optionally
truncated), clips the global gradient norm and applies Adam with a linearly decaying learning
rate. The reference is an argument padded to a length bucket, so clips of one bucket share one
compiled step (`compiled_functions` caches them per configuration); where rollouts start and the
replay threshold (`Curriculum`) are arguments too, redrawn after every full-clip evaluation
(`diffmimic.curriculum`).
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import os
import sys
import time
import warnings
from pathlib import Path
from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax
from brax.training.acme import running_statistics
from flax import struct

from diffmimic import atomic
from diffmimic.character.character import Character, make_character
from diffmimic.character.mjcf import CharacterConfig
from diffmimic.compile import env_sharding, jit_over, use_cpu_cores
from diffmimic.curriculum import start_probabilities, trouble_from_evaluation
from diffmimic.env import EnvConfig, EnvState, MimicEnv, RefArrays, length_bucket, ref_arrays
from diffmimic.metrics import EvalMetrics, meets, robust, selection_key, summarize_rollout
from diffmimic.mocap.retarget import Reference
from diffmimic.physics import CPU_SPLIT_BACKENDS, backend_config, body_config, min_substeps
from diffmimic.policy import init_normaliser, make_policy_network, save_policy

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


@struct.dataclass
class TrainState:
    params: object
    ema_params: object  # Polyak average of params (== params when ema_decay is 0)
    opt_state: object
    normaliser: object
    key: jax.Array
    skipped_updates: jax.Array  # non-finite gradients seen (update skipped)
    iteration: jax.Array
    total_iterations: jax.Array


@struct.dataclass
class Curriculum:
    """What the trainer changes between iterations without recompiling (jit data).

    start_probs: (L,) probabilities of the rollouts' start frames over the padded reference.
    replay_threshold_m: () the demonstration-replay threshold.
    learning_rate_scale: () multiplies the learning-rate schedule (lower for a warm start and
      while polishing).
    """

    start_probs: jax.Array
    replay_threshold_m: jax.Array
    learning_rate_scale: jax.Array


def make_curriculum(
    config: TrainConfig,
    length: int,
    bucket: int,
    trouble=None,
    replay_threshold_m: float | None = None,
    warm: bool = False,
    polishing: bool = False,
) -> Curriculum:
    """The curriculum for a clip of `length` frames padded to `bucket`, from the trouble of the
    last evaluation (None: plain RSI); `warm`: the run started from a trained policy;
    `polishing`: the run has met its target and polishes."""
    share = config.focus_share if config.start_sampling == "adaptive" else 0.0
    probs = start_probabilities(length, bucket, config.horizon, trouble, focus_share=share)
    threshold = config.env.replay_threshold_m if replay_threshold_m is None else replay_threshold_m
    scale = config.warm_start_learning_rate_scale if warm else 1.0
    if polishing:
        scale *= config.polish_learning_rate_scale
    return Curriculum(
        start_probs=jnp.asarray(probs, jnp.float32),
        replay_threshold_m=jnp.float32(threshold),
        learning_rate_scale=jnp.float32(scale),
    )


@struct.dataclass
class IterationMetrics:
    loss: jax.Array
    pose_error_m: jax.Array
    replay_rate: jax.Array
    nonfinite_rate: jax.Array
    grad_norm: jax.Array
    update_skipped: jax.Array


@dataclasses.dataclass
class CompiledFunctions:
    """The jitted functions of one (TrainConfig, character) pair, shared by every clip."""

    env: MimicEnv
    init: Callable  # key -> TrainState
    train_step: Callable  # (TrainState, RefArrays, Curriculum) -> (TrainState, IterationMetrics)
    # the same over K clips at once: every argument and result stacked on a leading axis
    # (`diffmimic.multiclip`); compiled on first use, once per K
    train_step_batch: Callable
    eval_rollout: Callable  # (params, normaliser, RefArrays) -> (StepMetrics, valid), from frame 0
    # (params, normaliser, RefArrays, start EnvState, steps) -> (final EnvState, (qpos, body pos,
    # body rot, StepMetrics) per step): the one rollout, behind eval_rollout, the library and compose
    rollout: Callable
    trace_counts: dict
    prepare: Callable  # RefArrays -> RefArrays with the per-frame physics and features (`MimicEnv.prepare`)
    perturb: Callable  # (physics, key, scale, push) -> physics (`MimicEnv.perturb`)

    def prepared(self, ref: RefArrays) -> RefArrays:
        """`ref` prepared once (a clip's arrays as every compiled function takes them). The
        compiled functions prepare an unprepared `ref` themselves, per call; preparing it once
        per clip keeps that off every iteration and gives a clip the same arrays alone and in a
        K-slot batch."""
        return ref if ref.physics is not None else self.prepare(ref)


def _optimizer(config: TrainConfig) -> optax.GradientTransformation:
    """Clipping and Adam's scaling; the (negative) learning rate is applied in `train_step`, from
    the iteration and the total as data, so runs of any length share one compiled step."""
    return optax.chain(optax.clip_by_global_norm(config.grad_clip_norm), optax.scale_by_adam())


def _learning_rate(config: TrainConfig, iteration, total):
    """Linear decay from learning_rate to learning_rate * final_learning_rate_fraction."""
    progress = jnp.clip(iteration / jnp.maximum(total, 1), 0.0, 1.0)
    return config.learning_rate * (1.0 - progress * (1.0 - config.final_learning_rate_fraction))


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


def _where_tree(flag, new, old):
    return jax.tree.map(lambda a, b: jnp.where(flag, a, b), new, old)


def _perturbation_draw(config: TrainConfig, key):
    """One training rollout's perturbation: (perturbed start 0/1, pushed, the control step of
    the push, two keys (start, push)), by `EnvConfig.train_perturbed_share` and `train_push_share`."""
    k_start, k_push, k_step, k_noise = jax.random.split(key, 4)
    perturbed = jax.random.bernoulli(k_start, config.env.train_perturbed_share).astype(jnp.float32)
    pushed = jax.random.bernoulli(k_push, config.env.train_push_share)
    step = jax.random.randint(k_step, (), 0, config.horizon)
    return perturbed, pushed, step, jax.random.split(k_noise, 2)


def simulated_character_config(
    config: TrainConfig, character_config: CharacterConfig = CharacterConfig()
) -> CharacterConfig:
    """The character `config` simulates from `character_config`: the config's body
    (`diffmimic.physics.body_config`), the backend's tuning (`diffmimic.physics.backend_config`)
    and the config's timestep applied. Idempotent, so a library row can store it and a policy
    loaded from it simulates the same body."""
    body = body_config(config.env.body, dataclasses.replace(character_config, timestep_s=config.env.timestep_s))
    return backend_config(config.env.backend, body)


def simulated_character(config: TrainConfig, character_config: CharacterConfig = CharacterConfig()) -> Character:
    """The `Character` of `simulated_character_config` (retarget references with it: a body with
    joint ranges gets its hinge angles clamped into them)."""
    return make_character(config=simulated_character_config(config, character_config))


def compiled_functions(config: TrainConfig, character_config: CharacterConfig = CharacterConfig()) -> CompiledFunctions:
    """The environment and the jitted init/train/eval functions for `config`, built once per
    `compile_key(config)` and simulated character (`simulated_character_config`) in a process."""
    return _compiled_functions(compile_key(config), simulated_character_config(config, character_config))


def env_split(config: TrainConfig):
    """How the train step splits its environments over JAX CPU devices (`env_sharding`), or None:
    one device, a GPU, or a backend that must stay on one device (`CPU_SPLIT_BACKENDS`)."""
    if config.env.backend not in CPU_SPLIT_BACKENDS:
        return None
    return env_sharding(config.num_envs)


@functools.lru_cache(maxsize=8)
def _compiled_functions(config: TrainConfig, character_config: CharacterConfig) -> CompiledFunctions:
    character = make_character(config=character_config)
    env = MimicEnv(character, config.env)
    policy_init, policy_apply = make_policy_network(env.observation_size, env.action_size, config.hidden)
    optimizer = _optimizer(config)
    traces = {"train_step": 0, "train_step_batch": 0, "eval_rollout": 0, "rollout": 0}
    sharding = env_split(config)

    def init(key, total_iterations):
        key, init_key = jax.random.split(key)
        params = policy_init(init_key)
        return TrainState(
            params=params,
            ema_params=params,
            opt_state=optimizer.init(params),
            normaliser=init_normaliser(env.observation_size),
            key=key,
            skipped_updates=jnp.zeros((), jnp.int32),
            iteration=jnp.zeros((), jnp.int32),
            total_iterations=jnp.asarray(total_iterations, jnp.int32),
        )

    def rollout_loss(params, normaliser, ref: RefArrays, curriculum: Curriculum, keys):
        ref = env.prepare(ref)  # once per iteration, not per control step
        starts = jax.vmap(lambda k: env.reset(ref, k, config.horizon, start_probs=curriculum.start_probs))(keys)
        perturbing = config.env.train_perturbed_share > 0 or config.env.train_push_share > 0
        if perturbing:  # robust training: some rollouts start off the reference, some are pushed
            perturbed, pushed, push_step, perturb_keys = jax.vmap(
                lambda k: _perturbation_draw(config, jax.random.fold_in(k, 1))
            )(keys)
            starts = starts.replace(physics=jax.vmap(env.perturb)(starts.physics, perturb_keys[:, 0], perturbed))
        if sharding is not None:  # each CPU device simulates its share of the environments
            starts = jax.lax.with_sharding_constraint(starts, sharding)

        def control(states, i):
            if perturbing:
                push = (pushed & (push_step == i)).astype(jnp.float32)
                kicked = jax.vmap(env.perturb)(states.physics, perturb_keys[:, 1], jnp.zeros_like(push), push)
                states = states.replace(physics=jax.vmap(_where_tree)(push > 0, kicked, states.physics))
            obs = jax.vmap(env.observe, in_axes=(0, None))(states, ref)
            actions = jax.vmap(policy_apply, in_axes=(None, None, 0))(params, normaliser, obs)
            next_states, metrics = jax.vmap(
                lambda st, a: env.step(st, a, ref, replay_threshold_m=curriculum.replay_threshold_m)
            )(states, actions)
            if config.truncation_length:
                cut = (i + 1) % config.truncation_length == 0
                next_states = jax.tree.map(lambda a: jnp.where(cut, jax.lax.stop_gradient(a), a), next_states)
            valid = states.t < ref.length - 1  # a step past the clip's end is padding
            return next_states, (metrics, obs, valid)

        _, (metrics, obs, valid) = jax.lax.scan(jax.checkpoint(control), starts, jnp.arange(config.horizon))
        weight = valid.astype(jnp.float32)
        count = jnp.maximum(weight.sum(), 1.0)
        loss = jnp.sum(metrics.loss * weight) / count
        return loss, (metrics, obs, weight, count)

    def train_step(state: TrainState, ref: RefArrays, curriculum: Curriculum):
        traces["train_step"] += 1  # runs at trace time only: counts compilations
        return step(state, ref, curriculum)

    def step(state: TrainState, ref: RefArrays, curriculum: Curriculum):
        key, *env_keys = jax.random.split(state.key, config.num_envs + 1)
        (loss, (metrics, obs, weight, count)), grads = jax.value_and_grad(rollout_loss, has_aux=True)(
            state.params, state.normaliser, ref, curriculum, jnp.stack(env_keys)
        )
        grad_norm = optax.global_norm(grads)
        finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm)
        grads = jax.tree.map(lambda g: jnp.where(finite, g, 0.0), grads)
        updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
        rate = _learning_rate(config, state.iteration, state.total_iterations) * curriculum.learning_rate_scale
        params = optax.apply_updates(state.params, jax.tree.map(lambda u: -rate * u, updates))
        normaliser = running_statistics.update(
            state.normaliser, obs.reshape(-1, obs.shape[-1]), weights=weight.reshape(-1)
        )
        decay = config.ema_decay
        ema = jax.tree.map(lambda e, p: decay * e + (1.0 - decay) * p, state.ema_params, params)
        new_state = TrainState(
            params=_where_tree(finite, params, state.params),
            ema_params=_where_tree(finite, ema, state.ema_params),
            opt_state=_where_tree(finite, opt_state, state.opt_state),
            normaliser=_where_tree(finite, normaliser, state.normaliser),
            key=key,
            skipped_updates=state.skipped_updates + (~finite).astype(jnp.int32),
            iteration=state.iteration + 1,
            total_iterations=state.total_iterations,
        )
        mean = lambda x: jnp.sum(x.astype(jnp.float32) * weight) / count
        return new_state, IterationMetrics(
            loss=loss,
            pose_error_m=mean(metrics.pose_error_m),
            replay_rate=mean(metrics.replayed),
            nonfinite_rate=mean(metrics.nonfinite),
            grad_norm=grad_norm,
            update_skipped=~finite,
        )

    def train_step_batch(states: TrainState, refs: RefArrays, curricula: Curriculum):
        traces["train_step_batch"] += 1
        return jax.vmap(step)(states, refs, curricula)

    def rollout(params, normaliser, ref: RefArrays, start: EnvState, steps):
        """The deterministic policy (no replay) for `steps` control steps from `start`; the scan
        spans the whole bucket and holds the state after `steps`, so the step count is data."""
        ref = env.prepare(ref)

        def control(state, i):
            action = policy_apply(params, normaliser, env.observe(state, ref))
            next_state, metrics = env.step(state, action, ref, replay=False, measure=True)
            next_state = _where_tree(i < steps, next_state, state)
            x = next_state.physics.x
            return next_state, (next_state.physics.q, x.pos, x.rot, metrics)

        return jax.lax.scan(control, start, jnp.arange(ref.bucket - 1))

    def eval_rollout(params, normaliser, ref: RefArrays):
        traces["eval_rollout"] += 1
        ref = env.prepare(ref)
        start = env.reset(ref, jax.random.PRNGKey(0), frame=0)
        _, (_, _, _, metrics) = rollout(params, normaliser, ref, start, ref.length - 1)
        return metrics, jnp.arange(ref.bucket - 1) < ref.length - 1

    def counted_rollout(*args):
        traces["rollout"] += 1
        return rollout(*args)

    # With the environments split over CPU devices, every function keeps its arrays replicated on
    # them (`jit_over`), so the train step's state comes back as it went in: no second compile.
    on = functools.partial(jit_over, sharding=sharding)
    return CompiledFunctions(
        env=env,
        init=on(init),
        train_step=on(train_step),
        train_step_batch=on(train_step_batch),
        eval_rollout=on(eval_rollout),
        rollout=on(counted_rollout),
        trace_counts=traces,
        prepare=on(env.prepare),
        perturb=on(env.perturb),
    )


@dataclasses.dataclass
class TrainResult:
    params: object
    normaliser: object
    metrics: EvalMetrics  # of the best parameters
    initial_metrics: EvalMetrics  # of the untrained policy
    history: list[dict]
    samples: int
    train_s: float
    compile_s: float
    iterations: int
    skipped_updates: int

    def summary(self, config: TrainConfig) -> dict:
        return {
            "pose_error_m": self.metrics.pose_error_m,
            "initial_pose_error_m": self.initial_metrics.pose_error_m,
            "global_error_m": self.metrics.global_error_m,
            "fell": self.metrics.fell,
            "pose_absurdity_m": self.metrics.absurdity,
            "samples": self.samples,
            "train_s": round(self.train_s, 2),
            "compile_s": round(self.compile_s, 2),
            "iterations": self.iterations,
            "skipped_updates": self.skipped_updates,
            "backend": config.env.backend,
        }


@dataclasses.dataclass
class TrainSnapshot:
    """A run of `train` in progress (`on_checkpoint`), enough to `resume` it: the training state
    (its `iteration` is the last finished one), the best policy so far and the records."""

    state: TrainState
    best_params: object
    best_normaliser: object
    best_metrics: EvalMetrics
    initial_metrics: EvalMetrics
    history: list[dict]
    train_s: float
    last_metrics: EvalMetrics | None = None  # the latest evaluation (the start distribution's source)


def _format_eta(seconds: float) -> str:
    seconds = int(max(seconds, 0))
    return f"{seconds // 3600:d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def evaluate_policy(functions: CompiledFunctions, params, normaliser, ref: RefArrays) -> EvalMetrics:
    metrics, valid = functions.eval_rollout(params, normaliser, functions.prepared(ref))
    return summarize_rollout(metrics, valid)


def train(
    reference: Reference,
    config: TrainConfig = TrainConfig(),
    progress: Callable[[str], None] | None = print,
    on_evaluation: Callable[[dict], None] | None = None,
    stop_at_pose_error_m: float | None = None,
    checkpoint_every: int = 0,
    on_checkpoint: Callable[["TrainSnapshot"], None] | None = None,
    resume: "TrainSnapshot | None" = None,
    init_policy: tuple | None = None,
    replay_threshold_m: float | None = None,
    character_config: CharacterConfig = CharacterConfig(),
) -> TrainResult:
    """Trains a DiffMimic policy to reproduce `reference`.

    Every `config.eval_every` iterations (`polish_eval_cadence` while polishing) the policy is
    evaluated as convergence is judged: one rollout over the whole clip from frame 0 without
    replay. That evaluation picks the best parameters (no fall first, then the latest fall, then
    the lowest pose error), stops early, and (``start_sampling="adaptive"``) redraws where the
    training rollouts start.

    Args:
      stop_at_pose_error_m: stop early once an evaluation has this pose error or less without
        falling (the factory's convergence target), after polishing (`config.polish_iterations`);
        None trains all `config.iterations`.
      checkpoint_every, on_checkpoint: every `checkpoint_every` iterations (0: never), hand
        `on_checkpoint` a `TrainSnapshot` from which `resume` continues the same run (same
        config and reference) as if it had not stopped.
      resume: a snapshot of an interrupted run of this config and reference.
      init_policy: (params, normaliser) to start from (a warm start: an earlier attempt's or a
        similar clip's policy of the same network shape) instead of a fresh initialisation; the
        optimiser state starts afresh and the learning rate is scaled by
        `config.warm_start_learning_rate_scale`.
      replay_threshold_m: the demonstration-replay threshold (data: no recompile); None: the
        config's.
      character_config: the body to simulate (the backend's tuning and the config's timestep are
        applied to it: `simulated_character_config`).

    Returns the best parameters by evaluation, with their metrics, the untrained (or warm-start)
    policy's metrics, and the history of evaluations (one dict per evaluation).

    `diffmimic.multiclip.train_many` runs the same per-clip logic (`ClipRun`) for K clips in
    one compiled step.
    """
    functions = compiled_functions(config, character_config)
    run = ClipRun(
        functions,
        reference,
        config,
        progress=progress,
        on_evaluation=on_evaluation,
        stop_at_pose_error_m=stop_at_pose_error_m,
        checkpoint_every=checkpoint_every,
        on_checkpoint=on_checkpoint,
        resume=resume,
        init_policy=init_policy,
        replay_threshold_m=replay_threshold_m,
    )
    compile_start = time.perf_counter()
    if progress:
        progress(f"compiling the train step for length bucket {run.bucket} (first time minutes on a CPU, then cached)")
    initial = run.evaluate(run.state.params, run.state.normaliser)
    warm_state, warm_metrics = functions.train_step(run.state, run.ref, run.curriculum_after(initial))
    jax.block_until_ready(warm_metrics)  # compiles (or hits the cache); not counted as training
    del warm_state
    run.begin(initial, compile_s=time.perf_counter() - compile_start)
    while not run.done:
        start = time.perf_counter()
        state, metrics = functions.train_step(run.state, run.ref, run.curriculum)
        jax.block_until_ready(metrics)
        run.state = state
        if run.stepped(metrics, time.perf_counter() - start):
            run.evaluated(*run.evaluations())
        run.after_iteration()
    return run.result()


class ClipRun:
    """One clip's training run between compiled steps: its reference, training state (`state`,
    which the driver replaces after each step), curriculum, evaluations, best parameters,
    polishing and early stop, checkpoints and result.

    A driver (`train` for one clip, `diffmimic.multiclip.train_many` for K in one compiled step)
    calls `evaluate` on the initial parameters, `begin`, then per iteration runs the step on
    (`state`, `ref`, `curriculum`), sets `state`, calls `stepped` and, when it returns True,
    `evaluated(*evaluations())`, then `after_iteration`, until `done`; `result` is the outcome.
    Arguments are `train`'s.
    """

    def __init__(
        self,
        functions: CompiledFunctions,
        reference: Reference,
        config: TrainConfig,
        *,
        progress=None,
        on_evaluation=None,
        stop_at_pose_error_m=None,
        checkpoint_every=0,
        on_checkpoint=None,
        resume=None,
        init_policy=None,
        replay_threshold_m=None,
    ):
        if abs(reference.fps - config.env.control_hz) > 1e-6:
            raise ValueError(
                f"reference {reference.source} is at {reference.fps} fps; the control rate is "
                f"{config.env.control_hz} Hz: retarget it at fps={config.env.control_hz}"
            )
        self.functions, self.reference, self.config = functions, reference, config
        self.progress, self.on_evaluation = progress, on_evaluation
        self.stop_at_pose_error_m = stop_at_pose_error_m
        self.checkpoint_every, self.on_checkpoint = checkpoint_every, on_checkpoint
        self.resume, self.warm = resume, init_policy is not None
        self.replay_threshold_m = replay_threshold_m
        self.bucket = length_bucket(reference.num_frames)
        self.ref = functions.prepared(ref_arrays(reference, self.bucket))
        state = functions.init(jax.random.PRNGKey(config.seed), config.iterations)
        if init_policy is not None:
            params, normaliser = init_policy
            _check_same_shapes(state.params, params, "init_policy params")
            params = _match_types(state.params, params)
            state = state.replace(
                params=params,
                ema_params=params,
                normaliser=_match_types(state.normaliser, normaliser),
                opt_state=_optimizer(config).init(params),
            )
        self.state = state
        self.stopped = False
        # The first evaluation that met the target; polishing runs from there.
        self.converged_at: int | None = None

    def evaluate(self, params, normaliser) -> EvalMetrics:
        return evaluate_policy(self.functions, params, normaliser, self.ref)

    def curriculum_after(self, evaluation: EvalMetrics | None) -> Curriculum:
        config, trouble = self.config, None
        if evaluation is not None and config.start_sampling == "adaptive":
            fall_frame = (
                None if evaluation.fell_at_s is None else int(round(evaluation.fell_at_s * config.env.control_hz))
            )
            trouble = trouble_from_evaluation(
                evaluation.per_frame_global_error_m, fall_frame, self.reference.num_frames
            )
        return make_curriculum(
            config,
            self.reference.num_frames,
            self.bucket,
            trouble,
            self.replay_threshold_m,
            warm=self.warm,
            polishing=self.converged_at is not None,
        )

    def begin(self, initial: EvalMetrics, compile_s: float = 0.0) -> None:
        """Starts the run from the initial parameters' evaluation (a resumed run from its snapshot)."""
        resume, config = self.resume, self.config
        self.compile_s = compile_s
        self.initial = initial
        self.best = (initial, self.state.params, self.state.normaliser)
        self.history: list[dict] = []
        self.train_s = 0.0
        self.iteration = self.first = 0
        latest = initial
        if resume is not None:
            self.state, self.initial, self.history, self.train_s = (
                _match_types(self.state, resume.state),
                resume.initial_metrics,
                list(resume.history),
                resume.train_s,
            )
            self.best = (resume.best_metrics, resume.best_params, resume.best_normaliser)
            latest = resume.last_metrics or resume.best_metrics
            self.iteration = self.first = int(self.state.iteration)
        self.last_evaluation = self.initial
        self.last_check: int | None = None  # the iteration of the last robustness check
        # A resumed run finds where it first met the target in its history.
        self.converged_at = None
        if self.stop_at_pose_error_m is not None:
            self.converged_at = next(
                (
                    r["iteration"]
                    for r in self.history
                    if not r["fell"] and r["pose_error_m"] <= self.stop_at_pose_error_m
                ),
                None,
            )
        self.curriculum = self.curriculum_after(latest)
        self.samples_per_iteration = config.num_envs * config.horizon

    @property
    def done(self) -> bool:
        return self.stopped or self.iteration >= self.config.iterations

    def stepped(self, metrics: IterationMetrics, seconds: float) -> bool:
        """Counts the step the driver just ran (its `metrics`, `seconds` of training); True when
        an evaluation is due."""
        self.iteration += 1
        self.metrics = metrics
        self.train_s += seconds
        return evaluation_due(self.config, self.iteration, self.converged_at, self.reference.num_frames)

    def evaluations(self) -> tuple[EvalMetrics, EvalMetrics | None]:
        """The full-clip evaluations of the current parameters and of their average (None
        without one)."""
        current = self.evaluate(self.state.params, self.state.normaliser)
        average = self.evaluate(self.state.ema_params, self.state.normaliser) if self.config.ema_decay > 0 else None
        return current, average

    def evaluated(self, evaluation: EvalMetrics, ema_evaluation: EvalMetrics | None = None) -> None:
        """Takes the evaluations of the current parameters and of their average: keeps the better,
        redraws the curriculum, records, tracks the best and decides the early stop."""
        config, state, metrics, iteration = self.config, self.state, self.metrics, self.iteration
        eval_params, averaged = state.params, False
        if ema_evaluation is not None and ema_evaluation.rank() < evaluation.rank():
            evaluation, eval_params, averaged = ema_evaluation, state.ema_params, True
        if self.robustness_due(evaluation):
            evaluation = self.with_robustness(evaluation, eval_params, state.normaliser)
        self.last_evaluation = evaluation
        if (
            self.stop_at_pose_error_m is not None
            and self.converged_at is None
            and meets(evaluation, self.stop_at_pose_error_m)
        ):
            self.converged_at = iteration
        self.curriculum = self.curriculum_after(evaluation)
        record = {
            "iteration": iteration,
            "loss": float(metrics.loss),
            "train_pose_error_m": float(metrics.pose_error_m),
            "replay_rate": float(metrics.replay_rate),
            "nonfinite_rate": float(metrics.nonfinite_rate),
            "grad_norm": float(metrics.grad_norm),
            "skipped_updates": int(state.skipped_updates),
            "samples": iteration * self.samples_per_iteration,
            "train_s": round(self.train_s, 3),
            **evaluation.to_dict(),
        }
        record["averaged_params"] = averaged
        record["polishing"] = self.converged_at is not None
        record["learning_rate_scale"] = round(float(self.curriculum.learning_rate_scale), 6)
        record["start_frame_mean"] = round(
            float(np.dot(np.arange(self.bucket), np.asarray(self.curriculum.start_probs))), 2
        )
        self.history.append(record)
        if self.on_evaluation:
            self.on_evaluation(record)
        if self.selection_key(evaluation) < self.selection_key(self.best[0]):
            self.best = (evaluation, eval_params, state.normaliser)
        if self.progress:
            trained_s = self.train_s - (self.resume.train_s if self.resume else 0.0)
            rate = (iteration - self.first) * self.samples_per_iteration / max(trained_s, 1e-9)
            eta = (config.iterations - iteration) * self.samples_per_iteration / rate
            fall = "no fall" if not evaluation.fell else f"fell at {evaluation.fell_at_s:.2f} s"
            self.progress(
                f"iter {iteration:5d}/{config.iterations}  loss {record['loss']:.4f}  "
                f"pose_error {evaluation.pose_error_m:.3f} m ({fall})  replay {record['replay_rate']:.2f}  "
                f"{rate:,.0f} samples/s  ETA {_format_eta(eta)}"
            )
        if polish_done(config, self.converged_at, iteration, self.best[0]):
            self.stopped = True

    def selection_key(self, evaluation: EvalMetrics) -> tuple:
        return selection_key(evaluation, self.stop_at_pose_error_m, self.config.robust_rollouts)

    def robustness_due(self, evaluation: EvalMetrics) -> bool:
        """Whether `evaluation` (meeting the target) gets the perturbed-rollout check: not when
        a robust kept policy already tracks better, and at most every `robust_check_every`
        iterations."""
        config, target, best = self.config, self.stop_at_pose_error_m, self.best[0]
        if config.robust_rollouts == 0 or target is None or not meets(evaluation, target) or evaluation.robustness:
            return False
        if (
            meets(best, target)
            and robust(best, config.robust_rollouts)
            and evaluation.pose_error_m >= best.pose_error_m
        ):
            return False
        return self.last_check is None or self.iteration - self.last_check >= config.robust_check_every

    def with_robustness(self, evaluation: EvalMetrics, params, normaliser) -> EvalMetrics:
        """`evaluation` with its policy's perturbed-rollout check (`diffmimic.robustness`)."""
        from diffmimic.robustness import check_robustness

        self.last_check = self.iteration
        result = check_robustness(
            self.functions,
            params,
            normaliser,
            self.ref,
            self.config.robust_rollouts,
            self.config.robust_min_survival,
            seed=self.config.seed,
            control_hz=self.config.env.control_hz,
        )
        if self.progress:
            self.progress(
                f"iter {self.iteration:5d}  robustness: {result.survived}/{result.rollouts} perturbed "
                f"rollouts without a fall"
            )
        return dataclasses.replace(evaluation, robustness=result.to_dict())

    def checkpoint_due(self) -> bool:
        """Whether `after_iteration` hands out a snapshot now (never after the last iteration)."""
        return (
            not self.stopped
            and bool(self.on_checkpoint)
            and self.checkpoint_every > 0
            and self.iteration % self.checkpoint_every == 0
            and self.iteration < self.config.iterations
        )

    def after_iteration(self) -> None:
        """Hands `on_checkpoint` a snapshot when one is due."""
        if self.checkpoint_due():
            self.on_checkpoint(
                TrainSnapshot(
                    state=self.state,
                    best_params=self.best[1],
                    best_normaliser=self.best[2],
                    best_metrics=self.best[0],
                    initial_metrics=self.initial,
                    history=list(self.history),
                    train_s=self.train_s,
                    last_metrics=self.last_evaluation,
                )
            )

    def result(self) -> TrainResult:
        best_metrics, params, normaliser = self.best
        target = self.stop_at_pose_error_m
        if (
            self.config.robust_rollouts
            and target is not None
            and meets(best_metrics, target)
            and not best_metrics.robustness
        ):  # never checked (the check was not yet due): check now
            best_metrics = self.with_robustness(best_metrics, params, normaliser)
            self.best = (best_metrics, params, normaliser)
        return TrainResult(
            params=params,
            normaliser=normaliser,
            metrics=best_metrics,
            initial_metrics=self.initial,
            history=self.history,
            samples=self.iteration * self.samples_per_iteration,
            train_s=self.train_s,
            compile_s=self.compile_s,
            iterations=self.iteration,
            skipped_updates=int(self.state.skipped_updates),
        )


def evaluation_due(config: TrainConfig, iteration: int, converged_at: int | None, frames: int = 0) -> bool:
    """Whether the full-clip evaluation runs after `iteration`: every `config.eval_every`
    iterations until the run first met its target (`converged_at`; None: not yet), then while
    polishing every `polish_eval_cadence(config, frames)`, and after the last iteration."""
    every = config.eval_every if converged_at is None else polish_eval_cadence(config, frames)
    return iteration % every == 0 or iteration == config.iterations


def polish_eval_cadence(config: TrainConfig, frames: int) -> int:
    """Iterations between evaluations while polishing a clip of `frames` frames:
    `config.polish_eval_every` (0: `eval_every`), and at least as many as it takes the training
    steps to simulate the control steps of an evaluation (the current and the averaged
    parameters, each over the whole clip). Clips up to ~24 s on the `cpu` preset (16 x 90 steps
    per iteration) are evaluated every iteration; longer ones less often, so evaluating never
    simulates more control steps than training does (and its steps are forward only)."""
    every = config.polish_eval_every or config.eval_every
    evaluation_steps = (2 if config.ema_decay > 0 else 1) * max(frames - 1, 0)
    return max(every, -(-evaluation_steps // (config.num_envs * config.horizon)))


def polish_done(config: TrainConfig, converged_at: int | None, iteration: int, best: EvalMetrics) -> bool:
    """Whether a run with a convergence target stops after the evaluation at `iteration`: it met
    the target first at `converged_at` (None: not yet), and since then either the best evaluation
    reached `config.polish_pose_error_m` or `config.polish_iterations` have passed."""
    if converged_at is None:
        return False
    return (
        meets(best, config.polish_pose_error_m) and robust(best, config.robust_rollouts)
    ) or iteration >= converged_at + config.polish_iterations


def _match_types(template, values):
    """`values` (e.g. numpy arrays read back from a checkpoint or sent by Ray) as JAX arrays with
    the template's dtypes and weak types, so the jitted step sees the same signature and does
    not retrace."""

    def match(t, v):
        t = jnp.asarray(t)
        v = jnp.asarray(v, dtype=t.dtype)
        return jnp.asarray(v.item()) if t.weak_type and v.ndim == 0 else v

    return jax.tree.map(match, template, values)


def _check_same_shapes(expected, given, what: str) -> None:
    shapes = lambda tree: jax.tree.map(lambda a: tuple(jnp.shape(a)), tree)
    if jax.tree.structure(expected) != jax.tree.structure(given) or shapes(expected) != shapes(given):
        raise ValueError(f"{what}: the network's shapes differ from this config's (hidden sizes or character changed)")


def write_outputs(out_dir: str | os.PathLike, result: TrainResult, config: TrainConfig, reference: Reference) -> Path:
    """Writes DIR/: Orbax checkpoint, config.json, metrics.jsonl, result.json, reference.npz."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    atomic.write_json(out / "config.json", config.to_dict())
    atomic.write_text(out / "metrics.jsonl", "".join(json.dumps(record) + "\n" for record in result.history))
    reference.save(out / "reference.npz")
    save_policy(
        out,
        result.params,
        result.normaliser,
        {
            "observation_size": compiled_functions(config).env.observation_size,
            "action_size": compiled_functions(config).env.action_size,
            "hidden": list(config.hidden),
        },
    )
    summary = {**result.summary(config), "source": reference.source}
    atomic.write_json(out / "result.json", summary)
    return out


def enable_compilation_cache(directory: str | None = None) -> str:
    """Turns on JAX's persistent compilation cache (default ~/.cache/diffmimic/jax) unless one
    is already configured."""
    if directory is None and jax.config.jax_compilation_cache_dir:
        return jax.config.jax_compilation_cache_dir
    directory = directory or os.environ.get("DIFFMIMIC_JAX_CACHE", str(Path.home() / ".cache" / "diffmimic" / "jax"))
    jax.config.update("jax_compilation_cache_dir", directory)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    return directory


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m diffmimic.train", description="Train a DiffMimic policy for one clip."
    )
    parser.add_argument("clip", help="a mocap file (AMASS .npz, AIST++ .pkl, CMU .amc) or a converted REF.npz")
    parser.add_argument("--out", required=True, help="output directory")
    parser.add_argument("--preset", default="cpu", choices=sorted(PRESETS))
    parser.add_argument("--iterations", type=int)
    parser.add_argument("--backend", choices=("spring", "positional", "generalized", "mjx"))
    parser.add_argument(
        "--body",
        choices=("uniform", "human"),
        help="uniform: one density, free hinges, one torque limit; human: de Leva masses, "
        "joint ranges, human torque limits (README: Physics)",
    )
    parser.add_argument("--seed", type=int)
    parser.add_argument("--start-s", type=float, default=0.0)
    parser.add_argument("--duration-s", type=float)
    parser.add_argument("--skeleton", help="CMU .asf for an .amc (default: found beside it)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    use_cpu_cores()  # before JAX starts: one CPU device per usable core
    from diffmimic.mocap.motion import MocapError
    from diffmimic.mocap.retarget import load_reference

    overrides: dict = {}
    if args.iterations is not None:
        overrides["iterations"] = args.iterations
    if args.seed is not None:
        overrides["seed"] = args.seed
    env = {name: value for name, value in (("backend", args.backend), ("body", args.body)) if value}
    if args.backend:  # the preset's substeps, or more where the backend needs them (mjx: 1920 Hz)
        preset_env = make_config(args.preset).env
        env["substeps"] = max(preset_env.substeps, min_substeps(args.backend, preset_env.control_hz))
    if env:
        overrides["env"] = env
    config = make_config(args.preset, **overrides)
    enable_compilation_cache()
    try:
        reference = load_reference(
            args.clip,
            fps=config.env.control_hz,
            start_s=args.start_s,
            duration_s=args.duration_s,
            skeleton_path=args.skeleton,
            character=simulated_character(config),
        )
    except MocapError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    sharding = env_split(config)
    print(
        f"training {reference.source} ({reference.num_frames} frames, {reference.duration_s:.2f} s) "
        f"on {config.env.backend}, preset {args.preset}: {config.iterations} iterations x "
        f"{config.num_envs} envs x {config.horizon} steps"
        + (f", envs split over {sharding.mesh.size} CPU devices" if sharding else ""),
        flush=True,
    )
    result = train(reference, config, progress=lambda line: print(line, flush=True))
    out = write_outputs(args.out, result, config, reference)
    print(json.dumps({**result.summary(config), "out": str(out)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
