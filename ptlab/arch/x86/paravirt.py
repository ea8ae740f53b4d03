"""The table-freeing hook per environment (≤ v6.14; kernel-facts §3.2).

With CONFIG_PARAVIRT, ``paravirt_tlb_remove_table()`` calls whatever sits in
``pv_ops.mmu.tlb_remove_table``:

- ``native_tlb_remove_table`` — the static initializer in arch/x86/kernel/paravirt.c;
  bare metal and KVM without PV TLB flush;
- ``tlb_remove_table`` — installed by Xen PV (``xen_mmu_ops``), Hyper-V
  (``hyperv_setup_mmu_ops`` when the hypervisor recommends remote flush hypercalls) and
  KVM (``kvm_guest_init`` when ``pv_tlb_flush_supported()``), because their remote
  flushes do not interrupt every vCPU.

Without CONFIG_PARAVIRT it is a static function in arch/x86/mm/pgtable.c.

Before v6.14 both native variants used ``tlb_remove_page()``; commit 718b13861d22 made
them call ``tlb_remove_table()`` when CONFIG_PT_RECLAIM is set.  In v6.14 the
``tlb_remove_page()`` variants also run ``pagetable_dtor()`` first, because the dtor no
longer happens in ``___pte_free_tlb()``.

>>> from ptlab.config import Config
>>> pv_ops_tlb_remove_table(Config(kernel="v6.13", paravirt="xen-pv"))
'tlb_remove_table'
"""

from __future__ import annotations

from ptlab.config import Config
from ptlab.kernel.context import Kernel
from ptlab.sim.ops import KGen, Ptr


def pv_ops_tlb_remove_table(config: Config) -> str | None:
    """The function in ``pv_ops.mmu.tlb_remove_table``; None when there is no such hook."""
    if config.kernel == "v6.15" or config.paravirt == "none":
        return None
    if config.pv_flush:
        return "tlb_remove_table"
    return "native_tlb_remove_table"


def native_tlb_remove_table(k: Kernel, tlb: object, table: Ptr) -> KGen:
    """arch/x86/kernel/paravirt.c: the hook's native value.

    v6.13: ``tlb_remove_page()``.  v6.14: ``tlb_remove_table()`` with CONFIG_PT_RECLAIM,
    else ``pagetable_dtor()`` + ``tlb_remove_page()``.
    """
    from ptlab.mm.mmu_gather import MmuGather, pagetable_dtor, tlb_remove_page, tlb_remove_table

    assert isinstance(tlb, MmuGather)
    if k.config.kernel != "v6.13" and k.config.pt_reclaim:
        yield from tlb_remove_table(k, tlb, table)
        return
    if k.config.kernel != "v6.13":
        yield from pagetable_dtor(k, table)
    yield from tlb_remove_page(k, tlb, table)


def paravirt_tlb_remove_table(k: Kernel, tlb: object, table: Ptr) -> KGen:
    """arch/x86/include/asm/paravirt.h (CONFIG_PARAVIRT) or arch/x86/mm/pgtable.c (not).

    With CONFIG_PARAVIRT: an indirect call through ``pv_ops.mmu.tlb_remove_table``.
    Without: v6.13 ``tlb_remove_page()``; v6.14 ``tlb_remove_table()`` if
    CONFIG_PT_RECLAIM, else ``pagetable_dtor()`` + ``tlb_remove_page()``.
    """
    from ptlab.mm.mmu_gather import MmuGather, pagetable_dtor, tlb_remove_page, tlb_remove_table

    assert isinstance(tlb, MmuGather)
    hook = pv_ops_tlb_remove_table(k.config)
    if hook == "tlb_remove_table":
        yield from tlb_remove_table(k, tlb, table)
    elif hook == "native_tlb_remove_table":
        yield from native_tlb_remove_table(k, tlb, table)
    elif k.config.kernel != "v6.13" and k.config.pt_reclaim:
        yield from tlb_remove_table(k, tlb, table)
    else:
        if k.config.kernel != "v6.13":
            yield from pagetable_dtor(k, table)
        yield from tlb_remove_page(k, tlb, table)
