"""Benchmark: the factory's default command on real clips, per-clip quality and training time.

    python scripts/bench_real.py [--data-root ../shared/data/mocap/amass_dev | --source DATASET=DIR ...]
        [--kinds FILE] [--preset cpu]
        [--library out/bench_real] [--workers 2] [--max-attempts 3] [--clips GLOB] [--resume]
        [--out bench/real_dev_cpu.json] [--table bench/real_dev_cpu.md]

Runs `python factory/run.py --dataset amass --data-root DIR --library LIB --force` (the README's
command; defaults unchanged unless given) in a subprocess, then reads every clip's row back from
the policy library and writes one record per clip: duration, status (converged means no fall over
the whole clip from frame 0 and pose error <= the target), pose error, global error, pose
absurdity (mean error of the worst 1 % of frames), fell / fell at, attempts, samples and
training minutes (worker wall time over all attempts, compile included). Prints a Markdown table
and the summary the issue's targets are stated in (converged share, median and max minutes per
clip, median pose error), and writes both as JSON and Markdown.

Several datasets into one library (the varied dev set: CMU ASF/AMC and BVH), one factory run
each, in order: `--source cmu=DIR --source bvh=DIR` (instead of `--dataset`/`--data-root`).
`--kinds FILE` (JSON: {glob on the clip id: kind}, first match wins; e.g.
bench/varied_dev_kinds.json) labels each clip's kind of motion for the table and the per-kind
summary (median worker-minutes per clip-second of mocap, converged share, median pose error).
The kinds label the benchmark's report only: training never sees them.

`--resume` continues a run that was stopped (the whole dev set is hours on a 2-core CPU): the
library is kept and the factory runs without `--force`, so converged clips are skipped and clips
stopped mid-training resume from their checkpoints. Training minutes are then the library's
training seconds of each clip's stored attempt (compile and evaluations excluded), the one
measure every clip of a run split across processes has.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from fnmatch import fnmatch
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data" / "mocap" / "amass_dev"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python scripts/bench_real.py", description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", default=str(DEFAULT_DATA))
    parser.add_argument("--dataset", default="amass")
    parser.add_argument(
        "--source",
        action="append",
        metavar="DATASET=DIR",
        help="a dataset and its root, repeatable: one factory run each into the same library "
        "(replaces --dataset/--data-root)",
    )
    parser.add_argument("--kinds", help="JSON {glob on the clip id: kind of motion} for the table and summary")
    parser.add_argument("--preset", default="cpu")
    parser.add_argument("--library", default=str(REPO / "out" / "bench_real"))
    parser.add_argument("--workers", type=int)
    parser.add_argument("--max-attempts", type=int)
    parser.add_argument("--clips", help="only clips whose id matches this glob")
    parser.add_argument("--config-json", help="TrainConfig overrides (default: none, the preset as shipped)")
    parser.add_argument(
        "--from-library",
        action="store_true",
        help="do not run the factory: tabulate what LIB holds now (e.g. of a run still going); "
        "training minutes are then the stored attempt's training seconds, compile excluded",
    )
    parser.add_argument(
        "--resume",
        action="store_true",
        help="continue the run in LIB (keep it, no --force): finished clips are skipped, "
        "interrupted ones resume; minutes as with --from-library",
    )
    parser.add_argument("--out", default=str(REPO / "bench" / "real_dev_cpu.json"))
    parser.add_argument("--table", help="Markdown table path (default: --out with .md)")
    return parser


def sources(args) -> list[tuple[str, str]]:
    """(dataset, root) pairs: the --source ones, or --dataset with --data-root."""
    if not args.source:
        return [(args.dataset, args.data_root)]
    pairs = []
    for item in args.source:
        dataset, sep, root = item.partition("=")
        if not sep or not dataset or not root:
            raise SystemExit(f"error: --source {item!r}: expected DATASET=DIR")
        pairs.append((dataset, root))
    return pairs


def run_factories(args) -> tuple[dict, float, list[str]]:
    """One factory run per source into the same library; their summaries' clips joined."""
    # A fresh library, as a new user's: policies of an earlier run would warm-start this one's clips.
    if Path(args.library).exists() and not args.resume:
        print(f"removing the previous benchmark library {args.library}", flush=True)
        shutil.rmtree(args.library)
    joined: dict = {"clips": []}
    commands, wall_s = [], 0.0
    for index, (dataset, root) in enumerate(sources(args)):
        # --force only on the first run: the later ones add other clips to the same library
        summary, seconds, command = run_factory(args, dataset, root, force=index == 0 and not args.resume)
        joined["clips"] += summary.get("clips", [])
        commands.append(" ".join(Path(c).name if c == sys.executable else c for c in command))
        wall_s += seconds
    return joined, wall_s, commands


def run_factory(args, dataset: str, root: str, force: bool) -> tuple[dict, float, list[str]]:
    summary_file = Path(args.library) / f"bench_summary_{dataset}.json"
    command = [
        sys.executable,
        str(REPO / "factory" / "run.py"),
        "--dataset",
        dataset,
        "--data-root",
        root,
        "--library",
        args.library,
        "--preset",
        args.preset,
        "--report-renders",
        "0",
        "--summary-json",
        str(summary_file),
    ] + (["--force"] if force else [])
    for flag, value in (
        ("--workers", args.workers),
        ("--max-attempts", args.max_attempts),
        ("--clips", args.clips),
        ("--config-json", args.config_json),
    ):
        if value is not None:
            command += [flag, str(value)]
    print("running:", " ".join(command), flush=True)
    start = time.time()
    completed = subprocess.run(command, cwd=REPO)
    wall_s = time.time() - start
    if not summary_file.is_file():
        raise SystemExit(f"error: the factory exited {completed.returncode} without a summary ({summary_file})")
    return json.loads(summary_file.read_text()), wall_s, command


FORMATS = {".npz": "AMASS npz", ".pkl": "AIST++ pkl", ".amc": "ASF/AMC", ".bvh": "BVH"}


def kind_of(clip_id: str, kinds: dict[str, str]) -> str | None:
    """The first kind whose glob matches the clip id (or its file name); None without a match."""
    name = clip_id.rsplit("/", 1)[-1]
    return next((kind for glob, kind in kinds.items() if fnmatch(clip_id, glob) or fnmatch(name, glob)), None)


def clip_rows(
    library_root: str, summary: dict | None, whole_library: bool = False, kinds: dict[str, str] | None = None
) -> list[dict]:
    """One row per clip of the run's summary, or (summary None, or `whole_library`) per clip in
    the library, timed by its stored training seconds (warm starts from the summary where it has
    the clip)."""
    from factory.library import PolicyLibrary

    library = PolicyLibrary(library_root)
    if summary is None or whole_library:
        known = {c["clip_id"]: c for c in (summary or {}).get("clips", [])}
        finished_clips = [
            {
                "clip_id": r.clip_id,
                "worker_s": r.train_s or 0.0,
                "warm_starts": known[r.clip_id].get("warm_starts", []) if r.clip_id in known else None,
            }
            for r in library.query()
        ]
    else:
        finished_clips = summary["clips"]
    rows = []
    for finished in finished_clips:
        record = library.get(finished["clip_id"])
        absurdity = record.pose_absurdity or {}
        robustness = record.robustness or {}
        minutes = round(finished.get("worker_s", 0.0) / 60, 2)
        suffix = Path(record.source_path or "").suffix.lower()
        rows.append(
            {
                "clip": record.clip_id.rsplit("/", 1)[-1],
                "clip_id": record.clip_id,
                "kind": kind_of(record.clip_id, kinds or {}),
                "format": FORMATS.get(suffix, suffix.lstrip(".") or record.dataset),
                "duration_s": record.duration_s,
                "status": record.status,
                "converged": record.status == "converged",
                "pose_error_m": record.pose_error_m,
                "global_error_m": record.global_error_m,
                "absurdity_worst_1pct_m": absurdity.get("worst_1pct"),
                "fell": record.fell,
                "fell_at_s": record.fell_at_s,
                "attempts": record.attempts,
                "samples": record.samples,
                "iterations": record.iterations,
                "train_minutes": minutes,
                "minutes_per_clip_second": round(minutes / record.duration_s, 3) if record.duration_s else None,
                "robust_survived": robustness.get("survived"),
                "robust_rollouts": robustness.get("rollouts"),
                "reason": record.reason,
                # (the library does not record warm starts: only a run's summary has them)
                "warm_starts": None if summary is None else finished.get("warm_starts", []),
            }
        )
    return sorted(rows, key=lambda r: r["clip"])


def _fmt(value, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def _started_from(row: dict) -> str:
    """Where each attempt began: a similar clip's policy (with the signature distance), the
    clip's earlier attempt, or random weights."""
    if row.get("warm_starts") is None:
        return "not recorded"
    starts = {attempt: rest for attempt, *rest in row["warm_starts"]}
    parts = []
    for attempt in range(1, (row["attempts"] or 1) + 1):
        origin = starts.get(attempt)
        if origin is None:
            parts.append("scratch")
        elif len(origin) > 1:
            parts.append(f"{origin[0].rsplit('/', 1)[-1].removesuffix('_stageii')} ({origin[1]:.3f})")
        else:
            parts.append(origin[0])
    return ", ".join(parts)


def _robust(row: dict) -> str:
    if not row.get("robust_rollouts"):
        return "-"
    return f"{row['robust_survived']}/{row['robust_rollouts']}"


def markdown(rows: list[dict]) -> str:
    lines = [
        "| clip | kind | format | duration s | converged | pose error m | global error m | worst 1 % m | "
        "fell | perturbed survived | attempts | iterations | samples | worker min | worker min per clip-s | "
        "started from |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        fell = "no" if not r["fell"] else f"at {_fmt(r['fell_at_s'], '.2f')} s"
        status = "yes" if r["converged"] else r["status"] + (f" ({r['reason']})" if r.get("reason") else "")
        lines.append(
            f"| {r['clip']} | {r.get('kind') or '-'} | {r.get('format') or '-'} | {_fmt(r['duration_s'], '.1f')} | "
            f"{status} | {_fmt(r['pose_error_m'], '.3f')} | {_fmt(r['global_error_m'], '.3f')} | "
            f"{_fmt(r['absurdity_worst_1pct_m'], '.3f')} | {fell} | {_robust(r)} | {r['attempts']} | "
            f"{_fmt(r.get('iterations'), 'd')} | {_fmt(r['samples'], ',')} | {r['train_minutes']:.1f} | "
            f"{_fmt(r.get('minutes_per_clip_second'), '.2f')} | {_started_from(r)} |"
        )
    return "\n".join(lines)


def by_kind(rows: list[dict]) -> dict:
    """Per kind of motion: clips, converged, median pose error, median worker-minutes per
    clip-second of mocap (the cost the issue compares across kinds)."""
    kinds: dict[str, list[dict]] = {}
    for row in rows:
        kinds.setdefault(row.get("kind") or "unlabelled", []).append(row)
    table = {}
    for kind, members in sorted(kinds.items()):
        errors = [r["pose_error_m"] for r in members if r["pose_error_m"] is not None]
        rates = [r["minutes_per_clip_second"] for r in members if r.get("minutes_per_clip_second") is not None]
        table[kind] = {
            "clips": len(members),
            "converged": sum(r["converged"] for r in members),
            "median_pose_error_m": statistics.median(errors) if errors else None,
            "median_minutes_per_clip_second": statistics.median(rates) if rates else None,
        }
    return table


def summarize(rows: list[dict]) -> dict:
    minutes = [r["train_minutes"] for r in rows if r["train_minutes"] is not None]
    errors = [r["pose_error_m"] for r in rows if r["pose_error_m"] is not None]
    return {
        "clips": len(rows),
        "converged": sum(r["converged"] for r in rows),
        "median_train_minutes": statistics.median(minutes) if minutes else None,
        "max_train_minutes": max(minutes) if minutes else None,
        "median_pose_error_m": statistics.median(errors) if errors else None,
        "median_absurdity_worst_1pct_m": statistics.median(
            [r["absurdity_worst_1pct_m"] for r in rows if r["absurdity_worst_1pct_m"] is not None] or [float("nan")]
        ),
    }


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    if not args.from_library:
        for _, root in sources(args):
            if not Path(root).is_dir():
                print(f"error: {root}: no such directory (the real dev clips live in ../shared)", file=sys.stderr)
                return 2
    kinds = {}
    if args.kinds:
        try:
            kinds = json.loads(Path(args.kinds).read_text())
        except (OSError, ValueError) as err:
            print(f"error: {args.kinds}: cannot read the kinds: {err}", file=sys.stderr)
            return 2
        if not isinstance(kinds, dict) or not all(isinstance(v, str) for v in kinds.values()):
            print(f"error: {args.kinds}: expected a JSON object of glob: kind", file=sys.stderr)
            return 2
    if args.from_library:
        summary, wall_s, command = None, float("nan"), ["(tabulated from the library)", args.library]
    else:
        summary, wall_s, command = run_factories(args)
    rows = clip_rows(args.library, summary, whole_library=args.resume, kinds=kinds)
    totals = summarize(rows)
    totals["by_kind"] = by_kind(rows)
    table = markdown(rows)
    print(table)
    print(json.dumps(totals, indent=2))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    result = {
        "command": " && ".join(command) if not args.from_library else " ".join(command),
        "wall_minutes": round(wall_s / 60, 2),
        "summary": totals,
        "clips": rows,
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count()},
        "note": (
            "training minutes: the stored attempt's training seconds (compile and evaluations "
            "excluded), tabulated from the library"
            if args.from_library or args.resume
            else "training minutes: worker wall time per clip over all attempts (compile included)"
        ),
    }
    from diffmimic import atomic

    atomic.write_json(out, result)
    table_path = Path(args.table) if args.table else out.with_suffix(".md")
    atomic.write_text(table_path, table + "\n")
    print(f"wrote {out} and {table_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
