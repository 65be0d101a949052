"""Write `constraints.txt`: the exact versions of this project's dependencies in the current venv.

    python scripts/lock_deps.py [--extras dev smplx] [--out constraints.txt] [--check]

Run it in the venv the tests passed in. It walks the installed `diffmimic-factory` distribution's
requirements (with the given extras) through every installed dependency's own requirements,
evaluating environment markers, and writes one `name==version` line per package of that closure,
sorted, the project itself excluded. Local version labels are dropped (`torch 2.13.0+cpu` is
written `torch==2.13.0`, which PEP 440 matches to the CPU build and to PyPI's build alike).

`.ci/run` and the README install with `pip install -c constraints.txt -e ".[dev,smplx]"`, so a
fresh clone gets the versions the tests passed with. To upgrade: install without `-c` (or with
`pip install -U ...`) into a fresh venv, run the tests, then run this script and commit the file.
`--check` exits 1 when the file differs from what it would write (the venv drifted).
"""

from __future__ import annotations

import argparse
import re
import sys
from importlib import metadata
from pathlib import Path

from packaging.markers import default_environment
from packaging.requirements import Requirement

PROJECT = "diffmimic-factory"
REPO = Path(__file__).resolve().parents[1]


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def closure(project: str, extras: list[str]) -> dict[str, str]:
    """Installed name -> version for every distribution `project[extras]` needs, transitively."""
    found: dict[str, str] = {}
    queue: list[tuple[str, frozenset[str]]] = [(project, frozenset(extras))]
    seen: set[tuple[str, frozenset[str]]] = set()
    while queue:
        name, wanted = queue.pop()
        if (canonical(name), wanted) in seen:
            continue
        seen.add((canonical(name), wanted))
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            sys.exit(f"lock_deps: {name} is required but not installed in {sys.prefix}")
        if canonical(name) != canonical(project):
            found[canonical(dist.metadata["Name"])] = dist.version
        for line in dist.requires or []:
            req = Requirement(line)
            if req.marker is not None:
                # A requirement applies when its marker holds without an extra or with a wanted one.
                environments = [{**default_environment(), "extra": e} for e in ("", *sorted(wanted))]
                if not any(req.marker.evaluate(env) for env in environments):
                    continue
            queue.append((req.name, frozenset(req.extras)))
    return found


def render(versions: dict[str, str], extras: list[str]) -> str:
    header = (
        '# The versions the tests passed with: pip install -c constraints.txt -e ".[dev,smplx]"\n'
        f"# Written by `python scripts/lock_deps.py --extras {' '.join(extras)}` from the test venv;\n"
        "# regenerate after upgrading and passing the tests (README: Upgrading dependencies).\n"
    )
    lines = [f"{name}=={version.split('+')[0]}" for name, version in sorted(versions.items())]
    return header + "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--extras", nargs="*", default=["dev", "smplx"])
    parser.add_argument("--out", type=Path, default=REPO / "constraints.txt")
    parser.add_argument("--check", action="store_true", help="exit 1 if --out differs")
    args = parser.parse_args(argv)
    text = render(closure(PROJECT, args.extras), args.extras)
    if args.check:
        same = args.out.exists() and args.out.read_text() == text
        print(f"{args.out}: {'up to date' if same else 'differs from this venv'}")
        return 0 if same else 1
    args.out.write_text(text)
    print(f"wrote {args.out}: {text.count('==')} packages")
    return 0


if __name__ == "__main__":
    sys.exit(main())
