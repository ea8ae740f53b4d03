"""The real Linux underneath ptlab: VmPTE experiments and BTF struct layouts.

* :mod:`ptlab.live.btf` — a pure-Python BTF reader; the running kernel's ``struct ptdesc``,
  ``struct page``, ``struct rcu_head`` (``callback_head``), ``struct mmu_table_batch`` and
  ``struct mmu_gather`` as :class:`ptlab.mm.layout.StructLayout` (``live_layout``,
  ``layout_report``).
* :mod:`ptlab.live.kernel` — which kernel am I on: version, ``CONFIG_PT_RECLAIM`` (config
  file or probe), THP mode, and the rule set predictions use (``running_kernel``).
* :mod:`ptlab.live.experiment` — mmap/touch/madvise/munmap experiments run for real and
  through ptlab's :class:`~ptlab.mm.memory.Mm` at the same addresses (``run_experiment``).
* :mod:`ptlab.live.linux` — the ctypes/procfs layer (libc calls, VmPTE, /proc/self/maps).

Nothing here needs root, and nothing imports matplotlib or ipywidgets.
"""
