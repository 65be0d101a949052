"""Benchmark: polishing settings on converged library policies, continued side by side.

    python scripts/bench_polish.py LIBRARY CLIP [CLIP ...] [--variants 0.3:5 0.3:1 0.1:1]
        [--iterations 40] [--preset cpu] [--out bench/polish_continuation_cpu.json]

Each CLIP (a clip name or id the library resolves) is loaded with its stored policy, which
converged in the factory's run, and trained on for `--iterations` more iterations once per
variant RATE:EVERY: a learning rate of RATE x the preset's (decaying linearly to zero over the
iterations; a fresh optimiser state, as every warm start has) and a full-clip evaluation every
EVERY iterations, the better of the current and the averaged parameters kept, as polishing does.
Same seed for every variant; what differs between them is the rate and how often the
evaluations redraw the start distribution. Runs go one after another in this process (one
compile). Prints and writes per run: the stored policy's pose error, the best evaluation's,
the median of the evaluations without a fall, how many fell, every evaluation, and seconds.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np

from diffmimic.train import enable_compilation_cache, make_config, train
from factory.library.store import PolicyLibrary


def variant(text: str) -> tuple[float, int]:
    rate, every = text.split(":")
    return float(rate), int(every)


def run(policy, rate: float, every: int, iterations: int, preset: str) -> dict:
    config = make_config(preset, iterations=iterations, eval_every=every, warm_start_learning_rate_scale=rate)
    started = time.perf_counter()
    label = f"{policy.record.name} {rate}:{every}"
    result = train(
        policy.reference,
        config,
        progress=lambda line: print(f"{label}  {line}", flush=True),
        init_policy=(policy.params, policy.normaliser),
    )
    kept = [r["pose_error_m"] for r in result.history if not r["fell"]]
    return {
        "clip": policy.record.name,
        "learning_rate_scale": rate,
        "eval_every": every,
        "iterations": iterations,
        "stored_pose_error_m": round(result.initial_metrics.pose_error_m, 4),
        "best_pose_error_m": round(result.metrics.pose_error_m, 4),
        "best_fell": result.metrics.fell,
        "median_no_fall_pose_error_m": round(float(np.median(kept)), 4) if kept else None,
        "evaluations": len(result.history),
        "fell": len(result.history) - len(kept),
        "train_s": round(result.train_s, 1),
        "wall_s": round(time.perf_counter() - started, 1),
        "trace": [[r["iteration"], round(r["pose_error_m"], 4), r["fell"]] for r in result.history],
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("library", type=Path)
    parser.add_argument("clips", nargs="+")
    parser.add_argument(
        "--variants",
        nargs="+",
        type=variant,
        default=[(0.3, 5), (0.3, 1), (0.1, 1)],
        help="RATE:EVERY (learning-rate scale : iterations between evaluations)",
    )
    parser.add_argument("--iterations", type=int, default=40)
    parser.add_argument("--preset", default="cpu")
    parser.add_argument("--out", type=Path, default=Path("bench/polish_continuation_cpu.json"))
    args = parser.parse_args(argv)
    enable_compilation_cache()
    library = PolicyLibrary(args.library)
    runs = []
    for clip in args.clips:
        policy = library.load_policy(clip)
        for rate, every in args.variants:
            row = run(policy, rate, every, args.iterations, args.preset)
            print(json.dumps({k: v for k, v in row.items() if k != "trace"}), flush=True)
            runs.append(row)
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(
                json.dumps({"command": " ".join(sys.argv), "machine": platform.machine(), "runs": runs}, indent=1)
                + "\n"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
