"""The coordinator: feeds catalogued clips to Ray workers and writes every result into the library.

The driver process keeps the source of truth (which clip is queued, running, on which attempt,
its best policy so far) and is the only writer of the library index. Its loop is `ray.wait` over
the in-flight `train_clip` calls, `tasks_per_worker` per actor (an actor runs them one after
another, so the next clip is already queued when one ends: no idle gap for a round trip).

Convergence and escalation (`escalate`): a clip is ``converged`` when its evaluation rollout
(the whole clip from frame 0, no replay) does not fall and its pose error is at most the target.
Otherwise it is trained again, up to `max_attempts` attempts in all:

==========  ==================================================================================
attempt 1   the base config, from the converged policy of the most similar clip (in the library
            from earlier runs, or converged earlier in this one; `diffmimic.warmstart`: pose and
            root-motion statistics, within `max_donor_distance_m`, root motion alike), else
            from a fresh initialisation
attempt 2+  a warm start from the clip's best policy so far (its evaluation is where the new
            attempt begins: the work of the last attempt is kept, not thrown away), another seed,
            a larger failure-directed share of the start frames (0.8: most rollouts start just
            before where the full clip still drifts or falls)
attempt 3+  also the demonstration-replay threshold halved (rollouts are reset to the reference
            sooner, so long stretches the policy cannot yet hold still train) and twice the
            iterations
==========  ==================================================================================

A policy that tracks the clip (no fall, pose error within the target) but fails the perturbed-
rollout check (`diffmimic.robustness`) is not retried unless `retry_fragile`: it is stored as
``best_effort`` with its reason ("fragile: ...") and joins the warm-start donors, as a converged
one does. On the dev set more attempts did not make such policies robust (docs/training.md).

Run length, seed, start sampling and the replay threshold are data of the compiled step, so every
attempt shares one compile. The best policy over the attempts (no fall first, then the latest
fall, then the lowest pose error) is stored as ``best_effort`` when none converges. A
`MocapError` (unreadable file, NaN poses, a one-frame clip) fails the clip at once, never retried.
A training exception counts as an attempt.

Faults: a call whose actor died (`RayActorError`: process killed, node lost, out of memory)
re-queues its clip at the front without counting an attempt, and Ray restarts the actor
(`max_restarts`); the restarted actor resumes the clip from its last scratch checkpoint. A clip
that has killed `max_lost` workers is failed. Results are written as they arrive (atomic puts), so
a killed driver loses only the clips in flight; run again, it skips every clip the library already
has (any status) unless `force`.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import math
import os
import resource
import statistics
import time
from pathlib import Path
from typing import Callable

import jax
import ray

from diffmimic import atomic
from diffmimic.env import length_bucket
from diffmimic.metrics import EvalMetrics, converged, meets, not_converged_reason, selection_key
from diffmimic.mocap.retarget import Reference
from diffmimic.train import TrainConfig, compile_key
from diffmimic.warmstart import MAX_DONOR_DISTANCE_M, prune_pool, reference_signature
from factory.distribution.catalog import Catalog, CatalogEntry
from factory.distribution.options import FactoryOptions  # its home; imported from here too
from factory.distribution.report import write_report
from factory.distribution.worker import remote_probe, remote_trainer
from factory.library import PolicyLibrary
from factory.library.snapshot import publish_snapshot

WORK_DIR = ".factory"  # under the library root: scratch checkpoints, worker status, catalog cache


ESCALATED_FOCUS_SHARE = 0.8


def escalate(base, attempt: int):
    """The TrainConfig of `attempt` (1-based) of a clip: see the module docstring. (The warm
    start of attempts 2+ is the coordinator's: it sends the best policy with the task.)"""
    if attempt <= 1:
        return base
    config = dataclasses.replace(
        base,
        seed=base.seed + 1000 * (attempt - 1),
        start_sampling="adaptive",
        focus_share=max(base.focus_share, ESCALATED_FOCUS_SHARE),
    )
    if attempt >= 3:
        env = dataclasses.replace(base.env, replay_threshold_m=base.env.replay_threshold_m / 2)
        config = dataclasses.replace(config, env=env, iterations=base.iterations * 2)
    return config


def next_step(
    metrics: EvalMetrics | None,
    best: EvalMetrics | None,
    attempts: int,
    options: FactoryOptions,
    robust_rollouts: int,
) -> str:
    """What the coordinator does with a clip after an attempt: ``converged`` (this attempt's
    `metrics` converged), ``fragile`` (the best attempt so far tracks the clip, no fall and pose
    error within the target, but failed the perturbed-rollout check, and `retry_fragile` is off:
    stored as best_effort now), ``retry``, ``best_effort`` (attempts used up) or ``failed`` (every
    attempt raised). `metrics` is None for an attempt that raised; `best` is the best so far."""
    target = options.target_pose_error_m
    if metrics is not None and converged(metrics, target, robust_rollouts):
        return "converged"
    if best is not None and not options.retry_fragile and meets(best, target):
        return "fragile"
    if attempts < options.max_attempts:
        return "retry"
    return "best_effort" if best is not None else "failed"


@dataclasses.dataclass
class ClipState:
    entry: CatalogEntry
    attempts: int = 0  # training attempts finished
    lost: int = 0  # calls lost with their worker
    best: dict | None = None  # the best `trained` outcome so far
    status: str | None = None  # final: converged / best_effort / failed
    error: str | None = None
    resumed_from: list = dataclasses.field(default_factory=list)
    warm_starts: list = dataclasses.field(default_factory=list)  # (attempt, what it started from)
    wall_s: float = 0.0  # worker seconds over all attempts
    nodes: list = dataclasses.field(default_factory=list)  # (node id, GPU ids) of each finished call
    sent_s: float | None = None  # run seconds when its first attempt was sent to a worker


def _better(outcome: dict, best: dict | None, target_pose_error_m: float, robust_rollouts: int) -> bool:
    if best is None:
        return True
    key = lambda o: selection_key(o["result"].metrics, target_pose_error_m, robust_rollouts)
    return key(outcome) < key(best)


def _format_duration(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    seconds = int(max(seconds, 0))
    return f"{seconds // 3600:d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def driver_rss_mb() -> float:
    """Peak resident memory of this process in MB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class Coordinator:
    """Trains the clips of `catalog` into `library` with Ray actors. Call `run()`."""

    def __init__(
        self,
        library: PolicyLibrary,
        catalog: Catalog,
        base_config,
        options: FactoryOptions = FactoryOptions(),
        progress: Callable[[str], None] | None = print,
        train_fn=None,
    ):
        """`train_fn`: a benchmark device that replaces the workers' loading and training (see
        `factory.distribution.worker.TrainFn`); None in product runs."""
        self.library = library
        self.catalog = catalog
        self.base_config = base_config
        self.options = options
        self.progress = progress or (lambda line: None)
        self.train_fn = train_fn
        self.work_dir = (
            Path(options.work_dir).expanduser().absolute() if options.work_dir else Path(library.root) / WORK_DIR
        )
        self._published_at: float | None = None
        self.published: dict | None = None
        self.clips: dict[str, ClipState] = {e.clip_id: ClipState(e) for e in catalog.entries}
        self.queue: collections.deque[str] = collections.deque()
        self.inflight: dict = {}  # ObjectRef -> (worker index, clip id, attempt)
        self.workers: list = []
        self.worker_load: list[int] = []
        # Workers that lost a call: Ray is restarting them. A ping (`counters`) is in flight for
        # each; nothing is submitted to it until the ping answers (calls sent to a restarting
        # actor fail with ActorUnavailableError).
        self.pings: dict = {}  # ObjectRef -> worker index
        self.unavailable: set[int] = set()
        self.counts = collections.Counter()  # final statuses written by this run
        self.skipped_done = 0
        self.pose_errors: list[float] = []
        self.finished_clips: list[dict] = []  # per clip written this run: id, status, seconds
        self.lost_calls = 0
        self.donors: list[dict] = []  # converged policies: clip_id, signature, policy (an ObjectRef)
        self.worker_counters: dict[int, dict] = {}
        self.scheduling_s = 0.0  # driver time outside ray.wait and library writes
        self.library_s = 0.0
        self.start_time = 0.0
        self._pin_cores = 0
        self._last_progress = 0.0
        self.clips_per_worker = max(1, options.clips_per_worker)  # K, once `auto` is resolved
        self.slots_probe: dict | None = None  # what the auto probe measured (or found cached)

    # ------------------------------------------------------------------------------------------
    def _cluster_plan(self) -> tuple[int, float]:
        resources = ray.cluster_resources()
        gpus = float(resources.get("GPU", 0.0))
        gpus_per_worker = self.options.gpus_per_worker
        if gpus_per_worker is None:
            gpus_per_worker = 1.0 if gpus > 0 else 0.0
        workers = self.options.workers
        if workers is None:
            if gpus_per_worker > 0:
                workers = max(1, int(gpus / gpus_per_worker + 1e-9))
            else:
                workers = max(1, int(float(resources.get("CPU", 1.0)) / max(self.options.cpus_per_worker, 1e-9)))
        return workers, gpus_per_worker

    def _compile_cache_dir(self) -> str | None:
        if self.options.compile_cache_dir:
            return self.options.compile_cache_dir
        if os.environ.get("DIFFMIMIC_JAX_CACHE"):
            return os.environ["DIFFMIMIC_JAX_CACHE"]
        return jax.config.jax_compilation_cache_dir or None

    def _start_workers(self) -> None:
        count, gpus_per_worker = self._cluster_plan()
        count = min(count, max(1, len(self.queue)))
        self.clips_per_worker = self._resolve_clips_per_worker(gpus_per_worker)
        self._actor_class = remote_trainer(
            num_gpus=gpus_per_worker,
            num_cpus=self.options.cpus_per_worker,
            resources=self.options.worker_resources,
            clips_per_worker=self.clips_per_worker,
        )
        cache = self._compile_cache_dir()
        self._pin_cores = (
            max(1, int(self.options.cpus_per_worker)) if self.options.pin_cpus and gpus_per_worker == 0 else 0
        )
        self.workers = [self._new_worker(i) for i in range(count)]
        self.worker_load = [0] * count
        self.progress(
            f"factory: {count} worker(s), {gpus_per_worker:g} GPU and "
            f"{self.options.cpus_per_worker:g} CPU each; compilation cache {cache or '(worker default)'}"
        )

    def _resolve_clips_per_worker(self, gpus_per_worker: float) -> int:
        """K: the option when given; with `auto` (0), 1 on CPU workers, else the probe's K."""
        if self.options.clips_per_worker >= 1:
            return self.options.clips_per_worker
        if gpus_per_worker == 0 or not self.queue or self.train_fn is not None:
            return 1
        task = {
            k: v
            for k, v in self._task(self.queue[0], 1).items()
            if k in ("clip_id", "path", "config", "reader_options")
        }
        config = TrainConfig.from_dict(task["config"])
        cache_key = json.dumps(
            {
                "config": compile_key(config).to_dict(),
                "gpus_per_worker": gpus_per_worker,
                "cpus_per_worker": self.options.cpus_per_worker,
                "resources": self.options.worker_resources or {},
                "bucket": length_bucket(
                    int((self.clips[task["clip_id"]].entry.duration_s or 0) * config.env.control_hz) + 1
                ),
                "max_slots": self.options.max_clips_per_worker,
            },
            sort_keys=True,
        )
        cache = self.work_dir / "clips_per_worker.json"
        try:
            known = json.loads(cache.read_text()) if cache.exists() else {}
        except (OSError, ValueError):
            known = {}
        if cache_key in known:
            self.slots_probe = {**known[cache_key], "cached": True}
            self.progress(
                f"factory: {self.slots_probe['slots']} clips per worker (measured before on "
                f"{self.slots_probe['device']}, {cache})"
            )
            return int(self.slots_probe["slots"])
        self.progress(
            f"factory: measuring how many clips a worker trains at once on {gpus_per_worker:g} GPU "
            f"(K = 1, 2, 4, ... on {task['clip_id']}; compiles one step per K)"
        )
        probe = remote_probe(
            num_gpus=gpus_per_worker, num_cpus=self.options.cpus_per_worker, resources=self.options.worker_resources
        )
        try:
            self.slots_probe = ray.get(probe.remote(task, self._compile_cache_dir(), self.options.max_clips_per_worker))
        except Exception as err:  # noqa: BLE001 - no measurement: train one clip at a time
            self.progress(
                f"factory: the clips-per-worker probe failed ({type(err).__name__}: "
                f"{str(err).strip().splitlines()[-1] if str(err).strip() else ''}); 1 clip per worker"
            )
            self.slots_probe = {"slots": 1, "error": f"{type(err).__name__}: {err}"[:500]}
            return 1
        curve = ", ".join(
            f"K={p['slots']}: {p['samples_per_s']:.0f}" for p in self.slots_probe["curve"] if "samples_per_s" in p
        )
        self.progress(
            f"factory: {self.slots_probe['slots']} clips per worker on {self.slots_probe['device']} (samples/s {curve})"
        )
        known[cache_key] = self.slots_probe
        atomic.write_json(cache, known)
        return int(self.slots_probe["slots"])

    def _new_worker(self, index: int):
        return self._actor_class.remote(
            index,
            str(self.work_dir),
            self._compile_cache_dir(),
            self.options.checkpoint_every,
            self.train_fn,
            self._pin_cores,
            self.clips_per_worker,
        )

    # ------------------------------------------------------------------------------------------
    def _plan(self) -> None:
        """Queues the clips the library does not have yet (all with `force`); fails unreadable
        ones at once."""
        done = set()
        if not self.options.force:
            done = {
                r.clip_id
                for r in self.library.query(dataset=self.catalog.dataset)
                if not (self.options.retry_failed and r.status == "failed")
            }
        for clip_id, state in self.clips.items():
            if clip_id in done:
                self.skipped_done += 1
                state.status = "done before"
                continue
            if state.entry.error is not None and not state.entry.transient:
                self._fail(state, state.entry.error)
                continue
            self.queue.append(clip_id)

    def _task(self, clip_id: str, attempt: int) -> dict:
        state = self.clips[clip_id]
        config = escalate(self.base_config, attempt)
        task = {
            "clip_id": clip_id,
            "path": state.entry.path,
            "attempt": attempt,
            "config": config.to_dict(),
            "target_pose_error_m": self.options.target_pose_error_m,
        }
        if self.catalog.reader_options:  # the spec's BVH joint_map, units, up_axis
            task["reader_options"] = self.catalog.reader_options
        if state.best is not None:  # a warm start from the best attempt so far
            result = state.best["result"]
            task["init_policy"] = (result.params, result.normaliser)
            task["init_from"] = f"attempt {state.best['attempt']}"
        elif self.options.warm_start_similar and self.donors:
            # The worker measures its clip and picks the nearest donor (refs stay unresolved
            # until it does: only the chosen policy travels).
            task["donors"] = [d for d in self.donors if d["clip_id"] != clip_id]  # never itself (--force)
            distance = self.options.max_donor_distance_m
            task["max_donor_distance_m"] = MAX_DONOR_DISTANCE_M if distance is None else distance
        return task

    def _add_donor(self, clip_id: str, outcome: dict) -> None:
        if not self.options.warm_start_similar or self.train_fn is not None:
            return
        result = outcome["result"]
        self.donors.append(
            {
                "clip_id": clip_id,
                "signature": reference_signature(outcome["reference"]),
                "policy": ray.put((result.params, result.normaliser)),
            }
        )
        keep = prune_pool([d["signature"] for d in self.donors], max(1, self.options.donor_pool_size))
        self.donors = [self.donors[i] for i in keep]

    def _library_donors(self) -> None:
        """Seeds the donor pool with the library's policies that track their clips (converged, or
        best_effort only for fragility: no fall, pose error within the target) and that the base
        config can start from (same network, observation, action mode and backend)."""
        base = self.base_config
        compatible = []
        target = self.options.target_pose_error_m
        tracking = [
            r
            for r in self.library.query(status="best_effort")
            if r.fell is False and r.pose_error_m is not None and r.pose_error_m <= target
        ]
        for record in self.library.query(status="converged") + tracking:
            config, env = record.config or {}, (record.config or {}).get("env", {})
            if (
                tuple(config.get("hidden", ())) == tuple(base.hidden)
                and record.path is not None
                and env.get("observation") == base.env.observation
                and env.get("action_mode") == base.env.action_mode
                and env.get("backend") == base.env.backend
            ):
                compatible.append(record)
        if not compatible:
            return
        signatures, kept = [], []
        for record in compatible:
            try:
                reference = Reference.load(self.library.path_of(record) / "reference.npz")
            except (OSError, ValueError, KeyError):
                continue  # `library verify` reports broken versions; a donor is optional
            signatures.append(reference_signature(reference))
            kept.append(record)
        for i in prune_pool(signatures, max(1, self.options.donor_pool_size)):
            try:
                policy = self.library.load_policy(kept[i].clip_id, kept[i].version)
            except Exception:  # noqa: BLE001 - as above
                continue
            self.donors.append(
                {
                    "clip_id": kept[i].clip_id,
                    "signature": signatures[i],
                    "policy": ray.put((policy.params, policy.normaliser)),
                }
            )
        self._line(
            f"warm starts: {len(self.donors)} converged library polic{'y' if len(self.donors) == 1 else 'ies'}"
            f" can start similar clips"
        )

    def _submit(self) -> None:
        warm_starts = self.options.warm_start_similar and self.train_fn is None  # (as in `run`)
        depth = 1 if warm_starts else max(1, self.options.tasks_per_worker)
        if self.clips_per_worker > 1:  # one call per slot, all training at once
            depth = self.clips_per_worker
        available = [i for i in range(len(self.workers)) if i not in self.unavailable]
        while self.queue and available:
            index = min(available, key=lambda i: self.worker_load[i])
            if self.worker_load[index] >= depth:
                return
            clip_id = self.queue.popleft()
            attempt = self.clips[clip_id].attempts + 1
            ref = self.workers[index].train_clip.remote(self._task(clip_id, attempt))
            if self.clips[clip_id].sent_s is None:
                self.clips[clip_id].sent_s = round(time.time() - self.start_time, 3)
            self.inflight[ref] = (index, clip_id, attempt)
            self.worker_load[index] += 1

    # ------------------------------------------------------------------------------------------
    def _write(self, fn, *args, **kwargs):
        start = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            self.library_s += time.perf_counter() - start

    def _finish(self, state: ClipState, status: str, outcome: dict | None) -> None:
        state.status = status
        self.counts[status] += 1
        record = {
            "clip_id": state.entry.clip_id,
            "status": status,
            "attempts": state.attempts,
            "lost": state.lost,
            "worker_s": round(state.wall_s, 3),
            "duration_s": state.entry.duration_s,
            "sent_s": state.sent_s,
            "finished_s": round(time.time() - self.start_time, 3),
        }
        if outcome is not None:
            metrics = outcome["result"].metrics
            record.update(
                pose_error_m=metrics.pose_error_m,
                fell=bool(metrics.fell),
                iterations=outcome["result"].iterations,
                train_s=outcome["result"].train_s,
            )
            if math.isfinite(metrics.pose_error_m):
                self.pose_errors.append(metrics.pose_error_m)
        if state.error:
            record["error"] = state.error
        if state.resumed_from:
            record["resumed_from"] = list(state.resumed_from)
        if state.warm_starts:
            record["warm_starts"] = list(state.warm_starts)
        if state.nodes:
            record["nodes"] = list(state.nodes)
        self.finished_clips.append(record)
        self.publish()
        self._line(
            f"{status:<11} {state.entry.clip_id}"
            + (
                f"  pose error {record['pose_error_m']:.3f} m{' (fell)' if record['fell'] else ''}"
                f"  attempts {state.attempts}"
                f"  {state.wall_s / 60:.1f} worker-min"
                if outcome is not None
                else f"  {state.error}"
            )
        )

    def publish(self, force: bool = False) -> None:
        """A snapshot to `options.publish_dir` when one is due (or `force`); a failure to publish is
        reported and retried at the next one, never stops the run."""
        if not self.options.publish_dir:
            return
        now = time.time()
        if not force and self._published_at is not None and now - self._published_at < self.options.publish_every_s:
            return
        self._published_at = now
        try:
            self.published = self._write(publish_snapshot, self.library, self.options.publish_dir)
        except Exception as err:  # noqa: BLE001 - shared storage trouble: said, retried next time
            self._line(
                f"snapshot to {self.options.publish_dir} failed ({type(err).__name__}: {err}); retried at the next one"
            )

    def _fail(self, state: ClipState, error: str) -> None:
        state.error = error
        self._write(
            self.library.put_failure,
            state.entry.clip_id,
            error,
            attempts=max(state.attempts, 1),
            source_path=state.entry.path,
        )
        self._finish(state, "failed", None)

    def _store(self, state: ClipState, outcome: dict, status: str) -> None:
        config = escalate(self.base_config, outcome["attempt"])
        reason = (
            None
            if status == "converged"
            else not_converged_reason(
                outcome["result"].metrics, self.options.target_pose_error_m, config.robust_rollouts
            )
        )
        self._write(
            self.library.put_result,
            state.entry.clip_id,
            outcome["result"],
            config,
            outcome["reference"],
            status=status,
            attempts=state.attempts,
            source_path=state.entry.path,
            reason=reason,
        )
        self._finish(state, status, outcome)

    def _ping(self, index: int) -> None:
        self.unavailable.add(index)
        if index not in self.pings.values():
            self.pings[self.workers[index].counters.remote()] = index

    def _handle_ping(self, ref) -> None:
        index = self.pings.pop(ref)
        try:
            self.worker_counters[index] = ray.get(ref)
            self.unavailable.discard(index)
            self._line(f"worker {index} is back")
        except ray.exceptions.ActorUnavailableError:
            time.sleep(0.5)  # still restarting
            self._ping(index)
        except ray.exceptions.RayActorError as err:  # dead for good (restarts exhausted): replace it
            self._line(f"worker {index} is dead ({type(err).__name__}): starting a new one")
            self.workers[index] = self._new_worker(index)
            self._ping(index)

    def _handle(self, ref) -> None:
        if ref in self.pings:
            self._handle_ping(ref)
            return
        index, clip_id, attempt = self.inflight.pop(ref)
        self.worker_load[index] -= 1
        state = self.clips[clip_id]
        try:
            outcome = ray.get(ref)
        except (
            ray.exceptions.RayActorError,
            ray.exceptions.WorkerCrashedError,
            ray.exceptions.ObjectLostError,
            ray.exceptions.OwnerDiedError,
        ) as err:
            self._ping(index)
            self.lost_calls += 1
            state.lost += 1
            if state.lost >= self.options.max_lost:
                self._fail(
                    state,
                    f"its worker died {state.lost} times while training it "
                    f"(last: {type(err).__name__}); out of memory?",
                )
            else:
                self._line(
                    f"requeued    {clip_id}  (worker {index} died: {type(err).__name__}; attempt {attempt} not counted)"
                )
                self.queue.appendleft(clip_id)
            return
        except ray.exceptions.RayTaskError as err:  # an exception outside train_clip's own handling
            outcome = {"kind": "error", "error": str(err).splitlines()[-1], "attempt": attempt}
        if "counters" in outcome:
            self.worker_counters[index] = outcome["counters"]
        state.wall_s += outcome.get("timing", {}).get("wall_s", 0.0)
        if "node_id" in outcome:
            state.nodes.append({"node_id": outcome["node_id"], "gpu_ids": outcome["gpu_ids"]})
        if outcome.get("resumed_from"):
            state.resumed_from.append(outcome["resumed_from"])
        if outcome.get("init_from"):
            state.warm_starts.append([attempt, outcome["init_from"]])
            if outcome.get("init_distance_m") is not None:
                state.warm_starts[-1].append(round(outcome["init_distance_m"], 4))
        kind = outcome["kind"]
        if kind == "data_error":
            state.attempts = max(state.attempts, 1)
            self._fail(state, outcome["error"])
            return
        state.attempts += 1
        if kind == "error":
            state.error = outcome["error"]
        elif _better(outcome, state.best, self.options.target_pose_error_m, self.base_config.robust_rollouts):
            state.best = outcome
        step = next_step(
            outcome["result"].metrics if kind == "trained" else None,
            None if state.best is None else state.best["result"].metrics,
            state.attempts,
            self.options,
            self.base_config.robust_rollouts,
        )
        if step == "converged":
            state.error = None
            self._store(state, outcome, "converged")
            self._add_donor(clip_id, outcome)
        elif step == "fragile":  # stored now; it tracks its clip, so it warm-starts similar ones
            state.error = None
            best, state.best = state.best, None
            self._store(state, best, "best_effort")
            self._add_donor(clip_id, best)
        elif step == "retry":
            self.queue.appendleft(clip_id)  # finish started clips first
        elif step == "best_effort":
            self._store(state, state.best, "best_effort")
            state.best = None
        else:
            self._fail(state, f"every attempt raised; last: {state.error}")

    # ------------------------------------------------------------------------------------------
    def _line(self, text: str) -> None:
        self.progress(f"[{_format_duration(time.time() - self.start_time)}] {text}")

    def status_line(self) -> str:
        done = sum(self.counts.values())
        in_flight = len({c for _, c, _ in self.inflight.values()})
        total = done + len(self.queue) + in_flight
        elapsed_h = max(time.time() - self.start_time, 1e-9) / 3600
        rate = done / elapsed_h
        eta = (total - done) / rate * 3600 if rate > 0 else float("inf")
        median = f"{statistics.median(self.pose_errors):.3f} m" if self.pose_errors else "-"
        # A worker trains one clip, or one per slot; the others wait in its queue.
        running = sum(min(load, self.clips_per_worker) for load in self.worker_load)
        queued = len(self.queue) + in_flight - running
        return (
            f"done {done}/{total}  converged {self.counts['converged']}  best_effort {self.counts['best_effort']}  "
            f"failed {self.counts['failed']}  running {running}  queued {queued}  "
            f"{rate:.1f} clips/h  ETA {_format_duration(eta)}  median pose error {median}"
            + "".join(f"\n    {line}" for line in self.worker_activity())
        )

    def worker_activity(self) -> list[str]:
        """One line per busy worker from its status file: the clip, and compiling or the
        iteration and last evaluation."""
        lines = []
        for index in range(len(self.workers)):
            try:
                status = json.loads((self.work_dir / "workers" / f"{index}.json").read_text())
            except (OSError, ValueError):
                continue
            for slot in status.get("slots", [status]):  # a worker with K slots: one line per clip
                line = self._activity_line(index, slot)
                if line:
                    lines.append(line)
        return lines

    @staticmethod
    def _activity_line(index: int, status: dict) -> str | None:
        if status.get("state") not in ("compiling", "training"):
            return None
        clip = str(status.get("clip_id", "?")).rsplit("/", 1)[-1]
        if status["state"] == "compiling":
            waited = f", {(time.time() - status['since']) / 60:.1f} min so far" if status.get("since") else ""
            what = (
                f"compiling the train step for length bucket {status.get('bucket', '?')} (minutes the "
                f"first time, ~7 on a 2-core CPU; later runs load it from the cache{waited})"
                if status.get("first", True)
                else "starting (train step already compiled)"
            )
        else:
            fell = status.get("fell_at_s")
            last = (
                ""
                if status.get("pose_error_m") is None
                else f", last evaluation {status['pose_error_m']:.3f} m"
                + (f", fell at {fell:.1f} s" if fell is not None else ", no fall")
            )
            what = f"iteration {status.get('iteration', 0)}{last}"
        return f"worker {index}: {clip} attempt {status.get('attempt', '?')}: {what}"

    def _maybe_progress(self, force: bool = False) -> None:
        now = time.time()
        if force or now - self._last_progress >= self.options.progress_every_s:
            self._last_progress = now
            self._line(self.status_line())

    # ------------------------------------------------------------------------------------------
    def run(self) -> dict:
        """Trains every queued clip; returns the run summary (also in the library's report)."""
        self.start_time = self._last_progress = time.time()
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self._plan()
        if self.skipped_done:
            self._line(f"{self.skipped_done} clip(s) already in the library: skipped (--force retrains them)")
        if self.queue:
            if self.options.warm_start_similar and self.train_fn is None:
                self._library_donors()
            self._start_workers()
        self._line(f"{len(self.queue)} clip(s) to train")
        while self.queue or self.inflight:
            tick = time.perf_counter()
            self._submit()
            self.scheduling_s += time.perf_counter() - tick
            ready, _ = ray.wait(
                list(self.inflight) + list(self.pings),
                num_returns=1,
                timeout=max(0.5, min(self.options.progress_every_s, 30.0)),
            )
            tick = time.perf_counter()
            library_before = self.library_s
            for ref in ready:
                self._handle(ref)
            self._maybe_progress()
            self.scheduling_s += time.perf_counter() - tick - (self.library_s - library_before)
        for worker in self.workers:
            try:
                self.worker_counters[self.workers.index(worker)] = ray.get(worker.counters.remote(), timeout=60)
            except Exception:  # noqa: BLE001 - counters are informative only
                pass
        self.publish(force=True)
        summary = self.summary()
        report = write_report(self.library, self.catalog, summary)
        summary["report"] = {key: str(path) for key, path in report.items()}
        self._line(self.status_line())
        self._line(f"report: {report['markdown']}")
        for worker in self.workers:
            ray.kill(worker)
        return summary

    def summary(self) -> dict:
        elapsed = time.time() - self.start_time
        done = sum(self.counts.values())
        return {
            "dataset": self.catalog.dataset,
            "library": str(self.library.root),
            "target_pose_error_m": self.options.target_pose_error_m,
            "max_attempts": self.options.max_attempts,
            "clips_in_catalog": len(self.catalog.entries),
            "skipped_by_spec": len(self.catalog.skipped),
            "skipped_done": self.skipped_done,
            "written": done,
            "counts": dict(self.counts),
            "elapsed_s": round(elapsed, 3),
            "clips_per_hour": round(done / max(elapsed, 1e-9) * 3600, 2),
            "median_pose_error_m": statistics.median(self.pose_errors) if self.pose_errors else None,
            "lost_calls": self.lost_calls,
            "workers": len(self.workers),
            "worker_counters": {str(k): v for k, v in sorted(self.worker_counters.items())},
            "clips_per_worker": self.clips_per_worker,
            "clips_per_worker_probe": self.slots_probe,
            "scheduling_s": round(self.scheduling_s, 4),
            "library_write_s": round(self.library_s, 4),
            "driver_peak_rss_mb": round(driver_rss_mb(), 1),
            "work_dir": str(self.work_dir),
            "snapshot": self.published,
            "clips": self.finished_clips,
        }


def print_summary(summary: dict) -> str:
    return json.dumps({k: v for k, v in summary.items() if k != "clips"}, indent=2)
