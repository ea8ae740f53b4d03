"""Benchmark: exhaustive exploration of every scenario, and the whole safety matrix.

    python benchmarks/bench_explore.py [--skip-matrix]

Prints states explored, complete schedules and seconds for each scenario under the
v6.13 (native, batch fails) and v6.14 (native, batch fails) configs, then the time for
`safety_matrix()` (targets: each 2–3 CPU scenario ≤ 1 s; the whole matrix ≤ 10 s).
``munmap-batching`` (1104 tables and no reader, outside the matrix) is explored only up
to 3,000 states and marked as such.
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
    for name, sc in SCENARIOS.items():
        # munmap-batching (1104 tables, no reader) is explored only to a state limit: its
        # point is the batching, which a single run shows; see the docstring of SCENARIOS.
        limit = 3_000 if not sc.in_matrix else 200_000
        for cfg in (Config(kernel="v6.13", batch="fails"), Config(kernel="v6.14", batch="fails")):
            r = explore(name, cfg, max_states=limit)
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
