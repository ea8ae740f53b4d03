"""The safety matrix: ``explore`` over configurations × scenarios.

Rows are configurations (kernel × paravirt environment × batch page available or not,
with PT_RECLAIM on — the case the v6.14 patch is about — plus the real v6.13 without
PT_RECLAIM); columns are the scenarios flagged ``in_matrix``.  Every cell is computed by
exploring the scenario exhaustively.

>>> m = safety_matrix(configs=[Config(kernel="v6.14")], scenarios=["reclaim-vs-gup-fast"])
>>> m.cell(Config(kernel="v6.14"), "reclaim-vs-gup-fast").summary()
'safe'
"""

from __future__ import annotations

import multiprocessing
import os
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ptlab.config import KERNELS, Config
from ptlab.sim.explore import Exploration, explore
from ptlab.sim.scenarios import SCENARIOS, get

#: Paravirt environments that behave differently in the model (xen-pv, hyperv and
#: kvm-pv-flush install the same hook and flush the same way; kvm behaves as native).
MATRIX_ENVS: tuple[str, ...] = ("none", "native", "xen-pv", "kvm-pv-flush")


def default_configs() -> list[Config]:
    out = [Config(kernel="v6.13", pt_reclaim=False, paravirt="native")]
    for kernel in KERNELS:
        for env in MATRIX_ENVS:
            for batch in ("ok", "fails"):
                out.append(Config(kernel=kernel, paravirt=env, batch=batch, pt_reclaim=True))
    return out


def default_scenarios() -> list[str]:
    return [name for name, s in SCENARIOS.items() if s.in_matrix]


@dataclass
class Matrix:
    configs: list[Config]
    scenarios: list[str]
    cells: dict[tuple[Config, str], Exploration] = field(default_factory=dict)
    seconds: float = 0.0

    def cell(self, config: Config, scenario: str) -> Exploration:
        return self.cells[(config, scenario)]

    def bad_cells(self) -> list[tuple[Config, str]]:
        return [key for key, r in self.cells.items() if r.bad]

    def table(self) -> str:
        short = {s: s.replace("reclaim-vs-", "vs-") for s in self.scenarios}
        width = max(len(c.label()) for c in self.configs)
        head = f"{'config':<{width}} | " + " | ".join(f"{short[s]:<22}" for s in self.scenarios)
        lines = [head, "-" * len(head)]
        for c in self.configs:
            cells = []
            for s in self.scenarios:
                r = self.cells[(c, s)]
                cells.append(f"{_cell_text(r):<22}")
            lines.append(f"{c.label():<{width}} | " + " | ".join(cells))
        lines.append(f"({len(self.cells)} explorations, {self.seconds:.1f} s)")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {
            "scenarios": self.scenarios,
            "configs": [c.to_dict() for c in self.configs],
            "cells": [
                {"config": c.to_dict(), "scenario": s, **self.cells[(c, s)].to_dict()}
                for c in self.configs
                for s in self.scenarios
            ],
            "seconds": round(self.seconds, 3),
        }


def _cell_text(r: Exploration) -> str:
    if not r.kinds:
        return "safe" if r.exhaustive else "safe (bounded)"
    abbrev = {
        "use-after-free": "UAF",
        "union-clobber": "clobber",
        "list-corruption": "list-corrupt",
        "double-free": "double-free",
        "leak": "leak",
        "deadlock": "deadlock",
    }
    return ", ".join(f"{abbrev.get(k, k)}:{r.verdict(k)[0]}" for k in sorted(r.kinds))


def _explore_cell(task: tuple[Config, str]) -> Exploration:
    config, scenario = task
    return explore(scenario, config)


def safety_matrix(
    configs: Sequence[Config] | None = None,
    scenarios: Sequence[str] | None = None,
    *,
    progress: Callable[[int, int], None] | None = None,
    workers: int | None = None,
) -> Matrix:
    """Explore every scenario under every config (``progress(done, total)`` if given).

    Cells are independent, so they are explored in ``workers`` processes (default: one
    per CPU, at most 4); results do not depend on the number of workers.
    """
    cfgs = list(configs) if configs is not None else default_configs()
    scs = list(scenarios) if scenarios is not None else default_scenarios()
    for s in scs:
        get(s)
    t0 = time.perf_counter()
    mat = Matrix(cfgs, scs)
    tasks = [(c, s) for c in cfgs for s in scs]
    total = len(tasks)
    n = workers if workers is not None else min(4, os.cpu_count() or 1)
    if n < 1:
        raise ValueError(f"workers must be at least 1, not {n}")
    results: Iterable[Exploration]
    if n == 1 or total < 4 or "fork" not in multiprocessing.get_all_start_methods():
        results = map(_explore_cell, tasks)
        pool = None
    else:
        pool = multiprocessing.get_context("fork").Pool(n)
        results = pool.imap(_explore_cell, tasks, chunksize=2)
    try:
        for done, (task, r) in enumerate(zip(tasks, results, strict=True), start=1):
            mat.cells[task] = r
            if progress is not None:
                progress(done, total)
    finally:
        if pool is not None:
            pool.close()
            pool.join()
    mat.seconds = time.perf_counter() - t0
    return mat
