"""``ptlab path``: the call chain a page-table free takes in one configuration."""

from __future__ import annotations

import argparse
import json

from ptlab.cli._config import add_config_options, config_from_args
from ptlab.sim.paths import LEVELS, free_path

EPILOG = """\
examples:
  ptlab path --kernel v6.13 --paravirt native
  ptlab path --kernel v6.13 --paravirt xen-pv --batch fails
  ptlab path --kernel v6.14 --paravirt none --batch fails --level pmd --json

The chain is computed by running the model's freeing code for one table.
"""


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = subparsers.add_parser(
        "path", help="the call chain a page-table free takes in a config",
        description=__doc__, epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_config_options(p)
    p.add_argument("--level", default="pte", metavar="LEVEL",
                   help=f"which table: {', '.join(LEVELS)} (default pte)")
    p.add_argument("--json", action="store_true", help="print a JSON object")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    path = free_path(config_from_args(args), args.level)
    print(json.dumps(path.to_dict(), indent=2) if args.json else path.render())
    return 0
