"""Benchmarks of the Ray factory; each writes a JSON file under bench/.

python scripts/bench_factory.py sample [--clips 2] [--workers 1] [--cpus-per-worker 1]
                                       [--preset cpu] [--config-json J] [--out NAME]
    Real training of sample clips through the factory (local Ray): clips/hour, train-step
    compiles per worker, worker idle time between clips, each worker's cores and JAX CPU
    devices (a worker pinned to C cores splits its environments over C devices).
python scripts/bench_factory.py scale [--clips 10000] [--trained 300]
    The real coordinator, Ray actors and library with `--clips` synthetic catalog entries
    whose training is replaced by an injected trivial function (a benchmark device, not a
    product path): scheduling overhead per clip, driver memory, index query latency.
python scripts/bench_factory.py catalog [--files 10000]
    Cataloguing a directory tree of `--files` clip files (cold, then with the header cache).
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
TINY = dict(num_envs=2, horizon=4, hidden=(32, 32), eval_every=2, iterations=2)


def _write(name: str, data: dict, file_name: str | None = None) -> Path:
    out = REPO / "bench"
    out.mkdir(exist_ok=True)
    data = {
        "benchmark": name,
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
        "command": "python " + " ".join(sys.argv),
        **data,
    }
    path = out / (file_name or f"factory_{name}.json")
    path.write_text(json.dumps(data, indent=2, default=str))
    print(json.dumps(data, indent=2, default=str))
    print(f"wrote {path}")
    return path


# ----------------------------------------------------------------------------------------------
def bench_sample(args) -> None:
    import ray

    from diffmimic.mocap.dataset_spec import load_dataset_spec
    from diffmimic.train import enable_compilation_cache, make_config
    from factory.distribution.catalog import build_catalog
    from factory.distribution.coordinator import Coordinator, FactoryOptions
    from factory.library import PolicyLibrary

    config = make_config(args.preset, **(json.loads(args.config_json) if args.config_json else {}))
    spec = load_dataset_spec("sample")
    spec.prepare()
    cache = enable_compilation_cache()
    work = Path(tempfile.mkdtemp(prefix="bench_factory_"))
    ray.init(address="local", num_cpus=os.cpu_count(), log_to_driver=False)
    try:
        catalog = build_catalog(spec, max_clips=args.clips)
        options = FactoryOptions(
            workers=args.workers,
            cpus_per_worker=args.cpus_per_worker,
            max_attempts=args.max_attempts,
            target_pose_error_m=args.target_pose_error_m,
            compile_cache_dir=cache,
        )
        summary = Coordinator(PolicyLibrary(work / "lib", create=True), catalog, config, options).run()
    finally:
        ray.shutdown()
        shutil.rmtree(work, ignore_errors=True)
    clips = summary["clips"]
    _write(
        "sample",
        {
            "config": config.to_dict(),
            "clips": len(clips),
            "workers": summary["workers"],
            "cpus_per_worker": args.cpus_per_worker,
            "elapsed_s": summary["elapsed_s"],
            "clips_per_hour": summary["clips_per_hour"],
            "counts": summary["counts"],
            "worker_counters": summary["worker_counters"],
            "worker_idle_s_per_clip": {
                k: round(v["idle_s"] / max(v["clips"] - 1, 1), 4) for k, v in summary["worker_counters"].items()
            },
            "per_clip": [
                {k: c.get(k) for k in ("clip_id", "status", "attempts", "worker_s", "train_s", "pose_error_m")}
                for c in clips
            ],
            "median_pose_error_m": summary["median_pose_error_m"],
        },
        args.out,
    )


# ----------------------------------------------------------------------------------------------
class TrivialTraining:
    """BENCHMARK DEVICE: stands in for loading and training a clip, so only the factory's own
    costs remain. `trained` clips return a fixed tiny policy (80 % converge at the first attempt,
    the rest run every attempt); the others raise a data error (an index row, no checkpoint)."""

    def __init__(self, trained: int, config):
        import jax

        from diffmimic.mocap.retarget import Reference
        from diffmimic.policy import init_normaliser, make_policy_network

        init, _ = make_policy_network(794, 69, config.hidden)
        self.params = jax.device_get(init(jax.random.PRNGKey(0)))
        self.normaliser = jax.device_get(init_normaliser(794))
        frames = 4
        self.reference = Reference(
            qpos=np.zeros((frames, 76), np.float32),
            qvel=np.zeros((frames, 75), np.float32),
            body_pos=np.zeros((frames, 24, 3), np.float32),
            body_rot=np.tile([1.0, 0, 0, 0], (frames, 24, 1)).astype(np.float32),
            body_vel=np.zeros((frames, 24, 3), np.float32),
            body_ang=np.zeros((frames, 24, 3), np.float32),
            fps=30.0,
            source="synthetic",
        )
        self.trained = trained

    def __call__(self, task: dict, config):
        from diffmimic.metrics import EvalMetrics
        from diffmimic.mocap.motion import MocapError
        from diffmimic.train import TrainResult

        index = int(task["clip_id"].rsplit("c", 1)[-1])
        if index >= self.trained:
            raise MocapError(task["path"], "benchmark: trivial training, no checkpoint")
        pose_error = 0.02 if index % 5 else 0.08
        metrics = EvalMetrics(
            pose_error_m=pose_error,
            global_error_m=pose_error,
            fell=False,
            fell_at_s=None,
            absurdity={"1%": pose_error},
            nonfinite_steps=0,
            frames=3,
        )
        result = TrainResult(
            params=self.params,
            normaliser=self.normaliser,
            metrics=metrics,
            initial_metrics=metrics,
            history=[],
            samples=0,
            train_s=0.0,
            compile_s=0.0,
            iterations=config.iterations,
            skipped_updates=0,
        )
        return self.reference, result


def bench_scale(args) -> None:
    import ray

    from diffmimic.train import make_config
    from factory.distribution.catalog import Catalog, CatalogEntry
    from factory.distribution.coordinator import Coordinator, FactoryOptions, driver_rss_mb
    from factory.library import PolicyLibrary

    config = make_config("cpu", **TINY)
    work = Path(tempfile.mkdtemp(prefix="bench_factory_scale_"))
    entries = [
        CatalogEntry(
            clip_id=f"bench/c{i:05d}",
            path=str(work / f"c{i:05d}.npz"),
            format="amass_smplh",
            frames=120,
            fps=30.0,
            duration_s=3.97,
        )
        for i in range(args.clips)
    ]
    catalog = Catalog(dataset="bench", root=work, entries=entries, skipped=[])
    library = PolicyLibrary(work / "lib", create=True)
    rss_before = driver_rss_mb()
    ray.init(address="local", num_cpus=os.cpu_count(), log_to_driver=False)
    try:
        options = FactoryOptions(
            workers=args.workers,
            max_attempts=3,
            target_pose_error_m=0.04,
            progress_every_s=30.0,
            tasks_per_worker=args.tasks_per_worker,
        )
        start = time.perf_counter()
        summary = Coordinator(
            library,
            catalog,
            config,
            options,
            train_fn=TrivialTraining(args.trained, config),
            progress=lambda line: print(line, flush=True) if "clips/h" in line else None,
        ).run()
        elapsed = time.perf_counter() - start
    finally:
        ray.shutdown()
    calls = sum(c["attempts"] for c in summary["clips"])
    latencies = {}
    for name, query in {
        "query(dataset)": lambda: library.query(dataset="bench"),
        "query(status=converged)": lambda: library.query(status="converged"),
        "query(name_glob='*c0999*')": lambda: library.query(name_glob="*c0999*"),
        "query(max_pose_error_m=0.05, limit=100)": lambda: library.query(max_pose_error_m=0.05, limit=100),
        "get(short name)": lambda: library.get("c09999" if args.clips > 9999 else f"c{args.clips - 1:05d}"),
        "stats()": lambda: library.stats(),
    }.items():
        times = []
        for _ in range(5):
            t = time.perf_counter()
            query()
            times.append(time.perf_counter() - t)
        latencies[name] = round(statistics.median(times) * 1000, 2)
    trained_rows = [c for c in summary["clips"] if c["status"] != "failed"]
    _write(
        "scale",
        {
            "clips": args.clips,
            "trained_with_checkpoint": len(trained_rows),
            "index_rows": len(library),
            "workers": summary["workers"],
            "tasks_per_worker": args.tasks_per_worker,
            "worker_calls": calls,
            "elapsed_s": round(elapsed, 2),
            "clips_per_hour": summary["clips_per_hour"],
            "counts": summary["counts"],
            "driver_scheduling_s_total": summary["scheduling_s"],
            "driver_scheduling_ms_per_clip": round(summary["scheduling_s"] / args.clips * 1000, 3),
            "library_write_s_total": summary["library_write_s"],
            "library_write_ms_per_clip": round(summary["library_write_s"] / args.clips * 1000, 3),
            "wall_ms_per_clip": round(elapsed / args.clips * 1000, 3),
            "driver_peak_rss_mb": {"before": round(rss_before, 1), "after": summary["driver_peak_rss_mb"]},
            "index_query_ms_median_of_5": latencies,
        },
    )
    shutil.rmtree(work, ignore_errors=True)


# ----------------------------------------------------------------------------------------------
def _tiny_clip_bytes(frames: int) -> bytes:
    buffer = io.BytesIO()
    np.savez_compressed(
        buffer,
        poses=np.zeros((frames, 156), np.float32),
        trans=np.zeros((frames, 3), np.float32),
        mocap_framerate=np.array(120.0),
        gender=np.array("neutral"),
        betas=np.zeros(16),
    )
    return buffer.getvalue()


def bench_catalog(args) -> None:
    from diffmimic.mocap.dataset_spec import load_dataset_spec
    from factory.distribution.catalog import build_catalog

    work = Path(tempfile.mkdtemp(prefix="bench_catalog_"))
    root = work / "amass"
    payload = _tiny_clip_bytes(240)
    start = time.perf_counter()
    subsets = ["ACCAD", "CMU", "KIT", "BMLmovi"]
    for i in range(args.files):
        directory = root / subsets[i % len(subsets)] / f"subject{i // 50:04d}"
        directory.mkdir(parents=True, exist_ok=True)
        name = f"clip{i:05d}_poses.npz" if i % 97 else f"clip{i:05d}_box_poses.npz"  # some excluded
        (directory / name).write_bytes(payload)
    make_s = time.perf_counter() - start
    spec = dataclasses.replace(load_dataset_spec("amass"), root=root)
    cache = work / "catalog-cache.json"
    timings = {}
    for label, cache_path in (("cold", cache), ("warm (header cache)", cache), ("no cache", None)):
        start = time.perf_counter()
        catalog = build_catalog(spec, cache_path=cache_path)
        timings[label] = {
            "seconds": round(time.perf_counter() - start, 3),
            "clips": len(catalog.entries),
            "skipped": len(catalog.skipped),
            "headers_read": catalog.header_reads,
        }
    _write(
        "catalog",
        {"files": args.files, "file_bytes": len(payload), "writing_tree_s": round(make_s, 2), "catalog": timings},
    )
    shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="which", required=True)
    p = sub.add_parser("sample")
    p.add_argument("--clips", type=int, default=2)
    p.add_argument("--workers", type=int, default=1)
    p.add_argument(
        "--cpus-per-worker",
        type=float,
        default=1.0,
        help="cores each worker is pinned to, and JAX CPU devices it splits its environments over",
    )
    p.add_argument("--preset", default="cpu")
    p.add_argument("--config-json")
    p.add_argument("--max-attempts", type=int, default=1)
    p.add_argument("--target-pose-error-m", type=float, default=0.04)
    p.add_argument("--out", help="file name under bench/ (default factory_sample.json)")
    p = sub.add_parser("scale")
    p.add_argument("--clips", type=int, default=10000)
    p.add_argument("--trained", type=int, default=300, help="clips that get a real (tiny) checkpoint put")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--tasks-per-worker", type=int, default=2)
    p = sub.add_parser("catalog")
    p.add_argument("--files", type=int, default=10000)
    args = parser.parse_args()
    {"sample": bench_sample, "scale": bench_scale, "catalog": bench_catalog}[args.which](args)


if __name__ == "__main__":
    main()
