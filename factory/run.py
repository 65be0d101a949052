"""The factory's entry point: train every clip of a dataset into a policy library with Ray.

    python factory/run.py --dataset sample                     # local Ray on this machine
    python -m factory.run --dataset amass --library /mnt/lib --max-clips 100
    ray submit cluster.yaml factory/run.py --dataset amass --library /mnt/shared/library

Joins the running Ray cluster when there is one (``RAY_ADDRESS``, or ``ray submit`` on a head
node), else starts a local Ray. `ray submit` copies this file alone to the head node, so it
imports only installed packages (``diffmimic``, ``factory``), never its siblings by path.
Exit codes: 0 done, 1 some clips failed, 2 bad arguments or data set-up.
"""

from __future__ import annotations

import os
import signal
import sys
import threading

if __name__ == "__main__" and not __package__:
    # Run as a script: Python put this file's directory first on sys.path, where catalog.py,
    # worker.py... would shadow real top-level modules. Import the installed `factory` instead.
    _here = os.path.dirname(os.path.abspath(__file__))
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _here]

import argparse  # noqa: E402
import dataclasses  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Sequence  # noqa: E402

from factory.distribution.options import FactoryOptions  # noqa: E402
from factory.distribution.runlock import CoordinatorLock, LockHeld  # noqa: E402
from factory.library import LibraryError, PolicyLibrary  # noqa: E402
from factory.library.snapshot import check_publish_target  # noqa: E402

DEFAULT_LIBRARY = "~/diffmimic-library"
_OPTIONS = {field.name: field for field in dataclasses.fields(FactoryOptions)}


def _option(parser: argparse.ArgumentParser, flag: str, name: str, **kwargs) -> None:
    """Adds `flag` for the `FactoryOptions` field `name`, with the field's default and help (which
    shows the default); `kwargs`: argparse's other settings (type, action, metavar)."""
    field = _OPTIONS[name]
    text = field.metadata["help"].replace("%", "%%")
    if field.default is not None and not isinstance(field.default, bool):
        text += "; default: %(default)s"
    parser.add_argument(flag, default=field.default, help=text, **kwargs)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m factory.run", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--dataset", required=True, help="a spec name in datasets/ (sample, amass, aistpp, cmu) or a YAML spec path"
    )
    parser.add_argument("--data-root", help="overrides the spec's root directory")
    parser.add_argument(
        "--library",
        default=os.environ.get("DIFFMIMIC_LIBRARY", DEFAULT_LIBRARY),
        help=f"the policy library directory (created if missing; default $DIFFMIMIC_LIBRARY "
        f"or {DEFAULT_LIBRARY}); a POSIX path, shared storage on a cluster",
    )
    parser.add_argument("--preset", default="cpu", help="training preset (cpu, paper)")
    parser.add_argument(
        "--config-json",
        help='TrainConfig overrides of the preset as JSON (e.g. \'{"iterations": 100, "env": {"backend": "spring"}}\')',
    )
    _option(parser, "--workers", "workers", type=int)
    _option(parser, "--gpus-per-worker", "gpus_per_worker", type=float)
    _option(parser, "--cpus-per-worker", "cpus_per_worker", type=float)
    parser.add_argument(
        "--no-pin-cpus",
        dest="pin_cpus",
        action="store_false",
        help="do not pin CPU workers to cores of their own (pinned, each runs ~1.5x faster on a busy node)",
    )
    parser.add_argument(
        "--clips-per-worker",
        default="auto",
        help="K clips each worker trains at once in one compiled step, or 'auto' (the "
        "default): 1 on CPU workers; on GPU workers measured once on the first clip, "
        "the K past which samples/s stop growing by 10 %% or memory runs short",
    )
    parser.add_argument("--clips", help="only clips whose id or relative path matches this shell pattern")
    parser.add_argument("--max-clips", type=int, help="only the first N clips by path")
    _option(parser, "--target-pose-error-m", "target_pose_error_m", type=float)
    _option(parser, "--max-attempts", "max_attempts", type=int)
    _option(parser, "--force", "force", action="store_true")
    _option(parser, "--retry-failed", "retry_failed", action="store_true")
    _option(parser, "--retry-fragile", "retry_fragile", action="store_true")
    parser.add_argument(
        "--no-similar-warm-start",
        dest="warm_start_similar",
        action="store_false",
        help="start every clip's first attempt from random weights, not from the policy of the most "
        "similar clip that tracks its own (in the library or finished earlier in the run)",
    )
    _option(parser, "--checkpoint-every", "checkpoint_every", type=int)
    _option(parser, "--progress-every-s", "progress_every_s", type=float)
    parser.add_argument(
        "--ray-address",
        default=os.environ.get("RAY_ADDRESS"),
        help="a Ray cluster to join (default $RAY_ADDRESS, else a running local one, else start one); "
        "'local' always starts a new local Ray",
    )
    parser.add_argument("--num-cpus", type=int, help="CPUs of a Ray started here (default: all)")
    parser.add_argument(
        "--report-renders",
        type=int,
        default=20,
        help="at the end, render up to N policies that have no render yet into the library's HTML "
        "report LIB/reports/index.html (default 20; 0: none)",
    )
    parser.add_argument(
        "--transitions",
        action="store_true",
        help="at the end, simulate the hand-overs between converged policies that the library's "
        "transition graph lacks (the pairs this run's new policies are in; N^2 pairs in all: "
        "for libraries of tens to hundreds of clips)",
    )
    parser.add_argument("--summary-json", help="also write the run summary to this file")
    parser.add_argument(
        "--verbose",
        action="store_true",
        help="show Ray's notes and the workers' own output (XLA, JAX) on the console too",
    )
    parser.add_argument(
        "--work-dir",
        default=os.environ.get("DIFFMIMIC_WORK_DIR"),
        help="workers' scratch checkpoints and status (default $DIFFMIMIC_WORK_DIR, else "
        "LIB/.factory); on a cluster: shared storage every node mounts",
    )
    parser.add_argument(
        "--publish",
        default=os.environ.get("DIFFMIMIC_PUBLISH"),
        metavar="DIR",
        help="publish a read-only snapshot of the library to DIR (shared storage) as clips finish "
        "and at the end (default $DIFFMIMIC_PUBLISH; readers open DIR as a library)",
    )
    _option(parser, "--publish-every", "publish_every_s", type=float, metavar="SECONDS")
    return parser


def init_ray(address: str | None, num_cpus: int | None = None, verbose: bool = True) -> str:
    """Joins `address` (or a running cluster); starts a local Ray when there is none.

    Without `verbose` the console keeps to the factory's own lines: Ray's info and warnings (the
    dashboard address, the authentication-token notes) and the workers' stdout/stderr (XLA's
    slow-compile alarms, library notes) are not shown; a worker's errors still reach the console
    and the library through the factory's own reporting, and Ray's logs stay in its session
    directory (/tmp/ray/session_latest/logs)."""
    import ray

    if ray.is_initialized():
        return "already initialised"
    quiet = {} if verbose else {"logging_level": logging.ERROR, "log_to_driver": False}
    if not verbose:
        logging.getLogger("ray").setLevel(logging.ERROR)  # notes logged before ray.init configures it
    if address == "local":  # a new local Ray even when one runs on this machine
        ray.init(address="local", num_cpus=num_cpus, **quiet)
        return "started a local Ray"
    if address:
        ray.init(address=address, **quiet)
        return f"joined {address}"
    try:
        ray.init(address="auto", **quiet)
        return "joined the running cluster"
    except ConnectionError:
        ray.init(num_cpus=num_cpus, **quiet)
        return "started a local Ray"


_RECEIVED: list[str] = []  # the stop signals received (Ray may re-raise a bare KeyboardInterrupt)


def _on_sigterm(signum, frame):
    _RECEIVED.append("SIGTERM")
    raise KeyboardInterrupt("SIGTERM")


def _interrupted(coordinator, signal_name: str) -> int:
    """Ctrl-C or SIGTERM: what is in the library stays; the clips in flight keep their workers'
    scratch checkpoints, so the same command run again resumes them."""
    import ray

    in_flight = sorted({clip for _, clip, _ in coordinator.inflight.values()})
    written = sum(coordinator.counts.values())
    print(
        f"interrupted ({signal_name}): {written} clip(s) written this run; {len(in_flight)} in flight "
        f"keep their checkpoints. Run the same command again to continue.",
        file=sys.stderr,
        flush=True,
    )
    ray.shutdown()
    return 143 if signal_name == "SIGTERM" else 130


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    from diffmimic.mocap.dataset_spec import DatasetSpecError, load_dataset_spec
    from diffmimic.train import PRESETS, make_config
    from factory.distribution.catalog import build_catalog, summarize
    from factory.distribution.coordinator import WORK_DIR

    def fail(message: str) -> int:
        print(f"error: {message}", file=sys.stderr)
        return 2

    if args.preset not in PRESETS:
        return fail(f"--preset: unknown preset {args.preset!r}; choose one of {sorted(PRESETS)}")
    try:
        overrides = json.loads(args.config_json) if args.config_json else {}
        if not isinstance(overrides, dict):
            raise ValueError("must be a JSON object")
        config = make_config(args.preset, **overrides)
    except (ValueError, TypeError) as err:
        return fail(f"--config-json: {err}")
    if args.max_attempts < 1:
        return fail("--max-attempts must be >= 1")
    if args.clips_per_worker == "auto":
        args.clips_per_worker = 0
    elif not args.clips_per_worker.isdigit() or int(args.clips_per_worker) < 1:
        return fail(f"--clips-per-worker must be 'auto' or >= 1, got {args.clips_per_worker!r}")
    else:
        args.clips_per_worker = int(args.clips_per_worker)
    try:
        spec = load_dataset_spec(args.dataset)
        if args.data_root:
            spec = dataclasses.replace(spec, root=Path(args.data_root).expanduser(), generate=None)
        if spec.generate and not spec.root.is_dir():
            print(f"generating dataset {spec.name!r} into {spec.root}", flush=True)
            spec.prepare()
        library = PolicyLibrary(Path(args.library).expanduser(), create=True)
        catalog = build_catalog(
            spec,
            clips=args.clips,
            max_clips=args.max_clips,
            cache_path=Path(library.root) / WORK_DIR / f"catalog-{spec.name}.json",
        )
        if library.read_only:
            raise LibraryError(
                f"--library {library.root}: a read-only snapshot; train into the library it was published from"
            )
        if args.publish:
            check_publish_target(library, args.publish)
    except (DatasetSpecError, FileNotFoundError, LibraryError) as err:
        return fail(str(err))
    if not catalog.entries:
        return fail(_no_clips(spec, catalog, args.clips))
    if args.publish_every <= 0:
        return fail("--publish-every must be > 0 seconds")
    print(f"catalog: {json.dumps(summarize(catalog))}", flush=True)

    lock = CoordinatorLock(library.root, WORK_DIR)
    try:
        lock.acquire()
    except LockHeld as err:
        return fail(str(err))
    try:
        return _run(args, library, catalog, config)
    finally:
        lock.release()


def _no_clips(spec, catalog, clips: str | None) -> str:
    """The one line for a catalog without a clip: which root, and why nothing was taken."""
    where = f"{spec.root}: no clips of dataset {spec.name!r}"
    if clips is not None:
        return f"{where} match --clips {clips!r}"
    if catalog.skipped:
        first = catalog.skipped[0]
        return (
            f"{where} to train: {len(catalog.skipped)} file(s) skipped by the spec "
            f"({Path(first.path).name}: {first.reason})"
        )
    return f"{where}: no file matches its include patterns {list(spec.include)}"


def _run(args, library, catalog, config) -> int:
    """The run itself, with the library's coordinator lock held."""
    from factory.distribution.coordinator import Coordinator, print_summary
    from factory.presentation.library_report import write_library_report

    cache = os.environ.get("DIFFMIMIC_JAX_CACHE")  # None: each worker uses its node's default
    options = FactoryOptions(
        target_pose_error_m=args.target_pose_error_m,
        max_attempts=args.max_attempts,
        force=args.force,
        workers=args.workers,
        gpus_per_worker=args.gpus_per_worker,
        cpus_per_worker=args.cpus_per_worker,
        pin_cpus=args.pin_cpus,
        clips_per_worker=args.clips_per_worker,
        checkpoint_every=args.checkpoint_every,
        progress_every_s=args.progress_every_s,
        compile_cache_dir=cache,
        warm_start_similar=args.warm_start_similar,
        retry_failed=args.retry_failed,
        retry_fragile=args.retry_fragile,
        work_dir=args.work_dir,
        publish_dir=args.publish,
        publish_every_s=args.publish_every,
    )
    how = init_ray(args.ray_address, args.num_cpus, verbose=args.verbose)
    print(f"ray: {how}", flush=True)
    if threading.current_thread() is threading.main_thread():
        # A scheduler's stop, handled as Ctrl-C is (after ray.init, which installs a crash handler).
        signal.signal(signal.SIGTERM, _on_sigterm)
    coordinator = Coordinator(library, catalog, config, options, progress=lambda line: print(line, flush=True))
    try:
        summary = coordinator.run()
    except KeyboardInterrupt:
        coordinator.publish(force=True)  # what was written this run reaches the readers too
        return _interrupted(coordinator, _RECEIVED[0] if _RECEIVED else "SIGINT")
    text = print_summary(summary)
    print(text, flush=True)
    if args.report_renders != 0:
        from diffmimic.train import enable_compilation_cache

        enable_compilation_cache()
    page = write_library_report(
        library,
        Path(library.root) / "reports",
        renders=args.report_renders,
        progress=lambda line: print(line, flush=True),
    )
    print(
        f"library report: {page} (all renders: python -m factory.library --library {library.root} report "
        f"--out {page.parent})",
        flush=True,
    )
    if args.transitions:
        from diffmimic.train import enable_compilation_cache
        from factory.compose import build_transitions

        enable_compilation_cache()
        print("transition graph: simulating the hand-overs it lacks", flush=True)
        graph = build_transitions(library, progress=lambda line: print(line, flush=True))
        best = graph.best()
        summary["transitions"] = {"pairs": len(best), "surviving_pairs": sum(t.survived for t in best.values())}
        print(
            f"transition graph: {summary['transitions']['surviving_pairs']}/{len(best)} ordered pairs hand over "
            f"without a fall ({graph.path})",
            flush=True,
        )
    if args.summary_json:
        from diffmimic import atomic

        atomic.write_json(args.summary_json, summary, default=str)
    return 1 if summary["counts"].get("failed") else 0


if __name__ == "__main__":
    sys.exit(main())
