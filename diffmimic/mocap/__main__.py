"""Command line: ``python -m diffmimic.mocap inspect FILE``, ``... convert FILE --out REF.npz``,
``... report FILE...`` (what retargeting did: rig, units, scale, support shift, foot skating and penetration)
and ``... sample --out DIR`` (write the embedded sample clips and convert each to a reference).

Bad input exits with code 2 and one line naming the file and the problem.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from diffmimic.mocap.motion import MocapError
from diffmimic.mocap.readers import inspect_motion
from diffmimic.mocap.sample import write_sample_dataset


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m diffmimic.mocap", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    inspect = sub.add_parser("inspect", help="print format, frames, fps, duration_s, joints as JSON")
    inspect.add_argument("file")
    inspect.add_argument("--skeleton", help="CMU .asf for an .amc (default: found beside it)")
    convert = sub.add_parser("convert", help="retarget a clip to the character and write REF.npz")
    convert.add_argument("file")
    convert.add_argument("--out", required=True, help="output reference .npz")
    convert.add_argument("--fps", type=float, default=30.0, help="control rate (default 30)")
    convert.add_argument("--start-s", type=float, default=0.0)
    convert.add_argument("--duration-s", type=float, default=None)
    convert.add_argument("--skeleton", help="CMU .asf for an .amc (default: found beside it)")
    report = sub.add_parser(
        "report",
        help="retarget clips and print, per clip as JSON, what was done "
        "(BVH rig, joint map, units, scale), how far contact-aware retargeting "
        "shifted it onto the floor, and the reference's foot skating and floor penetration",
    )
    report.add_argument("files", nargs="+")
    report.add_argument("--fps", type=float, default=30.0, help="control rate (default 30)")
    sample = sub.add_parser("sample", help="write the sample clips and convert each to DIR/<clip>.npz")
    sample.add_argument("--out", required=True, help="directory for the references")
    sample.add_argument("--fps", type=float, default=30.0, help="control rate (default 30)")
    return parser


def _convert_sample(out_dir: str, fps: float) -> None:
    """Writes the sample clips (AMASS npz, cached) and one reference per clip into `out_dir`."""
    from diffmimic.mocap.retarget import load_reference

    clips = write_sample_dataset()
    print(f"{'clip':<20} {'frames':>6} {'seconds':>7}  reference")
    for number, clip in enumerate(clips, start=1):
        reference = load_reference(clip, fps=fps)
        name = clip.name.removesuffix("_poses.npz")
        out = reference.save(Path(out_dir) / f"{name}.npz")
        print(
            f"{name:<20} {reference.num_frames:>6} {reference.duration_s:>7.2f}  {out}   [{number}/{len(clips)}]",
            flush=True,
        )


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "inspect":
            print(json.dumps(inspect_motion(args.file, args.skeleton)))
            return 0
        if args.command == "report":
            from diffmimic.character.character import make_character
            from diffmimic.mocap.retarget_report import retarget_report

            character, failed = make_character(), 0
            for file in args.files:
                try:
                    print(json.dumps(retarget_report(file, fps=args.fps, character=character)), flush=True)
                except MocapError as err:
                    print(f"error: {err}", file=sys.stderr)
                    failed += 1
            return 2 if failed else 0
        if args.command == "sample":
            _convert_sample(args.out, args.fps)
            return 0
        if args.fps <= 0:
            raise MocapError(args.file, f"--fps must be > 0, got {args.fps}")
        from diffmimic.mocap.retarget import load_reference

        reference = load_reference(
            args.file, fps=args.fps, start_s=args.start_s, duration_s=args.duration_s, skeleton_path=args.skeleton
        )
        reference.save(args.out)
        print(
            json.dumps(
                {
                    "out": args.out,
                    "frames": reference.num_frames,
                    "fps": reference.fps,
                    "duration_s": round(reference.duration_s, 4),
                    "source": reference.source,
                }
            )
        )
        return 0
    except MocapError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
