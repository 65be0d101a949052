"""One command for every GPU figure, within a time budget (docs/gpu.md).

    python scripts/bench_gpu.py [--budget-s 480] [--data-root ../shared/data/mocap/amass_dev]
        [--out bench] [--cache-dir DIR] [--target-pose-error-m 0.04]
    python scripts/bench_gpu.py --smoke [--out DIR]      # tiny sizes, on a CPU in a few minutes
    python scripts/bench_gpu.py --factory [--smoke]      # the factory on three dev clips (needs Ray)

Measures, in order of value, and stops cleanly when the budget is spent:
  1. train_step: the train step's samples/s, compile seconds and peak memory for the `spring`
     backend (default body) at 300, 1,024 and 4,096 environments with the `paper` preset, and the
     human body on `mjx` (its minimum substeps) at 300 and 1,024;
  2. slots: K clips in one compiled step (`diffmimic.multiclip.slot_throughput`) at K = 1, 4, 16,
     64 on a dev clip's length bucket, with peak memory, and the K `--clips-per-worker auto`
     would choose from that curve (`choose_slots`);
  3. train: one dev clip trained with the `paper` preset to convergence (or the budget), alone
     and as one slot of K = 16;
  4. derived: device-seconds per second of mocap, from 2 and 3.
Each configuration runs in a child process of its own, so its compile time and peak memory are
its own (peak device bytes from JAX's memory stats on a GPU; on a CPU the child's peak resident
set, labelled so). Every time is taken after `block_until_ready`; compile seconds (the first call,
a load from the persistent compilation cache when it holds the step) are reported apart from run
seconds. Before each item its cost is estimated from what was measured so far and the item is
skipped, with the reason recorded, when it would not fit the budget left. The JSON
(`bench/gpu_<device>.json`, or `--out DIR`) is rewritten after every item, so a run stopped at
any point keeps what it measured.

`--factory` runs `factory/run.py` (the `amass` spec, `--clips-per-worker auto`, fractional
`--gpus-per-worker` on a GPU) on three dev clips with a local Ray instead; without Ray it says so
in one line and exits 0.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data" / "mocap" / "amass_dev"
RESULT = "@@result "  # a child's result line on its stdout; every other line is progress
PLATFORMS_VAR = "_BENCH_GPU_JAX_PLATFORMS"  # the caller's JAX_PLATFORMS, for the children

# What each stage measures. Sizes are data, the configs themselves come from the presets
# (`diffmimic.train.make_config`): `full` is the GPU run, `smoke` the same code path in minutes
# on a CPU (few environments, a short horizon, a small network, a few iterations). The smoke run
# leaves out the human body on `mjx` (its train step is the same code as `spring`'s): on a 2-core
# CPU it compiled in 805 s and ran 12.5 s per
# iteration at 2 environments (2026-12-06).
PLANS: dict[str, dict] = {
    "full": {
        "preset": "paper",
        "overrides": {},
        "spring_envs": [300, 1024, 4096],
        "human_envs": [300, 1024],
        "slots": [1, 4, 16, 64],
        "train_slots": 16,
        "timed_iterations": 5,
        "slot_iterations": 3,
    },
    "smoke": {
        "preset": "cpu",
        "overrides": {
            "num_envs": 2,
            "horizon": 4,
            "hidden": [32, 32],
            "iterations": 4,
            "eval_every": 2,
            "polish_iterations": 0,
        },
        "spring_envs": [2],
        "human_envs": [],
        "slots": [1, 2],
        "train_slots": 2,
        "timed_iterations": 2,
        "slot_iterations": 2,
    },
}
# A first compile of a kind has nothing measured to be estimated from: assumed this long (the
# humanoid's train step compiles in tens of seconds to minutes, README), and the child process's
# start (imports, device start) this long until one was measured.
FIRST_COMPILE_GUESS_S = 60.0
# How much longer a backend's first compile is guessed to take than the longest measured so far
# (`spring`'s): the human body on `mjx` compiled 3.4x as long as `spring` on a CPU (805 s vs 234 s).
COMPILE_FACTOR = {"mjx-human": 3.4}
STARTUP_GUESS_S = 10.0
# The single-clip run of stage 3 may take this share of the budget left, the rest is the K-slot run's.
TRAIN_ALONE_SHARE = 0.5
# The packages the figures depend on, recorded with them.
VERSIONED = ("jax", "jaxlib", "brax", "mujoco", "mujoco-mjx", "flax", "optax", "numpy")


# -- the child: one measurement in a process of its own -------------------------------------------
def _emit(kind: str, **data) -> None:
    print(RESULT + json.dumps({"kind": kind, **data}, default=float), flush=True)


def _say(line: str) -> None:
    print(line, flush=True)


def _peak_memory() -> dict:
    """The peak memory of this process so far: device bytes where JAX's device reports them (a
    GPU), else the peak resident set of the process (a CPU), labelled by `peak_memory_source`."""
    import resource

    import jax

    stats = jax.devices()[0].memory_stats() or {}
    if "peak_bytes_in_use" in stats:
        return {
            "peak_memory_gb": round(stats["peak_bytes_in_use"] / 1024**3, 3),
            "device_memory_gb": round(stats["bytes_limit"] / 1024**3, 2) if "bytes_limit" in stats else None,
            "peak_memory_source": "device peak_bytes_in_use",
        }
    return {
        "peak_memory_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2, 3),
        "device_memory_gb": None,
        "peak_memory_source": "process peak RSS (no device memory stats)",
    }


def _device_info() -> dict:
    import jax

    device = jax.devices()[0]
    return {
        "platform": device.platform,
        "device_kind": getattr(device, "device_kind", device.platform),
        "device_count": len(jax.devices()),
        "jax": jax.__version__,
        "jaxlib": importlib.metadata.version("jaxlib"),
        "default_backend": jax.default_backend(),
    }


def _config(task: dict):
    from diffmimic.train import make_config

    overrides = dict(task["overrides"])
    if "hidden" in overrides:
        overrides["hidden"] = tuple(overrides["hidden"])
    return make_config(task["preset"], **overrides, env=task.get("env", {}))


def _reference(task: dict, config, character=None):
    from diffmimic.mocap.retarget import load_reference

    return load_reference(task["clip"], fps=config.env.control_hz, character=character)


def _child_train_step(task: dict) -> None:
    """Stage 1: one train-step configuration, compiled, then `timed_iterations` steps timed."""
    import jax

    from diffmimic.env import ref_arrays
    from diffmimic.train import compiled_functions, make_curriculum, simulated_character

    config = _config(task)
    reference = _reference(task, config, character=simulated_character(config))
    functions = compiled_functions(config)
    ref = functions.prepared(ref_arrays(reference))
    state = functions.init(jax.random.PRNGKey(config.seed), config.iterations)
    curriculum = make_curriculum(config, reference.num_frames, ref.bucket)
    _say(
        f"compiling the train step ({config.env.backend}, body {config.env.body}, {config.num_envs} envs, "
        f"horizon {config.horizon}, {config.env.substeps} substeps)"
    )
    start = time.perf_counter()
    state, metrics = functions.train_step(state, ref, curriculum)
    jax.block_until_ready(metrics)
    compile_s = time.perf_counter() - start
    iterations = task["iterations"]
    _say(f"compiled in {compile_s:.1f} s; timing {iterations} iterations")
    start = time.perf_counter()
    for _ in range(iterations):
        state, metrics = functions.train_step(state, ref, curriculum)
        jax.block_until_ready(metrics)
    run_s = time.perf_counter() - start
    samples = iterations * config.num_envs * config.horizon
    _emit(
        "train_step",
        backend=config.env.backend,
        body=config.env.body,
        num_envs=config.num_envs,
        horizon=config.horizon,
        substeps=config.env.substeps,
        bucket=int(ref.bucket),
        compile_s=round(compile_s, 2),
        run_s=round(run_s, 3),
        iterations=iterations,
        iteration_s=round(run_s / iterations, 4),
        samples_per_s=round(samples / run_s, 1),
        nonfinite_rate=float(metrics.nonfinite_rate),
        **_peak_memory(),
        device=_device_info(),
    )


def _child_slots(task: dict) -> None:
    """Stage 2: one point of the K-slot throughput curve (`slot_throughput`)."""
    from diffmimic.multiclip import slot_throughput

    config = _config(task)
    references = [_reference({"clip": clip}, config) for clip in task["clips"]]
    slots = task["slots"]
    _say(
        f"compiling and timing the {slots}-clip train step ({config.num_envs} envs x {config.horizon} steps "
        f"per clip, {task['iterations']} iterations)"
    )
    point = slot_throughput(config, references, slots, task["iterations"])
    _emit(
        "slots",
        slots=slots,
        num_envs=config.num_envs,
        horizon=config.horizon,
        compile_s=point["compile_s"],
        iteration_s=point["iteration_s"],
        samples_per_s=point["samples_per_s"],
        nonfinite_rate=point["nonfinite_rate"],
        iterations=task["iterations"],
        **_peak_memory(),
        device=_device_info(),
    )


def _run_summary(run, reference, target: float) -> dict:
    """What a `ClipRun` reached: converged or not, and when it first met the target."""
    from diffmimic.train import meets

    best = run.best[0]
    first = next((r for r in run.history if r["iteration"] == run.converged_at), None)
    return {
        "clip": Path(reference.source).stem,
        "clip_duration_s": round(reference.duration_s, 3),
        "iterations": run.iteration,
        "samples": run.iteration * run.samples_per_iteration,
        "train_s": round(run.train_s, 2),
        "converged": bool(meets(best, target)),
        "pose_error_m": round(float(best.pose_error_m), 4),
        "fell": bool(best.fell),
        "first_converged_iteration": run.converged_at,
        "first_converged_train_s": first["train_s"] if first else None,
        "first_converged_samples": first["samples"] if first else None,
    }


def _measured_run(batch):
    """The `ClipRun` of the measured clip in a `SlotBatch`, or None once it finished."""
    return next((entry[1] for entry in batch.runs if entry is not None and entry[0].tag == "measured"), None)


def _child_train(task: dict) -> None:
    """Stage 3: the clip trained alone to convergence or `deadline_alone`, then as one slot of K
    (the other slots train the same clip with other seeds, refilled as they finish) until it
    finishes or `deadline`. Drives `ClipRun` (the per-clip logic of `diffmimic.train.train` and
    `diffmimic.multiclip`) as `train` does, so the budget can stop a run between iterations."""
    import dataclasses

    import jax

    from diffmimic.multiclip import ClipTask, SlotBatch
    from diffmimic.train import ClipRun, compiled_functions, meets

    config = _config(task)
    target = task["target_pose_error_m"]
    reference = _reference(task, config)
    functions = compiled_functions(config)
    run = ClipRun(functions, reference, config, progress=_say, stop_at_pose_error_m=target)
    _say(
        f"compiling the train step and the evaluation ({config.num_envs} envs, horizon {config.horizon}, "
        f"bucket {run.bucket})"
    )
    start = time.perf_counter()
    initial = run.evaluate(run.state.params, run.state.normaliser)
    warm, warm_metrics = functions.train_step(run.state, run.ref, run.curriculum_after(initial))
    jax.block_until_ready(warm_metrics)  # compiles (or loads from the cache); not counted as training
    del warm
    run.begin(initial, compile_s=time.perf_counter() - start)
    _say(
        f"compiled in {run.compile_s:.1f} s; training {Path(reference.source).stem} ({reference.duration_s:.1f} s "
        f"of mocap) to pose error {target} m, at most {config.iterations} iterations or the budget"
    )
    wall = time.perf_counter()
    while not run.done and time.time() < task["deadline_alone"]:
        step_start = time.perf_counter()
        state, metrics = functions.train_step(run.state, run.ref, run.curriculum)
        jax.block_until_ready(metrics)
        run.state = state
        if run.stepped(metrics, time.perf_counter() - step_start):
            run.evaluated(*run.evaluations())
    _emit(
        "train_alone",
        **_run_summary(run, reference, target),
        compile_s=round(run.compile_s, 2),
        wall_s=round(time.perf_counter() - wall, 2),
        stopped_by_budget=not run.done,
        num_envs=config.num_envs,
        horizon=config.horizon,
        device=_device_info(),
    )

    slots = task["slots"]
    if time.time() + task["slots_min_s"] > task["deadline"]:
        _emit(
            "train_slot",
            slots=slots,
            skipped=f"the budget left cannot hold the {slots}-slot run (estimated at "
            f"least {task['slots_min_s']:.0f} s)",
        )
        return
    batch = SlotBatch(config, slots)
    ours = ClipTask(reference, config, tag="measured", stop_at_pose_error_m=target)
    seeds = iter(range(config.seed + 1, config.seed + 1_000_000))

    def filler() -> ClipTask:
        return ClipTask(
            reference, dataclasses.replace(config, seed=next(seeds)), tag="filler", stop_at_pose_error_m=target
        )

    batch.add(ours)
    while batch.free:
        batch.add(filler())
    _say(f"compiling the {slots}-clip train step; the clip trains in one slot, the others train it with other seeds")
    start = time.perf_counter()
    result, others, steps, compile_s = None, 0, 0, 0.0
    while result is None and time.time() < task["deadline"]:
        finished = batch.step()
        steps += 1
        if steps == 1:  # the first step of a bucket compiles; the batch books it on its clips
            compile_s = next((r.compile_s for t, r in finished if t is ours), None) or _measured_run(batch).compile_s
        for done_task, done in finished:
            if done_task is ours:
                result = done
            else:
                others += 1
        while result is None and batch.free:
            batch.add(filler())
        if steps % 20 == 0:
            seconds = time.perf_counter() - start - compile_s
            _say(
                f"{slots} slots: {steps} iterations in {seconds:.0f} s "
                f"({steps * slots * config.num_envs * config.horizon / max(seconds, 1e-9):,.0f} samples/s)"
            )
    row = {
        "slots": slots,
        "batched_iterations": steps,
        "other_slots_finished": others,
        "compile_s": round(compile_s, 2),
        "wall_s": round(time.perf_counter() - start - compile_s, 2),
    }
    if result is not None:
        row.update(
            clip=Path(reference.source).stem,
            clip_duration_s=round(reference.duration_s, 3),
            iterations=result.iterations,
            samples=result.samples,
            converged=bool(meets(result.metrics, target)),
            pose_error_m=round(float(result.metrics.pose_error_m), 4),
            fell=bool(result.metrics.fell),
            stopped_by_budget=False,
        )
    else:
        row.update(_run_summary(_measured_run(batch), reference, target), stopped_by_budget=True)
    _emit("train_slot", **row, **_peak_memory())


def child(task: dict) -> int:
    from diffmimic.compile import use_cpu_cores

    use_cpu_cores()  # before JAX starts: on a CPU the environments split over its cores, as in training
    from diffmimic.train import enable_compilation_cache

    enable_compilation_cache(task.get("cache_dir"))
    {"train_step": _child_train_step, "slots": _child_slots, "train": _child_train}[task["kind"]](task)
    return 0


# -- the parent: the plan, the budget, the table ------------------------------------------------
def _noise(line: str) -> bool:
    """XLA's, JAX's and Python's own chatter in a child's output, kept off the progress lines."""
    return any(
        marker in line
        for marker in (
            "All log messages before absl",
            "E0000 ",
            "W0000 ",
            "I0000 ",
            "Constant folding",
            "slow_operation_alarm",
            "*****",
            "Warning:",
            "warnings.warn",
            "not actively being maintained",
            "Very slow compile",
        )
    )


def child_env() -> dict:
    """The environment of a child process: the caller's, with its own JAX_PLATFORMS (this process
    keeps JAX on the CPU, `main`)."""
    env = dict(os.environ)
    if PLATFORMS_VAR in env:
        original = env.pop(PLATFORMS_VAR)
        if original:
            env["JAX_PLATFORMS"] = original
        else:
            env.pop("JAX_PLATFORMS", None)
    # One child at a time has the accelerator: let it take what the factory's one-GPU worker takes
    # (JAX's default is 75 %), so the largest K is limited by the device, not by a default.
    env.setdefault("XLA_PYTHON_CLIENT_MEM_FRACTION", "0.95")
    return env


def _nvidia_smi() -> dict | None:
    if not shutil.which("nvidia-smi"):
        return None
    try:
        line = (
            subprocess.run(
                ["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"],
                capture_output=True,
                text=True,
                timeout=30,
                check=False,
            )
            .stdout.strip()
            .splitlines()[0]
        )
    except (OSError, subprocess.SubprocessError, IndexError):
        return None
    name, driver, memory = (part.strip() for part in line.split(","))
    return {"name": name, "driver": driver, "memory": memory}


def _versions() -> dict:
    versions = {}
    for name in VERSIONED:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def dev_clips(data_root: str) -> list[tuple[Path, dict]]:
    """The mocap clips under `data_root` with their headers (`inspect_motion`), shortest first."""
    from diffmimic.mocap.readers import inspect_motion

    root = Path(data_root).expanduser()
    if not root.is_dir():
        return []
    clips = [(path, inspect_motion(path)) for path in sorted(root.rglob("*.npz"))]
    return sorted(clips, key=lambda item: (item[1]["duration_s"], str(item[0])))


class Bench:
    """The run: the plan's items in order, each in a child process, within the budget."""

    def __init__(self, args, clips: list[tuple[Path, dict]]):
        self.args = args
        self.plan = PLANS["smoke" if args.smoke else "full"]
        self.start = time.time()
        self.deadline = self.start + args.budget_s
        self.startup_s: list[float] = []
        self.device_kind: str | None = None
        self.path: Path | None = None
        if clips:
            self.clip, self.clip_source = clips[0][0], f"dev clip (shortest under {args.data_root})"
        else:
            from diffmimic.mocap.sample import write_sample_dataset

            self.clip, self.clip_source = write_sample_dataset()[0], "embedded sample clip (no dev clips)"
        self.real_data = bool(clips)
        self.work = Path(tempfile.mkdtemp(prefix="bench_gpu_"))
        self.references: dict[str, str] = {}  # environment label -> the clip's reference file
        self.results: dict = {
            "benchmark": "gpu",
            "command": "python " + " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]]),
            "smoke": bool(args.smoke),
            "budget_s": args.budget_s,
            "plan": self.plan,
            "clip": {"path": str(self.clip), "source": self.clip_source},
            "machine": {
                "platform": platform.platform(),
                "python": platform.python_version(),
                "cpus": os.cpu_count(),
                "nvidia_smi": _nvidia_smi(),
            },
            "versions": _versions(),
            "device": {},
            "compile_cache": args.cache_dir or "default (enable_compilation_cache)",
            "train_step": [],
            "slots": [],
            "train": {},
            "derived": {},
            "skipped": [],
        }

    # ---- budget
    def left(self) -> float:
        return self.deadline - time.time()

    def elapsed(self) -> str:
        seconds = int(time.time() - self.start)
        return f"{seconds // 60:d}:{seconds % 60:02d}"

    def say(self, line: str) -> None:
        print(f"[{self.elapsed()}] {line}", flush=True)

    def startup(self) -> float:
        """A child's seconds outside its measurements (imports, device start), the most seen."""
        return max(self.startup_s) if self.startup_s else STARTUP_GUESS_S

    def fits(self, item: str, estimate_s: float, basis: str) -> bool:
        """Whether `item`, estimated at `estimate_s`, fits the budget left; records a skip if not."""
        left = self.left()
        if estimate_s <= left:
            self.say(f"{item}: estimated {estimate_s:.0f} s ({basis}); {left:.0f} s of the budget left")
            return True
        self.skip(item, f"estimated {estimate_s:.0f} s ({basis}), {max(left, 0):.0f} s of the budget left")
        return False

    def skip(self, item: str, reason: str) -> None:
        self.say(f"{item}: skipped: {reason}")
        self.results["skipped"].append({"item": item, "reason": reason})
        self.write()

    # ---- children
    def run_child(self, item: str, task: dict, deadline: float) -> list[dict]:
        """Runs one measurement in a child process until it ends, or stops it a little after
        `deadline`; returns its result lines (an error or a stop appended as one)."""
        import selectors

        task = {**task, "cache_dir": self.args.cache_dir}
        from diffmimic.compile import DEVICES_ENV_VAR

        env = child_env()
        if self.args.smoke:  # one JAX device, as on a GPU (a CPU's are otherwise one per core, `use_cpu_cores`)
            env.setdefault(DEVICES_ENV_VAR, "1")
        began = time.time()
        process = subprocess.Popen(
            [sys.executable, __file__, "_child", json.dumps(task)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
            cwd=REPO,
        )
        selector = selectors.DefaultSelector()
        selector.register(process.stdout, selectors.EVENT_READ)
        results, tail, stopped = [], [], False
        while True:
            if time.time() > deadline + 10 and process.poll() is None and not stopped:
                process.kill()
                stopped = True
            if not selector.select(timeout=1.0):
                if process.poll() is not None:
                    break
                continue
            line = process.stdout.readline()
            if not line:
                break
            line = line.rstrip()
            if line.startswith(RESULT):
                results.append(json.loads(line[len(RESULT) :]))
            elif line:
                tail = (tail + [line])[-30:]
                if not _noise(line):
                    self.say(f"  {item}: {line}")
        process.wait()
        wall = time.time() - began
        if results and results[0]["kind"] in ("train_step", "slots"):
            measured = results[0]["compile_s"] + results[0]["iteration_s"] * results[0]["iterations"]
            self.startup_s.append(round(max(wall - measured, 0.0), 1))
        for result in results:
            result["child_wall_s"] = round(wall, 1)
            device = result.pop("device", None)
            if device and not self.results["device"]:
                self.results["device"] = device
                self.device_kind = device["device_kind"]
        if stopped:
            results.append({"kind": "stopped", "reason": "the budget was spent: the child was stopped"})
        elif process.returncode != 0:
            error = next((line for line in reversed(tail) if "Error" in line), tail[-1] if tail else "no output")
            results.append({"kind": "error", "returncode": process.returncode, "error": error.strip()})
            self.say(f"  {item}: failed (exit {process.returncode}): {error.strip()}")
        return results

    def task(self, kind: str, **fields) -> dict:
        return {"kind": kind, "preset": self.plan["preset"], "overrides": self.plan["overrides"], **fields}

    # ---- the references
    def environments(self) -> dict[str, dict]:
        """The simulations of stage 1 by label (`EnvConfig` overrides); `spring` is stages 2 and 3's too."""
        from diffmimic.physics import min_substeps

        return {
            "spring": {"backend": "spring"},
            "mjx-human": {"backend": "mjx", "body": "human", "substeps": min_substeps("mjx")},
        }

    def prepare_references(self) -> None:
        """Retargets the clip once per simulated body the plan uses, here on the CPU, into reference
        files the children load in milliseconds (each would otherwise retarget it again)."""
        from diffmimic.mocap.retarget import load_reference
        from diffmimic.train import simulated_character

        self.say(f"retargeting {self.clip.name} for each simulated body")
        start = time.perf_counter()
        used = {"spring"} | ({"mjx-human"} if self.plan["human_envs"] else set())
        for label, env in self.environments().items():
            if label not in used:
                continue
            config = _config(self.task("", env=env))
            reference = load_reference(self.clip, fps=config.env.control_hz, character=simulated_character(config))
            self.references[label] = str(reference.save(self.work / f"{self.clip.stem}_{label}.npz"))
            self.results["clip"]["duration_s"] = round(reference.duration_s, 3)
        self.results["clip"]["retarget_s"] = round(time.perf_counter() - start, 1)

    # ---- stage 1
    def stage_train_step(self) -> None:
        plan, environments = self.plan, self.environments()
        items = [("spring", environments["spring"], n) for n in plan["spring_envs"]]
        items += [("mjx-human", environments["mjx-human"], n) for n in plan["human_envs"]]
        for label, env, envs in items:
            item = f"train step {label} {envs} envs"
            if not self.fits(item, *self.estimate_train_step(label, envs)):
                continue
            overrides = {**plan["overrides"], "num_envs": envs}
            task = {
                **self.task("train_step", clip=self.references[label], env=env, iterations=plan["timed_iterations"]),
                "overrides": overrides,
            }
            for row in self.run_child(item, task, self.deadline):
                row["label"] = label
                if row["kind"] != "train_step":
                    row.update(backend=env["backend"], body=env.get("body", "uniform"), num_envs=envs)
                self.results["train_step"].append(row)
                if row["kind"] == "train_step":
                    self.say(
                        f"{item}: {row['samples_per_s']:,.0f} samples/s, compile {row['compile_s']} s, "
                        f"peak {row['peak_memory_gb']} GB"
                    )
            self.write()

    def estimate_train_step(self, label: str, envs: int) -> tuple[float, str]:
        done = [r for r in self.results["train_step"] if r["kind"] == "train_step"]
        same = [r for r in done if r["label"] == label]
        iterations = self.plan["timed_iterations"] + 1
        if same:
            known = max(same, key=lambda r: r["num_envs"])
            run = iterations * known["iteration_s"] * max(envs / known["num_envs"], 1.0)
            return (
                self.startup() + 1.25 * known["compile_s"] + run,
                f"{label} at {known['num_envs']} envs measured, time per iteration scaled with envs",
            )
        compile_s = max([r["compile_s"] for r in done], default=FIRST_COMPILE_GUESS_S) * COMPILE_FACTOR.get(label, 1.0)
        return (
            self.startup() + compile_s,
            f"first of its kind: a compile {COMPILE_FACTOR.get(label, 1.0):g}x the longest so far",
        )

    # ---- stage 2
    def stage_slots(self) -> None:
        plan = self.plan
        for slots in plan["slots"]:
            item = f"K = {slots} slots"
            estimate = self.estimate_slots(slots)
            if estimate is None:
                continue
            if not self.fits(item, *estimate):
                continue
            task = self.task(
                "slots", clips=[self.references["spring"]], slots=slots, iterations=plan["slot_iterations"]
            )
            rows = self.run_child(item, task, self.deadline)
            for row in rows:
                row.setdefault("slots", slots)
                self.results["slots"].append(row)
                if row["kind"] == "slots":
                    self.say(
                        f"{item}: {row['samples_per_s']:,.0f} samples/s, {row['iteration_s']} s per batched "
                        f"iteration, compile {row['compile_s']} s, peak {row['peak_memory_gb']} GB"
                    )
            self.write()
            if any(row["kind"] == "error" for row in rows):
                self.say(f"{item}: the curve ends here (a larger K would fail the same way or worse)")
                break

    def estimate_slots(self, slots: int) -> tuple[float, str] | None:
        done = [r for r in self.results["slots"] if r["kind"] == "slots"]
        iterations = self.plan["slot_iterations"] + 1
        if done:
            known = done[-1]
            scale = slots / known["slots"]
            if known.get("device_memory_gb") and known["peak_memory_gb"] * scale > 0.95 * known["device_memory_gb"]:
                self.skip(
                    f"K = {slots} slots",
                    f"K = {known['slots']} peaked at {known['peak_memory_gb']} GB; "
                    f"{scale:g}x that passes the device's {known['device_memory_gb']} GB",
                )
                return None
            return (
                self.startup() + 1.25 * known["compile_s"] + iterations * known["iteration_s"] * scale,
                f"K = {known['slots']} measured, time per iteration scaled with K",
            )
        alone = self.paper_train_step()
        if alone:
            return (
                self.startup() + 1.25 * alone["compile_s"] + iterations * alone["iteration_s"] * slots,
                "the single-clip train step measured in stage 1",
            )
        return self.startup() + FIRST_COMPILE_GUESS_S, "nothing measured yet: a compile guessed"

    def paper_train_step(self) -> dict | None:
        """Stage 1's row of the preset's own environments (the single-clip step of stages 2 and 3)."""
        from diffmimic.train import PRESETS, TrainConfig

        envs = {**PRESETS[self.plan["preset"]], **self.plan["overrides"]}.get("num_envs", TrainConfig.num_envs)
        return next(
            (
                r
                for r in self.results["train_step"]
                if r["kind"] == "train_step" and r["label"] == "spring" and r["num_envs"] == envs
            ),
            None,
        )

    # ---- stage 3
    def stage_train(self) -> None:
        if not self.real_data and not self.args.smoke:
            self.skip(
                "train one clip",
                f"no dev clips under {self.args.data_root}: convergence on the synthetic "
                f"sample clips says nothing of real clips (--data-root)",
            )
            return
        from diffmimic.train import make_config

        config = make_config(
            self.plan["preset"], **{k: tuple(v) if k == "hidden" else v for k, v in self.plan["overrides"].items()}
        )
        alone = self.paper_train_step()
        per_iteration = alone["iteration_s"] if alone else None
        compile_s = alone["compile_s"] if alone else FIRST_COMPILE_GUESS_S
        minimum = self.startup() + 2 * compile_s + 2 * config.eval_every * (per_iteration or 0)
        if not self.fits(
            "train one clip",
            minimum,
            "a compile and the evaluation's, and two evaluation periods at stage 1's time per iteration",
        ):
            return
        slots = self.plan["train_slots"]
        point = next((r for r in self.results["slots"] if r["kind"] == "slots" and r["slots"] == slots), None)
        slots_min = (1.25 * point["compile_s"] if point else compile_s) + config.eval_every * (
            point["iteration_s"] if point else slots * (per_iteration or 0)
        )
        end = self.deadline - 5
        task = self.task(
            "train",
            clip=self.references["spring"],
            target_pose_error_m=self.args.target_pose_error_m,
            slots=slots,
            slots_min_s=slots_min,
            deadline=end,
            deadline_alone=time.time() + TRAIN_ALONE_SHARE * (end - time.time()),
        )
        for row in self.run_child("train", task, end):
            key = {"train_alone": "alone", "train_slot": "slot"}.get(row["kind"], row["kind"])
            self.results["train"][key] = row
        self.write()

    # ---- stage 4
    def derive(self) -> None:
        from diffmimic.multiclip import choose_slots

        derived = self.results["derived"]
        curve = [r for r in self.results["slots"] if r["kind"] == "slots"]
        if curve:
            derived["auto_clips_per_worker"] = {
                "choice": choose_slots(curve),
                "from_slots": [r["slots"] for r in curve],
                "note": "choose_slots on this curve; the factory's probe (measure_slots) doubles K from 1",
            }
            base = curve[0]
            derived["clips_per_hour_vs_k1"] = {
                str(r["slots"]): round(base["iteration_s"] * r["slots"] / r["iteration_s"] / base["slots"], 2)
                for r in curve
            }
        alone, slot = self.results["train"].get("alone"), self.results["train"].get("slot")
        if alone and alone.get("kind") == "train_alone":
            duration = alone["clip_duration_s"]
            derived["alone_device_s_per_mocap_s"] = round(alone["wall_s"] / duration, 2)
            derived["alone_basis"] = (
                "the single-clip run's seconds (evaluations in, compile out) per second of "
                "the clip" + ("" if alone["converged"] else "; NOT converged: a lower bound")
            )
            if alone["first_converged_train_s"] is not None:
                derived["alone_minutes_to_first_convergence"] = round(alone["first_converged_train_s"] / 60, 2)
            if curve:
                iterations = alone["iterations"]
                derived["per_k_device_s_per_mocap_s"] = {
                    str(r["slots"]): round(iterations * r["iteration_s"] / r["slots"] / duration, 3) for r in curve
                }
                derived["per_k_basis"] = (
                    f"{iterations} iterations (the clip's run alone"
                    + ("" if alone["converged"] else ", not converged: a lower bound")
                    + ") at each K's time per batched iteration, shared by K clips; "
                    "evaluations not counted"
                )
        if slot and slot.get("kind") == "train_slot" and "skipped" not in slot and slot.get("clip_duration_s"):
            derived["slot_device_s_per_mocap_s"] = round(slot["wall_s"] / slot["slots"] / slot["clip_duration_s"], 3)
            derived["slot_basis"] = (
                f"the {slot['slots']}-slot run's seconds until the clip finished, over "
                f"{slot['slots']} clips as long as it"
                + ("" if slot.get("converged") else "; NOT converged: a lower bound")
            )
        self.write()

    # ---- output
    def write(self) -> Path:
        out = Path(self.args.out).expanduser() if self.args.out else REPO / "bench"
        name = "".join(c if c.isalnum() else "_" for c in (self.device_kind or "unknown").lower()).strip("_")
        path = out / f"gpu_{name}{'_smoke' if self.args.smoke else ''}.json"
        out.mkdir(parents=True, exist_ok=True)
        self.results["elapsed_s"] = round(time.time() - self.start, 1)
        self.results["child_startup_s"] = self.startup_s
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(self.results, indent=2, default=str))
        tmp.replace(path)
        if self.path and self.path != path and self.path.exists():
            self.path.unlink()  # written before the device was known
        self.path = path
        return path

    def table(self) -> str:
        r = self.results
        smi = r["machine"]["nvidia_smi"]
        device = (
            f"device: {r['device'].get('device_kind', 'unknown')} ({r['device'].get('platform', '?')}), "
            f"driver {smi['driver'] if smi else 'n/a (no nvidia-smi)'}, jax {r['device'].get('jax')}, "
            f"brax {r['versions'].get('brax')}, mujoco-mjx {r['versions'].get('mujoco-mjx')}"
        )
        lines = [
            device,
            f"clip: {Path(r['clip']['path']).stem} ({r['clip']['source']})",
            "",
            "1. train step",
            (
                f"{'backend':<10} {'body':<8} {'envs':>5} {'horizon':>7} {'substeps':>8} "
                f"{'compile s':>9} {'samples/s':>11} {'iter s':>8} {'peak GB':>8}"
            ),
        ]
        memory_source = None
        for row in r["train_step"]:
            if row["kind"] != "train_step":
                lines.append(
                    f"{row['backend']:<10} {row['body']:<8} {row['num_envs']:>5}  "
                    f"{row['kind']}: {row.get('error') or row.get('reason')}"
                )
                continue
            memory_source = row["peak_memory_source"]
            lines.append(
                f"{row['backend']:<10} {row['body']:<8} {row['num_envs']:>5} {row['horizon']:>7} "
                f"{row['substeps']:>8} {row['compile_s']:>9} {row['samples_per_s']:>11,.0f} "
                f"{row['iteration_s']:>8} {row['peak_memory_gb']:>8}"
            )
        lines += [
            "",
            "2. K clips per compiled step",
            f"{'K':>4} {'compile s':>9} {'iter s':>8} {'samples/s':>11} {'clips/h vs K=1':>14} {'peak GB':>8}",
        ]
        ratios = r["derived"].get("clips_per_hour_vs_k1", {})
        for row in r["slots"]:
            if row["kind"] != "slots":
                lines.append(f"{row['slots']:>4} {row['kind']}: {row.get('error') or row.get('reason')}")
                continue
            memory_source = row["peak_memory_source"]
            lines.append(
                f"{row['slots']:>4} {row['compile_s']:>9} {row['iteration_s']:>8} "
                f"{row['samples_per_s']:>11,.0f} {ratios.get(str(row['slots']), '-'):>14} "
                f"{row['peak_memory_gb']:>8}"
            )
        if "auto_clips_per_worker" in r["derived"]:
            lines.append(f"--clips-per-worker auto would choose K = {r['derived']['auto_clips_per_worker']['choice']}")
        lines += ["", "3. one clip trained"]
        for key, row in r["train"].items():
            if "iterations" not in row:
                lines.append(f"{key}: {row.get('skipped') or row.get('error') or row.get('reason')}")
                continue
            lines.append(
                f"{key:<6} {'K = ' + str(row['slots']) if 'slots' in row else 'K = 1':<7} "
                f"converged {row['converged']!s:<5} pose error {row['pose_error_m']} m  "
                f"{row['iterations']} iterations, {row['samples']:,} samples, "
                f"{row['wall_s'] / 60:.2f} min (compile {row['compile_s']} s)"
                + ("  [stopped by the budget]" if row.get("stopped_by_budget") else "")
            )
        lines += ["", "4. device-seconds per second of mocap"]
        derived = r["derived"]
        for key in ("alone_device_s_per_mocap_s", "slot_device_s_per_mocap_s"):
            if key in derived:
                lines.append(f"{key}: {derived[key]}  ({derived[key.replace('device_s_per_mocap_s', 'basis')]})")
        if "per_k_device_s_per_mocap_s" in derived:
            lines.append(
                "per K: "
                + ", ".join(f"K = {k}: {v}" for k, v in derived["per_k_device_s_per_mocap_s"].items())
                + f"  ({derived['per_k_basis']})"
            )
        if memory_source:
            lines.append(f"\npeak memory: {memory_source}")
        for skipped in r["skipped"]:
            lines.append(f"skipped: {skipped['item']}: {skipped['reason']}")
        return "\n".join(lines)

    def run(self) -> int:
        r = self.results
        smi = r["machine"]["nvidia_smi"]
        self.say(
            f"bench_gpu{' --smoke' if self.args.smoke else ''}: budget {self.args.budget_s:.0f} s; "
            f"GPU {smi['name'] + ', driver ' + smi['driver'] if smi else 'none seen (no nvidia-smi)'}; "
            f"jax {r['versions']['jax']}, brax {r['versions']['brax']}, mujoco-mjx {r['versions']['mujoco-mjx']}"
        )
        self.say(f"clip: {self.clip} ({self.clip_source})")
        if not self.real_data:
            self.say(
                f"no dev clips under {self.args.data_root}: stages 1-2 use the embedded sample clip; stage 3 "
                + ("uses it too (--smoke)" if self.args.smoke else "is skipped (pass --data-root)")
            )
        self.write()
        try:
            self.prepare_references()
            for stage in (self.stage_train_step, self.stage_slots, self.stage_train):
                stage()
                if self.left() <= 0:
                    self.say("the budget is spent: writing what was measured")
                    break
        except KeyboardInterrupt:
            self.say("interrupted: writing what was measured")
        finally:
            shutil.rmtree(self.work, ignore_errors=True)
        self.derive()
        print(self.table(), flush=True)
        self.say(f"wrote {self.write()}")
        return 0


# -- the factory mode -------------------------------------------------------------------------
def factory_mode(args, clips: list[tuple[Path, dict]]) -> int:
    """The factory on the three shortest dev clips with a local Ray: `--clips-per-worker auto`,
    and on a GPU two workers sharing it (`--gpus-per-worker 0.5`); its summary in the JSON."""
    if importlib.util.find_spec("ray") is None:
        print(
            "bench_gpu --factory: skipped: Ray is not installed here (pip install 'ray[default]'); "
            "the factory figures need it",
            flush=True,
        )
        return 0
    if len(clips) < 3:
        print(
            f"bench_gpu --factory: skipped: it needs three dev clips under {args.data_root}, found {len(clips)} "
            f"(--data-root)",
            flush=True,
        )
        return 0
    smi = _nvidia_smi()
    plan = PLANS["smoke" if args.smoke else "full"]
    work = Path(tempfile.mkdtemp(prefix="bench_gpu_factory_"))
    root = Path(args.data_root).expanduser()
    for path, _ in clips[:3]:  # the three shortest, in a root of their own (the spec's layout kept)
        link = work / "data" / path.relative_to(root)
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(path.resolve())
    summary_path = work / "summary.json"
    command = [
        sys.executable,
        "-m",
        "factory.run",
        "--dataset",
        "amass",
        "--data-root",
        str(work / "data"),
        "--library",
        str(work / "library"),
        "--preset",
        plan["preset"],
        "--clips-per-worker",
        "auto",
        "--target-pose-error-m",
        str(args.target_pose_error_m),
        "--report-renders",
        "0",
        "--ray-address",
        "local",
        "--summary-json",
        str(summary_path),
    ]
    if plan["overrides"]:
        command += ["--config-json", json.dumps(plan["overrides"])]
    command += ["--gpus-per-worker", "0.5"] if smi else ["--workers", "1"]
    print(f"bench_gpu --factory: {' '.join(command[1:])}", flush=True)
    start = time.time()
    process = subprocess.Popen(command, cwd=REPO, env=child_env())
    try:
        returncode = process.wait(timeout=args.budget_s)
    except subprocess.TimeoutExpired:
        process.terminate()  # the factory stops cleanly on SIGTERM
        returncode = process.wait()
    summary = json.loads(summary_path.read_text()) if summary_path.exists() else None
    result = {
        "benchmark": "gpu_factory",
        "command": "python " + " ".join(sys.argv),
        "factory_command": command,
        "returncode": returncode,
        "wall_s": round(time.time() - start, 1),
        "nvidia_smi": smi,
        "versions": _versions(),
        "clips": [str(p) for p, _ in clips[:3]],
        "summary": summary,
    }
    out = Path(args.out).expanduser() if args.out else REPO / "bench"
    out.mkdir(parents=True, exist_ok=True)
    name = "".join(c if c.isalnum() else "_" for c in (smi["name"] if smi else "cpu").lower()).strip("_")
    path = out / f"gpu_factory_{name}{'_smoke' if args.smoke else ''}.json"
    path.write_text(json.dumps(result, indent=2, default=str))
    print(f"bench_gpu --factory: exit {returncode} in {result['wall_s']} s; wrote {path}", flush=True)
    shutil.rmtree(work, ignore_errors=True)
    return 0 if returncode == 0 else 1


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python scripts/bench_gpu.py",
        description=__doc__.splitlines()[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="\n".join(__doc__.splitlines()[2:7]),
    )
    parser.add_argument(
        "--budget-s", type=float, default=None, help="seconds for the whole run (default 480; --smoke 170)"
    )
    parser.add_argument("--smoke", action="store_true", help="tiny sizes: the same code path on a CPU in minutes")
    parser.add_argument(
        "--factory",
        action="store_true",
        help="run the factory on three dev clips with Ray instead (skipped without Ray)",
    )
    parser.add_argument("--data-root", default=str(DEFAULT_DATA), help="the dev clips (AMASS .npz files)")
    parser.add_argument("--out", help="directory of the JSON (default bench/)")
    parser.add_argument(
        "--cache-dir",
        help="JAX's persistent compilation cache (default $DIFFMIMIC_JAX_CACHE or "
        "~/.cache/diffmimic/jax); compile seconds are loads where it holds a step",
    )
    parser.add_argument("--target-pose-error-m", type=float, default=0.04, help="convergence, as the factory's")
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    sys.path.insert(0, str(REPO))  # `python scripts/bench_gpu.py` from a checkout that is not installed
    if argv[:1] == ["_child"]:
        return child(json.loads(argv[1]))
    args = _parser().parse_args(argv)
    if args.budget_s is None:
        args.budget_s = 170.0 if args.smoke else 480.0
    # This process only plans and reads clip headers: JAX stays off the accelerator here, so the
    # children (which restore the caller's JAX_PLATFORMS) have all of its memory.
    os.environ.setdefault(PLATFORMS_VAR, os.environ.get("JAX_PLATFORMS", ""))
    os.environ["JAX_PLATFORMS"] = "cpu"
    clips = dev_clips(args.data_root)
    if args.factory:
        return factory_mode(args, clips)
    return Bench(args, clips).run()


if __name__ == "__main__":
    sys.exit(main())
