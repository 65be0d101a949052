"""Benchmark: K clips per compiled train step (`diffmimic.multiclip`), throughput and training.

python scripts/bench_multiclip.py throughput [--preset cpu] [--slots 1 2 4 8] [--iterations 3]
    [--data-root ../shared/data/mocap/amass_dev] [--out bench/multiclip_throughput_<device>.json]
    Per K (each in a fresh subprocess): compile seconds, seconds per batched iteration,
    samples/s over all slots, the cost per clip-iteration against K = 1 (a ratio measured
    in this run), and peak memory (device bytes in use on a GPU, resident set on a CPU).
    Slots hold real dev clips of one length bucket (repeated when K exceeds them).
python scripts/bench_multiclip.py train --slots K [--preset paper] [--target-pose-error-m 0.04]
    [--data-root DIR] [--clips GLOB] [--out bench/multiclip_train_<device>_k<K>.json]
    Trains every clip of the dev set to convergence (or its iterations), K at a time per
    length bucket: per clip converged, pose error, fell, iterations; clips/hour and
    device-seconds per second of mocap.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data" / "mocap" / "amass_dev"


def _clips(data_root: str, pattern: str | None) -> list[Path]:
    files = sorted(p for p in Path(data_root).rglob("*.npz"))
    if pattern:
        files = [p for p in files if fnmatch.fnmatch(str(p.relative_to(data_root)), pattern)]
    if not files:
        raise SystemExit(f"error: no .npz clips under {data_root}" + (f" matching {pattern}" if pattern else ""))
    return files


def _device() -> tuple[str, str]:
    import jax

    device = jax.devices()[0]
    return device.platform, getattr(device, "device_kind", device.platform)


def _peak_memory_gb() -> float:
    import jax

    stats = jax.devices()[0].memory_stats() or {}
    if "peak_bytes_in_use" in stats:
        return round(stats["peak_bytes_in_use"] / 1024**3, 3)
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2, 3)


def _one_throughput(preset: str, slots: int, iterations: int, data_root: str) -> dict:
    from diffmimic.env import length_bucket
    from diffmimic.mocap.retarget import load_reference
    from diffmimic.multiclip import slot_throughput
    from diffmimic.train import enable_compilation_cache, make_config

    enable_compilation_cache()
    config = make_config(preset)
    references = [load_reference(p, fps=config.env.control_hz) for p in _clips(data_root, None)]
    bucket = max(
        set(length_bucket(r.num_frames) for r in references),
        key=lambda b: sum(length_bucket(r.num_frames) == b for r in references),
    )
    references = [r for r in references if length_bucket(r.num_frames) == bucket]
    point = slot_throughput(config, references, slots, iterations)
    platform_name, kind = _device()
    return {
        "slots": slots,
        "bucket": bucket,
        "num_envs": config.num_envs,
        "horizon": config.horizon,
        "compile_s": round(point["compile_s"], 1),
        "iteration_s": round(point["iteration_s"], 3),
        "samples_per_s": point["samples_per_s"],
        "peak_memory_gb": _peak_memory_gb(),
        "device": kind,
        "platform": platform_name,
        "nonfinite_rate": point["nonfinite_rate"],
    }


def _write(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2))
    print(f"wrote {path}")


def throughput(args) -> None:
    rows = []
    for slots in args.slots:
        print(f"K = {slots}: compiling and timing ({args.iterations} iterations) ...", flush=True)
        command = [
            sys.executable,
            __file__,
            "_one",
            "--preset",
            args.preset,
            "--slots",
            str(slots),
            "--iterations",
            str(args.iterations),
            "--data-root",
            args.data_root,
        ]
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode != 0:
            print(done.stderr[-2000:], file=sys.stderr)
            rows.append({"slots": slots, "error": done.stderr.strip().splitlines()[-1] if done.stderr else "failed"})
            continue
        rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
    base = next((r for r in rows if r.get("slots") == 1 and "iteration_s" in r), None)
    print(f"{'K':>4} {'compile s':>10} {'iter s':>8} {'samples/s':>10} {'cost/clip vs K=1':>17} {'peak GB':>8}")
    for row in rows:
        if "error" in row:
            print(f"{row['slots']:>4} error: {row['error']}")
            continue
        if base:
            row["cost_per_clip_vs_k1"] = round(row["iteration_s"] / row["slots"] / base["iteration_s"], 3)
        print(
            f"{row['slots']:>4} {row['compile_s']:>10} {row['iteration_s']:>8} {row['samples_per_s']:>10} "
            f"{row.get('cost_per_clip_vs_k1', '-'):>17} {row['peak_memory_gb']:>8}"
        )
    device = next((r["device"] for r in rows if "device" in r), "unknown").replace(" ", "_").lower()
    out = Path(args.out or REPO / "bench" / f"multiclip_throughput_{device}.json")
    _write(
        out,
        {
            "benchmark": "multiclip_throughput",
            "command": "python " + " ".join(sys.argv),
            "preset": args.preset,
            "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
            "rows": rows,
        },
    )


def train_all(args) -> None:
    from diffmimic.env import length_bucket
    from diffmimic.mocap.retarget import load_reference
    from diffmimic.multiclip import ClipTask, train_many
    from diffmimic.train import enable_compilation_cache, make_config

    enable_compilation_cache()
    config = make_config(args.preset)
    references = {p: load_reference(p, fps=config.env.control_hz) for p in _clips(args.data_root, args.clips)}
    groups: dict[int, list[Path]] = {}
    for path, reference in references.items():
        groups.setdefault(length_bucket(reference.num_frames), []).append(path)
    rows, start = [], time.perf_counter()
    for bucket, paths in sorted(groups.items()):
        tasks = [ClipTask(references[p], config, tag=p, stop_at_pose_error_m=args.target_pose_error_m) for p in paths]
        for task, result in train_many(tasks, config, args.slots, progress=print):
            reference = references[task.tag]
            row = {"clip": task.tag.stem, "bucket": bucket, "duration_s": round(reference.duration_s, 2)}
            if isinstance(result, Exception):
                row["error"] = str(result)
            else:
                metrics = result.metrics
                row.update(
                    converged=bool(not metrics.fell and metrics.pose_error_m <= args.target_pose_error_m),
                    pose_error_m=round(metrics.pose_error_m, 4),
                    fell=metrics.fell,
                    iterations=result.iterations,
                    samples=result.samples,
                    train_min=round(result.train_s / 60, 2),
                    finished_min=round((time.perf_counter() - start) / 60, 2),
                )
            rows.append(row)
            print(json.dumps(row), flush=True)
    wall_s = time.perf_counter() - start
    mocap_s = sum(r["duration_s"] for r in rows)
    platform_name, kind = _device()
    summary = {
        "clips": len(rows),
        "converged": sum(bool(r.get("converged")) for r in rows),
        "wall_min": round(wall_s / 60, 1),
        "clips_per_hour": round(len(rows) / wall_s * 3600, 2),
        "device_s_per_mocap_s": round(wall_s / max(mocap_s, 1e-9), 1),
    }
    print(json.dumps(summary))
    out = Path(args.out or REPO / "bench" / f"multiclip_train_{kind.replace(' ', '_').lower()}_k{args.slots}.json")
    _write(
        out,
        {
            "benchmark": "multiclip_train",
            "command": "python " + " ".join(sys.argv),
            "preset": args.preset,
            "slots": args.slots,
            "device": kind,
            "platform": platform_name,
            "summary": summary,
            "clips": rows,
        },
    )


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python scripts/bench_multiclip.py", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    one = commands.add_parser("throughput", help="samples/s and memory per K")
    one.add_argument("--slots", type=int, nargs="+", default=[1, 2, 4, 8])
    hidden = commands.add_parser("_one")
    hidden.add_argument("--slots", type=int, required=True)
    trainer = commands.add_parser("train", help="the dev set to convergence, K clips at a time")
    trainer.add_argument("--slots", type=int, required=True)
    trainer.add_argument("--clips", help="only clips whose path under --data-root matches this glob")
    trainer.add_argument("--target-pose-error-m", type=float, default=0.04)
    for sub, preset in ((one, "cpu"), (hidden, "cpu"), (trainer, "paper")):
        sub.add_argument("--preset", default=preset)
        sub.add_argument("--data-root", default=str(DEFAULT_DATA))
        sub.add_argument("--out")
    for sub in (one, hidden):
        sub.add_argument("--iterations", type=int, default=3)
    args = parser.parse_args(argv)
    if args.command == "_one":
        print(json.dumps(_one_throughput(args.preset, args.slots, args.iterations, args.data_root)))
    elif args.command == "throughput":
        throughput(args)
    else:
        train_all(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
