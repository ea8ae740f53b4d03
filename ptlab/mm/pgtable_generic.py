"""Lockless and locked PTE-table access (mm/pgtable-generic.c, v6.13+; kernel-facts §5.2, §5.4).

``pte_offset_map()`` takes ``rcu_read_lock()``, reads the PMD entry once and, if it
points to a PTE table, returns a pointer into that table *with the RCU read lock still
held*; ``pte_unmap()`` drops it.  The RCU read lock is the whole promise: a table that
is detached meanwhile "remains a valid though empty and disconnected table" until
``pte_unmap()`` — provided the freeing side waits for a grace period.

``pte_offset_map_lock()`` additionally takes the table's split lock (which lives in the
table's own ``struct ptdesc``), then re-reads the PMD entry; if it changed, it unlocks,
unmaps and tries again.  The re-check is what makes a concurrently detached table
harmless — but the ``spin_lock()`` before it already touches the table's ptdesc.
"""

from __future__ import annotations

from dataclasses import dataclass

from ptlab.arch.x86.paging import PAGE_SIZE, PTRS_PER_PTE
from ptlab.kernel.context import Kernel
from ptlab.kernel.rcu import call_rcu, rcu_callback, rcu_read_lock, rcu_read_unlock
from ptlab.kernel.smp import spin_lock, spin_unlock
from ptlab.sim.ops import Entry, KGen, PtlLock, Ptr, ReadEntry, WriteEntry

_PSE = 1 << 7


@dataclass(frozen=True)
class PmdSlot:
    """A ``pmd_t *``: the PMD table and the index of the entry in it."""

    table: Ptr
    index: int


@dataclass(frozen=True)
class PteMap:
    """A mapped ``pte_t *`` (table + index) and the PMD value it was found through."""

    table: Ptr
    index: int
    pmdval: Entry


def pte_index(addr: int) -> int:
    return (addr // PAGE_SIZE) % PTRS_PER_PTE


def pmd_none(e: Entry) -> bool:
    return e.val == 0


def pmd_leaf(e: Entry) -> bool:
    return bool(e.val & 1) and bool(e.val & _PSE)


def pmdp_get_lockless(k: Kernel, pmd: PmdSlot) -> KGen:
    """include/linux/pgtable.h: one READ_ONCE of the PMD entry (x86-64: no tearing)."""
    e = yield ReadEntry(pmd.table, pmd.index, "pmd")
    return e


def pmd_clear(k: Kernel, pmd: PmdSlot) -> KGen:
    """arch/x86/include/asm/pgtable.h: write an empty PMD entry."""
    yield WriteEntry(pmd.table, pmd.index, 0, "pmd")


def pmd_lockptr(pmd: PmdSlot) -> PtlLock:
    """include/linux/mm.h (split PMD locks): the lock in the PMD table's own ptdesc."""
    return PtlLock(pmd.table)


def pte_lockptr(pmdval: Entry) -> PtlLock:
    """include/linux/mm.h: the lock in the ptdesc of the PTE table ``pmdval`` points to."""
    assert pmdval.target is not None
    return PtlLock(pmdval.target)


def ___pte_offset_map(k: Kernel, pmd: PmdSlot | Entry, addr: int) -> KGen:
    """mm/pgtable-generic.c: RCU-lock, read the PMD once, map the PTE table or give up.

    ``pmd`` may be a slot in a PMD table, or — as GUP-fast passes it — a value the
    caller already read into a local variable (then nothing is loaded again).
    Returns a :class:`PteMap` with the RCU read lock held, or None (lock dropped).
    """
    yield from rcu_read_lock(k)
    if isinstance(pmd, Entry):
        pmdval = pmd
    else:
        pmdval = yield from pmdp_get_lockless(k, pmd)
    if pmd_none(pmdval) or pmd_leaf(pmdval) or pmdval.target is None:
        yield from rcu_read_unlock(k)
        return None
    return PteMap(pmdval.target, pte_index(addr), pmdval)


def pte_offset_map(k: Kernel, pmd: PmdSlot | Entry, addr: int) -> KGen:
    """include/linux/mm.h: ``__pte_offset_map(pmd, addr, NULL)``."""
    pte = yield from ___pte_offset_map(k, pmd, addr)
    return pte


def pte_unmap(k: Kernel, pte: PteMap) -> KGen:
    """include/linux/pgtable.h: unmap (a kunmap only with HIGHPTE) and ``rcu_read_unlock()``."""
    yield from rcu_read_unlock(k)


def pte_offset_map_lock(k: Kernel, pmd: PmdSlot, addr: int) -> KGen:
    """mm/pgtable-generic.c ``__pte_offset_map_lock``: map, lock, re-validate the PMD.

    Returns ``(PteMap, lock)`` with both the RCU read lock and the PTE lock held, or
    None if the PMD no longer points to a PTE table.
    """
    while True:
        pte = yield from ___pte_offset_map(k, pmd, addr)
        if pte is None:
            return None
        ptl = pte_lockptr(pte.pmdval)
        yield from spin_lock(k, ptl)
        now = yield from pmdp_get_lockless(k, pmd)
        if now.val == pte.pmdval.val:  # pmd_same()
            return pte, ptl
        yield from pte_unmap_unlock(k, pte, ptl)


def pte_unmap_unlock(k: Kernel, pte: PteMap, ptl: PtlLock) -> KGen:
    """include/linux/mm.h: ``spin_unlock(ptl)`` then ``pte_unmap(pte)``."""
    yield from spin_unlock(k, ptl)
    yield from pte_unmap(k, pte)


def pte_offset_map_rw_nolock(k: Kernel, pmd: PmdSlot, addr: int) -> KGen:
    """mm/pgtable-generic.c (v6.13+): map without locking; return ``(pte, pmdval, ptl)``.

    The caller must take ``ptl`` itself and re-validate ``pmdval`` before writing.
    """
    pte = yield from ___pte_offset_map(k, pmd, addr)
    if pte is None:
        return None
    return pte, pte.pmdval, pte_lockptr(pte.pmdval)


@rcu_callback
def pte_free_now(k: Kernel, head_kind: str, table: Ptr) -> KGen:
    """mm/pgtable-generic.c: RCU callback of ``pte_free_defer()``: ``pte_free()``."""
    from ptlab.mm.mmu_gather import pagetable_dtor, pagetable_free

    yield from pagetable_dtor(k, table)
    yield from pagetable_free(k, table)


def pte_free_defer(k: Kernel, table: Ptr) -> KGen:
    """mm/pgtable-generic.c (2023, Hugh Dickins): free a PTE table after a grace period.

    ``call_rcu(&page->rcu_head, pte_free_now)`` — the same bytes as ``pt_rcu_head``.
    """
    yield from call_rcu(k, ("ptdesc", table), "pte_free_now")
