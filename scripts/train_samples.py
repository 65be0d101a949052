"""Trains every sample clip in one process (one compile) and tabulates initial vs trained error.

    python scripts/train_samples.py [--preset cpu] [--iterations N] [--clips squat wave ...]
        [--out bench/train_samples_cpu.json]

Prints one row per clip (untrained and trained pose error, ratio, fell, train seconds) and writes
them with the exact command as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="cpu")
    parser.add_argument("--iterations", type=int)
    parser.add_argument("--backend")
    parser.add_argument("--clips", nargs="*")
    parser.add_argument("--out", default="bench/train_samples_cpu.json")
    args = parser.parse_args()

    from diffmimic.mocap.retarget import load_reference
    from diffmimic.mocap.sample import SAMPLE_CLIPS, write_sample_dataset
    from diffmimic.train import enable_compilation_cache, make_config, train

    enable_compilation_cache()
    overrides = {}
    if args.iterations:
        overrides["iterations"] = args.iterations
    if args.backend:
        overrides["env"] = {"backend": args.backend}
    config = make_config(args.preset, **overrides)
    paths = {p.name.removesuffix("_poses.npz"): p for p in write_sample_dataset()}
    clips = args.clips or list(SAMPLE_CLIPS)
    rows = []
    print(
        f"{'clip':<16} {'untrained m':>11} {'trained m':>10} {'ratio':>6} {'fell':>5} {'train s':>8} {'compile s':>9}"
    )
    started = time.perf_counter()
    for clip in clips:
        reference = load_reference(paths[clip], fps=config.env.control_hz)
        result = train(reference, config, progress=None)
        row = {
            "clip": clip,
            **result.summary(config),
            "ratio": result.metrics.pose_error_m / result.initial_metrics.pose_error_m,
            "curve": [(r["iteration"], round(r["pose_error_m"], 4)) for r in result.history],
        }
        rows.append(row)
        print(
            f"{clip:<16} {row['initial_pose_error_m']:>11.3f} {row['pose_error_m']:>10.3f} {row['ratio']:>6.2f} "
            f"{str(row['fell']):>5} {row['train_s']:>8.0f} {row['compile_s']:>9.0f}",
            flush=True,
        )
    total = time.perf_counter() - started
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps(
            {
                "command": "python " + " ".join(sys.argv),
                "machine": platform.machine(),
                "cpus": os.cpu_count(),
                "total_s": round(total, 1),
                "results": rows,
            },
            indent=2,
        )
    )
    print(f"{len(rows)} clips in {total:.0f} s ({3600 * len(rows) / total:.1f} clips/hour); wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
