"""Transition success over every ordered pair of library policies, and random walks on the
transition graph (skill composition).

    python scripts/bench_compose.py --library out/library [--seconds S] [--handover state pose]
        [--random-walks N --walk-seconds 60] [--out bench/compose_transitions.json]

Composes every ordered pair (a, b), a != b, of the library's trained policies (or --names) with
`factory.compose.transition_pairs`: a runs from its first frame to its end (or S seconds), b takes
over the simulated state at the frame the hand-over rule picks (each rule given to --handover is
measured on the same pairs). Prints the from/to matrix (ok, T = fell within the transition
window, L = fell later, F = the first clip fell) with the rates. With --random-walks N it then
builds the library's transition graph where it lacks pairs (`factory.compose.build_transitions`)
and plays N random walks of --walk-seconds along it (seeds 0..N-1), reporting the share that run
the whole time without a fall (`random_walk_success_rate`). Writes everything as JSON.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--library", required=True)
    parser.add_argument("--names", nargs="*", help="default: every converged or best_effort policy")
    parser.add_argument("--seconds", type=float, help="segment length (default: each clip to its end)")
    parser.add_argument("--transition-window-s", type=float, default=1.0)
    parser.add_argument(
        "--handover",
        nargs="+",
        default=["state"],
        choices=("state", "pose"),
        help="hand-over rules to measure on the same pairs (the first is the headline)",
    )
    parser.add_argument("--no-pairs", action="store_true", help="skip the pairs (random walks only)")
    parser.add_argument("--random-walks", type=int, default=0, help="random walks on the transition graph")
    parser.add_argument("--walk-seconds", "--seconds-per-walk", type=float, default=60.0)
    parser.add_argument("--out", default="bench/compose_transitions.json")
    args = parser.parse_args(argv)

    from diffmimic.train import enable_compilation_cache
    from factory.compose import build_transitions, graph_policies, random_walk, transition_pairs
    from factory.library import PolicyLibrary

    enable_compilation_cache()
    library = PolicyLibrary(args.library)
    names = args.names or [r.clip_id for r in library.query(status=("converged", "best_effort"))]
    started = time.perf_counter()
    result: dict = {"names": names}
    for handover in [] if args.no_pairs else args.handover:
        print(f"pairs, hand-over by {handover}:", flush=True)
        pairs = transition_pairs(
            library,
            names,
            args.seconds,
            args.transition_window_s,
            progress=lambda line: print(line, flush=True),
            handover=handover,
        )
        _print_matrix(library, names, pairs, args.transition_window_s)
        result.setdefault("by_handover", {})[handover] = pairs
    if result.get("by_handover"):
        result.update(result["by_handover"][args.handover[0]])  # the headline keys, as before
    if args.random_walks:
        policies = graph_policies(library)
        graph = build_transitions(library, policies, progress=lambda line: print(line, flush=True))
        best = graph.best()
        walks = []
        for seed in range(args.random_walks):
            composition, outcome = random_walk(library, args.walk_seconds, seed=seed, graph=graph, policies=policies)
            walks.append(
                {
                    "seed": seed,
                    "outcome": outcome,
                    "seconds": composition.trajectory.seconds,
                    "clips": [s.name for s in composition.segments],
                    "pose_error_m": composition.trajectory.metrics.pose_error_m,
                }
            )
            print(
                f"walk {seed}: {outcome} after {composition.trajectory.seconds:.1f} s through "
                f"{len(composition.segments)} clips",
                flush=True,
            )
        result.update(
            {
                "graph_pairs": len(best),
                "graph_surviving_pairs": sum(t.survived for t in best.values()),
                "random_walks": walks,
                "walk_seconds": args.walk_seconds,
                "random_walk_success_rate": sum(w["outcome"] == "completed" for w in walks) / len(walks),
            }
        )
        print(
            f"random walks of {args.walk_seconds:g} s without a fall: "
            f"{result['random_walk_success_rate']:.0%} of {len(walks)}; graph: "
            f"{result['graph_surviving_pairs']}/{result['graph_pairs']} pairs survive",
            flush=True,
        )
    result["wall_s"] = time.perf_counter() - started
    result["machine"] = {"platform": platform.platform(), "python": sys.version.split()[0]}
    result["command"] = "python scripts/bench_compose.py " + " ".join(argv or sys.argv[1:])
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(f"wrote {out}")
    return 0


def _print_matrix(library, names, result: dict, window_s: float) -> None:
    short = {n: library.get(n).name.removesuffix("_poses") for n in names}
    width = max(len(s) for s in short.values()) + 2
    cell = {
        (r["from"], r["to"]): (
            "F"
            if r["first_fell"]
            else "ok"
            if r["transition_ok"] and not r["second_fell"]
            else "L"
            if r["transition_ok"]
            else "T"
        )
        for r in result["rows"]
    }
    print("\nfrom \\ to".ljust(width) + "".join(short[n][:10].rjust(12) for n in names))
    for a in names:
        print(short[a].ljust(width) + "".join(("-" if a == b else cell[(a, b)]).rjust(12) for b in names))
    rate = result["transition_success_rate"]
    print(
        f"\ntransitions without a fall within {window_s:g} s: {result['transition_ok']}/"
        f"{result['transitions']} ({'n/a' if rate is None else f'{rate:.0%}'}); whole pair without a fall: "
        f"{'n/a' if result['pair_success_rate'] is None else format(result['pair_success_rate'], '.0%')}; "
        f"first clip fell in {result['first_fell']} pair(s); {result['elapsed_s']:.0f} s",
        flush=True,
    )


if __name__ == "__main__":
    sys.exit(main())
