"""Benchmark: one DiffMimic training iteration (forward + backward through the rollout).

    python scripts/bench_train.py [--backends spring positional ...] [--batch-sizes 16 64]
        [--horizon 30] [--iterations 5] [--clip squat] [--out bench/train_cpu.json]

For each backend and batch size it reports compile seconds (first call of the jitted train step,
persistent cache off), samples/s (num_envs x horizon control steps per iteration, timed after
block_until_ready over `--iterations` calls), the peak resident memory of this process, and the
gradient norm. Results are printed as a table and written as JSON. Each configuration runs in a
fresh subprocess so compile time and peak memory are its own.
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


def _one(backend: str, batch: int, horizon: int, iterations: int, clip: str, substeps: int,
         body: str = "uniform") -> dict:
    import jax

    from diffmimic.env import ref_arrays
    from diffmimic.mocap.retarget import load_reference
    from diffmimic.mocap.sample import write_sample_dataset
    from diffmimic.physics import min_substeps
    from diffmimic.train import compiled_functions, make_config, make_curriculum, simulated_character

    substeps = substeps or max(16, min_substeps(backend))  # 480 Hz, or what the backend needs
    config = make_config("cpu", num_envs=batch, horizon=horizon, iterations=iterations,
                         env={"backend": backend, "substeps": substeps, "body": body})
    clip_path = next(p for p in write_sample_dataset() if p.name.startswith(clip))
    reference = load_reference(clip_path, character=simulated_character(config))
    functions = compiled_functions(config)
    ref = ref_arrays(reference)
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
    return {
        "backend": backend, "body": body, "num_envs": batch, "horizon": horizon, "substeps": substeps,
        "compile_s": round(compile_s, 1), "samples_per_s": round(iterations * batch * horizon / elapsed, 1),
        "iteration_s": round(elapsed / iterations, 3),
        "peak_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2, 2),
        "grad_norm_median": sorted(norms)[len(norms) // 2], "nonfinite_rate": float(metrics.nonfinite_rate),
        "device": str(jax.devices()[0]),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", nargs="+", default=["spring", "positional", "generalized", "mjx"])
    parser.add_argument("--batch-sizes", nargs="+", type=int, default=[16])
    parser.add_argument("--horizon", type=int, default=30)
    parser.add_argument("--body", default="uniform", choices=("uniform", "human"),
                        help="the simulated body (README: Physics)")
    parser.add_argument("--substeps", type=int, default=0,
                        help="physics steps per control step (default: 16, or what the backend needs: mjx 64)")
    parser.add_argument("--iterations", type=int, default=5)
    parser.add_argument("--clip", default="squat")
    parser.add_argument("--out", default="bench/train_cpu.json")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # internal: run one configuration
    args = parser.parse_args()
    if args.one:
        backend, batch = args.one.split(":")
        print(json.dumps(_one(backend, int(batch), args.horizon, args.iterations, args.clip, args.substeps, args.body)))
        return 0
    rows = []
    command = " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]])
    print(f"{'backend':<12} {'envs':>5} {'compile s':>10} {'samples/s':>10} {'iter s':>8} {'peak GB':>8} {'|grad|':>10}")
    for backend in args.backends:
        for batch in args.batch_sizes:
            env = {**os.environ, "JAX_ENABLE_COMPILATION_CACHE": "false"}
            result = subprocess.run(
                [sys.executable, __file__, "--one", f"{backend}:{batch}", "--horizon", str(args.horizon),
                 "--iterations", str(args.iterations), "--clip", args.clip, "--substeps", str(args.substeps),
                 "--body", args.body],
                capture_output=True, text=True, env=env)
            lines = [line for line in result.stdout.splitlines() if line.startswith("{")]
            if result.returncode != 0 or not lines:
                row = {"backend": backend, "num_envs": batch, "error": result.stderr.strip().splitlines()[-1:]}
                print(f"{backend:<12} {batch:>5}  failed: {row['error']}")
            else:
                row = json.loads(lines[-1])
                print(f"{backend:<12} {batch:>5} {row['compile_s']:>10} {row['samples_per_s']:>10} "
                      f"{row['iteration_s']:>8} {row['peak_rss_gb']:>8} {row['grad_norm_median']:>10.3g}", flush=True)
            rows.append(row)
            # Written after every configuration: a slow backend stopped by hand loses nothing.
            out = Path(args.out)
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(json.dumps({"command": f"python {command}", "machine": platform.machine(),
                                       "cpus": os.cpu_count(), "results": rows}, indent=2))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
