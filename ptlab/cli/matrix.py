"""``ptlab matrix``: every configuration × every scenario, each explored exhaustively."""

from __future__ import annotations

import argparse
import json
import sys

from ptlab.sim.matrix import safety_matrix

EPILOG = """\
example:
  ptlab matrix
  ptlab matrix --json > matrix.json

Cells: safe, or the bad outcomes with n(ever)/s(ometimes)/a(lways).
"""


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = subparsers.add_parser(
        "matrix", help="safety matrix: configs × scenarios", description=__doc__,
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--json", action="store_true", help="print a JSON object")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    def progress(done: int, total: int) -> None:
        print(f"\r  explored {done}/{total}", end="", file=sys.stderr, flush=True)
        if done == total:
            print(file=sys.stderr)

    mat = safety_matrix(progress=progress if sys.stderr.isatty() else None)
    print(json.dumps(mat.to_dict(), indent=2) if args.json else mat.table())
    return 0
