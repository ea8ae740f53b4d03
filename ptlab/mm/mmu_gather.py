"""struct mmu_gather and the table-freeing machinery of mm/mmu_gather.c.

Models mm/mmu_gather.c and the parts of include/asm-generic/tlb.h it relies on, for
v6.13 (semi-RCU), v6.14 (commit 718b13861d22 "x86: mm: free page table pages by RCU
instead of semi RCU" plus the "move pagetable_*_dtor() to __tlb_remove_table()" series)
and v6.15 (x86 RCU table free unconditional, a37259732a7d).  kernel-facts §4.

The order of operations is the kernel's:

1. unhook the table (clear the PMD entry),
2. invalidate the TLB / paging-structure caches (``tlb_flush_mmu_tlbonly``),
3. free — immediately after the flush (``tlb_remove_page`` path), after an IPI that every
   CPU must take (``tlb_remove_table_sync_one``), or after an RCU grace period.

Table pointers appended to the batch page are private to this CPU until
``call_rcu`` publishes the batch, so appending is not a scheduling point.

>>> MAX_TABLE_BATCH
509
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ptlab.arch.x86.paging import PAGE_SIZE
from ptlab.arch.x86.tlb import flush_tlb_mm_range
from ptlab.kernel.context import Kernel
from ptlab.kernel.rcu import call_rcu, rcu_callback
from ptlab.kernel.smp import smp_call_function
from ptlab.sim.ops import AllocPage, CounterAdd, FreePage, FreePages, KGen, Mark, Ptr, WriteField

#: sizeof(struct mmu_table_batch) on x86-64: rcu_head (16) + nr (4) + padding (4).
MMU_TABLE_BATCH_HEADER = 24
#: Table pointers per batch page: (PAGE_SIZE - 24) / sizeof(void *) = 509.
MAX_TABLE_BATCH = (PAGE_SIZE - MMU_TABLE_BATCH_HEADER) // 8
#: Pages per struct mmu_gather_batch page: (PAGE_SIZE - 16) / 8 = 510.
MAX_GATHER_BATCH = (PAGE_SIZE - 16) // 8
#: Extra page-batch pages an mmu_gather may allocate: 10000 / MAX_GATHER_BATCH = 19.
MAX_GATHER_BATCH_COUNT = 10000 // MAX_GATHER_BATCH
#: Slots in the on-stack bundle (MMU_GATHER_BUNDLE).
MMU_GATHER_BUNDLE = 8

#: ``__page_type`` of a page that has no type (page_type overhaul, v6.12+).
PAGE_TYPE_NONE = 0xFFFFFFFF


@dataclass
class MmuGather:
    """struct mmu_gather: lives on the stack of the CPU that zaps/unmaps.

    ``batch``/``batch_tables`` mirror ``tlb->batch`` (the table batch page and its
    ``tables[]``); ``pages`` is the page batch (``tlb->local`` + extra batch pages).
    """

    mm: str = "mm"
    fullmm: bool = False
    start: int = 0
    end: int = 0
    freed_tables: bool = False
    cleared_ptes: bool = False
    cleared_pmds: bool = False
    cleared_puds: bool = False
    cleared_p4ds: bool = False
    need_flush_all: bool = False
    batch: Ptr | None = None
    batch_tables: list[Ptr] = field(default_factory=list)
    pages: list[Ptr] = field(default_factory=list)
    extra_batch_pages: list[Ptr] = field(default_factory=list)
    batch_alloc_failed: bool = False

    def page_capacity(self) -> int:
        return MMU_GATHER_BUNDLE + MAX_GATHER_BATCH * len(self.extra_batch_pages)


def tlb_gather_mmu(mm: str = "mm", fullmm: bool = False) -> MmuGather:
    """mm/mmu_gather.c ``__tlb_gather_mmu``: an empty gather with an empty range."""
    tlb = MmuGather(mm=mm, fullmm=fullmm)
    __tlb_reset_range(tlb)
    return tlb


def __tlb_reset_range(tlb: MmuGather) -> None:
    """include/asm-generic/tlb.h: forget the range and what was cleared."""
    if tlb.fullmm:
        tlb.start, tlb.end = 0, 2**64 - 1
    else:
        tlb.start, tlb.end = 2**64 - 1, 0
    tlb.freed_tables = False
    tlb.cleared_ptes = tlb.cleared_pmds = tlb.cleared_puds = tlb.cleared_p4ds = False


def __tlb_adjust_range(tlb: MmuGather, address: int, size: int) -> None:
    tlb.start = min(tlb.start, address)
    tlb.end = max(tlb.end, address + size)


def tlb_flush_pmd_range(tlb: MmuGather, address: int, size: int) -> None:
    __tlb_adjust_range(tlb, address, size)
    tlb.cleared_pmds = True


def tlb_flush_pud_range(tlb: MmuGather, address: int, size: int) -> None:
    __tlb_adjust_range(tlb, address, size)
    tlb.cleared_puds = True


# --------------------------------------------------------------------------- TLB flush


def tlb_flush(k: Kernel, tlb: MmuGather) -> KGen:
    """arch/x86/include/asm/tlb.h: flush the gathered range, telling whether tables went."""
    yield from flush_tlb_mm_range(k, tlb.start, tlb.end, tlb.freed_tables)


def tlb_flush_mmu_tlbonly(k: Kernel, tlb: MmuGather) -> KGen:
    """include/asm-generic/tlb.h: flush the TLB if anything was cleared, then reset."""
    if not (
        tlb.freed_tables or tlb.cleared_ptes or tlb.cleared_pmds or tlb.cleared_puds
        or tlb.cleared_p4ds
    ):
        return
    yield from tlb_flush(k, tlb)
    __tlb_reset_range(tlb)


def tlb_table_invalidate(k: Kernel, tlb: MmuGather) -> KGen:
    """mm/mmu_gather.c: invalidate hardware walkers' caches before tables go.

    ``tlb_needs_table_invalidate()`` is true on x86 (it does not override it).
    """
    yield from tlb_flush_mmu_tlbonly(k, tlb)


# --------------------------------------------------------------------------- freeing a table


def pagetable_dtor(k: Kernel, table: Ptr) -> KGen:
    """include/linux/mm.h: clear the page-table page type, NR_PAGETABLE -= 1.

    (With ALLOC_SPLIT_PTLOCKS it would also free the separate ptlock; this machine
    embeds the 4-byte spinlock in the ptdesc, like the live 6.18 kernel.)
    """
    yield WriteField(table, "__page_type", PAGE_TYPE_NONE)
    yield CounterAdd("NR_PAGETABLE", -1)


def pagetable_free(k: Kernel, table: Ptr) -> KGen:
    """include/linux/mm.h: give the page back to the page allocator."""
    yield FreePage(table, how="pagetable_free")


def __tlb_remove_table(k: Kernel, table: Ptr) -> KGen:
    """Free one table page now.

    v6.13 (arch/x86/include/asm/tlb.h): ``free_page_and_swap_cache()`` — the dtor ran
    earlier, when the table was queued.  v6.14+ (generic version in
    include/asm-generic/tlb.h after the dtor series): ``pagetable_dtor()`` then
    ``pagetable_free()``, so the ptlock and the page go together.
    """
    if k.config.kernel == "v6.13":
        yield FreePage(table, how="free_page_and_swap_cache")
    else:
        yield from pagetable_dtor(k, table)
        yield from pagetable_free(k, table)


def tlb_remove_table_sync_one(k: Kernel) -> KGen:
    """mm/mmu_gather.c: IPI every other CPU and wait — *not* a grace period.

    Enough for walkers that disable interrupts (GUP-fast); useless against
    ``rcu_read_lock()`` walkers, who take the IPI without leaving their section.
    Only built with CONFIG_MMU_GATHER_RCU_TABLE_FREE; otherwise an empty function.
    """
    if k.config.rcu_table_free:
        yield from smp_call_function(k, "tlb_remove_table_smp_sync", wait=True)


@rcu_callback
def __tlb_remove_table_one_rcu(k: Kernel, head_kind: str, table: Ptr) -> KGen:
    """mm/mmu_gather.c (v6.14+, CONFIG_PT_RECLAIM): RCU callback on ``pt_rcu_head``."""
    yield from __tlb_remove_table(k, table)


def __tlb_remove_table_one(k: Kernel, table: Ptr) -> KGen:
    """Free a single table when no batch page could be had.

    v6.14+ (mm/mmu_gather.c, moved there from arch/x86 in the dtor series): with
    CONFIG_PT_RECLAIM, ``call_rcu(&ptdesc->pt_rcu_head, __tlb_remove_table_one_rcu)``
    — a real grace period, which also covers IRQ-disabled walkers (so no IPI).
    Without it: the old IPI + immediate free.
    """
    if k.config.pt_reclaim:
        yield from call_rcu(k, ("ptdesc", table), "__tlb_remove_table_one_rcu")
    else:
        yield from tlb_remove_table_sync_one(k)
        yield from __tlb_remove_table(k, table)


def tlb_remove_table_one(k: Kernel, table: Ptr) -> KGen:
    """mm/mmu_gather.c: the single-table slow path.

    v6.13 — "semi RCU": ``tlb_remove_table_sync_one()`` then ``__tlb_remove_table()``,
    i.e. IPI + immediate free.  v6.14+: ``__tlb_remove_table_one()``.
    """
    if k.config.kernel == "v6.13":
        yield from tlb_remove_table_sync_one(k)
        yield from __tlb_remove_table(k, table)
    else:
        yield from __tlb_remove_table_one(k, table)


@rcu_callback
def tlb_remove_table_rcu(k: Kernel, head_kind: str, batch: Ptr, tables: tuple[Ptr, ...]) -> KGen:
    """mm/mmu_gather.c: RCU callback on ``batch->rcu``; frees the whole batch."""
    yield from __tlb_remove_table_free(k, batch, tables)


def __tlb_remove_table_free(k: Kernel, batch: Ptr, tables: tuple[Ptr, ...]) -> KGen:
    """mm/mmu_gather.c: ``__tlb_remove_table()`` on every table, then ``free_page(batch)``.

    ptlab performs the loop as one step: the tables are unreachable by then, so no
    other CPU can tell the individual frees apart, and one step per table would make
    a 509-table batch needlessly expensive to explore.
    """
    if k.config.kernel != "v6.13":
        for t in tables:
            yield WriteField(t, "__page_type", PAGE_TYPE_NONE)
        if tables:
            yield CounterAdd("NR_PAGETABLE", -len(tables))
    yield FreePages((*tables, batch), how="__tlb_remove_table_free")


def tlb_remove_table_free(k: Kernel, tlb: MmuGather, batch: Ptr, tables: tuple[Ptr, ...]) -> KGen:
    """mm/mmu_gather.c: RCU table free → ``call_rcu(&batch->rcu, tlb_remove_table_rcu)``;
    otherwise free the batch right away."""
    if k.config.rcu_table_free:
        yield from call_rcu(k, ("batch", batch), "tlb_remove_table_rcu", tables)
    else:
        yield from __tlb_remove_table_free(k, batch, tables)


def tlb_table_flush(k: Kernel, tlb: MmuGather) -> KGen:
    """mm/mmu_gather.c: invalidate, then hand the current batch to RCU."""
    if tlb.batch is None:
        return
    yield from tlb_table_invalidate(k, tlb)
    batch, tables = tlb.batch, tuple(tlb.batch_tables)
    tlb.batch, tlb.batch_tables = None, []
    yield from tlb_remove_table_free(k, tlb, batch, tables)


def tlb_remove_table(k: Kernel, tlb: MmuGather, table: Ptr) -> KGen:
    """mm/mmu_gather.c ``tlb_remove_table()`` (CONFIG_MMU_GATHER_TABLE_FREE).

    Fast path: append to the batch page (allocated on first use with
    ``GFP_NOWAIT | __GFP_NOWARN``); a full batch (509) is flushed at once.
    Slow path, when the allocation fails: invalidate the TLB now and free this one
    table with ``tlb_remove_table_one()``.  Without CONFIG_MMU_GATHER_TABLE_FREE
    include/asm-generic/tlb.h makes ``tlb_remove_table`` plain ``tlb_remove_page``.
    """
    if not k.config.rcu_table_free:
        yield from tlb_remove_page(k, tlb, table)
        return
    if tlb.batch is None:
        page = yield AllocPage("GFP_NOWAIT | __GFP_NOWARN", kind="kernel")
        if page is None:
            tlb.batch_alloc_failed = True
            yield from tlb_table_invalidate(k, tlb)
            yield from tlb_remove_table_one(k, table)
            return
        tlb.batch, tlb.batch_tables = page, []
    tlb.batch_tables.append(table)
    yield Mark(
        f"table {table.pfn:#x} queued in batch {tlb.batch.pfn:#x} "
        f"({len(tlb.batch_tables)}/{MAX_TABLE_BATCH})",
        (table.pfn,),
    )
    if len(tlb.batch_tables) == MAX_TABLE_BATCH:
        yield from tlb_table_flush(k, tlb)


# --------------------------------------------------------------------------- the page batch


def tlb_next_batch(k: Kernel, tlb: MmuGather) -> KGen:
    """mm/mmu_gather.c: get one more page-batch page (GFP_NOWAIT); False if none."""
    if len(tlb.extra_batch_pages) >= MAX_GATHER_BATCH_COUNT:
        return False
    page = yield AllocPage("GFP_NOWAIT | __GFP_NOWARN", kind="kernel")
    if page is None:
        return False
    tlb.extra_batch_pages.append(page)
    return True


def __tlb_remove_page_size(k: Kernel, tlb: MmuGather, page: Ptr) -> KGen:
    """mm/mmu_gather.c: queue a page for freeing after the flush; True = batch full."""
    tlb.pages.append(page)
    yield Mark(f"page {page.pfn:#x} queued on the page batch ({len(tlb.pages)})", (page.pfn,))
    if len(tlb.pages) >= tlb.page_capacity():
        more = yield from tlb_next_batch(k, tlb)
        return not more
    return False


def tlb_remove_page(k: Kernel, tlb: MmuGather, page: Ptr) -> KGen:
    """include/asm-generic/tlb.h: queue ``page``; flush everything if the batch is full.

    Before v6.14 this is how native x86 freed page tables: like data pages, right after
    the TLB-flush IPIs, with no RCU at all (kernel-facts §4.5).
    """
    full = yield from __tlb_remove_page_size(k, tlb, page)
    if full:
        yield from tlb_flush_mmu(k, tlb)


def tlb_batch_pages_flush(k: Kernel, tlb: MmuGather) -> KGen:
    """mm/mmu_gather.c: ``free_pages_and_swap_cache()`` on everything queued."""
    if tlb.pages:
        pages, tlb.pages = tuple(tlb.pages), []
        yield FreePages(pages, how="free_pages_and_swap_cache")


def tlb_flush_mmu_free(k: Kernel, tlb: MmuGather) -> KGen:
    """mm/mmu_gather.c: tables first (to RCU or freed), then the page batch."""
    yield from tlb_table_flush(k, tlb)
    yield from tlb_batch_pages_flush(k, tlb)


def tlb_flush_mmu(k: Kernel, tlb: MmuGather) -> KGen:
    """mm/mmu_gather.c: flush the TLB, then free what was gathered."""
    yield from tlb_flush_mmu_tlbonly(k, tlb)
    yield from tlb_flush_mmu_free(k, tlb)


def tlb_finish_mmu(k: Kernel, tlb: MmuGather) -> KGen:
    """mm/mmu_gather.c: final flush and free; then free the extra batch pages."""
    yield from tlb_flush_mmu(k, tlb)
    if tlb.extra_batch_pages:
        pages, tlb.extra_batch_pages = tuple(tlb.extra_batch_pages), []
        yield FreePages(pages, how="tlb_batch_list_free")


# --------------------------------------------------------------------------- generic macros


def pte_free_tlb(k: Kernel, tlb: MmuGather, pte: Ptr, address: int) -> KGen:
    """include/asm-generic/tlb.h macro: widen the range, mark tables freed, free the PTE table."""
    from ptlab.arch.x86.pgtable import __pte_free_tlb

    tlb_flush_pmd_range(tlb, address, PAGE_SIZE)
    tlb.freed_tables = True
    yield from __pte_free_tlb(k, tlb, pte, address)


def pmd_free_tlb(k: Kernel, tlb: MmuGather, pmd: Ptr, address: int) -> KGen:
    """include/asm-generic/tlb.h macro for a PMD table."""
    from ptlab.arch.x86.pgtable import __pmd_free_tlb

    tlb_flush_pud_range(tlb, address, PAGE_SIZE)
    tlb.freed_tables = True
    yield from __pmd_free_tlb(k, tlb, pmd, address)


def pud_free_tlb(k: Kernel, tlb: MmuGather, pud: Ptr, address: int) -> KGen:
    """include/asm-generic/tlb.h macro for a PUD table."""
    from ptlab.arch.x86.pgtable import __pud_free_tlb

    __tlb_adjust_range(tlb, address, PAGE_SIZE)
    tlb.cleared_p4ds = True
    tlb.freed_tables = True
    yield from __pud_free_tlb(k, tlb, pud, address)


def mm_dec_nr_ptes(k: Kernel) -> KGen:
    """include/linux/mm.h: ``mm->pgtables_bytes -= PTRS_PER_PTE * sizeof(pte_t)`` (VmPTE)."""
    yield CounterAdd("pgtables_bytes", -PAGE_SIZE)


def mm_dec_nr_pmds(k: Kernel) -> KGen:
    yield CounterAdd("pgtables_bytes", -PAGE_SIZE)


def mm_dec_nr_puds(k: Kernel) -> KGen:
    yield CounterAdd("pgtables_bytes", -PAGE_SIZE)

