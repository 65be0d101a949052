"""Benchmark: one DiffMimic training iteration (forward + backward through the rollout).

    python scripts/bench_train.py [--backends spring positional ...] [--batch-sizes 16 64]
        [--horizon 30] [--iterations 5] [--clip squat] [--out bench/train_cpu.json]
        [--breakdown] [--profile-dir DIR] [--xla xla none dot] [--cpu-devices 1 2]

For each backend and batch size it reports compile seconds (first call of the jitted train step,
persistent cache off), samples/s (num_envs x horizon control steps per iteration, timed after
block_until_ready over `--iterations` calls), the peak resident memory of this process, and the
gradient norm. Results are printed as a table and written as JSON. Each configuration runs in a
fresh subprocess so compile time and peak memory are its own.

`--breakdown` also times the physics alone over the same rollouts (the substeps toward the
reference's poses, no policy, no loss terms but a position error): forward only, and forward plus
gradient through it (checkpointed per control step, as training does), so the share of the train
step that is the simulator and its gradient is known. `--profile-dir` traces one train step with
`jax.profiler` (open it with TensorBoard or Perfetto) and reports the XLA op kinds that took the
most time. `--xla` compiles each configuration with each of the given XLA library-fusion settings
(`diffmimic/compile.py`; default: the project's) and gives each setting's speed-up over the first;
`--cpu-devices` does the same for the number of JAX CPU devices the environments are split over.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

from diffmimic.compile import DEVICES_ENV_VAR, ENV_VAR, LIBRARY_FUSIONS, library_fusions, usable_cores, use_cpu_cores


def _timed(fn, *args, repeats: int) -> tuple[float, float]:
    """(first call's seconds, compile included; mean seconds of `repeats` more calls)."""
    import jax

    start = time.perf_counter()
    jax.block_until_ready(fn(*args))
    first = time.perf_counter() - start
    start = time.perf_counter()
    for _ in range(repeats):
        jax.block_until_ready(fn(*args))
    return first, (time.perf_counter() - start) / repeats


def _physics_breakdown(functions, ref, batch: int, horizon: int, substeps: int, repeats: int, sharding) -> dict:
    """Samples/s of the physics alone over the train step's rollouts: forward, and with its gradient;
    its environments split with `sharding`, as the train step splits them (`diffmimic.train.env_split`)."""
    import jax
    import jax.numpy as jnp

    from diffmimic.compile import jit

    env, last = functions.env, int(ref.length) - 1
    pipe, system = env._pipeline, env.sys
    frames = jnp.arange(batch) % max(last - 1, 1)
    start = jit(jax.vmap(lambda t: pipe.init(system, ref.qpos[t], ref.qvel[t])))(frames)

    def physics(scale):
        first = start if sharding is None else jax.lax.with_sharding_constraint(start, sharding)

        def control(state, i):
            t = jnp.minimum(frames + i + 1, last)
            targets = ref.qpos[t, 7:] * scale

            def substep(s, _):
                return jax.vmap(lambda one, target: pipe.step(system, one, target))(s, targets), None

            state, _ = jax.lax.scan(substep, state, None, length=substeps)
            return state, jnp.sum((state.x.pos - ref.body_pos[t]) ** 2)

        _, errors = jax.lax.scan(jax.checkpoint(control), first, jnp.arange(horizon))
        return errors.sum()

    samples = batch * horizon
    _, forward_s = _timed(jit(physics), 1.0, repeats=repeats)
    _, gradient_s = _timed(jit(jax.value_and_grad(physics)), 1.0, repeats=repeats)
    return {
        "physics_forward_samples_per_s": round(samples / forward_s, 1),
        "physics_gradient_samples_per_s": round(samples / gradient_s, 1),
        "physics_gradient_iteration_s": round(gradient_s, 3),
    }


def _profile(step, state, ref, curriculum, directory: str, top: int = 12) -> list[dict]:
    """Traces one train step into `directory`; the op kinds (fusion numbers dropped) by time."""
    import collections
    import re

    import jax

    jax.block_until_ready(step(state, ref, curriculum))
    jax.profiler.start_trace(directory)
    jax.block_until_ready(step(state, ref, curriculum))
    jax.profiler.stop_trace()
    trace = max(Path(directory).rglob("*.xplane.pb"), key=lambda p: p.stat().st_mtime)
    kinds: collections.Counter = collections.Counter()
    counts: collections.Counter = collections.Counter()
    skip = ("ThunkExecutor", "PjitFunction", "ExecuteHelper", "$")
    for plane in jax.profiler.ProfileData.from_file(str(trace)).planes:
        for line in plane.lines:
            if "XLA" not in line.name or "PjRtCpuClient" in line.name:
                continue
            for event in line.events:
                if not event.name.startswith(skip):
                    kind = re.sub(r"[.\d]+$", "", event.name.removeprefix("end: "))
                    kinds[kind] += event.duration_ns
                    counts[kind] += 1
    total = sum(kinds.values()) or 1
    return [
        {"op": kind, "ms": round(ns / 1e6, 1), "share": round(ns / total, 3), "count": counts[kind]}
        for kind, ns in kinds.most_common(top)
    ]


def _one(
    backend: str,
    batch: int,
    horizon: int,
    iterations: int,
    clip: str,
    substeps: int,
    body: str = "uniform",
    breakdown: bool = False,
    profile_dir: str | None = None,
) -> dict:
    import jax

    from diffmimic.compile import compiler_options
    from diffmimic.env import ref_arrays
    from diffmimic.mocap.retarget import load_reference
    from diffmimic.mocap.sample import write_sample_dataset
    from diffmimic.physics import min_substeps
    from diffmimic.train import compiled_functions, env_split, make_config, make_curriculum, simulated_character

    substeps = substeps or max(16, min_substeps(backend))  # 480 Hz, or what the backend needs
    config = make_config(
        "cpu",
        num_envs=batch,
        horizon=horizon,
        iterations=iterations,
        env={"backend": backend, "substeps": substeps, "body": body},
    )
    clip_path = next(p for p in write_sample_dataset() if p.name.startswith(clip))
    reference = load_reference(clip_path, character=simulated_character(config))
    functions = compiled_functions(config)
    ref = functions.prepared(ref_arrays(reference))
    state = functions.init(jax.random.PRNGKey(0), iterations)
    curriculum = make_curriculum(config, reference.num_frames, ref.bucket)
    start = time.perf_counter()
    state, metrics = functions.train_step(state, ref, curriculum)
    jax.block_until_ready(metrics)
    compile_s = time.perf_counter() - start
    start = time.perf_counter()
    norms = []
    for _ in range(iterations):
        state, metrics = functions.train_step(state, ref, curriculum)
        jax.block_until_ready(metrics)
        norms.append(float(metrics.grad_norm))
    elapsed = time.perf_counter() - start
    split = env_split(config)
    row = {
        "backend": backend,
        "body": body,
        "num_envs": batch,
        "horizon": horizon,
        "substeps": substeps,
        "compile_s": round(compile_s, 1),
        "samples_per_s": round(iterations * batch * horizon / elapsed, 1),
        "iteration_s": round(elapsed / iterations, 3),
        "peak_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2, 2),
        "grad_norm_median": sorted(norms)[len(norms) // 2],
        "nonfinite_rate": float(metrics.nonfinite_rate),
        "device": str(jax.devices()[0]),
        "xla_options": compiler_options(),
        "cpu_devices": len(jax.devices("cpu")),
        "env_split": split.mesh.size if split else 1,
    }
    if breakdown:
        row.update(
            _physics_breakdown(functions, ref, batch, horizon, substeps, repeats=max(1, iterations), sharding=split)
        )
        row["physics_gradient_share"] = round(row["physics_gradient_iteration_s"] / row["iteration_s"], 3)
    if profile_dir:
        row["profile_dir"] = profile_dir
        row["profile_top_ops"] = _profile(functions.train_step, state, ref, curriculum, profile_dir)
    return row


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", nargs="+", default=["spring", "positional", "generalized", "mjx"])
    parser.add_argument("--batch-sizes", nargs="+", type=int, default=[16])
    parser.add_argument("--horizon", type=int, default=30)
    parser.add_argument(
        "--body", default="uniform", choices=("uniform", "human"), help="the simulated body (README: Physics)"
    )
    parser.add_argument(
        "--substeps",
        type=int,
        default=0,
        help="physics steps per control step (default: 16, or what the backend needs: mjx 64)",
    )
    parser.add_argument("--iterations", type=int, default=5)
    parser.add_argument("--clip", default="squat")
    parser.add_argument("--out", default="bench/train_cpu.json")
    parser.add_argument(
        "--breakdown", action="store_true", help="also time the physics alone, forward and with its gradient"
    )
    parser.add_argument("--profile-dir", help="trace one train step per configuration into DIR/<backend>_<envs>_<xla>")
    parser.add_argument(
        "--xla",
        nargs="+",
        choices=sorted(LIBRARY_FUSIONS),
        default=[library_fusions()],
        help="XLA library fusions (diffmimic/compile.py): each configuration compiled with each "
        "setting in turn; speed-ups are over the first",
    )
    parser.add_argument(
        "--cpu-devices",
        nargs="+",
        type=int,
        default=[0],
        help="JAX CPU devices the environments are split over (diffmimic/compile.py "
        "use_cpu_cores; 0: one per usable core, the default); each in turn",
    )
    parser.add_argument("--one", help=argparse.SUPPRESS)  # internal: run one configuration
    args = parser.parse_args()
    if args.one:
        use_cpu_cores()  # before JAX starts ($DIFFMIMIC_CPU_DEVICES, set per configuration below)
        backend, batch = args.one.split(":")
        xla = library_fusions()
        profile = str(Path(args.profile_dir) / f"{backend}_{batch}_{xla}") if args.profile_dir else None
        print(
            json.dumps(
                _one(
                    backend,
                    int(batch),
                    args.horizon,
                    args.iterations,
                    args.clip,
                    args.substeps,
                    args.body,
                    breakdown=args.breakdown,
                    profile_dir=profile,
                )
            )
        )
        return 0
    rows = []
    command = " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]])
    print(
        f"{'backend':<12} {'envs':>5} {'xla':>8} {'devices':>7} {'compile s':>10} {'samples/s':>10} "
        f"{'iter s':>8} {'peak GB':>8} {'|grad|':>10}"
    )
    for backend, batch, xla, devices in (
        (b, n, x, d) for b in args.backends for n in args.batch_sizes for x in args.xla for d in args.cpu_devices
    ):
        env = {
            **os.environ,
            "JAX_ENABLE_COMPILATION_CACHE": "false",
            ENV_VAR: xla,
            DEVICES_ENV_VAR: str(devices or usable_cores()),
        }
        result = subprocess.run(
            [
                sys.executable,
                __file__,
                "--one",
                f"{backend}:{batch}",
                "--horizon",
                str(args.horizon),
                "--iterations",
                str(args.iterations),
                "--clip",
                args.clip,
                "--substeps",
                str(args.substeps),
                "--body",
                args.body,
                *(["--breakdown"] if args.breakdown else []),
                *(["--profile-dir", args.profile_dir] if args.profile_dir else []),
            ],
            capture_output=True,
            text=True,
            env=env,
        )
        lines = [line for line in result.stdout.splitlines() if line.startswith("{")]
        if result.returncode != 0 or not lines:
            row = {
                "backend": backend,
                "num_envs": batch,
                "xla": xla,
                "cpu_devices": env[DEVICES_ENV_VAR],
                "error": result.stderr.strip().splitlines()[-1:],
            }
            print(f"{backend:<12} {batch:>5} {xla:>8} {env[DEVICES_ENV_VAR]:>7}  failed: {row['error']}")
        else:
            row = {**json.loads(lines[-1]), "xla": xla}
            print(
                f"{backend:<12} {batch:>5} {xla:>8} {row['cpu_devices']:>7} {row['compile_s']:>10} "
                f"{row['samples_per_s']:>10} "
                f"{row['iteration_s']:>8} {row['peak_rss_gb']:>8} {row['grad_norm_median']:>10.3g}",
                flush=True,
            )
            if args.breakdown:
                print(
                    f"{'':<12} physics alone: forward {row['physics_forward_samples_per_s']} samples/s, with "
                    f"its gradient {row['physics_gradient_samples_per_s']} samples/s "
                    f"({row['physics_gradient_share']:.0%} of the train step)",
                    flush=True,
                )
            for op in row.get("profile_top_ops", []):
                print(f"{'':<12} {op['share']:6.1%} {op['ms']:9.1f} ms {op['count']:7d}x  {op['op']}", flush=True)
        rows.append(row)
        first = next(r for r in rows if (r["backend"], r["num_envs"]) == (backend, batch))
        if first is not row and "error" not in first and "error" not in row:
            keys = ["samples_per_s"] + (
                ["physics_forward_samples_per_s", "physics_gradient_samples_per_s"] if args.breakdown else []
            )
            row["speedup"] = {
                "over": first["xla"],
                "over_cpu_devices": first["cpu_devices"],
                **{k: round(row[k] / first[k], 2) for k in keys},
            }
            print(
                f"{'':<12} over library fusions '{first['xla']}' on {first['cpu_devices']} device(s): "
                + ", ".join(f"{k} {row['speedup'][k]}x" for k in keys),
                flush=True,
            )
        # Written after every configuration: a slow backend stopped by hand loses nothing.
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(
            json.dumps(
                {
                    "command": f"python {command}",
                    "machine": platform.machine(),
                    "cpus": os.cpu_count(),
                    "results": rows,
                },
                indent=2,
            )
        )
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
