"""`python -m diffmimic.character describe [--backend B] [--body human] [--json]`: the simulated character, per
body (mass, inertia as simulated) and per hinge (range, kp, kd, torque limit, armature).

`python -m diffmimic.character ranges CLIP_OR_DIR...`: per hinge, the extremes the clips' retargeted
poses reach and the share of frames outside the human range (`anthropometry.HINGE_RANGE_DEG`)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Sequence

import numpy as np

from diffmimic.character import anthropometry
from diffmimic.character.constants import HINGE_ORDER
from diffmimic.character.describe import describe
from diffmimic.character.skeleton import BODY_NAMES
from diffmimic.env import EnvConfig
from diffmimic.mocap.retarget import load_reference
from diffmimic.physics import BACKENDS, BODIES, backend_character, body_config, default_body


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m diffmimic.character", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    describe = commands.add_parser("describe", help="what the backend simulates, per body and hinge")
    describe.add_argument("--backend", choices=BACKENDS, help="physics backend (default: EnvConfig().backend)")
    describe.add_argument("--body", choices=BODIES, help="named body (default: EnvConfig().body)")
    describe.add_argument("--json", action="store_true", help="print JSON instead of tables")
    ranges = commands.add_parser("ranges", help="hinge extremes of mocap clips against the human ranges")
    ranges.add_argument("paths", nargs="+", help="mocap files, or directories searched for .npz/.pkl/.amc")
    return parser


def hinge_extremes(paths: Sequence[str]) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray, int]:
    """(hinge names, min deg, max deg, frames outside the human range per hinge, frames) over the
    retargeted clips under `paths`."""
    files = []
    for path in map(Path, paths):
        files += sorted(p for p in path.rglob("*") if p.suffix in (".npz", ".pkl", ".amc")) if path.is_dir() else [path]
    if not files:
        raise ValueError(f"no mocap files under {', '.join(paths)}")
    names = [f"{body}_{axis}" for body in BODY_NAMES[1:] for axis in HINGE_ORDER[body]]
    low, high = anthropometry.hinge_ranges_rad()
    angles = np.concatenate([load_reference(f).qpos[:, 7:] for f in files])
    outside = ((angles < low) | (angles > high)).sum(axis=0)
    return names, np.degrees(angles.min(0)), np.degrees(angles.max(0)), outside, len(angles)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "ranges":
        try:
            names, low, high, outside, frames = hinge_extremes(args.paths)
        except (OSError, ValueError) as err:  # MocapError is a ValueError
            print(f"error: {err}", file=sys.stderr)
            return 2
        print(f"{frames} frames; hinge, extremes reached (deg), human range (deg), frames outside it")
        for name, lo, hi, out in zip(names, low, high, outside):
            body, axis = name.rsplit("_", 1)
            r_lo, r_hi = anthropometry.hinge_range_deg(body, axis)
            print(f"{name:<14} {lo:8.1f} {hi:8.1f}   {r_lo:7.0f} {r_hi:7.0f}   {out:6d} ({100 * out / frames:.2f} %)")
        return 0
    backend = args.backend or EnvConfig().backend
    body = body_config(args.body or EnvConfig().body, default_body(backend))
    description = describe(backend_character(backend, base=body), backend)
    print(json.dumps(description.to_dict(), indent=1) if args.json else description.table())
    return 0


if __name__ == "__main__":
    sys.exit(main())
