"""`python -m diffmimic.character describe [--backend B] [--json]`: the simulated character, per
body (mass, inertia as simulated) and per hinge (range, kp, kd, torque limit, armature)."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Sequence


def _parser() -> argparse.ArgumentParser:
    from diffmimic.physics import BACKENDS

    parser = argparse.ArgumentParser(prog="python -m diffmimic.character", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    describe = commands.add_parser("describe", help="what the backend simulates, per body and hinge")
    describe.add_argument("--backend", choices=BACKENDS, help="physics backend (default: EnvConfig().backend)")
    describe.add_argument("--json", action="store_true", help="print JSON instead of tables")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    from diffmimic.character.describe import describe
    from diffmimic.env import EnvConfig
    from diffmimic.physics import backend_character

    backend = args.backend or EnvConfig().backend
    description = describe(backend_character(backend), backend)
    print(json.dumps(description.to_dict(), indent=1) if args.json else description.table())
    return 0


if __name__ == "__main__":
    sys.exit(main())
