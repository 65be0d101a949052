"""Transition success over every ordered pair of library policies (issue: skill composition).

    python scripts/bench_compose.py --library out/library [--seconds S] [--out bench/compose_transitions.json]

Composes every ordered pair (a, b), a != b, of the library's trained policies (or --names) with
`factory.compose.transition_pairs`: a runs from its first frame to its end (or S seconds), b takes
over the simulated state at its nearest phase. Prints the from/to matrix (ok, T = fell within the
transition window, L = fell later, F = the first clip fell) with the rates, and writes the JSON.
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
    parser.add_argument("--out", default="bench/compose_transitions.json")
    args = parser.parse_args(argv)

    from diffmimic.train import enable_compilation_cache
    from factory.compose import transition_pairs
    from factory.library import PolicyLibrary

    enable_compilation_cache()
    library = PolicyLibrary(args.library)
    names = args.names or [r.clip_id for r in library.query(status=("converged", "best_effort"))]
    started = time.perf_counter()
    result = transition_pairs(library, names, args.seconds, args.transition_window_s,
                              progress=lambda line: print(line, flush=True))
    result["wall_s"] = time.perf_counter() - started
    result["machine"] = {"platform": platform.platform(), "python": sys.version.split()[0]}
    result["command"] = "python scripts/bench_compose.py " + " ".join(argv or sys.argv[1:])

    short = {n: library.get(n).name.removesuffix("_poses") for n in names}
    width = max(len(s) for s in short.values()) + 2
    cell = {(r["from"], r["to"]): ("F" if r["first_fell"] else "ok" if r["transition_ok"] and not r["second_fell"]
                                   else "L" if r["transition_ok"] else "T") for r in result["rows"]}
    print("\nfrom \\ to".ljust(width) + "".join(short[n][:10].rjust(12) for n in names))
    for a in names:
        print(short[a].ljust(width) + "".join(("-" if a == b else cell[(a, b)]).rjust(12) for b in names))
    rate = result["transition_success_rate"]
    print(f"\ntransitions without a fall within {args.transition_window_s:g} s: {result['transition_ok']}/"
          f"{result['transitions']} ({'n/a' if rate is None else f'{rate:.0%}'}); whole pair without a fall: "
          f"{'n/a' if result['pair_success_rate'] is None else format(result['pair_success_rate'], '.0%')}; "
          f"first clip fell in {result['first_fell']} pair(s); {result['wall_s']:.0f} s")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
