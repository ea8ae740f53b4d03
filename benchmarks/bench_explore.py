"""Benchmark: exhaustive exploration of every scenario, and the whole safety matrix.

    python benchmarks/bench_explore.py [--skip-matrix]

Prints states explored, complete schedules and seconds for each scenario under the
v6.13 (native, batch fails) and v6.14 (native, batch fails) configs, then the time for
`safety_matrix()` (targets: each 2–3 CPU scenario ≤ 1 s; the whole matrix ≤ 10 s).
"""

from __future__ import annotations

import argparse
import time

from ptlab.config import Config
from ptlab.sim.explore import explore
from ptlab.sim.matrix import safety_matrix
from ptlab.sim.scenarios import SCENARIOS


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--skip-matrix", action="store_true")
    args = ap.parse_args()
    print(f"{'scenario':<34} {'config':<34} {'states':>8} {'schedules':>22} {'seconds':>8}")
    for name in SCENARIOS:
        for cfg in (Config(kernel="v6.13", batch="fails"), Config(kernel="v6.14", batch="fails")):
            r = explore(name, cfg)
            flag = "" if r.exhaustive else "  (state limit reached)"
            print(f"{name:<34} {r.config.label():<34} {r.states:>8} {r.schedules:>22} "
                  f"{r.seconds:>8.2f}{flag}")
    if not args.skip_matrix:
        t0 = time.perf_counter()
        mat = safety_matrix()
        dt = time.perf_counter() - t0
        print()
        print(mat.table())
        print(f"safety matrix: {len(mat.cells)} explorations in {dt:.1f} s")


if __name__ == "__main__":
    main()
