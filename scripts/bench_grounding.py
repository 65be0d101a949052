"""Benchmark: how a clip trains on its fitted floor plane vs one level offset per clip.

    python scripts/bench_grounding.py CLIP [CLIP ...] [--grounding level plane] [--preset cpu]
        [--iterations 300] [--out bench/grounding_cpu.json]

Each (clip, grounding) trains from scratch with the preset, stopping at convergence (no fall over
the whole clip from frame 0, pose error <= 0.04 m) after polishing, as the factory's first attempt
does. `plane` is retargeting's grounding (`diffmimic.mocap.retarget.fit_floor`); `level` is the
rule it replaced: one vertical offset per clip, the lowest foot point on z = 0 on the lowest 2 %
of frames. Runs go one after another in this process (one compile); to compare two on a 2-core
CPU, start one process per grounding pinned to a core each, each with its own `--out`
(`taskset -c 0 ... --grounding level --out bench/g_level.json`, `taskset -c 1 ... --grounding
plane --out bench/g_plane.json`). Writes per run: iterations, the first evaluation without a
fall, pose, global and worst-1 % errors, samples, training seconds, each evaluation, and the
best policy's mean root-relative error per body over the whole clip.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np

from diffmimic.mocap import retarget as retargeting
from diffmimic.mocap.readers import load_motion
from diffmimic.rollout import rollout_policy
from diffmimic.train import enable_compilation_cache, make_config, simulated_character, train
from factory.distribution.coordinator import FactoryOptions

TARGET_M = FactoryOptions.target_pose_error_m  # the factory's convergence target


def grounded(motion, character, fps: float, grounding: str):
    """The clip's reference grounded by `grounding` (plane: retargeting's; level: the old rule)."""
    if grounding == "plane":
        return retargeting.retarget(motion, character, fps=fps)
    raw = retargeting.retarget(motion, character, fps=fps, ground=False)
    lowest = retargeting.lowest_foot_height(character, raw.body_pos, raw.body_rot)
    offset = float(np.quantile(lowest, retargeting.GROUND_QUANTILE))
    qpos = raw.qpos.copy()
    qpos[:, 2] -= offset
    return dataclasses.replace(raw, qpos=qpos, body_pos=raw.body_pos - np.array([0.0, 0.0, offset]))


def run(clip: Path, grounding: str, config) -> dict:
    character = simulated_character(config)
    reference = grounded(load_motion(clip), character, config.env.control_hz, grounding)
    lowest = retargeting.lowest_foot_height(character, reference.body_pos, reference.body_rot)
    print(
        f"{clip.name} ({grounding}): {reference.num_frames} frames, lowest foot point median "
        f"{100 * np.median(lowest):.1f} cm",
        flush=True,
    )
    started = time.perf_counter()
    result = train(reference, config, progress=lambda line: print(line, flush=True), stop_at_pose_error_m=TARGET_M)
    trajectory = rollout_policy(config, result.params, result.normaliser, reference, character_config=character.config)
    relative = (trajectory.body_pos - trajectory.body_pos[:, :1]) - (
        trajectory.reference_body_pos - trajectory.reference_body_pos[:, :1]
    )
    per_body = np.linalg.norm(relative, axis=-1)[1:].mean(axis=0)
    return {
        **result.summary(config),
        "clip": clip.name,
        "grounding": grounding,
        "lowest_foot_point_median_m": round(float(np.median(lowest)), 4),
        "wall_s": round(time.perf_counter() - started, 1),
        "first_no_fall": next((r["iteration"] for r in result.history if not r["fell"]), None),
        "evaluations": [
            {"iteration": r["iteration"], "pose_error_m": round(r["pose_error_m"], 4), "fell_at_s": r.get("fell_at_s")}
            for r in result.history
        ],
        "per_body_pose_error_m": dict(zip(trajectory.body_names, np.round(per_body, 4).tolist())),
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("clips", nargs="+", type=Path)
    parser.add_argument("--grounding", nargs="+", default=["level", "plane"], choices=["level", "plane"])
    parser.add_argument("--preset", default="cpu")
    parser.add_argument("--iterations", type=int)
    parser.add_argument("--out", type=Path, default=Path("bench/grounding_cpu.json"))
    args = parser.parse_args(argv)
    for clip in args.clips:
        if not clip.is_file():
            print(f"error: {clip}: no such clip", file=sys.stderr)
            return 2
    overrides = {} if args.iterations is None else {"iterations": args.iterations}
    config = make_config(args.preset, **overrides)
    enable_compilation_cache()
    runs = []
    for clip in args.clips:
        for grounding in args.grounding:
            runs.append(run(clip, grounding, config))
            record = {
                "command": " ".join(["python scripts/bench_grounding.py", *sys.argv[1:]]),
                "machine": platform.platform(),
                "preset": args.preset,
                "runs": runs,
            }
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps(record, indent=1) + "\n")
            last = runs[-1]
            print(
                f"{last['clip']} {grounding}: {last['iterations']} iterations, first no fall "
                f"{last['first_no_fall']}, pose {last['pose_error_m']:.4f} m, global "
                f"{last['global_error_m']:.3f} m, fell {last['fell']}",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
