"""``ptlab explore``: every interleaving of a scenario — outcomes, verdicts, witnesses.

With ``--replay`` it runs one schedule instead and prints every step (CPU, kernel call
stack, what happened); a witness printed by ``explore`` can be pasted there.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ptlab.cli._config import add_config_options, config_from_args
from ptlab.config import Config
from ptlab.sim.explore import explore, parse_schedule, replay
from ptlab.sim.scenarios import get

EPILOG = """\
examples:
  ptlab explore --scenario reclaim-vs-pte-offset-map-lock --kernel v6.13 --batch fails
  ptlab explore --scenario reclaim-vs-gup-fast --kernel v6.13 --json
  ptlab explore --scenario reclaim-vs-pte-offset-map-lock --kernel v6.13 \\
      --save-witness w.json
  ptlab explore --replay w.json
  ptlab explore --scenario munmap --replay "CPU0*10"
"""


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = subparsers.add_parser(
        "explore", help="explore every interleaving of a scenario",
        description=__doc__, epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--scenario", metavar="NAME", help="scenario name (see `ptlab scenarios`)")
    add_config_options(p)
    p.add_argument("--replay", metavar="SCHEDULE",
                   help="run one schedule: lanes separated by spaces/commas, or a JSON file "
                        "saved with --save-witness")
    p.add_argument("--save-witness", metavar="FILE",
                   help="write the shortest witness of the first bad outcome as JSON")
    p.add_argument("--json", action="store_true", help="print a JSON object")
    p.set_defaults(func=run)


def _load_replay(arg: str, args: argparse.Namespace) -> tuple[str, Config, list[str]]:
    path = Path(arg)
    if arg.endswith(".json") or path.is_file():
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            raise ValueError(f"schedule file {arg!r} does not exist") from None
        except json.JSONDecodeError as e:
            raise ValueError(f"schedule file {arg!r} is not valid JSON: {e.msg}") from None
        if not isinstance(data, dict) or not {"scenario", "config", "schedule"} <= set(data):
            raise ValueError(
                f"schedule file {arg!r} must be an object with scenario, config and schedule"
            )
        sched = data["schedule"]
        if not isinstance(sched, list) or not all(isinstance(s, str) for s in sched):
            raise ValueError(f"schedule in {arg!r} must be a list of lane names")
        return str(data["scenario"]), Config.from_dict(data["config"]), sched
    if not args.scenario:
        raise ValueError("--replay with a lane list needs --scenario NAME")
    return args.scenario, config_from_args(args), parse_schedule(arg)


def run(args: argparse.Namespace) -> int:
    if args.replay:
        scenario, config, schedule = _load_replay(args.replay, args)
        get(scenario)
        m = replay(scenario, config, schedule)
        if args.json:
            print(json.dumps({
                "scenario": scenario, "config": config.to_dict(), "schedule": schedule,
                "events": [
                    {"seq": e.seq, "lane": e.lane, "stack": list(e.stack), "op": e.op,
                     "kind": e.kind, "reports": [r.kind for r in e.reports]}
                    for e in m.events
                ],
                "reports": [r.message() for r in m.reports()],
            }, indent=2))
        else:
            print(f"replay of {scenario} — {config.label()}")
            for e in m.events:
                print(e)
            for r in m.reports():
                print(r.message())
        return 0
    if not args.scenario:
        raise ValueError("--scenario NAME is required (see `ptlab scenarios`)")
    config = config_from_args(args)
    get(args.scenario)
    res = explore(args.scenario, config,
                  progress=(lambda n: print(f"  … {n} states", file=sys.stderr))
                  if sys.stderr.isatty() else None)
    if args.save_witness:
        if not res.witnesses:
            raise ValueError("no bad outcome was found, so there is no witness to save")
        w = res.witnesses[sorted(res.witnesses)[0]]
        Path(args.save_witness).write_text(json.dumps({
            "scenario": args.scenario, "config": res.config.to_dict(), "kind": w.kind,
            "schedule": w.schedule,
        }, indent=2) + "\n")
    print(json.dumps(res.to_dict(), indent=2) if args.json else res.table())
    return 0
