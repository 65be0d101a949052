"""K clips in one compiled train step: continuous batching of per-clip DiffMimic runs.

    for task, result in train_many(tasks, config, slots=4):
        ...   # results in the order the clips finish

One clip's training state, reference and curriculum are a slot of arrays stacked on a leading
axis; `CompiledFunctions.train_step_batch` (the train step under `jax.vmap`, compiled once per
(config, length bucket, K)) advances every slot by one iteration. Everything else is each
clip's own, exactly as in `diffmimic.train.train` (the same `ClipRun`): PRNG keys, iteration
counter and learning-rate schedule, curriculum, full-clip evaluations, best parameters,
polishing and early stop, checkpoints, warm starts and resumes. A slot whose clip finished
(converged, or out of iterations) is refilled with the next task at once, without recompiling;
when no task is left it idles (its results are ignored) until every slot is done.

`SlotBatch` is the batch itself, fed clip by clip (the factory's worker adds clips as the
coordinator sends them); `train_many` feeds it from an iterable.

A clip trained in a slot gets the parameters and metrics it gets trained alone with the same
config and seed, to float tolerance (tests/diffmimic/test_multiclip.py).

`measure_slots` finds the K that fills a device: the throughput curve of the batched step
(`slot_throughput`) for K = 1, 2, 4, ... and the last K that still paid (`choose_slots`); the
factory's `--clips-per-worker auto` runs it on GPU workers.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Callable, Iterable, Iterator

import jax
import jax.numpy as jnp

from diffmimic.env import length_bucket, ref_arrays
from diffmimic.mocap.retarget import Reference
from diffmimic.train import (
    ClipRun,
    IterationMetrics,
    TrainConfig,
    TrainResult,
    compile_key,
    compiled_functions,
    make_curriculum,
)


@dataclasses.dataclass
class ClipTask:
    """One clip for `train_many`: its reference and `train`'s per-clip arguments.

    `config` (default: the batch's) may differ from the batch's only in what is data of the
    compiled step (`compile_key`: seed, iterations, evaluation cadence, start sampling,
    replay threshold, polishing). `tag` is the caller's, returned with the result.
    """

    reference: Reference
    config: TrainConfig | None = None
    tag: object = None
    stop_at_pose_error_m: float | None = None
    init_policy: tuple | None = None
    replay_threshold_m: float | None = None
    resume: object = None  # a TrainSnapshot
    on_evaluation: Callable[[dict], None] | None = None
    checkpoint_every: int = 0
    on_checkpoint: Callable | None = None


def _slot(tree, index: int):
    return jax.tree.map(lambda a: a[index], tree)


def _set_slot(tree, index: int, value):
    return jax.tree.map(lambda a, v: a.at[index].set(v), tree, value)


def stack_trees(trees):
    """Pytrees of one structure stacked leaf by leaf on a new leading (slot) axis: the batched
    step's argument layout."""
    return jax.tree.map(lambda *a: jnp.stack(a), *trees)


class SlotBatch:
    """K slots of one compiled step: `add` starts a clip in a free slot, `step` advances every
    busy slot by one iteration and returns the clips that finished (their slots are free
    again). All clips of a batch share a length bucket while any is running; an idle batch
    takes the next clip's bucket (one compile per bucket and K). Idle slots compute on a copy
    of another slot's arrays and their results are ignored.
    """

    def __init__(self, config: TrainConfig, slots: int, progress: Callable[[str], None] | None = None):
        if slots < 1:
            raise ValueError(f"slots must be >= 1, got {slots}")
        self.config, self.slots, self.progress = config, slots, progress
        self.functions = compiled_functions(config)
        self.key = compile_key(config)
        self.runs: list[tuple[ClipTask, ClipRun] | None] = [None] * slots
        self.bucket: int | None = None
        self.arrays = None  # (states, refs, curricula), stacked over the slots
        self.shown: list = [None] * slots  # the curriculum each slot's arrays hold
        self.compiled: set[int] = set()  # buckets whose step this batch has run

    @property
    def active(self) -> int:
        return sum(entry is not None for entry in self.runs)

    @property
    def free(self) -> int:
        return self.slots - self.active

    def accepts(self, reference: Reference) -> bool:
        """Whether a clip of this length can join now (its bucket, or the batch is idle)."""
        return self.free > 0 and (self.active == 0 or length_bucket(reference.num_frames) == self.bucket)

    def add(self, task: ClipTask) -> TrainResult | None:
        """Starts `task` in a free slot; returns its result at once when it has nothing to train
        (a run resumed at its last iteration), else None. Raises ValueError when it cannot join:
        no free slot, another length bucket while clips run, a config needing another compile."""
        task_config = task.config or self.config
        if compile_key(task_config) != self.key:
            raise ValueError(
                "the task's config differs from the batch's in more than run data "
                "(seed, iterations, cadence, sampling, replay threshold, polishing)"
            )
        if not self.accepts(task.reference):
            raise ValueError(
                f"{task.reference.source}: no free slot for length bucket "
                f"{length_bucket(task.reference.num_frames)} (batch: {self.bucket}, {self.free} free)"
            )
        name, progress = Path(task.reference.source).stem, self.progress
        run = ClipRun(
            self.functions,
            task.reference,
            task_config,
            progress=(lambda line: progress(f"{name}: {line}")) if progress else None,
            on_evaluation=task.on_evaluation,
            stop_at_pose_error_m=task.stop_at_pose_error_m,
            checkpoint_every=task.checkpoint_every,
            on_checkpoint=task.on_checkpoint,
            resume=task.resume,
            init_policy=task.init_policy,
            replay_threshold_m=task.replay_threshold_m,
        )
        run.begin(run.evaluate(run.state.params, run.state.normaliser))
        if run.done:
            return run.result()
        index = self.runs.index(None)
        if self.active == 0:  # an idle batch starts afresh: every slot holds this clip's arrays
            self.bucket = run.bucket
            self.arrays = tuple(
                stack_trees([getattr(run, name)] * self.slots) for name in ("state", "ref", "curriculum")
            )
            self.shown = [run.curriculum] * self.slots
        else:
            states, refs, curricula = self.arrays
            self.arrays = (
                _set_slot(states, index, run.state),
                _set_slot(refs, index, run.ref),
                _set_slot(curricula, index, run.curriculum),
            )
            self.shown[index] = run.curriculum
        run.compile_s = 0.0
        self.runs[index] = (task, run)
        return None

    def step(self) -> list[tuple[ClipTask, TrainResult]]:
        """One iteration of every busy slot (the first one of a bucket compiles, or loads the
        compiled step from the cache, beforehand); the clips that finished, with their results."""
        if self.active == 0:
            return []
        states, refs, curricula = self.arrays
        compile_s = 0.0
        if self.bucket not in self.compiled:
            if self.progress:
                self.progress(f"compiling the {self.slots}-clip train step for length bucket {self.bucket}")
            start = time.perf_counter()
            warm, warm_metrics = self.functions.train_step_batch(states, refs, curricula)
            jax.block_until_ready(warm_metrics)  # not counted as training
            del warm
            compile_s = time.perf_counter() - start
            self.compiled.add(self.bucket)
        start = time.perf_counter()
        states, metrics = self.functions.train_step_batch(states, refs, curricula)
        metrics = jax.device_get(metrics)
        seconds = time.perf_counter() - start
        finished = []
        for index, entry in enumerate(self.runs):
            if entry is None:
                continue
            task, run = entry
            run.compile_s += compile_s
            slot_metrics = IterationMetrics(
                *(getattr(metrics, f.name)[index] for f in dataclasses.fields(IterationMetrics))
            )
            if run.stepped(slot_metrics, seconds):
                run.state = _slot(states, index)
                run.evaluated(*run.evaluations())
            if run.checkpoint_due():
                run.state = _slot(states, index)
                run.after_iteration()
            if run.done:
                run.state = _slot(states, index)
                finished.append((task, run.result()))
                self.runs[index] = None
            elif run.curriculum is not self.shown[index]:
                curricula = _set_slot(curricula, index, run.curriculum)
                self.shown[index] = run.curriculum
        self.arrays = (states, refs, curricula)
        return finished


def train_many(
    tasks: Iterable[ClipTask], config: TrainConfig, slots: int, progress: Callable[[str], None] | None = None
) -> Iterator[tuple[ClipTask, TrainResult | Exception]]:
    """Trains the clips of `tasks` `slots` at a time in one compiled step (`SlotBatch`); yields
    (task, TrainResult) as each clip finishes, or (task, exception) for a task that cannot start
    (a reference at the wrong rate, a config that needs another compile). `tasks` is read
    lazily: a slot takes the next task when it frees up; a task of another length bucket waits
    until the running clips finish."""
    batch = SlotBatch(config, slots, progress)
    pending = iter(tasks)
    waiting: ClipTask | None = None
    while True:
        while batch.free:
            task = waiting or next(pending, None)
            if task is None:
                break
            if batch.active and not batch.accepts(task.reference):
                waiting = task  # another bucket: after the running clips
                break
            waiting = None
            try:
                result = batch.add(task)
            except (ValueError, OSError) as err:
                yield task, err
                continue
            if result is not None:
                yield task, result
        if not batch.active:
            return
        yield from batch.step()


# -- how many slots fill a device ------------------------------------------------------------
def _device_memory() -> tuple[int | None, int | None]:
    """(peak bytes in use so far, bytes the device can hold) of JAX's first device; None where
    the device does not say (a CPU)."""
    stats = jax.devices()[0].memory_stats() or {}
    return stats.get("peak_bytes_in_use"), stats.get("bytes_limit")


def slot_throughput(
    config: TrainConfig, references: Reference | list[Reference], slots: int, iterations: int = 2
) -> dict:
    """One point of the throughput curve: `train_step_batch` over `slots` slots (slot k trains
    `references[k % len(references)]`, one length bucket, with seed `config.seed + k`) compiled
    (or loaded from the cache), then `iterations` batched iterations timed. Returns slots,
    compile_s, iteration_s, samples_per_s (environment steps of all slots per second),
    nonfinite_rate, and peak_bytes and bytes_limit of the device (None on a CPU)."""
    references = [references] if isinstance(references, Reference) else list(references)
    functions = compiled_functions(config)
    prepared = [functions.prepared(ref_arrays(r)) for r in references]
    if len({p.bucket for p in prepared}) > 1:
        raise ValueError("slot_throughput: the references span several length buckets")
    refs = [prepared[k % len(prepared)] for k in range(slots)]
    frames = [references[k % len(references)].num_frames for k in range(slots)]
    states = stack_trees([functions.init(jax.random.PRNGKey(config.seed + k), config.iterations) for k in range(slots)])
    curricula = stack_trees([make_curriculum(config, n, ref.bucket) for n, ref in zip(frames, refs)])
    refs = stack_trees(refs)
    start = time.perf_counter()
    states, metrics = functions.train_step_batch(states, refs, curricula)
    jax.block_until_ready(metrics)
    compile_s = time.perf_counter() - start
    start = time.perf_counter()
    for _ in range(iterations):
        states, metrics = functions.train_step_batch(states, refs, curricula)
        jax.block_until_ready(metrics)
    iteration_s = (time.perf_counter() - start) / iterations
    peak, limit = _device_memory()
    return {
        "slots": slots,
        "compile_s": round(compile_s, 2),
        "iteration_s": round(iteration_s, 4),
        "samples_per_s": round(slots * config.num_envs * config.horizon / iteration_s, 1),
        "nonfinite_rate": float(jnp.mean(metrics.nonfinite_rate)),
        "peak_bytes": peak,
        "bytes_limit": limit,
    }


def choose_slots(curve: list[dict], min_gain: float = 1.1) -> int:
    """The K of a throughput curve (points in increasing K) past which more slots stop paying:
    the last point whose samples/s beat the previously chosen one's by `min_gain`."""
    if not curve:
        raise ValueError("choose_slots: empty curve")
    best = curve[0]
    for point in curve[1:]:
        if point["samples_per_s"] < best["samples_per_s"] * min_gain:
            break
        best = point
    return int(best["slots"])


def _out_of_memory(err: Exception) -> bool:
    text = f"{type(err).__name__}: {err}"
    return "RESOURCE_EXHAUSTED" in text or "Out of memory" in text or "out of memory" in text


def measure_slots(
    config: TrainConfig,
    reference: Reference,
    max_slots: int = 64,
    min_gain: float = 1.1,
    memory_fraction: float = 0.8,
    progress: Callable[[str], None] | None = None,
) -> tuple[int, list[dict]]:
    """How many clips one compiled step should train at once on this device: K = 1, 2, 4, ...
    (`slot_throughput` on `reference`) until samples/s grow by less than `min_gain`, twice the
    measured peak memory would pass `memory_fraction` of the device's, the device runs out of
    memory, or `max_slots`. Returns (`choose_slots` of the curve, the curve)."""
    curve: list[dict] = []
    slots = 1
    while slots <= max_slots:
        if progress:
            progress(f"measuring {slots} clip(s) per step: compiling and timing")
        try:
            point = slot_throughput(config, reference, slots)
        except Exception as err:  # noqa: BLE001 - out of device memory ends the curve, anything else is raised
            if not curve or not _out_of_memory(err):
                raise
            curve.append({"slots": slots, "error": "out of memory"})
            break
        curve.append(point)
        if progress:
            progress(
                f"{slots} clip(s) per step: {point['samples_per_s']:.0f} samples/s, "
                f"{point['iteration_s']:.3f} s per iteration"
            )
        paid = choose_slots(curve, min_gain) == slots
        full = bool(
            point["peak_bytes"]
            and point["bytes_limit"]
            and 2 * point["peak_bytes"] > memory_fraction * point["bytes_limit"]
        )
        if not paid or full:
            break
        slots *= 2
    return choose_slots([p for p in curve if "samples_per_s" in p], min_gain), curve
