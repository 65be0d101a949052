"""Evaluation of a saved policy, the CLI (the metrics themselves: `diffmimic.metrics`).

    python -m diffmimic.evaluate DIR [--seconds S]

loads the policy trained into DIR by `python -m diffmimic.train`, rolls it out from the first
frame and prints its metrics as JSON. `--seconds` longer than the clip loops a cyclic clip (the
paper's 20 s test): the reference is tiled, each repeat re-anchored at where the last one ended.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Sequence

from diffmimic.env import length_bucket, ref_arrays
from diffmimic.metrics import EvalMetrics, loop_reference
from diffmimic.mocap.retarget import Reference
from diffmimic.policy import load_policy
from diffmimic.train import TrainConfig, compiled_functions, enable_compilation_cache, evaluate_policy


def evaluate_directory(directory: str | Path, seconds: float | None = None) -> EvalMetrics:
    """Loads DIR (config.json, checkpoint, reference.npz) and evaluates its policy."""
    directory = Path(directory)
    config = TrainConfig.from_dict(json.loads((directory / "config.json").read_text()))
    reference = Reference.load(directory / "reference.npz")
    if seconds is not None:
        reference = loop_reference(reference, seconds)
    functions = compiled_functions(config)
    params, normaliser = load_policy(
        directory, functions.env.observation_size, functions.env.action_size, config.hidden
    )
    ref = ref_arrays(reference, length_bucket(reference.num_frames))
    return evaluate_policy(functions, params, normaliser, ref)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m diffmimic.evaluate", description=__doc__.splitlines()[0])
    parser.add_argument("directory", help="a training output directory")
    parser.add_argument("--seconds", type=float, help="rollout length; beyond the clip, loop it")
    args = parser.parse_args(argv)
    directory = Path(args.directory)
    if not (directory / "config.json").is_file() or not (directory / "checkpoint").exists():
        print(f"error: {directory}: not a training output directory (no config.json/checkpoint)", file=sys.stderr)
        return 2
    enable_compilation_cache()
    print(json.dumps(evaluate_directory(directory, args.seconds).to_dict()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
