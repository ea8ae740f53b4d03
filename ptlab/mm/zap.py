"""The zap and unmap side of mm/memory.c, as steppable kernel code (v6.14 incl. the
2025-02 fix "fix incorrect reclaim of non-empty PTE pages"; kernel-facts §6.1).

``ptlab.mm.memory`` holds the sequential address-space model used to build scenarios and
predict VmPTE; this module holds the same kernel paths broken into steps, so that they
can race with readers on other CPUs:

- ``madvise_dontneed_single_vma`` → ``zap_page_range_single`` → ``unmap_page_range`` →
  ``zap_pmd_range`` → ``zap_pte_range`` (→ ``free_pte`` / ``try_to_free_pte``) →
  ``tlb_finish_mmu``;
- ``free_pgtables`` → ``free_pgd_range`` → ``free_pud_range`` → ``free_pmd_range`` →
  ``free_pte_range`` for munmap / exit.

Addresses are walked from the PGD with plain loads (the caller holds the mmap lock, so
upper levels cannot go away).  Only 4-level paging is simulated (P4D folded).
"""

from __future__ import annotations

from dataclasses import dataclass

from ptlab.arch.x86.paging import PAGE_SIZE, PMD_SIZE, PUD_SIZE, U64_MASK
from ptlab.kernel.context import Kernel
from ptlab.mm.memory import upper_table_free_allowed
from ptlab.mm.mmu_gather import (
    MmuGather,
    __tlb_adjust_range,
    __tlb_remove_page_size,
    mm_dec_nr_pmds,
    mm_dec_nr_ptes,
    mm_dec_nr_puds,
    pmd_free_tlb,
    pte_free_tlb,
    pud_free_tlb,
    tlb_finish_mmu,
    tlb_flush_mmu,
    tlb_flush_mmu_tlbonly,
    tlb_gather_mmu,
)
from ptlab.mm.pgtable_generic import (
    PmdSlot,
    pte_index,
    pte_offset_map_lock,
    pte_unmap_unlock,
)
from ptlab.mm.pt_reclaim import (
    ZapDetails,
    free_pte,
    reclaim_pt_is_enabled,
    try_get_and_clear_pmd,
    try_to_free_pte,
)
from ptlab.sim.ops import Entry, KGen, Ptr, ReadEntry, ScanEntries, WriteEntry, XchgEntry


@dataclass(frozen=True)
class MmRef:
    """What kernel code needs to find an mm's tables: its PGD."""

    pgd: Ptr


def pgd_index(addr: int) -> int:
    return (addr >> 39) & 511


def pud_index(addr: int) -> int:
    return (addr >> 30) & 511


def pmd_index(addr: int) -> int:
    return (addr >> 21) & 511


def walk_to_pmd(k: Kernel, mm: MmRef, addr: int) -> KGen:
    """``pgd_offset`` → ``pud_offset`` → ``pmd_offset`` under the mmap lock.

    Returns the :class:`PmdSlot` for ``addr`` or None if an upper level is empty.
    """
    pgde = yield ReadEntry(mm.pgd, pgd_index(addr), "pgd")
    if pgde.target is None:
        return None
    pude = yield ReadEntry(pgde.target, pud_index(addr), "pud")
    if pude.target is None:
        return None
    return PmdSlot(pude.target, pmd_index(addr))


def zap_pte_range(
    k: Kernel, tlb: MmuGather, pmd: PmdSlot, addr: int, end: int, details: ZapDetails | None
) -> KGen:
    """mm/memory.c: clear the PTEs of ``[addr, end)`` in one table; maybe free the table.

    Under the PTE lock every present entry is cleared and its page queued on the
    mmu_gather.  If PT reclaim applies (the range covers the whole table) and the lock
    was never dropped, the fast path detaches the table at once; otherwise the slow
    path re-checks.  The table is freed after both locks are dropped.
    """
    force_flush = False
    start = addr
    can_reclaim_pt = reclaim_pt_is_enabled(k, start, end, details)
    direct_reclaim = True
    pmdval: Entry | None = None
    got = yield from pte_offset_map_lock(k, pmd, addr)
    if got is None:
        return addr
    pte, ptl = got
    first = pte_index(addr)
    last = first + (end - addr) // PAGE_SIZE
    present = yield ScanEntries(pte.table, first, last)  # do_zap_pte_range skips none ptes
    for idx, _val in present:
        old = yield XchgEntry(pte.table, idx, 0, "pte")  # ptep_get_and_clear_full
        __tlb_adjust_range(tlb, start + (idx - first) * PAGE_SIZE, PAGE_SIZE)
        tlb.cleared_ptes = True
        if old.target is not None:
            full = yield from __tlb_remove_page_size(k, tlb, old.target)
            force_flush = force_flush or full
    addr = end
    if can_reclaim_pt and direct_reclaim and addr == end:
        direct_reclaim, pmdval = yield from try_get_and_clear_pmd(k, pmd)
    if force_flush:
        yield from tlb_flush_mmu_tlbonly(k, tlb)
    yield from pte_unmap_unlock(k, pte, ptl)
    if force_flush:
        yield from tlb_flush_mmu(k, tlb)
    if can_reclaim_pt:
        if direct_reclaim:
            assert pmdval is not None
            yield from free_pte(k, start, tlb, pmdval)
        else:
            yield from try_to_free_pte(k, pmd, start, tlb)
    return addr


def zap_pmd_range(
    k: Kernel, tlb: MmuGather, pmd_table: Ptr, addr: int, end: int, details: ZapDetails | None
) -> KGen:
    """mm/memory.c: for each PMD entry in range, zap its PTE table (huge PMDs: not simulated)."""
    while addr < end:
        nxt = min((addr // PMD_SIZE + 1) * PMD_SIZE, end)
        slot = PmdSlot(pmd_table, pmd_index(addr))
        e = yield ReadEntry(pmd_table, slot.index, "pmd")
        if e.target is not None:
            yield from zap_pte_range(k, tlb, slot, addr, nxt, details)
        addr = nxt


def unmap_page_range(
    k: Kernel, tlb: MmuGather, mm: MmRef, addr: int, end: int, details: ZapDetails | None
) -> KGen:
    """mm/memory.c: walk PGD → PUD → PMD and zap (ranges within one PUD entry per call)."""
    while addr < end:
        nxt = min((addr // PUD_SIZE + 1) * PUD_SIZE, end)
        pgde = yield ReadEntry(mm.pgd, pgd_index(addr), "pgd")
        if pgde.target is not None:
            pude = yield ReadEntry(pgde.target, pud_index(addr), "pud")
            if pude.target is not None:
                yield from zap_pmd_range(k, tlb, pude.target, addr, nxt, details)
        addr = nxt


def zap_page_range_single(
    k: Kernel, mm: MmRef, start: int, size: int, details: ZapDetails | None
) -> KGen:
    """mm/memory.c: gather, unmap the range of one VMA, finish (flush + free)."""
    tlb = tlb_gather_mmu()
    yield from unmap_page_range(k, tlb, mm, start, start + size, details)
    yield from tlb_finish_mmu(k, tlb)


def madvise_dontneed_single_vma(k: Kernel, mm: MmRef, start: int, end: int) -> KGen:
    """mm/madvise.c (v6.14): MADV_DONTNEED asks for PT reclaim and zaps COWed pages too."""
    details = ZapDetails(reclaim_pt=True, even_cows=True)
    yield from zap_page_range_single(k, mm, start, end - start, details)


# --------------------------------------------------------------------------- free_pgtables


def free_pte_range(k: Kernel, tlb: MmuGather, pmd: PmdSlot, addr: int, token: Entry) -> KGen:
    """mm/memory.c: clear the PMD entry, queue the PTE table, VmPTE -= 4 KiB."""
    yield WriteEntry(pmd.table, pmd.index, 0, "pmd")  # pmd_clear
    assert token.target is not None
    yield from pte_free_tlb(k, tlb, token.target, addr)
    yield from mm_dec_nr_ptes(k)


def free_pmd_range(k: Kernel, tlb: MmuGather, pud_table: Ptr, addr: int, end: int,
                   floor: int, ceiling: int) -> KGen:
    """mm/memory.c: free the PTE tables in range, then the PMD table if nobody else uses it."""
    start = addr
    pude = yield ReadEntry(pud_table, pud_index(addr), "pud")
    if pude.target is None:
        return
    pmd_table = pude.target
    first = pmd_index(addr)
    last = pmd_index(end - 1) + 1
    used = yield ScanEntries(pmd_table, first, last, "pmd")
    for idx, _val in used:
        e = yield ReadEntry(pmd_table, idx, "pmd")
        if e.target is not None:
            a = (addr & ~(PUD_SIZE - 1)) + idx * PMD_SIZE
            yield from free_pte_range(k, tlb, PmdSlot(pmd_table, idx), a, e)
    mask = ~(PUD_SIZE - 1) & U64_MASK
    if not upper_table_free_allowed(start, end, floor, ceiling, mask):
        return
    yield WriteEntry(pud_table, pud_index(start), 0, "pud")  # pud_clear
    yield from pmd_free_tlb(k, tlb, pmd_table, start & mask)
    yield from mm_dec_nr_pmds(k)


def free_pud_range(k: Kernel, tlb: MmuGather, mm: MmRef, addr: int, end: int,
                   floor: int, ceiling: int) -> KGen:
    """mm/memory.c (P4D folded into the PGD): free PMD tables, then the PUD table."""
    start = addr
    pgde = yield ReadEntry(mm.pgd, pgd_index(addr), "pgd")
    if pgde.target is None:
        return
    pud_table = pgde.target
    a = addr
    while a < end:
        nxt = min((a // PUD_SIZE + 1) * PUD_SIZE, end)
        yield from free_pmd_range(k, tlb, pud_table, a, nxt, floor, ceiling)
        a = nxt
    mask = ~((1 << 39) - 1) & U64_MASK
    if not upper_table_free_allowed(start, end, floor, ceiling, mask):
        return
    yield WriteEntry(mm.pgd, pgd_index(start), 0, "pgd")  # p4d_clear == pgd_clear (folded)
    yield from pud_free_tlb(k, tlb, pud_table, start & mask)
    yield from mm_dec_nr_puds(k)


def free_pgd_range(k: Kernel, tlb: MmuGather, mm: MmRef, addr: int, end: int,
                   floor: int = 0, ceiling: int = 0) -> KGen:
    """mm/memory.c: free every table that only maps ``[addr, end)`` (between floor and
    ceiling); x86's USER_PGTABLES_CEILING is 0, "no ceiling"."""
    yield from free_pud_range(k, tlb, mm, addr, end, floor, ceiling)


def free_pgtables(k: Kernel, tlb: MmuGather, mm: MmRef, start: int, end: int) -> KGen:
    """mm/memory.c: after the pages are zapped, free the page tables of the unmapped
    VMA (ptlab's scenarios have no neighbouring VMAs: floor 0, no ceiling)."""
    yield from free_pgd_range(k, tlb, mm, start, end, 0, 0)


def unmap_region(k: Kernel, mm: MmRef, start: int, end: int) -> KGen:
    """mm/vma.c: munmap of a whole VMA: zap pages, free tables, one mmu_gather."""
    tlb = tlb_gather_mmu()
    yield from unmap_page_range(k, tlb, mm, start, end, None)
    yield from free_pgtables(k, tlb, mm, start, end)
    yield from tlb_finish_mmu(k, tlb)

