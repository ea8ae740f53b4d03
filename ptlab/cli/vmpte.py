"""``ptlab vmpte``: run a VmPTE experiment on the live kernel beside ptlab's prediction.

Exit status: 0 every measured step matches the prediction (or predictions only),
1 some step differs, 2 bad input (malformed file, unknown op, range outside the mapping)
or a failing system call.  Nothing stays mapped after an error.
"""

from __future__ import annotations

import argparse
import json

from ptlab.cli import fail
from ptlab.live.experiment import (
    ExperimentResult,
    demo_experiment,
    load_ops,
    parse_ops,
    run_experiment,
)
from ptlab.live.kernel import detect_kernel, running_kernel

EPILOG = """\
examples:
  ptlab vmpte --demo
  ptlab vmpte --ops my_experiment.json --json

an experiment file is a JSON list (or {"ops": [...]}) such as:
  [{"op": "mmap", "size": "64M", "thp": false},
   {"op": "touch", "offset": 0, "length": "64M", "stride": 4096},
   {"op": "madvise", "advice": "dontneed", "offset": "3M", "length": "6M"},
   {"op": "munmap", "offset": 0, "length": "64M"}]
ops: mmap (first, once: size, thp, placement), touch (offset, length, stride),
madvise (advice dontneed|free, offset, length), munmap (offset, length).
"""


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = subparsers.add_parser(
        "vmpte",
        help="predict and measure VmPTE for mmap/touch/madvise/munmap experiments",
        description=__doc__,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--ops", metavar="FILE.json", help="experiment file to run")
    which.add_argument("--demo", action="store_true",
                       help="run the lesson's default experiment (demo_experiment.json)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.add_argument("--predict-only", action="store_true",
                   help="do not touch the live kernel; print ptlab's predictions only")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    try:
        ops = parse_ops(demo_experiment()) if args.demo else load_ops(args.ops)
        kernel = (detect_kernel(probe=False, live=False) if args.predict_only
                  else running_kernel())
        result = run_experiment(ops, kernel=kernel, live=kernel.live)
    except (ValueError, OSError) as exc:
        return fail("vmpte", str(exc))
    if args.json:
        print(json.dumps(result.to_json(), indent=2))
    else:
        print(render(result))
    return 0 if result.all_match else 1


def render(result: ExperimentResult) -> str:
    """Kernel line, the table, and a one-line verdict."""
    lines = [result.kernel.summary(), f"mapping at 0x{result.address:x}", "",
             result.table(), ""]
    if not result.live:
        lines.append("predictions only: no live kernel measured")
    elif result.all_match:
        lines.append(f"predicted = measured for all {len(result.steps)} steps")
    else:
        bad = ", ".join(str(s.index) for s in result.mismatches())
        lines.append(f"MISMATCH at step(s) {bad}")
    return "\n".join(lines)
