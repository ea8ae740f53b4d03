"""Reclaiming empty PTE tables during MADV_DONTNEED (mm/pt_reclaim.c, v6.14; kernel-facts §6).

``zap_pte_range()`` (``ptlab.mm.zap``) calls these once it has emptied a whole PTE
table's 2 MiB span: the fast path ``try_get_and_clear_pmd()`` while still holding the
PTE lock, else the slow path ``try_to_free_pte()`` which takes both locks in the proper
order and re-checks that all 512 entries are still none.  Both end in ``free_pte()``:

    free_pte → pte_free_tlb → __pte_free_tlb → ___pte_free_tlb →
        paravirt_tlb_remove_table → … → tlb_remove_table → (batch | slow path)
"""

from __future__ import annotations

from dataclasses import dataclass

from ptlab.arch.x86.paging import PMD_SIZE, PTRS_PER_PTE
from ptlab.kernel.context import Kernel
from ptlab.kernel.smp import spin_lock, spin_lock_nested, spin_trylock, spin_unlock
from ptlab.mm.mmu_gather import MmuGather, mm_dec_nr_ptes, pte_free_tlb
from ptlab.mm.pgtable_generic import (
    PmdSlot,
    pmd_clear,
    pmd_lockptr,
    pmdp_get_lockless,
    pte_offset_map_rw_nolock,
    pte_unmap,
    pte_unmap_unlock,
)
from ptlab.sim.ops import Entry, KGen, ScanEntries


@dataclass(frozen=True)
class ZapDetails:
    """struct zap_details (the fields PT reclaim looks at)."""

    reclaim_pt: bool = False
    even_cows: bool = False


def reclaim_pt_is_enabled(k: Kernel, start: int, end: int, details: ZapDetails | None) -> bool:
    """mm/pt_reclaim.c: the caller asked for it and the zap spans a whole PMD's worth.

    Without CONFIG_PT_RECLAIM the function is an inline that returns false.
    """
    if not k.config.pt_reclaim:
        return False
    return details is not None and details.reclaim_pt and end - start >= PMD_SIZE


def try_get_and_clear_pmd(k: Kernel, pmd: PmdSlot) -> KGen:
    """mm/pt_reclaim.c: trylock the PMD lock (we hold the PTE lock, the wrong order for a
    blocking lock), read and clear the PMD entry.  Returns ``(ok, pmdval)``."""
    pml = pmd_lockptr(pmd)
    ok = yield from spin_trylock(k, pml)
    if not ok:
        return False, None
    pmdval = yield from pmdp_get_lockless(k, pmd)
    yield from pmd_clear(k, pmd)
    yield from spin_unlock(k, pml)
    return True, pmdval


def free_pte(k: Kernel, addr: int, tlb: MmuGather, pmdval: Entry) -> KGen:
    """mm/pt_reclaim.c: hand the detached table to the mmu_gather; VmPTE -= 4 KiB."""
    assert pmdval.target is not None
    yield from pte_free_tlb(k, tlb, pmdval.target, addr)  # pmd_pgtable(pmdval)
    yield from mm_dec_nr_ptes(k)


def try_to_free_pte(k: Kernel, pmd: PmdSlot, addr: int, tlb: MmuGather) -> KGen:
    """mm/pt_reclaim.c slow path: PMD lock, then PTE lock nested, re-check emptiness."""
    pml = pmd_lockptr(pmd)
    yield from spin_lock(k, pml)
    got = yield from pte_offset_map_rw_nolock(k, pmd, addr)
    if got is None:
        yield from spin_unlock(k, pml)
        return
    pte, pmdval, ptl = got
    if ptl != pml:
        yield from spin_lock_nested(k, ptl)
    used = yield ScanEntries(pte.table, 0, PTRS_PER_PTE)
    if used:
        yield from pte_unmap_unlock(k, pte, ptl)
        if ptl != pml:
            yield from spin_unlock(k, pml)
        return
    yield from pte_unmap(k, pte)
    yield from pmd_clear(k, pmd)
    if ptl != pml:
        yield from spin_unlock(k, ptl)
    yield from spin_unlock(k, pml)
    yield from free_pte(k, addr, tlb, pmdval)
