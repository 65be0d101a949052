"""`python -m diffmimic.train` / `diffmimic-train`: train one clip without Ray.

python -m diffmimic.train CLIP_OR_REF --out DIR [--preset cpu|paper] [--iterations N]
    [--backend NAME] [--body NAME] [--seed S] [--start-s S] [--duration-s D]
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Sequence

from diffmimic.compile import enable_compilation_cache, use_cpu_cores
from diffmimic.config import PRESETS, make_config
from diffmimic.mocap.motion import MocapError
from diffmimic.mocap.retarget import load_reference
from diffmimic.physics import BACKENDS, BODIES, min_substeps
from diffmimic.step import env_split, simulated_character
from diffmimic.train import train, write_outputs


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m diffmimic.train", description="Train a DiffMimic policy for one clip."
    )
    parser.add_argument("clip", help="a mocap file (AMASS .npz, AIST++ .pkl, CMU .amc) or a converted REF.npz")
    parser.add_argument("--out", required=True, help="output directory")
    parser.add_argument("--preset", default="cpu", choices=sorted(PRESETS))
    parser.add_argument("--iterations", type=int, help="default: the preset's")
    parser.add_argument("--backend", choices=BACKENDS, help="default: the preset's (EnvConfig.backend)")
    parser.add_argument(
        "--body",
        choices=BODIES,
        help="uniform: one density, free hinges, one torque limit; human: de Leva masses, "
        "joint ranges, human torque limits (docs/physics.md)",
    )
    parser.add_argument("--seed", type=int, help="default: the preset's (TrainConfig.seed)")
    parser.add_argument("--start-s", type=float, default=0.0)
    parser.add_argument("--duration-s", type=float)
    parser.add_argument("--skeleton", help="CMU .asf for an .amc (default: found beside it)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    use_cpu_cores()  # before JAX starts: one CPU device per usable core
    overrides: dict = {}
    if args.iterations is not None:
        overrides["iterations"] = args.iterations
    if args.seed is not None:
        overrides["seed"] = args.seed
    env = {name: value for name, value in (("backend", args.backend), ("body", args.body)) if value}
    if args.backend:  # the preset's substeps, or more where the backend needs them (mjx: 1920 Hz)
        preset_env = make_config(args.preset).env
        env["substeps"] = max(preset_env.substeps, min_substeps(args.backend, preset_env.control_hz))
    if env:
        overrides["env"] = env
    config = make_config(args.preset, **overrides)
    enable_compilation_cache()
    try:
        reference = load_reference(
            args.clip,
            fps=config.env.control_hz,
            start_s=args.start_s,
            duration_s=args.duration_s,
            skeleton_path=args.skeleton,
            character=simulated_character(config),
        )
    except MocapError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    sharding = env_split(config)
    print(
        f"training {reference.source} ({reference.num_frames} frames, {reference.duration_s:.2f} s) "
        f"on {config.env.backend}, preset {args.preset}: {config.iterations} iterations x "
        f"{config.num_envs} envs x {config.horizon} steps"
        + (f", envs split over {sharding.mesh.size} CPU devices" if sharding else ""),
        flush=True,
    )
    result = train(reference, config, progress=lambda line: print(line, flush=True))
    out = write_outputs(args.out, result, config, reference)
    print(json.dumps({**result.summary(config), "out": str(out)}))
    return 0
