"""Benchmark the page-table model: populate 1 GiB of 4 KiB mappings, then walk addresses.

    python benchmarks/bench_paging.py [--gib 1] [--walks 1000000] [--sample 20000]

Prints the populate time, the model's memory for the populated tables (tracemalloc,
beyond what existed before) next to the kernel's own page-table bytes for the same
mapping (VmPTE + the PGD page), and the time of walking random mapped addresses: the
vectorised ``Mm.translate_many`` over all of them and the per-address Python
``Mm.translate`` on a sample (extrapolated).  Targets (issue 2): populate 1 GiB in
<= 1 s; model memory <= 2x the kernel's page-table bytes.
"""

from __future__ import annotations

import argparse
import time
import tracemalloc

import numpy as np

from ptlab.arch.x86.paging import PAGE_SIZE, PUD_SIZE
from ptlab.mm.memory import Mm

START = 0x7F00_0000_0000  # 1 GiB aligned user address


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--gib", type=int, default=1, help="GiB to populate (default 1)")
    ap.add_argument("--walks", type=int, default=1_000_000, help="random addresses to walk")
    ap.add_argument("--sample", type=int, default=20_000,
                    help="addresses walked one by one in Python (default 20000)")
    args = ap.parse_args()
    size = args.gib * PUD_SIZE

    # warm up imports and numpy code paths so that tracemalloc sees only the model
    warm = Mm()
    warm.mmap(START, 4 << 20)
    warm.touch_range(START, START + (4 << 20))
    warm.translate_many(np.array([START], dtype=np.uint64))

    mm = Mm()
    mm.mmap(START, size)
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    t0 = time.perf_counter()
    mm.touch_range(START, START + size)
    populate_s = time.perf_counter() - t0
    current, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    model_bytes, peak_bytes = current - base, peak - base
    kernel_bytes = mm.pgtables_bytes + PAGE_SIZE  # VmPTE tables + the PGD page
    n_ptes = size // PAGE_SIZE

    rng = np.random.default_rng(12345)
    addrs = (START + rng.integers(0, size, size=args.walks, dtype=np.int64)).astype(np.uint64)
    t0 = time.perf_counter()
    phys = mm.translate_many(addrs)
    vec_s = time.perf_counter() - t0
    assert (phys >= 0).all(), "every address in the populated range must be mapped"

    sample = [int(a) for a in addrs[: args.sample]]
    t0 = time.perf_counter()
    for a in sample:
        mm.translate(a)
    py_s = time.perf_counter() - t0

    mib = 1 << 20
    print(f"populate {args.gib} GiB = {n_ptes:,} PTEs with touch_range: {populate_s:.3f} s "
          f"(target <= 1 s per GiB)")
    print(f"kernel page-table bytes (VmPTE {mm.vm_pte_kib} kB + PGD 4 kB): "
          f"{kernel_bytes / mib:.2f} MiB")
    print(f"model memory after populate: {model_bytes / mib:.2f} MiB "
          f"(peak {peak_bytes / mib:.2f} MiB) = {model_bytes / kernel_bytes:.2f}x "
          f"the kernel's (target <= 2x)")
    print(f"walk {args.walks:,} random mapped addresses, translate_many (vectorised): "
          f"{vec_s:.3f} s ({vec_s / args.walks * 1e9:.0f} ns/address)")
    print(f"walk {len(sample):,} of them one by one with translate(): {py_s:.3f} s "
          f"({py_s / len(sample) * 1e6:.1f} us/address; "
          f"{py_s / len(sample) * args.walks:.1f} s for {args.walks:,})")


if __name__ == "__main__":
    main()
