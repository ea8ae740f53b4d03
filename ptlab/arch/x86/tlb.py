"""Remote TLB flushing on x86 (arch/x86/mm/tlb.c, arch/x86/include/asm/tlb.h).

``flush_tlb_mm_range(mm, start, end, stride, freed_tables)`` flushes locally and then,
through ``flush_tlb_multi``, on every other CPU in ``mm_cpumask``:

- native (``native_flush_tlb_multi``): with ``freed_tables`` it IPIs *every* CPU in the
  mask, lazy ones included, and waits (``on_each_cpu_mask(..., wait=true)``).  A CPU
  with interrupts disabled delays the flush until it enables them — which is exactly
  what protected IRQ-disabled GUP-fast on bare metal before v6.14.
- paravirt (Xen PV, Hyper-V, KVM with PV TLB flush): the hypervisor does the remote
  flush.  ptlab treats every target vCPU as possibly preempted by the host (the case
  ``kvm_flush_tlb_multi`` skips and Xen/Hyper-V never interrupt), so the flush does not
  wait for anyone (kernel-facts §3.2).

``flush_tlb_mm_range`` runs between ``get_cpu()`` and ``put_cpu()``: preemption stays
disabled on the flushing CPU while it waits.  ptlab does not model TLB contents; the
IPI handler ``flush_tlb_func`` is a step on the target CPU and nothing more.
"""

from __future__ import annotations

from ptlab.kernel.context import Kernel
from ptlab.kernel.smp import on_each_cpu_mask
from ptlab.sim.ops import HypervisorFlush, KGen, PreemptDisable, PreemptEnable


def native_flush_tlb_multi(k: Kernel, cpumask: tuple[int, ...], freed_tables: bool) -> KGen:
    """arch/x86/mm/tlb.c: IPI the CPUs in ``cpumask`` to run ``flush_tlb_func`` and wait."""
    yield from on_each_cpu_mask(k, cpumask, "flush_tlb_func", wait=True)


def pv_flush_tlb_multi(k: Kernel, cpumask: tuple[int, ...], freed_tables: bool) -> KGen:
    """xen_flush_tlb_multi / hyperv_flush_tlb_multi / kvm_flush_tlb_multi, as ptlab sees them."""
    how = {
        "xen-pv": "xen_flush_tlb_multi",
        "hyperv": "hyperv_flush_tlb_multi",
        "kvm-pv-flush": "kvm_flush_tlb_multi",
    }[k.config.paravirt]
    yield HypervisorFlush(tuple(c for c in cpumask if c != k.cpu), how)


def flush_tlb_multi(k: Kernel, cpumask: tuple[int, ...], freed_tables: bool) -> KGen:
    """``__flush_tlb_multi``: ``pv_ops.mmu.flush_tlb_multi`` (native or a hypervisor's)."""
    if k.config.pv_flush:
        yield from pv_flush_tlb_multi(k, cpumask, freed_tables)
    else:
        yield from native_flush_tlb_multi(k, cpumask, freed_tables)


def flush_tlb_mm_range(k: Kernel, start: int, end: int, freed_tables: bool) -> KGen:
    """arch/x86/mm/tlb.c: flush ``[start, end)`` of the current mm on all its CPUs.

    Every CPU of the scenario runs a thread of the same mm, so ``mm_cpumask`` holds
    them all.
    """
    yield PreemptDisable()  # get_cpu()
    others = k.other_cpus()
    if others:
        yield from flush_tlb_multi(k, others, freed_tables)
    yield PreemptEnable()  # put_cpu()
