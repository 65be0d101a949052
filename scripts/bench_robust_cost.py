"""Benchmark: what robust training costs per train-step iteration (issue 27), measured in one run.

    python scripts/bench_robust_cost.py [CLIP] [--iterations 3] [--rounds 3] [--out bench/robust_cost_cpu.json]

Compiles the `cpu` preset's train step twice on one real clip (default: the dev set's
B10_walk_turn_left_45): as shipped (`train_perturbed_share`, `train_push_share`: the share of
rollouts that start perturbed and that are pushed as they start; the step draws a perturbation
for every rollout and scales it by 0 or 1, so the shares do not change its cost) and with both
shares 0 (the step before robust training: no perturbation is computed). For each: compile
seconds, then seconds per iteration
(after `block_until_ready`) in `--rounds` interleaved rounds of `--iterations` steps (A B A B ...,
so a slow spell of the machine falls on both), the median round, and one whole-clip evaluation
rollout. The ratio of the two medians is the figure, measured in one process on one machine. Run
it with nothing else on the CPU.
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
DEFAULT_CLIP = REPO.parent / "shared/data/mocap/amass_dev/ACCAD/Male2Walk_c3d/B10_walk_turn_left_45_stageii.npz"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("clip", nargs="?", default=str(DEFAULT_CLIP))
    parser.add_argument("--iterations", type=int, default=3, help="iterations per round")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds per variant")
    parser.add_argument("--out", default=str(REPO / "bench" / "robust_cost_cpu.json"))
    args = parser.parse_args(argv)
    if not Path(args.clip).is_file():
        print(f"{args.clip}: no such clip (the dev clips live in ../shared/data/mocap)", file=sys.stderr)
        return 2

    from diffmimic.compile import use_cpu_cores

    use_cpu_cores(1)  # as a factory CPU worker: one device, before JAX starts
    import jax

    from diffmimic import atomic
    from diffmimic.config import make_config
    from diffmimic.env import ref_arrays
    from diffmimic.mocap.retarget import load_reference
    from diffmimic.step import compiled_functions, evaluate_policy, make_curriculum, simulated_character

    variants = {
        "robust (as shipped)": {},
        "no perturbed starts, no pushes": {"env": {"train_perturbed_share": 0.0, "train_push_share": 0.0}},
    }
    runs = {}
    for name, overrides in variants.items():
        config = make_config("cpu", **overrides)
        reference = load_reference(args.clip, fps=config.env.control_hz, character=simulated_character(config))
        functions = compiled_functions(config)
        ref = functions.prepared(ref_arrays(reference))
        curriculum = make_curriculum(config, reference.num_frames, ref.bucket)
        state = functions.init(jax.random.PRNGKey(0), config.iterations)
        print(f"{name}: compiling the train step and the evaluation ...", flush=True)
        tick = time.perf_counter()
        state, _ = functions.train_step(state, ref, curriculum)
        jax.block_until_ready(state)
        compile_s = time.perf_counter() - tick
        evaluate_policy(functions, state.params, state.normaliser, ref)
        runs[name] = {"functions": functions, "ref": ref, "curriculum": curriculum, "state": state}
        runs[name]["row"] = {"variant": name, "overrides": overrides, "compile_s": round(compile_s, 1), "rounds_s": []}
    # Interleaved rounds (A B A B ...), so a slow spell of the machine falls on both variants.
    for round_index in range(args.rounds):
        for name, run in runs.items():
            functions = run["functions"]
            tick = time.perf_counter()
            for _ in range(args.iterations):
                run["state"], _ = functions.train_step(run["state"], run["ref"], run["curriculum"])
                jax.block_until_ready(run["state"])
            seconds = (time.perf_counter() - tick) / args.iterations
            run["row"]["rounds_s"].append(round(seconds, 3))
            print(f"round {round_index + 1}/{args.rounds}, {name}: {seconds:.2f} s per iteration", flush=True)
    rows = []
    for run in runs.values():
        row = run["row"]
        row["s_per_iteration"] = round(statistics.median(row["rounds_s"]), 3)
        tick = time.perf_counter()
        evaluate_policy(run["functions"], run["state"].params, run["state"].normaliser, run["ref"])
        row["evaluation_s"] = round(time.perf_counter() - tick, 3)
        rows.append(row)
    ratio = rows[0]["s_per_iteration"] / rows[1]["s_per_iteration"]
    result = {
        "command": " ".join(["python", "scripts/bench_robust_cost.py", *(argv or sys.argv[1:])]),
        "clip": Path(args.clip).name,
        "frames": int(reference.num_frames),
        "preset": "cpu",
        "rows": rows,
        "robust_over_plain_per_iteration": round(ratio, 3),
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count()},
    }
    atomic.write_json(args.out, result)
    print(f"robust training costs {ratio:.2f}x the plain step per iteration; wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
