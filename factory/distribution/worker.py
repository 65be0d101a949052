"""The factory's Ray actor: trains clips one after another and returns the results.

A `ClipTrainer` owns a GPU (or CPUs), turns on JAX's persistent compilation cache before it
compiles anything (so an actor that Ray restarts loads its compiled steps instead of compiling
again) and keeps the jitted train step of every configuration it has met
(`diffmimic.train.compiled_functions`): clips of one length bucket share one compile.

Workers never write the library index: `train_clip` returns the policy (parameters as numpy), its
metrics and the reference to the coordinator, which writes the library. They do write two kinds
of scratch files under the coordinator's work directory (on shared storage in a cluster):

- ``checkpoints/<key>.msgpack`` + ``.json``: the training state of a long clip every
  ``checkpoint_every`` iterations (flax msgpack, no pickle), so a clip re-queued after its actor
  died resumes where it was; deleted when the attempt ends;
- ``workers/<index>.json``: what the worker is doing (pid, host, clip, iteration), for the live
  view and for tests that kill a worker mid-clip.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import socket
import threading
import time
import traceback
from concurrent.futures import Future
from pathlib import Path
from typing import Callable

import jax
import ray
from flax import serialization

from diffmimic import atomic
from diffmimic.compile import use_cpu_cores
from diffmimic.env import length_bucket
from diffmimic.metrics import EvalMetrics
from diffmimic.mocap.motion import MocapError, retry_transient
from diffmimic.mocap.retarget import load_reference
from diffmimic.multiclip import ClipTask, SlotBatch, measure_slots
from diffmimic.train import (
    TrainConfig,
    TrainSnapshot,
    compile_key,
    compiled_functions,
    enable_compilation_cache,
    simulated_character,
    simulated_character_config,
    train,
)
from diffmimic.warmstart import MAX_DONOR_DISTANCE_M, nearest_donor, reference_signature
from factory.distribution.affinity import claim_cores

# A benchmark device: `train_fn(task, config) -> (reference, TrainResult)` replaces loading and
# training (scripts/bench_factory.py measures the coordinator with trivial training). Product
# runs leave it None.
TrainFn = Callable[[dict, object], tuple]


def checkpoint_key(clip_id: str, config_dict: dict) -> str:
    """The scratch-checkpoint name of one attempt: the clip and the exact config."""
    text = json.dumps({"clip": clip_id, "config": config_dict}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def _write_json(path: Path, data: dict, durable: bool = True) -> None:
    atomic.write_json(path, data, indent=None, durable=durable)


class ClipTrainer:
    """Trains one clip per `train_clip` call. Run as a Ray actor (`remote_trainer`)."""

    def __init__(
        self,
        index: int,
        work_dir: str,
        compile_cache_dir: str | None = None,
        checkpoint_every: int = 50,
        train_fn: TrainFn | None = None,
        pin_cores: int = 0,
        clips_per_worker: int = 1,
    ):
        # Pinned before JAX starts its thread pools (at its first operation: importing it starts
        # none), which then inherit the cores.
        self.cores, self._core_locks = claim_cores(pin_cores) if pin_cores else ([], [])
        # A CPU worker splits its environments over its pinned cores (one JAX CPU device each);
        # an unpinned one keeps one device, so workers sharing a machine do not oversubscribe it.
        self.cpu_devices = use_cpu_cores(max(1, len(self.cores)))

        self.index = index
        self.work_dir = Path(work_dir)
        self.checkpoint_dir = self.work_dir / "checkpoints"
        self.status_file = self.work_dir / "workers" / f"{index}.json"
        for directory in (self.checkpoint_dir, self.status_file.parent):
            directory.mkdir(parents=True, exist_ok=True)
        self.cache_dir = enable_compilation_cache(compile_cache_dir)
        self.checkpoint_every = int(checkpoint_every)
        self.train_fn = train_fn
        self.started_at = time.time()
        self.last_end = None  # end of the previous clip: idle time is measured from it
        self.idle_s = 0.0
        self.clips = 0
        self.compile_keys: set = set()
        # K > 1: `train_clip` calls (up to K at once: a threaded actor) hand their clips to one
        # batching thread that trains them in the slots of one compiled step (`_batch_loop`).
        self.clips_per_worker = max(1, int(clips_per_worker))
        self._lock = threading.Condition()
        self._inbox: list = []
        self._batcher: threading.Thread | None = None
        self._slots_status: dict[str, dict] = {}
        self._status({"state": "idle"})

    # ------------------------------------------------------------------------------------------
    def info(self) -> dict:
        """Who this worker is: pid, host, JAX devices, the compilation cache, counters."""
        return {
            "index": self.index,
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "devices": [str(d) for d in jax.devices()],
            "cache_dir": self.cache_dir,
            "gpu_ids": [str(g) for g in ray.get_gpu_ids()],
            "cores": list(self.cores),
            "gpu_memory_fraction": os.environ.get("XLA_PYTHON_CLIENT_MEM_FRACTION"),
            "affinity": sorted(os.sched_getaffinity(0)),
            **self.counters(),
        }

    def counters(self) -> dict:
        """Clips trained, compiles (train-step traces: a compile or a persistent-cache load) and
        seconds idle between clips, since this process started."""
        traces = batch_traces = 0
        for key in list(self.compile_keys):
            traces += compiled_functions(*key).trace_counts["train_step"]
            batch_traces += compiled_functions(*key).trace_counts["train_step_batch"]
        return {
            "clips": self.clips,
            "train_step_compiles": traces,
            "train_step_batch_compiles": batch_traces,
            "clips_per_worker": self.clips_per_worker,
            "compile_keys": len(self.compile_keys),
            "cores": list(self.cores),
            "cpu_devices": self.cpu_devices,
            "idle_s": round(self.idle_s, 3),
            "alive_s": round(time.time() - self.started_at, 3),
        }

    def _status(self, data: dict, clip_id: str | None = None) -> None:
        """Writes what the worker does; with K slots, the list of slots, after setting `clip_id`'s
        entry among them (`data` None: the clip left its slot; no `clip_id`: the slots as they are,
        "idle" when none is busy)."""
        if self.clips_per_worker > 1:
            with self._lock:
                if clip_id is not None and data is None:
                    self._slots_status.pop(clip_id, None)
                elif clip_id is not None:
                    self._slots_status[clip_id] = data
                slots = list(self._slots_status.values())
            data = {"state": "training" if slots else "idle", "slots": slots}
        try:
            _write_json(
                self.status_file,
                {"index": self.index, "pid": os.getpid(), "host": socket.gethostname(), "time": time.time(), **data},
                durable=False,
            )  # no fsync per evaluation
        except OSError:
            pass  # the live view is best effort

    # ------------------------------------------------------------------------------------------
    def train_clip(self, task: dict) -> dict:
        """Trains `task["path"]` with `task["config"]` (a TrainConfig dict).

        Returns a dict: ``kind`` ``trained`` (with ``result``: a TrainResult with numpy
        parameters, and ``reference``), ``data_error`` (the file cannot be used; never retried)
        or ``error`` (training raised); plus ``timing`` and ``resumed_from`` (iteration).
        """
        begin = time.time()
        if self.last_end is not None:
            self.idle_s += begin - self.last_end
        out = {
            "clip_id": task["clip_id"],
            "attempt": task["attempt"],
            "worker": self.index,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "resumed_from": 0,
            "init_from": task.get("init_from"),
            "node_id": ray.get_runtime_context().get_node_id(),
            "gpu_ids": [str(g) for g in ray.get_gpu_ids()],
        }
        config = TrainConfig.from_dict(task["config"])
        self._status(
            {"state": "training", "clip_id": task["clip_id"], "attempt": task["attempt"], "iteration": 0},
            task["clip_id"],
        )
        try:
            if self.train_fn is not None:
                reference, result = self.train_fn(task, config)
                load_s = 0.0
            else:
                reference, result, load_s, out["resumed_from"], donor = self._train(task, config)
                if donor is not None:
                    out["init_from"], out["init_distance_m"] = donor
            out.update(kind="trained", result=_to_numpy(result), reference=reference)
        except MocapError as err:
            # A read the OS kept failing is an attempt's error (retried), not the data's verdict.
            out.update(kind="error" if err.transient else "data_error", error=str(err))
            load_s = time.time() - begin
        except Exception as err:  # noqa: BLE001 - a training failure is reported, the actor lives on
            out.update(kind="error", error=f"{type(err).__name__}: {err}", traceback=traceback.format_exc(limit=8))
            load_s = 0.0
        end = time.time()
        with self._lock:
            self.last_end = end
            self.clips += 1
        out["timing"] = {"started_at": begin, "finished_at": end, "wall_s": end - begin, "load_s": load_s}
        out["counters"] = self.counters()
        self._status(
            None if self.clips_per_worker > 1 else {"state": "idle", "last_clip": task["clip_id"]}, task["clip_id"]
        )
        return out

    def _train(self, task: dict, config):
        start = time.time()
        reference = retry_transient(
            load_reference,
            task["path"],
            fps=config.env.control_hz,
            character=simulated_character(config),
            reader_options=task.get("reader_options"),
        )
        load_s = time.time() - start

        # The key of `compiled_functions`' cache: the counters read its trace counts.
        self.compile_keys.add((compile_key(config), simulated_character_config(config)))
        key = checkpoint_key(task["clip_id"], task["config"])
        resume = self._load_snapshot(key, config)
        resumed_from = 0 if resume is None else int(resume.state.iteration)
        init_policy, donor = task.get("init_policy"), None
        if init_policy is None and task.get("donors"):  # (a resumed run keeps its warm-start rate)
            init_policy, donor = self._similar_clip_policy(reference, task)

        def on_checkpoint(snapshot) -> None:
            self._save_snapshot(key, snapshot)
            self._status(
                {
                    "state": "training",
                    "clip_id": task["clip_id"],
                    "attempt": task["attempt"],
                    "iteration": int(snapshot.state.iteration),
                    "checkpointed": True,
                },
                task["clip_id"],
            )

        def on_evaluation(record: dict) -> None:
            self._status(
                {
                    "state": "training",
                    "clip_id": task["clip_id"],
                    "attempt": task["attempt"],
                    "iteration": record["iteration"],
                    "pose_error_m": record["pose_error_m"],
                    "fell_at_s": record["fell_at_s"],
                },
                task["clip_id"],
            )

        # Until the first evaluation the step is being compiled (or loaded from the cache), the
        # first time in this process for this config and length bucket.
        counter = "train_step" if self.clips_per_worker == 1 else "train_step_batch"
        self._status(
            {
                "state": "compiling",
                "clip_id": task["clip_id"],
                "attempt": task["attempt"],
                "iteration": 0,
                "bucket": length_bucket(reference.num_frames),
                "since": time.time(),
                "first": compiled_functions(config).trace_counts[counter] == 0,
            },
            task["clip_id"],
        )
        arguments = dict(
            stop_at_pose_error_m=task.get("target_pose_error_m"),
            checkpoint_every=self.checkpoint_every,
            on_checkpoint=on_checkpoint,
            resume=resume,
            init_policy=init_policy,
            on_evaluation=on_evaluation,
        )
        if self.clips_per_worker > 1:
            result = self._in_a_slot(ClipTask(reference, config, tag=task["clip_id"], **arguments))
        else:
            result = train(reference, config, progress=None, **arguments)
        for suffix in (".msgpack", ".json"):
            (self.checkpoint_dir / f"{key}{suffix}").unlink(missing_ok=True)
        return reference, result, load_s, resumed_from, donor

    def _in_a_slot(self, clip_task):
        """Trains `clip_task` (a `diffmimic.multiclip.ClipTask`) in a slot of the batching thread
        and waits for its TrainResult."""
        done = Future()
        with self._lock:
            self._inbox.append((clip_task, done))
            if self._batcher is None:
                self._batcher = threading.Thread(target=self._batch_loop, name="slot-batcher", daemon=True)
                self._batcher.start()
            self._lock.notify_all()
        return done.result()

    def _batch_loop(self) -> None:
        """The batching thread: clips from the inbox go into free slots of the `SlotBatch` of
        their (config, length bucket) (a clip with no free slot waits in the inbox); every busy
        batch steps in turn; a finished clip's result goes to its waiting call. An exception in a
        step fails that batch's clips (each call reports it as an attempt's error)."""
        batches: dict = {}
        waiting: dict[int, Future] = {}
        while True:
            with self._lock:
                while not self._inbox and not any(b.active for b in batches.values()):
                    self._lock.wait()
                inbox, self._inbox = self._inbox, []
            held = []
            for clip_task, done in inbox:
                try:
                    slot_key = (compile_key(clip_task.config), length_bucket(clip_task.reference.num_frames))
                    batch = batches.get(slot_key)
                    if batch is None:
                        batch = batches[slot_key] = SlotBatch(clip_task.config, self.clips_per_worker)
                    if not batch.free:
                        held.append((clip_task, done))
                        continue
                    result = batch.add(clip_task)
                except Exception as err:  # noqa: BLE001 - reported to the clip's call
                    done.set_exception(err)
                    continue
                if result is not None:
                    done.set_result(result)
                else:
                    waiting[id(clip_task)] = done
            if held:
                with self._lock:
                    self._inbox = held + self._inbox
            for batch in batches.values():
                if not batch.active:
                    continue
                try:
                    finished = batch.step()
                except Exception as err:  # noqa: BLE001 - as above
                    for entry in batch.runs:
                        if entry is not None:
                            waiting.pop(id(entry[0])).set_exception(err)
                    batch.runs = [None] * batch.slots
                    continue
                for clip_task, result in finished:
                    waiting.pop(id(clip_task)).set_result(result)

    @staticmethod
    def _similar_clip_policy(reference, task: dict):
        """The policy of the donor nearest to `reference` (`diffmimic.warmstart`) and
        ((its clip, distance)), or (None, None) when none is near enough."""
        donor, distance = nearest_donor(
            reference_signature(reference), task["donors"], task.get("max_donor_distance_m", MAX_DONOR_DISTANCE_M)
        )
        if donor is None:
            return None, None
        return ray.get(donor["policy"]), (f"similar clip {donor['clip_id']}", distance)

    # ------------------------------------------------------------------------------------------
    def _save_snapshot(self, key: str, snapshot) -> None:
        tree = {
            "state": snapshot.state,
            "best_params": snapshot.best_params,
            "best_normaliser": snapshot.best_normaliser,
        }
        meta = {
            "best_metrics": snapshot.best_metrics.to_dict(per_frame=True),
            "initial_metrics": snapshot.initial_metrics.to_dict(per_frame=True),
            "last_metrics": None if snapshot.last_metrics is None else snapshot.last_metrics.to_dict(per_frame=True),
            "history": snapshot.history,
            "train_s": snapshot.train_s,
            "iteration": int(snapshot.state.iteration),
        }
        data = self.checkpoint_dir / f"{key}.msgpack"
        atomic.write_bytes(data, serialization.to_bytes(tree))
        # The JSON is written last and names the iteration of the state: a reader that finds both
        # with the same iteration has a consistent pair.
        _write_json(self.checkpoint_dir / f"{key}.json", meta)

    def _load_snapshot(self, key: str, config):
        data, meta_file = self.checkpoint_dir / f"{key}.msgpack", self.checkpoint_dir / f"{key}.json"
        if not (data.is_file() and meta_file.is_file()):
            return None
        try:
            meta = json.loads(meta_file.read_text())
            template_state = compiled_functions(config).init(jax.random.PRNGKey(config.seed), config.iterations)
            template = {
                "state": template_state,
                "best_params": template_state.params,
                "best_normaliser": template_state.normaliser,
            }
            tree = serialization.from_bytes(template, data.read_bytes())
            if int(tree["state"].iteration) != meta["iteration"]:
                return None  # killed between the two writes: start the attempt afresh

            def metrics(d: dict) -> EvalMetrics:
                d = dict(d)
                for name in ("per_frame_pose_error_m", "per_frame_global_error_m"):
                    d[name] = tuple(d.get(name, ()))
                return EvalMetrics(**d)

            return TrainSnapshot(
                state=tree["state"],
                best_params=tree["best_params"],
                best_normaliser=tree["best_normaliser"],
                best_metrics=metrics(meta["best_metrics"]),
                initial_metrics=metrics(meta["initial_metrics"]),
                history=meta["history"],
                train_s=float(meta["train_s"]),
                last_metrics=metrics(meta["last_metrics"]) if meta.get("last_metrics") else None,
            )
        except Exception:  # noqa: BLE001 - a bad scratch checkpoint only costs the iterations it held
            return None


def _to_numpy(result):
    """The TrainResult with its arrays on the host, so it travels to the coordinator as numpy."""
    return dataclasses.replace(
        result, params=jax.device_get(result.params), normaliser=jax.device_get(result.normaliser)
    )


def gpu_memory_env(num_gpus: float) -> dict[str, str]:
    """Environment variables for a process given `num_gpus` GPUs. JAX takes 75 % of a GPU's
    memory when it starts, so a second process sharing the GPU (a fraction per actor) would run
    out of memory: a fraction gets that share of the memory instead (95 % of it, the rest is left
    for each process's CUDA context)."""
    if 0 < num_gpus < 1:
        return {"XLA_PYTHON_CLIENT_MEM_FRACTION": f"{0.95 * num_gpus:.4f}"}
    return {}


def _gpu_options(num_gpus: float) -> dict:
    env = gpu_memory_env(num_gpus)
    return {"runtime_env": {"env_vars": env}} if env else {}


def remote_trainer(
    num_gpus: float = 0.0,
    num_cpus: float = 1.0,
    max_restarts: int = -1,
    resources: dict | None = None,
    clips_per_worker: int = 1,
):
    """The Ray actor class of `ClipTrainer` with its resources.

    An actor that dies is restarted by Ray (`max_restarts`, -1: always); its in-flight calls fail
    (no task retries) and the coordinator re-queues those clips. With `clips_per_worker` K > 1
    it is a threaded actor: K `train_clip` calls run at once (their clips share the batching
    thread's compiled step), with room beside them for `counters` pings."""
    concurrency = {} if clips_per_worker <= 1 else {"max_concurrency": int(clips_per_worker) + 2}
    return ray.remote(ClipTrainer).options(
        num_gpus=num_gpus,
        num_cpus=num_cpus,
        max_restarts=max_restarts,
        max_task_retries=0,
        resources=resources or None,
        **concurrency,
        **_gpu_options(num_gpus),
    )


def probe_clips_per_worker(task: dict, compile_cache_dir: str | None = None, max_slots: int = 64) -> dict:
    """How many clips a worker of these resources trains at once (`--clips-per-worker auto` on a
    GPU): the throughput curve of the batched step on `task`'s clip
    (`diffmimic.multiclip.measure_slots`). Returns {"slots", "curve", "device", "clip_id"}."""
    enable_compilation_cache(compile_cache_dir)  # the chosen K's compile is then the workers' to load
    config = TrainConfig.from_dict(task["config"])
    reference = retry_transient(
        load_reference,
        task["path"],
        fps=config.env.control_hz,
        character=simulated_character(config),
        reader_options=task.get("reader_options"),
    )
    slots, curve = measure_slots(config, reference, max_slots=max_slots)
    return {"slots": slots, "curve": curve, "device": str(jax.devices()[0].device_kind), "clip_id": task["clip_id"]}


def remote_probe(num_gpus: float = 0.0, num_cpus: float = 1.0, resources: dict | None = None):
    """`probe_clips_per_worker` as a Ray task on a worker's resources, in a process of its own
    that exits after it (`max_calls=1`), so the device memory it used is free for the workers."""
    return ray.remote(
        num_gpus=num_gpus,
        num_cpus=num_cpus,
        max_calls=1,
        max_retries=0,
        resources=resources or None,
        **_gpu_options(num_gpus),
    )(probe_clips_per_worker)
