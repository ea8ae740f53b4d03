"""Freeing page-table pages on x86 (arch/x86/mm/pgtable.c, arch/x86/include/asm/pgalloc.h).

``___pte_free_tlb`` / ``___pmd_free_tlb`` / ``___pud_free_tlb`` hand a detached table to
the mmu_gather:

- v6.13: ``paravirt_release_*()`` (a no-op outside Xen PV), the constructor's
  counterpart ``pagetable_*_dtor()`` right away, then ``paravirt_tlb_remove_table()``.
- v6.14: the dtor moved into ``__tlb_remove_table()`` (series "move pagetable_*_dtor()
  to __tlb_remove_table()"), so only ``paravirt_tlb_remove_table()`` is left here.
- v6.15: ``tlb_remove_table()`` directly; the paravirt hook is gone (f2c5c2105827).

``__pte_free_tlb`` (pgalloc.h) drops the address and calls ``___pte_free_tlb``.
"""

from __future__ import annotations

from ptlab.arch.x86.paravirt import paravirt_tlb_remove_table
from ptlab.kernel.context import Kernel
from ptlab.sim.ops import KGen, Ptr


def ___pte_free_tlb(k: Kernel, tlb: object, pte: Ptr) -> KGen:
    """arch/x86/mm/pgtable.c: free a PTE table through the mmu_gather."""
    from ptlab.mm.mmu_gather import MmuGather, pagetable_dtor, tlb_remove_table

    assert isinstance(tlb, MmuGather)
    if k.config.kernel == "v6.13":
        yield from pagetable_dtor(k, pte)  # pagetable_pte_dtor()
    if k.config.kernel == "v6.15":
        yield from tlb_remove_table(k, tlb, pte)
    else:
        yield from paravirt_tlb_remove_table(k, tlb, pte)


def ___pmd_free_tlb(k: Kernel, tlb: object, pmd: Ptr) -> KGen:
    """arch/x86/mm/pgtable.c: free a PMD table (PAE would also set need_flush_all)."""
    from ptlab.mm.mmu_gather import MmuGather, pagetable_dtor, tlb_remove_table

    assert isinstance(tlb, MmuGather)
    if k.config.kernel == "v6.13":
        yield from pagetable_dtor(k, pmd)  # pagetable_pmd_dtor()
    if k.config.kernel == "v6.15":
        yield from tlb_remove_table(k, tlb, pmd)
    else:
        yield from paravirt_tlb_remove_table(k, tlb, pmd)


def ___pud_free_tlb(k: Kernel, tlb: object, pud: Ptr) -> KGen:
    """arch/x86/mm/pgtable.c: free a PUD table."""
    from ptlab.mm.mmu_gather import MmuGather, pagetable_dtor, tlb_remove_table

    assert isinstance(tlb, MmuGather)
    if k.config.kernel == "v6.13":
        yield from pagetable_dtor(k, pud)  # pagetable_pud_dtor()
    if k.config.kernel == "v6.15":
        yield from tlb_remove_table(k, tlb, pud)
    else:
        yield from paravirt_tlb_remove_table(k, tlb, pud)


def __pte_free_tlb(k: Kernel, tlb: object, pte: Ptr, address: int) -> KGen:
    """arch/x86/include/asm/pgalloc.h: the address is not needed on x86."""
    yield from ___pte_free_tlb(k, tlb, pte)


def __pmd_free_tlb(k: Kernel, tlb: object, pmd: Ptr, address: int) -> KGen:
    yield from ___pmd_free_tlb(k, tlb, pmd)


def __pud_free_tlb(k: Kernel, tlb: object, pud: Ptr, address: int) -> KGen:
    yield from ___pud_free_tlb(k, tlb, pud)
