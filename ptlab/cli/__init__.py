"""The ``ptlab`` command line: one module per subcommand.

Each module named in :data:`SUBCOMMANDS` has ``register(subparsers) -> None``, which adds
its parser with ``set_defaults(func=run)``, and ``run(args) -> int`` returning the exit
status (0 ok, 2 bad input).  :func:`ptlab.__main__.main` builds the parser from this list
and turns a ``ValueError`` into one ``ptlab <cmd>: error: <message>`` line and status 2.
"""

from __future__ import annotations

import argparse
import sys
from typing import NoReturn

SUBCOMMANDS: list[str] = ["walk", "layout"]


class OneLineErrorParser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose usage errors are ONE line on stderr and status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n")


def fail(command: str, message: str) -> int:
    """Print ``ptlab <command>: error: <message>`` on stderr and return 2."""
    print(f"ptlab {command}: error: {message}", file=sys.stderr)
    return 2
SUBCOMMANDS.append("vmpte")
SUBCOMMANDS += ["scenarios", "path", "explore", "matrix"]
