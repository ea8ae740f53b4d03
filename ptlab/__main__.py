"""``ptlab`` / ``python -m ptlab``: the command line (see :mod:`ptlab.cli`)."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from ptlab.cli import SUBCOMMANDS, OneLineErrorParser, fail

EPILOG = """\
examples:
  ptlab walk 0x7ffc12345678            walk an address through the page tables
  ptlab layout --struct ptdesc         struct ptdesc fields and unions (v6.14)

Run "ptlab <command> --help" for each command's options and an example.
"""


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with every subcommand in :data:`ptlab.cli.SUBCOMMANDS`."""
    parser = OneLineErrorParser(
        prog="ptlab",
        description="ptlab: how Linux frees x86-64 page-table pages (semi-RCU vs RCU).",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in dict.fromkeys(SUBCOMMANDS):  # tolerate a name appended twice
        module = importlib.import_module(f"ptlab.cli.{name}")
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (0 ok, 2 bad input)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "func", None) is None:
        parser.print_help()
        return 2
    try:
        status: int = args.func(args)
    except ValueError as exc:
        return fail(args.command, str(exc))
    except BrokenPipeError:  # output piped into e.g. `head`
        return 0
    return status


if __name__ == "__main__":
    sys.exit(main())
