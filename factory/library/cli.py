"""The library's command line (`python -m factory.library`, `diffmimic-library`)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Sequence

from factory.library import snapshot
from factory.library.files import default_root
from factory.library.index import STATUSES, LibraryError
from factory.library.runtime import character_dict
from factory.library.store import PolicyLibrary
from factory.library.transitions import TransitionGraph

# --------------------------------------------------------------------------------------------
# Command line.


def _fmt(value, spec: str = "") -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return format(value, spec)


def _table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(header)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths)).rstrip()]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    return "\n".join(lines)


def _cmd_list(library: PolicyLibrary, args) -> int:
    records = library.query(
        dataset=args.dataset, status=args.status, name_glob=args.glob, all_versions=args.all_versions
    )
    if args.json:
        print(json.dumps([r.to_dict(history=False) for r in records], indent=2))
        return 0
    rows = [
        [
            r.clip_id,
            str(r.version),
            r.status,
            _fmt(r.pose_error_m, ".4f"),
            _fmt(r.fell),
            _robust_cell(r),
            _fmt(r.frames),
            _fmt(r.duration_s, ".2f"),
            str(r.attempts),
            r.created_at[:19],
        ]
        for r in records
    ]
    print(_table(rows, ["clip", "ver", "status", "pose_err_m", "fell", "robust", "frames", "secs", "tries", "created"]))
    print(f"{len(records)} clip(s)" + (" (all versions)" if args.all_versions else ""))
    return 0


def _robust_cell(record) -> str:
    """'9/10': perturbed rollouts without a fall out of those run; '-': not checked."""
    data = record.robustness
    return f"{data['survived']}/{data['rollouts']}" if data else "-"


def _cmd_robustness(library: PolicyLibrary, args) -> int:
    policy = library.load_policy(args.name, args.version)
    result = policy.check_robustness(args.rollouts, args.min_survival, seed=args.seed)
    data = result.to_dict()
    if args.json:
        print(json.dumps(data, indent=2))
        return 0
    falls = ", ".join(f"{t:.2f} s" for t in result.fell_at_s) or "none"
    print(
        f"{policy.record.ref}: {result.survived}/{result.rollouts} perturbed and pushed rollouts without a fall "
        f"({'passes' if result.passed else 'fails'} {result.min_survival:.0%}); falls at: {falls}; "
        f"median pose error {data['median_pose_error_m']:.4f} m"
    )
    return 0


def _cmd_transitions(library: PolicyLibrary, args) -> int:
    current = {r.clip_id: r.version for r in library.query(status=("converged", "best_effort"))}
    graph = TransitionGraph(library.root, current)
    clip = library.get(args.name).clip_id
    best = {pair: t for pair, t in graph.best().items() if (t.to_clip if args.into else t.from_clip) == clip}
    if args.json:
        print(json.dumps([t.to_dict() for t in best.values()], indent=2))
        return 0
    if not best:
        print(
            f"{clip}: no transitions simulated yet; build them with `python -m factory.compose --library "
            f"{library.root} --transitions --out edges.json`"
        )
        return 0
    rows = [
        [
            library.get(t.from_clip if args.into else t.to_clip).name,
            "yes" if t.survived else "no",
            str(t.exit_frame),
            str(t.entry_frame),
            f"{t.cost_m:.3f}",
            "-" if t.fell_at_s is None else f"{t.fell_at_s:.2f}",
        ]
        for t in sorted(best.values(), key=lambda t: (not t.survived, t.cost_m))
    ]
    print(_table(rows, ["from" if args.into else "to", "survives", "exit", "entry", "cost_m", "fell_at_s"]))
    ok = sum(t.survived for t in best.values())
    print(
        f"{ok}/{len(best)} hand-overs {'into' if args.into else 'out of'} {clip} survive "
        f"(simulated, {next(iter(best.values())).window_s:g} s after the switch)"
    )
    return 0


def _cmd_show(library: PolicyLibrary, args) -> int:
    record = library.get(args.name, args.version)
    files = library.files(record) if record.path else {}
    if args.json:
        print(
            json.dumps(
                {
                    **record.to_dict(),
                    "directory": str(library.root / record.path) if record.path else None,
                    "files": {k: {"size": s, "sha256": d} for k, (s, d) in files.items()},
                    "versions": [r.version for r in library.versions(record.clip_id)],
                },
                indent=2,
            )
        )
        return 0
    data = record.to_dict(history=False)
    for key in ("config", "character"):
        data[key] = "(json, see --json)" if data[key] is not None else None
    width = max(map(len, data))
    for key, value in data.items():
        print(f"{key.ljust(width)}  {json.dumps(value) if isinstance(value, dict) else _fmt(value)}")
    print(f"{'versions'.ljust(width)}  {[r.version for r in library.versions(record.clip_id)]}")
    if record.path:
        directory = library.root / record.path
        print(f"{'directory'.ljust(width)}  {directory}")
        print(f"{'checkpoint'.ljust(width)}  {directory / 'checkpoint'}")
        print(f"{'reference'.ljust(width)}  {directory / 'reference.npz'}")
    history = record.history or []
    print(f"history ({len(history)} evaluations)")
    if history:
        rows = [
            [
                _fmt(h.get("iteration")),
                _fmt(h.get("loss"), ".5f"),
                _fmt(h.get("pose_error_m"), ".4f"),
                _fmt(h.get("replay_rate"), ".2f"),
                _fmt(h.get("fell")),
                _fmt(h.get("samples")),
                _fmt(h.get("train_s"), ".1f"),
            ]
            for h in history
        ]
        print(_table(rows, ["iter", "loss", "pose_err_m", "replay", "fell", "samples", "train_s"]))
    return 0


def _cmd_rollout(library: PolicyLibrary, args) -> int:
    policy = library.load_policy(args.name, args.version)
    last = policy.reference.num_frames - 2  # a rollout needs at least one step inside the clip
    if not 0 <= args.start_frame <= last:
        raise LibraryError(
            f"{policy.record.ref}: --start-frame {args.start_frame} is outside the clip "
            f"(frames 0..{last} can start a rollout)"
        )
    if args.seconds is not None and not args.seconds > 0:
        raise LibraryError(f"--seconds must be positive, got {args.seconds}")
    trajectory = policy.rollout(seconds=args.seconds, start_frame=args.start_frame)
    out = trajectory.save(
        args.out,
        meta={
            "title": f"{policy.record.clip_id} v{policy.record.version}",
            "kind": "rollout",
            "character": character_dict(policy.character_config),
        },
    )
    m = trajectory.metrics
    fell = f"yes, at {m.fell_at_s:.2f} s" if m.fell else "no"
    print(
        f"{policy.record.ref}: {trajectory.steps} steps ({trajectory.seconds:.2f} s) from frame "
        f"{args.start_frame}: pose error {m.pose_error_m:.4f} m, worst 5% {m.absurdity['worst_5pct']:.4f} m, "
        f"fell: {fell}; wrote {out}"
    )
    return 0


def _cmd_render(args) -> int:
    from factory.presentation.render import FORMATS, render, scene_for_policy, scene_from_file

    out = Path(args.out)
    if out.suffix.lower() not in FORMATS:
        raise LibraryError(f"{out}: unknown output format (use {', '.join(FORMATS)})")
    if args.name.endswith(".npz"):
        if not Path(args.name).is_file():
            raise LibraryError(f"{args.name}: no such trajectory file")
        try:
            scene = scene_from_file(args.name)
        except ValueError as err:
            raise LibraryError(str(err)) from None
        what = args.name
    else:
        library = PolicyLibrary(args.root)
        from diffmimic.train import enable_compilation_cache

        enable_compilation_cache()
        policy = library.load_policy(args.name, args.version)
        scene, _ = scene_for_policy(policy, seconds=args.seconds, start_frame=args.start_frame)
        what = policy.record.ref
    progress = lambda k, n: print(f"  frame {k}/{n}", flush=True)
    path = render(scene, out, progress=progress)
    print(f"rendered {what} ({scene.frames} frames, {scene.frames / scene.fps:.1f} s) to {path}")
    return 0


def _cmd_export_motion(args) -> int:
    """The simulated character's motion (a policy's rollout, or a trajectory .npz) as BVH or AMASS."""
    from diffmimic.mocap.export import export_motion

    if args.name.endswith(".npz"):
        from diffmimic.rollout import Trajectory

        if not Path(args.name).is_file():
            raise LibraryError(f"{args.name}: no such trajectory file")
        try:
            trajectory, _ = Trajectory.load(args.name)
        except ValueError as err:
            raise LibraryError(str(err)) from None
        what = args.name
    else:
        from diffmimic.train import enable_compilation_cache

        enable_compilation_cache()
        policy = PolicyLibrary(args.root).load_policy(args.name, args.version)
        trajectory = policy.rollout(seconds=args.seconds, start_frame=args.start_frame)
        what = policy.record.ref
    out = export_motion(args.out, trajectory.qpos, trajectory.fps, args.format, units=args.units)
    print(f"wrote {what} ({trajectory.qpos.shape[0]} frames at {trajectory.fps:g} fps) as {args.format} to {out}")
    return 0


def _cmd_report(library: PolicyLibrary, args) -> int:
    from factory.presentation.library_report import write_library_report

    renders = args.renders
    if renders not in ("all", "none"):
        try:
            renders = int(renders)
        except ValueError:
            raise LibraryError(f"--renders must be all, none or a number, got {renders!r}") from None
    if renders != "none" and renders != 0:
        from diffmimic.train import enable_compilation_cache

        enable_compilation_cache()
    path = write_library_report(
        library,
        args.out,
        dataset=args.dataset,
        renders=renders,
        render_seconds=args.seconds,
        progress=lambda line: print(line, flush=True),
    )
    print(f"wrote {path}")
    return 0


def _cmd_export(library: PolicyLibrary, args) -> int:
    record = library.get(args.name, args.version)
    out = library.export(record.clip_id, args.dir, record.version)
    print(f"exported {record.ref} to {out}")
    return 0


def _cmd_verify(library: PolicyLibrary, args) -> int:
    report = library.verify(load=not args.hashes_only, progress=lambda line: print(line, flush=True))
    for path in report.leftovers:
        print(f"LEFTOVER {path} (an interrupted put; no index row points to it)")
    if args.remove_leftovers and report.leftovers:
        for path in library.remove_leftovers():
            print(f"removed {path.relative_to(library.root)}")
    print(
        f"{report.checked} checkpoint(s) checked: {len(report.broken)} problem(s), {len(report.leftovers)} leftover(s)"
    )
    return 0 if report.ok else 1


def _cmd_stats(library: PolicyLibrary, args) -> int:
    stats = library.stats()
    if args.json:
        print(json.dumps(stats, indent=2))
        return 0
    print(f"{stats['clips']} clips, {stats['versions']} versions")
    for status, count in stats["by_status"].items():
        print(f"  {status:<12} {count}")
    print(f"  fell         {stats['fell']}")
    if stats["pose_error_m"]:
        print("pose error (m): " + "  ".join(f"{k} {v:.4f}" for k, v in stats["pose_error_m"].items()))
    return 0


def _cmd_put(library: PolicyLibrary, args) -> int:
    record = library.put_directory(args.clip_id, args.train_dir, status=args.status, attempts=args.attempts)
    print(f"added {record.ref} ({record.status}, pose error {_fmt(record.pose_error_m, '.4f')} m)")
    return 0


def _cmd_publish(library: PolicyLibrary, args) -> int:
    info = snapshot.publish_snapshot(library, args.dir)
    print(
        f"published {info['rows']} rows to {Path(args.dir).expanduser().absolute()} "
        f"({info['version_directories_copied']} new version directories, {info['seconds']:.1f} s); "
        f"readers: python -m factory.library --library {args.dir} list"
    )
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m factory.library", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--library",
        "--root",
        dest="root",
        default=default_root(),
        help="the library directory (default $DIFFMIMIC_LIBRARY or ~/diffmimic-library; --root is the old spelling)",
    )
    commands = parser.add_subparsers(dest="command", required=True)

    p = commands.add_parser("list", help="clips in the library (newest version of each)")
    p.add_argument("--status", choices=STATUSES)
    p.add_argument("--dataset")
    p.add_argument("--glob", help="shell pattern over clip id or short name")
    p.add_argument("--all-versions", action="store_true")
    p.add_argument("--json", action="store_true")
    p.set_defaults(run=_cmd_list)

    for command, help_text, run in (
        ("show", "one clip's row, metric history and paths", _cmd_show),
        ("rollout", "simulate a policy and save the trajectory", _cmd_rollout),
        ("export", "copy one policy into a self-contained directory", _cmd_export),
    ):
        p = commands.add_parser(command, help=help_text)
        p.add_argument("name", help="clip id or unique short name")
        p.add_argument("--version", type=int, help="default: the newest")
        p.set_defaults(run=run)
        if command == "show":
            p.add_argument("--json", action="store_true")
        elif command == "rollout":
            p.add_argument("--seconds", type=float, help="default: to the clip's end; longer loops the clip")
            p.add_argument("--start-frame", type=int, default=0)
            p.add_argument("--out", required=True, help="trajectory .npz")
        else:
            p.add_argument("dir", help="target directory (new or empty)")

    p = commands.add_parser(
        "robustness",
        help="roll a policy out from perturbed starts, each pushed once, and "
        "count the falls (the check convergence requires)",
    )
    p.add_argument("name", help="clip id or unique short name")
    p.add_argument("--version", type=int, help="default: the newest")
    p.add_argument("--rollouts", type=int, help="default: the policy's config (robust_rollouts)")
    p.add_argument("--min-survival", type=float, help="default: the policy's config (robust_min_survival)")
    p.add_argument("--seed", type=int, default=0, help="another seed draws other perturbations")
    p.add_argument("--json", action="store_true")
    p.set_defaults(run=_cmd_robustness)

    p = commands.add_parser(
        "transitions", help="where a policy can hand over to (simulated hand-overs of the transition graph)"
    )
    p.add_argument("name", help="clip id or unique short name")
    p.add_argument("--into", action="store_true", help="the hand-overs into NAME instead of out of it")
    p.add_argument("--json", action="store_true")
    p.set_defaults(run=_cmd_transitions)

    p = commands.add_parser(
        "render", help="draw a policy (or a trajectory .npz) beside its reference: HTML viewer, GIF or MP4"
    )
    p.add_argument("name", help="clip name, or a trajectory .npz from `rollout` or `python -m factory.compose`")
    p.add_argument(
        "--out", required=True, help="FILE.html (offline viewer), FILE.gif, FILE.mp4 or FILE.png (12 frames on a page)"
    )
    p.add_argument("--version", type=int, help="default: the newest")
    p.add_argument("--seconds", type=float, help="default: to the clip's end; longer loops the clip")
    p.add_argument("--start-frame", type=int, default=0)
    p.set_defaults(run=_cmd_render, needs_library=False)

    p = commands.add_parser(
        "export-motion",
        help="the simulated motion of a policy (or a trajectory .npz) as "
        "BVH (SMPL skeleton, Y-up) or an AMASS SMPL-H .npz",
    )
    p.add_argument("name", help="clip name, or a trajectory .npz from `rollout` or `python -m factory.compose`")
    p.add_argument("--format", required=True, choices=("bvh", "amass"))
    p.add_argument("--out", required=True, help="FILE.bvh or FILE.npz")
    p.add_argument("--units", choices=("m", "cm"), default="m", help="BVH lengths (default m)")
    p.add_argument("--version", type=int, help="default: the newest")
    p.add_argument("--seconds", type=float, help="default: to the clip's end; longer loops the clip")
    p.add_argument("--start-frame", type=int, default=0)
    p.set_defaults(run=_cmd_export_motion, needs_library=False)

    p = commands.add_parser(
        "report", help="one HTML page for the whole library (sortable table, histogram, failures, renders)"
    )
    p.add_argument("--out", required=True, help="directory for index.html and renders/")
    p.add_argument("--dataset", help="only this dataset")
    p.add_argument(
        "--renders",
        default="all",
        help="render policies without a render in DIR/renders: all (default), none, or at most N new ones",
    )
    p.add_argument("--seconds", type=float, help="render length (default: each clip's length)")
    p.set_defaults(run=_cmd_report)

    p = commands.add_parser("verify", help="check every checkpoint against the index")
    p.add_argument("--hashes-only", action="store_true", help="skip loading checkpoints")
    p.add_argument("--remove-leftovers", action="store_true", help="delete directories of interrupted puts")
    p.set_defaults(run=_cmd_verify)

    p = commands.add_parser("stats", help="counts by status, pose error quantiles")
    p.add_argument("--json", action="store_true")
    p.set_defaults(run=_cmd_stats)

    p = commands.add_parser("put", help="add a `python -m diffmimic.train` output directory (creates the library)")
    p.add_argument("clip_id", help="dataset/relative/path, e.g. sample/squat_poses")
    p.add_argument("train_dir")
    p.add_argument("--status", required=True, choices=("converged", "best_effort"))
    p.add_argument("--attempts", type=int, default=1)
    p.set_defaults(run=_cmd_put)

    p = commands.add_parser(
        "publish",
        help="copy a read-only snapshot of the library to DIR (shared storage), "
        "safe to read on NFS; run again to update it",
    )
    p.add_argument("dir")
    p.set_defaults(run=_cmd_publish)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if not getattr(args, "needs_library", True):
            return args.run(args)
        library = PolicyLibrary(args.root, create=args.command == "put")
        if args.command in ("rollout", "verify", "put"):  # (render and report turn it on when they simulate)
            from diffmimic.train import enable_compilation_cache

            enable_compilation_cache()
        return args.run(library, args)
    except LibraryError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
