"""The primitive operations kernel code performs on the simulated machine.

Modelled kernel functions are Python generators.  Every access to shared state is one
``yield`` of an operation object defined here; the machine (``ptlab.sim.machine``)
executes it and sends the result back.  Code between two ``yield``\\ s only computes on
local variables, exactly like kernel code between two shared-memory accesses.  Larger
functions are composed with ``yield from``, so the generator chain *is* the kernel call
stack, and the machine can show it at every step.

A pointer to a frame is a :class:`Ptr`: its page frame number plus the allocation
generation the pointer was derived from.  The generation plays the role of a KASAN
tag: touching a frame through a pointer whose generation is no longer the frame's
current one is a use-after-free even if the frame has been reallocated meanwhile.

>>> Ptr(0x103, 1)
Ptr(pfn=0x103, gen=1)
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Ptr:
    """A pointer to a page frame (its ``struct page``/``struct ptdesc`` and contents)."""

    pfn: int
    gen: int

    def __repr__(self) -> str:
        return f"Ptr(pfn={self.pfn:#x}, gen={self.gen})"


@dataclass(frozen=True, slots=True)
class Entry:
    """A page-table entry value as loaded, with the provenance of the table it points to.

    ``target`` is the pointer a walker derives from a present, non-leaf entry (the
    generation of the pointed-to frame at the time of the load), otherwise None.
    """

    val: int
    target: Ptr | None = None


# --------------------------------------------------------------------------- memory


@dataclass(frozen=True, slots=True)
class ReadEntry:
    """Load one 8-byte entry of a table (``READ_ONCE(*pmdp)``, ``ptep_get``)."""

    table: Ptr
    index: int
    level: str = "pte"


@dataclass(frozen=True, slots=True)
class WriteEntry:
    """Store one entry (``set_pte``, ``pmd_clear``, ``pmd_populate``)."""

    table: Ptr
    index: int
    value: int
    level: str = "pte"


@dataclass(frozen=True, slots=True)
class XchgEntry:
    """Atomically read and replace one entry (``ptep_get_and_clear``)."""

    table: Ptr
    index: int
    value: int
    level: str = "pte"


@dataclass(frozen=True, slots=True)
class ScanEntries:
    """Read entries ``start..stop-1`` under the table's lock; returns the non-none ones.

    Used where the kernel loops over a table while holding its PTE lock, so that no
    other CPU can change the entries between the individual loads.
    """

    table: Ptr
    start: int
    stop: int
    level: str = "pte"


@dataclass(frozen=True, slots=True)
class ReadField:
    """Load a ``struct ptdesc``/``struct page`` member of a frame."""

    page: Ptr
    field: str


@dataclass(frozen=True, slots=True)
class WriteField:
    """Store a ``struct ptdesc``/``struct page`` member of a frame."""

    page: Ptr
    field: str
    value: int


@dataclass(frozen=True, slots=True)
class CounterAdd:
    """Add to a shared counter (``mm->pgtables_bytes``, ``NR_PAGETABLE``)."""

    counter: str
    delta: int


# --------------------------------------------------------------------------- locks


@dataclass(frozen=True, slots=True)
class PtlLock:
    """The split page-table lock embedded in a table's ``struct ptdesc`` (``ptdesc->ptl``)."""

    page: Ptr


@dataclass(frozen=True, slots=True)
class NamedLock:
    """A global lock such as ``pgd_lock`` or ``mm->page_table_lock``."""

    name: str


LockRef = PtlLock | NamedLock


@dataclass(frozen=True, slots=True)
class LockAcquire:
    """``arch_spin_lock``: take the lock; the CPU spins (the step is blocked) while it is held."""

    lock: LockRef


@dataclass(frozen=True, slots=True)
class LockTry:
    """``arch_spin_trylock``: take the lock if free; returns True on success."""

    lock: LockRef


@dataclass(frozen=True, slots=True)
class LockRelease:
    lock: LockRef


# --------------------------------------------------------------------------- CPU state


@dataclass(frozen=True, slots=True)
class IrqSave:
    """``local_irq_save``: disable interrupts; returns the previous state."""


@dataclass(frozen=True, slots=True)
class IrqRestore:
    enabled: bool


@dataclass(frozen=True, slots=True)
class PreemptDisable:
    pass


@dataclass(frozen=True, slots=True)
class PreemptEnable:
    pass


@dataclass(frozen=True, slots=True)
class RcuReadLock:
    pass


@dataclass(frozen=True, slots=True)
class RcuReadUnlock:
    pass


# --------------------------------------------------------------------------- RCU, IPIs


@dataclass(frozen=True, slots=True)
class CallRcu:
    """``call_rcu(head, func)``.

    ``head`` is either ``("ptdesc", ptr)`` — the ``pt_rcu_head`` inside a table's
    ``struct ptdesc`` (which overlays ``pt_list`` and ``pmd_huge_pte``) — or
    ``("batch", ptr)`` — the ``rcu`` member at offset 0 of a ``struct mmu_table_batch``
    page.  ``func`` names a callback registered in ``ptlab.kernel.rcu``; ``arg`` is the
    plain data the callback needs (what ``container_of`` recovers in C).
    """

    head: tuple[str, Ptr]
    func: str
    arg: tuple[Any, ...] = ()


@dataclass(frozen=True, slots=True)
class SendIpi:
    """Queue a function-call IPI to ``targets`` (CPU numbers); returns a ticket."""

    targets: tuple[int, ...]
    handler: str


@dataclass(frozen=True, slots=True)
class WaitIpi:
    """Spin until every target of ``ticket`` has run the handler (``csd_lock_wait``)."""

    ticket: int


@dataclass(frozen=True, slots=True)
class HypervisorFlush:
    """A paravirt remote TLB flush: the hypervisor flushes other vCPUs without an IPI."""

    targets: tuple[int, ...]
    how: str


# --------------------------------------------------------------------------- page allocator


@dataclass(frozen=True, slots=True)
class AllocPage:
    """``__get_free_page(gfp)``; returns a :class:`Ptr` or None when the allocation fails."""

    gfp: str
    kind: str = "kernel"


@dataclass(frozen=True, slots=True)
class FreePage:
    """Give a frame back to the page allocator (``free_page``, ``pagetable_free``)."""

    page: Ptr
    how: str = "free_page"


@dataclass(frozen=True, slots=True)
class FreePages:
    """Free several frames back to back in one step (``__tlb_remove_table_free``'s loop).

    Used only where nothing another CPU does can tell the frees apart (ptlab's own
    partial-order reduction; see the callback that uses it).
    """

    pages: tuple[Ptr, ...]
    how: str = "free_page"


# --------------------------------------------------------------------------- lists


@dataclass(frozen=True, slots=True)
class ListWalk:
    """Walk a global ``list_head`` list of ptdescs (``pgd_list``) and return its members."""

    head: str



@dataclass(frozen=True, slots=True)
class GetPage:
    """Take a reference on a page (``folio_try_get`` when ``try_get``: fails on refcount 0)."""

    page: Ptr
    try_get: bool = False


@dataclass(frozen=True, slots=True)
class PutPage:
    """Drop a reference; the last one frees the page."""

    page: Ptr



@dataclass(frozen=True, slots=True)
class Mark:
    """Not an access to shared state: a note of what private bookkeeping just did
    (a table appended to this CPU's batch).  The machine records it with the call
    stack and carries on without a scheduling point."""

    text: str
    frames: tuple[int, ...] = ()


Op = (
    ReadEntry
    | WriteEntry
    | XchgEntry
    | ScanEntries
    | ReadField
    | WriteField
    | CounterAdd
    | LockAcquire
    | LockTry
    | LockRelease
    | IrqSave
    | IrqRestore
    | PreemptDisable
    | PreemptEnable
    | RcuReadLock
    | RcuReadUnlock
    | CallRcu
    | SendIpi
    | WaitIpi
    | HypervisorFlush
    | AllocPage
    | FreePage
    | FreePages
    | ListWalk
    | GetPage
    | PutPage
    | Mark
)

#: What every modelled kernel function is: a generator of ops, receiving op results.
KGen = Generator[Op, Any, Any]

