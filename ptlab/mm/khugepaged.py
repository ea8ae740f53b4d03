"""khugepaged / MADV_COLLAPSE retracting a PTE table (mm/khugepaged.c, v6.14; kernel-facts §5.4).

When a file range is collapsed into a huge page, ``retract_page_tables()`` removes the
PTE tables that mapped it in other processes — holding only ``i_mmap_lock_read``, not
the mmap lock, so ``pte_offset_map()`` walkers may be inside the table.  Since 2023
(Hugh Dickins, "mm: free retracted page table by RCU") the table is freed with
``pte_free_defer()``: after a grace period, through ``pt_rcu_head``.  This is the
precedent the v6.14 patch follows for PT reclaim.
"""

from __future__ import annotations

from ptlab.arch.x86.tlb import flush_tlb_mm_range
from ptlab.kernel.context import Kernel
from ptlab.kernel.smp import spin_lock, spin_lock_nested, spin_unlock
from ptlab.mm.mmu_gather import mm_dec_nr_ptes
from ptlab.mm.pgtable_generic import PmdSlot, pmd_lockptr, pte_free_defer, pte_lockptr
from ptlab.sim.ops import KGen, ReadEntry, XchgEntry


def pmdp_collapse_flush(k: Kernel, pmd: PmdSlot, addr: int) -> KGen:
    """mm/pgtable-generic.c: clear the PMD entry and flush the TLB (tables freed)."""
    old = yield XchgEntry(pmd.table, pmd.index, 0, "pmd")
    yield from flush_tlb_mm_range(k, addr, addr + (1 << 21), True)
    return old


def retract_page_tables(k: Kernel, pmd: PmdSlot, addr: int) -> KGen:
    """mm/khugepaged.c: detach one VMA's PTE table for ``addr`` and free it by RCU.

    Takes the PMD lock, re-checks the PMD (``check_pmd_state``), takes the PTE lock
    nested, clears + flushes, drops both locks, then ``pte_free_defer()``.
    """
    pml = pmd_lockptr(pmd)
    yield from spin_lock(k, pml)
    pmdval = yield ReadEntry(pmd.table, pmd.index, "pmd")  # check_pmd_state
    if pmdval.target is None:
        yield from spin_unlock(k, pml)
        return False
    ptl = pte_lockptr(pmdval)
    yield from spin_lock_nested(k, ptl)
    old = yield from pmdp_collapse_flush(k, pmd, addr)
    yield from spin_unlock(k, ptl)
    yield from spin_unlock(k, pml)
    yield from mm_dec_nr_ptes(k)
    assert old.target is not None
    yield from pte_free_defer(k, old.target)
    return True
