"""How fast the stepper answers a click, and how long nbval takes over the lessons.

    python benchmarks/bench_widgets.py                 # every scenario, timeline picture
    python benchmarks/bench_widgets.py --steps 40 --no-nbval
    python benchmarks/bench_widgets.py --kernel v6.13 --batch fails

For each scenario a ``Stepper`` plays its default run (the first lane that can step,
as the play control does) for up to ``--steps`` steps; each step's time is the whole
click: the machine step, the text panel and the redraw of the visible picture to PNG
(``Stepper.last_seconds``), and the CPU time the process spent on it.  The target is
100 ms per step; the worst cases are usually Python garbage-collector pauses.  Then every picture is
timed the same way on the race scenario.  Finally, if ``notebooks/`` has notebooks,
the wall time of ``pytest --nbval-lax --nbval-current-env notebooks/`` (target 60 s).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from ptlab.config import Config
from ptlab.sim import scenarios
from ptlab.widgets.stepper import PICTURES, Stepper

TARGET_MS = 100.0
REPO = Path(__file__).resolve().parent.parent


def measure(
    scenario: str, config: Config, picture: str, steps: int
) -> tuple[list[float], list[float]]:
    """Wall and CPU milliseconds of each click (step + text panel + redraw)."""
    s = Stepper(scenario, config, picture=picture)
    wall: list[float] = []
    cpu: list[float] = []
    for _ in range(steps):
        c0 = time.process_time()
        if not s.play_step():
            break
        cpu.append((time.process_time() - c0) * 1000)
        wall.append(s.last_seconds * 1000)
    return wall, cpu


def row(name: str, picture: str, times: tuple[list[float], list[float]]) -> str:
    wall, cpu = times
    if not wall:
        return f"{name:<32} {picture:<15} {'-':>5} {'-':>9} {'-':>9} {'-':>9} {'-':>9}"
    med, worst = statistics.median(wall), max(wall)
    flag = "" if med <= TARGET_MS else "  (median over target)"
    return (f"{name:<32} {picture:<15} {len(wall):>5} {med:>9.1f} {worst:>9.1f} "
            f"{statistics.median(cpu):>9.1f} {max(cpu):>9.1f}{flag}")


def nbval_seconds() -> tuple[float, int] | None:
    nb_dir = REPO / "notebooks"
    if not any(nb_dir.glob("*.ipynb")):
        return None
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--nbval-lax",
           "--nbval-current-env"]
    sanitize = nb_dir / "nbval_sanitize.cfg"
    if sanitize.exists():
        cmd += ["--nbval-sanitize-with", str(sanitize)]
    cmd.append(str(nb_dir))
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, check=False)
    return time.perf_counter() - t0, proc.returncode


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=60, help="steps per scenario (default 60)")
    ap.add_argument("--kernel", default="v6.14", help="kernel of the config (default v6.14)")
    ap.add_argument("--batch", default="fails", help="ok or fails (default fails)")
    ap.add_argument("--no-nbval", action="store_true", help="skip the nbval timing")
    args = ap.parse_args(argv)
    if args.steps < 1:
        ap.error(f"--steps must be >= 1, not {args.steps}")
    try:
        config = Config(kernel=args.kernel, batch=args.batch)
    except ValueError as e:
        ap.error(str(e))
    print(f"stepper latency per click (step + text + redraw to PNG), {config.label()}, "
          f"target <= {TARGET_MS:.0f} ms")
    print(f"machine load average before: {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs "
          "(wall times grow when other processes compete for the CPUs; CPU times do not)")
    print(f"{'scenario':<32} {'picture':<15} {'steps':>5} {'wall med':>9} {'wall max':>9} "
          f"{'cpu med':>9} {'cpu max':>9}   (ms)")
    for name in scenarios.names():
        print(row(name, "timeline", measure(name, config, "timeline", args.steps)), flush=True)
    race = "reclaim-vs-pte-offset-map-lock"
    for picture in PICTURES[1:]:
        print(row(race, picture, measure(race, config, picture, args.steps)), flush=True)
    if not args.no_nbval:
        res = nbval_seconds()
        if res is None:
            print("nbval: no notebooks in notebooks/")
        else:
            secs, rc = res
            status = "passed" if rc == 0 else f"FAILED (pytest exit {rc})"
            print(f"nbval over notebooks/: {secs:.1f} s wall, {status} "
                  f"(pytest --nbval-lax --nbval-current-env notebooks/; target 60 s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
