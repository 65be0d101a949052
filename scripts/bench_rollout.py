"""Benchmark: what a policy rollout costs by the steps it runs, not by its clip's length bucket.

    python scripts/bench_rollout.py [CLIP] [--repeats 3] [--out bench/rollout_cpu.json]

Every rollout (training's evaluation, the robustness check, the library's replay, a
composition's hand-over window, the transition graph's switches) is one compiled function whose
scan spans the clip's length bucket (a power of two) with the step count as data. Steps past the
count are skipped, so a call should cost the steps it runs. This times, on one real clip (default:
the dev set's B14, 268 frames, bucket 512; without ../shared, an embedded sample clip) and with a
fresh policy (the cost does not depend on the weights), after `block_until_ready`:

- the whole bucket (`bucket - 1` steps: what every call cost before steps were skipped),
- the whole clip from frame 0 (the evaluation that judges convergence),
- a 1 s window (a composition's hand-over, a transition-graph switch),
- the robustness check (`robust_rollouts` perturbed rollouts, each two calls around its push).

Figures are medians of `--repeats` calls and ratios to the whole bucket, all in one process.
Run it with nothing else on the CPU.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_CLIP = REPO.parent / "shared/data/mocap/amass_dev/ACCAD/Male2Walk_c3d/B14_walk_turn_right_135_stageii.npz"


def _median_seconds(call, repeats: int) -> float:
    import jax

    times = []
    for _ in range(repeats):
        tick = time.perf_counter()
        jax.block_until_ready(call())
        times.append(time.perf_counter() - tick)
    return statistics.median(times)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("clip", nargs="?", default=None, help="a clip file (default: B14, else a sample clip)")
    parser.add_argument("--repeats", type=int, default=3, help="calls per figure (the median is kept)")
    parser.add_argument("--out", default=str(REPO / "bench" / "rollout_cpu.json"))
    args = parser.parse_args(argv)
    clip = args.clip or (str(DEFAULT_CLIP) if DEFAULT_CLIP.is_file() else None)
    if clip is not None and not Path(clip).is_file():
        print(f"{clip}: no such clip", file=sys.stderr)
        return 2

    from diffmimic.compile import enable_compilation_cache, use_cpu_cores

    use_cpu_cores(1)  # as a factory CPU worker: one device, before JAX starts
    enable_compilation_cache()
    import jax
    import jax.numpy as jnp

    from diffmimic import atomic
    from diffmimic.config import make_config
    from diffmimic.env import EnvState, ref_arrays
    from diffmimic.mocap.retarget import load_reference
    from diffmimic.robustness import check_robustness
    from diffmimic.step import compiled_functions, simulated_character

    config = make_config("cpu")
    character = simulated_character(config)
    if clip is None:
        from diffmimic.mocap.sample import write_sample_dataset

        clip = str(write_sample_dataset()[0])
    reference = load_reference(clip, fps=config.env.control_hz, character=character)
    functions = compiled_functions(config)
    ref = functions.prepared(ref_arrays(reference))
    state = functions.init(jax.random.PRNGKey(0), config.iterations)
    params, normaliser = state.params, state.normaliser
    start = EnvState(physics=jax.tree.map(lambda a: a[0], ref.physics), t=jnp.int32(0), key=jax.random.PRNGKey(0))
    frames, bucket = int(ref.length), int(ref.bucket)
    window = int(round(config.env.control_hz))

    def rollout(steps):
        return lambda: functions.rollout(params, normaliser, ref, start, jnp.int32(steps))

    print(f"{Path(clip).name}: {frames} frames, bucket {bucket}; compiling the rollout ...", flush=True)
    tick = time.perf_counter()
    jax.block_until_ready(rollout(1)())
    compile_s = time.perf_counter() - tick
    rows = {}
    for name, steps in (("whole bucket", bucket - 1), ("whole clip", frames - 1), ("1 s window", window)):
        seconds = _median_seconds(rollout(steps), args.repeats)
        rows[name] = {"steps": steps, "seconds": round(seconds, 4)}
        print(f"{name}: {steps} steps, {seconds:.3f} s", flush=True)
    check_robustness(functions, params, normaliser, ref, 1, 0.9)  # compiles `perturb`
    seconds = _median_seconds(
        lambda: check_robustness(functions, params, normaliser, ref, config.robust_rollouts, 0.9).survived,
        args.repeats,
    )
    rows["robustness check"] = {"rollouts": config.robust_rollouts, "seconds": round(seconds, 4)}
    print(f"robustness check: {config.robust_rollouts} rollouts, {seconds:.3f} s", flush=True)
    whole = rows["whole bucket"]["seconds"]
    for row in rows.values():
        row["over_whole_bucket"] = round(row["seconds"] / whole, 4)
    result = {
        "command": " ".join(["python", "scripts/bench_rollout.py", *(argv if argv is not None else sys.argv[1:])]),
        "clip": Path(clip).name,
        "frames": frames,
        "bucket": bucket,
        "preset": "cpu",
        "compile_s": round(compile_s, 1),
        "rows": rows,
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count()},
    }
    atomic.write_json(args.out, result)
    print(
        f"a 1 s window costs {rows['1 s window']['over_whole_bucket']:.3f}x the whole bucket, the whole clip "
        f"{rows['whole clip']['over_whole_bucket']:.3f}x; wrote {args.out}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
