"""Benchmark: what contact-aware retargeting does to real clips (no training, ~2 min on a CPU).

    python scripts/bench_support.py [ROOT ...] [--out bench/support_cpu.json]

For every clip under the roots (default: ../shared/data/mocap/amass_dev and varied_dev; AMASS
.npz, CMU .amc, .bvh), retargets it twice: grounded on its fitted floor plane only
(`retarget(..., support=False)`, the rule before issue 28) and with the support shift
(`retarget.support_shift`: every frame not in flight has its lowest point, over the whole body,
within SUPPORT_TOLERANCE_M of the floor). Writes per clip: frames, the share of frames in flight,
the share shifted by more than 1 mm and the largest shift, and the whole body's lowest point
(median, 95th percentile, max) on support frames before and after. A reference that floats on
support frames is physically impossible to track; one that keeps its flights keeps its jumps.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
from pathlib import Path

import numpy as np

from diffmimic.character.character import make_character
from diffmimic.mocap import retarget as retargeting
from diffmimic.mocap.motion import MocapError
from diffmimic.mocap.readers import load_motion

MOCAP = Path(__file__).resolve().parents[2] / "shared" / "data" / "mocap"
PATTERNS = ("*.npz", "*.amc", "*.bvh")


def clip_figures(path: Path, character) -> dict:
    motion = load_motion(path)
    plane = retargeting.retarget(motion, character, support=False)
    supported = retargeting.retarget(motion, character)
    lowest = {}
    for name, reference in (("plane", plane), ("supported", supported)):
        lowest[name] = character.lowest_points(reference.body_pos, reference.body_rot)[0][:, 2]
    com = character.center_of_mass(plane.body_pos, plane.body_rot)[:, 2]
    flight = retargeting.flight_frames(com, lowest["plane"], supported.fps)
    support = ~flight if (~flight).any() else np.ones_like(flight)
    shift = np.abs(supported.support_shift)

    def spread(heights):
        on = heights[support]
        return [round(float(np.median(on)), 3), round(float(np.quantile(on, 0.95)), 3), round(float(on.max()), 3)]

    return {
        "clip": str(path.relative_to(MOCAP)) if path.is_relative_to(MOCAP) else str(path),
        "frames": supported.num_frames,
        "duration_s": round(supported.duration_s, 2),
        "flight_share": round(float(flight.mean()), 3),
        "shifted_share": round(float(np.mean(shift > 1e-3)), 3),
        "max_shift_m": round(float(shift.max()), 3),
        "support_lowest_plane_m": spread(lowest["plane"]),
        "support_lowest_supported_m": spread(lowest["supported"]),
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("roots", nargs="*", type=Path, default=[MOCAP / "amass_dev", MOCAP / "varied_dev"])
    parser.add_argument("--out", type=Path, default=Path("bench/support_cpu.json"))
    args = parser.parse_args(argv)
    clips = []
    for root in args.roots:
        if not root.is_dir():
            print(f"error: {root}: no such directory", file=sys.stderr)
            return 2
        clips += sorted(p for pattern in PATTERNS for p in root.rglob(pattern))
    character = make_character()
    rows = []
    print(f"{len(clips)} clips: retargeting each twice (plane only, plane + support)", flush=True)
    print("clip | frames | flight | shifted | max shift m | lowest on support, plane -> supported (p50/p95/max m)")
    for path in clips:
        try:
            row = clip_figures(path, character)
        except MocapError as err:
            print(f"{path}: skipped: {err}", flush=True)
            continue
        rows.append(row)
        before, after = row["support_lowest_plane_m"], row["support_lowest_supported_m"]
        print(
            f"{row['clip']} | {row['frames']} | {row['flight_share']:.1%} | {row['shifted_share']:.1%} | "
            f"{row['max_shift_m']:.3f} | {'/'.join(map(str, before))} -> {'/'.join(map(str, after))}",
            flush=True,
        )
    record = {
        "command": " ".join(["python scripts/bench_support.py", *sys.argv[1:]]),
        "machine": platform.platform(),
        "tolerance_m": retargeting.SUPPORT_TOLERANCE_M,
        "clips": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=1) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
