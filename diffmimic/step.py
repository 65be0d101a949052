"""The compiled functions of a training configuration: the train step (rollouts in `lax.scan`,
each control step under `jax.checkpoint`, backprop through the horizon, clipped Adam), its
K-clip batched form, the evaluation rollout and the rollout every replay uses, built once per
(`compile_key`, simulated character) and shared by every clip of a length bucket.

One jitted `train_step(state, ref, curriculum)` rolls `num_envs` environments for `horizon`
control steps. The reference is an argument padded to a length bucket; where rollouts start,
the replay threshold and the learning-rate scale (`Curriculum`) are arguments too.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Callable

import jax
import jax.numpy as jnp
import optax
from brax.training.acme import running_statistics
from flax import struct

from diffmimic.character.character import Character, make_character
from diffmimic.character.mjcf import CharacterConfig
from diffmimic.compile import env_sharding, jit_over
from diffmimic.config import TrainConfig, compile_key
from diffmimic.curriculum import start_probabilities
from diffmimic.env import EnvState, MimicEnv, RefArrays
from diffmimic.metrics import EvalMetrics, summarize_rollout
from diffmimic.physics import CPU_SPLIT_BACKENDS, backend_config, body_config
from diffmimic.policy import init_normaliser, make_policy_network


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


def optimizer(config: TrainConfig) -> optax.GradientTransformation:
    """Clipping and Adam's scaling; the (negative) learning rate is applied in `train_step`, from
    the iteration and the total as data, so runs of any length share one compiled step."""
    return optax.chain(optax.clip_by_global_norm(config.grad_clip_norm), optax.scale_by_adam())


def _learning_rate(config: TrainConfig, iteration, total):
    """Linear decay from learning_rate to learning_rate * final_learning_rate_fraction."""
    progress = jnp.clip(iteration / jnp.maximum(total, 1), 0.0, 1.0)
    return config.learning_rate * (1.0 - progress * (1.0 - config.final_learning_rate_fraction))


def _where_tree(flag, new, old):
    return jax.tree.map(lambda a, b: jnp.where(flag, a, b), new, old)


def _perturbation_draw(config: TrainConfig, key):
    """One training rollout's start perturbation: (noise scale 0/1, push 0/1, key), drawn with
    `EnvConfig.train_perturbed_share` and `train_push_share`."""
    k_start, k_push, k_noise = jax.random.split(key, 3)
    perturbed = jax.random.bernoulli(k_start, config.env.train_perturbed_share).astype(jnp.float32)
    pushed = jax.random.bernoulli(k_push, config.env.train_push_share).astype(jnp.float32)
    return perturbed, pushed, k_noise


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
    adam = optimizer(config)
    traces = {"train_step": 0, "train_step_batch": 0, "eval_rollout": 0, "rollout": 0}
    sharding = env_split(config)

    def init(key, total_iterations):
        key, init_key = jax.random.split(key)
        params = policy_init(init_key)
        return TrainState(
            params=params,
            ema_params=params,
            opt_state=adam.init(params),
            normaliser=init_normaliser(env.observation_size),
            key=key,
            skipped_updates=jnp.zeros((), jnp.int32),
            iteration=jnp.zeros((), jnp.int32),
            total_iterations=jnp.asarray(total_iterations, jnp.int32),
        )

    def rollout_loss(params, normaliser, ref: RefArrays, curriculum: Curriculum, keys):
        ref = env.prepare(ref)  # once per iteration, not per control step
        starts = jax.vmap(lambda k: env.reset(ref, k, config.horizon, start_probs=curriculum.start_probs))(keys)
        if config.env.train_perturbed_share > 0 or config.env.train_push_share > 0:
            # Robust training: some rollouts start off the reference, some are pushed as they
            # start. Starts are at random frames, so a push at the start is a push at a random
            # time of the clip; pushing inside the scan instead rebuilt every environment's state
            # at every control step (1.9x the iteration time, measured on B14).
            perturbed, pushed, perturb_keys = jax.vmap(lambda k: _perturbation_draw(config, jax.random.fold_in(k, 1)))(
                keys
            )
            starts = starts.replace(physics=jax.vmap(env.perturb)(starts.physics, perturb_keys, perturbed, pushed))
        if sharding is not None:  # each CPU device simulates its share of the environments
            starts = jax.lax.with_sharding_constraint(starts, sharding)

        def control(states, i):
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
        updates, opt_state = adam.update(grads, state.opt_state, state.params)
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
        spans the whole bucket and holds the state after `steps`, so the step count is data.
        Steps past `steps` are skipped (`lax.cond`: they simulate nothing and output the held
        state with zero metrics), so a rollout costs the steps it runs, not the bucket's: a 1 s
        hand-over window of a 10 s clip, or a clip just past a power of two."""
        ref = env.prepare(ref)

        def live(state):
            action = policy_apply(params, normaliser, env.observe(state, ref))
            next_state, metrics = env.step(state, action, ref, replay=False, measure=True)
            x = next_state.physics.x
            return next_state, (next_state.physics.q, x.pos, x.rot, metrics)

        shapes = jax.eval_shape(live, start)

        def idle(state):
            metrics = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes[1][3])
            x = state.physics.x
            return state, (state.physics.q, x.pos, x.rot, metrics)

        def control(state, i):
            return jax.lax.cond(i < steps, live, idle, state)

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


def evaluate_policy(functions: CompiledFunctions, params, normaliser, ref: RefArrays) -> EvalMetrics:
    metrics, valid = functions.eval_rollout(params, normaliser, functions.prepared(ref))
    return summarize_rollout(metrics, valid)
