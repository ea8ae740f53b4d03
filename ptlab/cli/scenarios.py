"""``ptlab scenarios``: the scenario names with one-line descriptions."""

from __future__ import annotations

import argparse
import json

from ptlab.sim.scenarios import SCENARIOS


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = subparsers.add_parser(
        "scenarios", help="list the scenarios", description=__doc__,
        epilog="example:\n  ptlab scenarios --json\n",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--json", action="store_true", help="print a JSON list")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.json:
        print(json.dumps([
            {"name": s.name, "summary": s.summary, "cpus": s.cpus, "in_matrix": s.in_matrix,
             "counterfactual": s.counterfactual}
            for s in SCENARIOS.values()
        ], indent=2))
        return 0
    width = max(len(n) for n in SCENARIOS)
    for s in SCENARIOS.values():
        tag = " [counterfactual]" if s.counterfactual else ""
        print(f"{s.name:<{width}}  {s.summary}{tag}")
    return 0
