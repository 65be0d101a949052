"""DiffMimic training of one clip: `train` and the `ClipRun` it drives between compiled steps
(evaluations, best parameters, polishing, robustness checks, early stop, checkpoints), and the
output directory it writes (`write_outputs`).

    python -m diffmimic.train CLIP_OR_REF --out DIR [--preset cpu|paper] [--iterations N]
        [--backend NAME] [--seed S] [--start-s S] [--duration-s D]

The pieces live beside it: the configuration in `diffmimic.config`, the compiled functions in
`diffmimic.step`, the CLI in `diffmimic.train_cli`. Their public names are re-exported here, so
`from diffmimic.train import make_config, compiled_functions, train` serves a script.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from pathlib import Path
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from diffmimic import atomic
from diffmimic.character.mjcf import CharacterConfig
from diffmimic.compile import enable_compilation_cache
from diffmimic.config import (
    CONFIG_SCHEMA,
    PRESETS,
    START_SAMPLING,
    TrainConfig,
    compile_key,
    make_config,
)
from diffmimic.curriculum import trouble_from_evaluation
from diffmimic.env import length_bucket, ref_arrays
from diffmimic.metrics import EvalMetrics, meets, robust, selection_key
from diffmimic.mocap.retarget import Reference
from diffmimic.policy import save_policy
from diffmimic.robustness import check_robustness
from diffmimic.step import (
    CompiledFunctions,
    Curriculum,
    IterationMetrics,
    TrainState,
    compiled_functions,
    env_split,
    evaluate_policy,
    make_curriculum,
    optimizer,
    simulated_character,
    simulated_character_config,
)

__all__ = [
    "CONFIG_SCHEMA",
    "PRESETS",
    "START_SAMPLING",
    "ClipRun",
    "CompiledFunctions",
    "Curriculum",
    "IterationMetrics",
    "TrainConfig",
    "TrainResult",
    "TrainSnapshot",
    "TrainState",
    "compile_key",
    "compiled_functions",
    "enable_compilation_cache",
    "env_split",
    "evaluate_policy",
    "evaluation_due",
    "make_config",
    "make_curriculum",
    "meets",
    "polish_done",
    "polish_eval_cadence",
    "simulated_character",
    "simulated_character_config",
    "train",
    "write_outputs",
]


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
                opt_state=optimizer(config).init(params),
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


if __name__ == "__main__":  # `python -m diffmimic.train`: the command lives in train_cli.py
    import sys

    from diffmimic.train_cli import main

    sys.exit(main())
