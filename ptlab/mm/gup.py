"""GUP-fast: the lockless page-table walker that disables interrupts (mm/gup.c, ~v6.14;
kernel-facts §5.1).

``gup_fast()`` walks PGD → PUD → PMD with plain loads and interrupts disabled, maps the
PTE table through its *local copy* of the PMD value (``pte_offset_map(&pmd, addr)``,
which also takes ``rcu_read_lock()``), grabs a reference on the page, and then re-checks
that neither the PMD nor the PTE changed — if either did, the table may have been
detached (THP collapse, PT reclaim) and the reference is dropped.

Interrupts off is the protection: an IPI that the freeing side waits for cannot be taken
until ``local_irq_restore()``, and since the RCU flavour consolidation an IRQ-disabled
region is also an RCU read-side critical section.
"""

from __future__ import annotations

from ptlab.kernel.context import Kernel
from ptlab.kernel.smp import local_irq_restore, local_irq_save
from ptlab.mm.pgtable_generic import PmdSlot, pmd_leaf, pte_offset_map, pte_unmap
from ptlab.mm.zap import MmRef, pgd_index, pmd_index, pud_index
from ptlab.sim.ops import Entry, GetPage, KGen, PutPage, ReadEntry


def gup_fast_pte_range(k: Kernel, pmd: Entry, pmdp: PmdSlot, addr: int) -> KGen:
    """mm/gup.c: pin the page mapped at ``addr``; returns its pointer or None."""
    ptem = yield from pte_offset_map(k, pmd, addr)
    if ptem is None:
        return None
    pinned = None
    pte = yield ReadEntry(ptem.table, ptem.index, "pte")  # ptep_get_lockless
    if pte.target is not None:
        ok = yield GetPage(pte.target, try_get=True)  # try_grab_folio_fast
        if ok:
            pmd_now = yield ReadEntry(pmdp.table, pmdp.index, "pmd")
            pte_now = yield ReadEntry(ptem.table, ptem.index, "pte")
            if pmd_now.val != pmd.val or pte_now.val != pte.val:
                yield PutPage(pte.target)  # gup_put_folio: the table went away under us
            else:
                pinned = pte.target
    yield from pte_unmap(k, ptem)
    return pinned


def gup_fast_pgd_range(k: Kernel, mm: MmRef, addr: int) -> KGen:
    """mm/gup.c: the lockless walk down to the PMD."""
    pgde = yield ReadEntry(mm.pgd, pgd_index(addr), "pgd")
    if pgde.target is None:
        return None
    pude = yield ReadEntry(pgde.target, pud_index(addr), "pud")
    if pude.target is None:
        return None
    pmdp = PmdSlot(pude.target, pmd_index(addr))
    pmd = yield ReadEntry(pmdp.table, pmdp.index, "pmd")  # pmdp_get_lockless
    if pmd.target is None or pmd_leaf(pmd):
        return None
    page = yield from gup_fast_pte_range(k, pmd, pmdp, addr)
    return page


def gup_fast(k: Kernel, mm: MmRef, addr: int) -> KGen:
    """mm/gup.c: IRQs off around the walk; returns the pinned page or None (fall back to
    the slow, locked GUP)."""
    flags = yield from local_irq_save(k)
    page = yield from gup_fast_pgd_range(k, mm, addr)
    yield from local_irq_restore(k, flags)
    return page


def get_user_pages_fast_once(k: Kernel, mm: MmRef, addr: int) -> KGen:
    """A GUP-fast user: pin one page, use it, unpin it (``unpin_user_page``)."""
    page = yield from gup_fast(k, mm, addr)
    if page is not None:
        yield PutPage(page)
    return page
