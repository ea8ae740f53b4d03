"""Scenarios: which kernel paths run on which CPU, over which address space.

Each scenario builds its address space with the sequential model (``ptlab.mm.memory``)
and gives every CPU a modelled kernel path.  Nothing in a scenario says what should
happen; outcomes come from running it (``ptlab.sim.explore``).

>>> names()[:2]
['reclaim-vs-pte-offset-map-lock', 'reclaim-vs-gup-fast']
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ptlab.arch.x86.paging import PAGE_SIZE, PMD_SIZE, PTE_PFN_MASK, STRUCT_PAGE_SIZE, VMEMMAP_START
from ptlab.config import Config
from ptlab.kernel.context import Kernel
from ptlab.kernel.smp import spin_lock, spin_unlock
from ptlab.mm.gup import get_user_pages_fast_once
from ptlab.mm.khugepaged import retract_page_tables
from ptlab.mm.memory import Mm
from ptlab.mm.mmu_gather import pmd_free_tlb, tlb_finish_mmu, tlb_gather_mmu, tlb_remove_table
from ptlab.mm.page import PhysMem
from ptlab.mm.pgtable_generic import (
    PmdSlot,
    pte_offset_map,
    pte_offset_map_lock,
    pte_unmap,
    pte_unmap_unlock,
)
from ptlab.mm.ptdesc import Ptdesc
from ptlab.mm.zap import MmRef, madvise_dontneed_single_vma, unmap_region, walk_to_pmd
from ptlab.sim.machine import CpuState, Machine
from ptlab.sim.ops import FreePages, KGen, ListWalk, NamedLock, Ptr, ReadEntry, WriteEntry

#: Where scenario mappings live: PGD index 254, PUD index 0 — a 1 GiB-aligned spot.
BASE = 0x7F00_0000_0000


# --------------------------------------------------------------------------- reader paths


def mincore_pte_range(k: Kernel, pmd: PmdSlot, addr: int) -> KGen:
    """mm/mincore.c: look at a PTE under ``pte_offset_map_lock`` (a typical locked reader,
    like page faults and /proc/PID/smaps), holding only the mmap read lock."""
    got = yield from pte_offset_map_lock(k, pmd, addr)
    if got is None:
        return None
    pte, ptl = got
    e = yield ReadEntry(pte.table, pte.index, "pte")  # ptep_get
    yield from pte_unmap_unlock(k, pte, ptl)
    return e.val


def do_mincore(k: Kernel, mm: MmRef, addr: int) -> KGen:
    """mm/mincore.c: walk to the PMD under the mmap read lock, then the PTE range."""
    pmd = yield from walk_to_pmd(k, mm, addr)
    if pmd is None:
        return None
    val = yield from mincore_pte_range(k, pmd, addr)
    return val


def lockless_pte_reader(k: Kernel, mm: MmRef, addr: int) -> KGen:
    """A ``pte_offset_map()`` user that reads a PTE without the PTE lock (e.g. the
    khugepaged scan or ``follow_pte``-style lookups): RCU is its only protection."""
    pmd = yield from walk_to_pmd(k, mm, addr)
    if pmd is None:
        return None
    pte = yield from pte_offset_map(k, pmd, addr)
    if pte is None:
        return None
    e = yield ReadEntry(pte.table, pte.index, "pte")
    yield from pte_unmap(k, pte)
    return e.val


def sync_global_pgds(k: Kernel) -> KGen:
    """arch/x86/mm/init_64.c: walk every PGD on ``pgd_list`` under ``pgd_lock`` (done when
    kernel mappings change, to copy them into every process's PGD)."""
    yield from spin_lock(k, NamedLock("pgd_lock"))
    pgds = yield ListWalk("pgd_list")
    yield from spin_unlock(k, NamedLock("pgd_lock"))
    return pgds


# --------------------------------------------------------------------------- counterfactuals


def counterfactual_free_pgd_via_mmu_gather(k: Kernel, pgd: Ptr) -> KGen:
    """What if a PGD were freed like lower tables, through ``tlb_remove_table()``, without
    ``pgd_dtor()`` taking it off ``pgd_list`` first?  (The kernel never does this: PGDs
    go through ``pgd_free()``; kernel-facts §1.3, §2.3.)"""
    tlb = tlb_gather_mmu()
    tlb.freed_tables = True
    yield from tlb_remove_table(k, tlb, pgd)
    yield from tlb_finish_mmu(k, tlb)


def counterfactual_free_pmd_keeping_deposit(
    k: Kernel, pud_table: Ptr, pud_index: int, pmd: PmdSlot, thp: tuple[Ptr, ...], addr: int
) -> KGen:
    """What if a PMD table that still holds a THP's deposited PTE table were freed?
    The kernel always withdraws and frees the deposit first (``zap_deposited_table``
    from ``zap_huge_pmd``); this path skips that step.  ``thp`` are the huge page's
    frames as the fault allocated them."""
    tlb = tlb_gather_mmu()
    yield WriteEntry(pmd.table, pmd.index, 0, "pmd")  # pmdp_huge_get_and_clear
    yield FreePages(thp, how="free_pages_and_swap_cache")  # the THP itself goes
    yield WriteEntry(pud_table, pud_index, 0, "pud")  # pud_clear
    yield from pmd_free_tlb(k, tlb, pmd.table, addr)
    yield from tlb_finish_mmu(k, tlb)


# --------------------------------------------------------------------------- building


@dataclass(frozen=True)
class Scenario:
    name: str
    summary: str
    cpus: int
    builder: Callable[[Config], Machine]
    in_matrix: bool = True
    counterfactual: bool = False


def _ptr(mem: PhysMem, pfn: int) -> Ptr:
    return Ptr(pfn, mem.generation(pfn))


def _machine(config: Config, mm: Mm, scenario: str) -> Machine:
    mem = mm.mem
    m = Machine(config=config, mem=mem, scenario=scenario)
    m.cpus = [CpuState() for _ in range(config.ncpus)]
    m.counters = {"pgtables_bytes": mm.pgtables_bytes, "NR_PAGETABLE": mem.nr_pagetable}
    pfn, idx = mem.kernel_global("pgd_list", 2)
    m.lists["pgd_list"] = PhysMem.kaddr_of(pfn, idx)
    pgd = mm.pgd
    static = frozenset(p for p in mem.allocated_pfns("kernel"))
    m.roots = {
        "reachable": lambda mach: reachable_from(mach.mem, pgd),
        "static": static,
        "pgd": pgd,
        "mm": mm,
    }
    return m


def reachable_from(mem: PhysMem, pgd: int) -> set[int]:
    """Frames reachable from a PGD: tables, mapped pages, THP deposits (no KASAN checks)."""
    out: set[int] = set()
    if not mem.is_allocated(pgd):
        return out
    frontier = [(pgd, 0)]
    levels = ("pgd", "pud", "pmd", "pte")
    while frontier:
        pfn, lvl = frontier.pop()
        if pfn in out or not mem.is_allocated(pfn):
            continue
        out.add(pfn)
        arr = mem.contents_view(pfn)
        if arr is None:
            continue
        if levels[lvl] == "pmd":
            dep = Ptdesc(mem, pfn, kernel="v6.14").get("pmd_huge_pte")
            if dep and (dep - VMEMMAP_START) % STRUCT_PAGE_SIZE == 0:
                out.add((dep - VMEMMAP_START) // STRUCT_PAGE_SIZE)
        for v in arr[arr != 0].tolist():
            v = int(v)
            if not v & 1:
                continue
            child = (v & PTE_PFN_MASK) >> 12
            if levels[lvl] == "pte":
                out.add(child)
            elif levels[lvl] == "pmd" and v & 0x80:
                out.update(range(child, child + 512))
            else:
                frontier.append((child, lvl + 1))
    return out


def _small_mm(config: Config, touched: tuple[int, ...] = (0, PAGE_SIZE)) -> tuple[Mm, MmRef]:
    mm = Mm(PhysMem(), levels=4, pt_reclaim=config.pt_reclaim, kernel="v6.14")
    mm.mmap(BASE, 4 * PMD_SIZE)
    for off in touched:
        mm.touch(BASE + off)
    return mm, MmRef(_ptr(mm.mem, mm.pgd))


def _at_least(config: Config, cpus: int) -> Config:
    return config if config.ncpus >= cpus else config.replace(ncpus=cpus)


def _reclaim_vs(readers: tuple[str, ...]) -> Callable[[Config], Machine]:
    def build(config: Config) -> Machine:
        config = _at_least(config, len(readers) + 1)
        mm, ref = _small_mm(config)
        m = _machine(config, mm, "")
        reclaim_cpu = 1
        cpu = 0
        for r in readers:
            if cpu == reclaim_cpu:
                cpu += 1
            if r == "pte_offset_map_lock":
                m.add_thread(cpu, lambda k: do_mincore(k, ref, BASE + PAGE_SIZE))
            else:
                m.add_thread(cpu, lambda k: get_user_pages_fast_once(k, ref, BASE + PAGE_SIZE))
            cpu += 1
        m.add_thread(
            reclaim_cpu, lambda k: madvise_dontneed_single_vma(k, ref, BASE, BASE + PMD_SIZE)
        )
        return m

    return build


def _build_khugepaged(config: Config) -> Machine:
    config = _at_least(config, 2)
    mm, ref = _small_mm(config)
    # The pages this table mapped now live in the huge page in the page cache; what is
    # left to retract is the (empty) table itself.
    mm.zap_range(BASE, BASE + PMD_SIZE, reclaim_pt=False)
    loc = mm.pmd_entry_location(BASE)
    assert loc is not None
    slot = PmdSlot(_ptr(mm.mem, loc[0]), loc[1])
    m = _machine(config, mm, "")
    m.add_thread(0, lambda k: lockless_pte_reader(k, ref, BASE + PAGE_SIZE))
    m.add_thread(1, lambda k: retract_page_tables(k, slot, BASE))
    return m


def _build_munmap(ntables: int) -> Callable[[Config], Machine]:
    def build(config: Config) -> Machine:
        mm = Mm(PhysMem(), levels=4, pt_reclaim=config.pt_reclaim, kernel="v6.14")
        size = ntables * PMD_SIZE
        mm.mmap(BASE, size)
        mm.touch_range(BASE, BASE + size, stride=PMD_SIZE)
        ref = MmRef(_ptr(mm.mem, mm.pgd))
        m = _machine(config, mm, "")
        m.add_thread(0, lambda k: unmap_region(k, ref, BASE, BASE + size))
        return m

    return build


def _build_pgd_counterfactual(config: Config) -> Machine:
    config = _at_least(config, 2)
    mm, _ref = _small_mm(config, touched=())
    pgd = _ptr(mm.mem, mm.pgd)
    m = _machine(config, mm, "")
    m.add_thread(0, sync_global_pgds)
    m.add_thread(1, lambda k: counterfactual_free_pgd_via_mmu_gather(k, pgd))
    return m


def _build_deposit_counterfactual(config: Config) -> Machine:
    config = _at_least(config, 2)
    mm = Mm(PhysMem(), levels=4, pt_reclaim=config.pt_reclaim, kernel="v6.14")
    mm.mmap(BASE, 2 * PMD_SIZE, thp=True)
    mm.touch(BASE)  # a huge PMD, with a PTE table deposited in the PMD table's ptdesc
    w = mm.walk(BASE)
    pud_step = next(s for s in w.steps if s.level == "pud")
    pmd_step = next(s for s in w.steps if s.level == "pmd")
    mem = mm.mem
    slot = PmdSlot(_ptr(mem, pmd_step.table_pfn), pmd_step.index)
    pud = _ptr(mem, pud_step.table_pfn)
    head = (pmd_step.entry & PTE_PFN_MASK) >> 12
    thp = tuple(_ptr(mem, p) for p in range(head, head + 512))
    m = _machine(config, mm, "")
    m.add_thread(
        1,
        lambda k: counterfactual_free_pmd_keeping_deposit(
            k, pud, pud_step.index, slot, thp, BASE
        ),
    )
    return m


SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (
        Scenario(
            "reclaim-vs-pte-offset-map-lock",
            "MADV_DONTNEED reclaims an empty PTE table (CPU1) while CPU0 is inside "
            "pte_offset_map_lock() on it (mincore)",
            2,
            _reclaim_vs(("pte_offset_map_lock",)),
        ),
        Scenario(
            "reclaim-vs-gup-fast",
            "MADV_DONTNEED reclaims a PTE table (CPU1) while CPU0 walks it with GUP-fast, "
            "interrupts off",
            2,
            _reclaim_vs(("gup_fast",)),
        ),
        Scenario(
            "reclaim-vs-both",
            "PT reclaim on CPU1 against a pte_offset_map_lock() reader on CPU0 and GUP-fast "
            "on CPU2",
            3,
            _reclaim_vs(("pte_offset_map_lock", "gup_fast")),
        ),
        Scenario(
            "khugepaged-vs-pte-offset-map",
            "khugepaged retracts a PTE table with pte_free_defer() (CPU1) while CPU0 reads it "
            "under pte_offset_map()",
            2,
            _build_khugepaged,
        ),
        Scenario(
            "munmap",
            "munmap of a 6 MiB mapping frees its 3 PTE tables and the PMD and PUD tables "
            "through one mmu_gather",
            2,
            _build_munmap(3),
        ),
        Scenario(
            "munmap-batching",
            "munmap of 1100 PTE tables: table batches fill at 509 and are handed to RCU; "
            "the rest goes at tlb_finish_mmu",
            2,
            _build_munmap(1100),
            in_matrix=False,
        ),
        Scenario(
            "rcu-free-pgd-on-pgd-list",
            "counterfactual: a PGD still on pgd_list freed through tlb_remove_table() while "
            "CPU0 walks pgd_list",
            2,
            _build_pgd_counterfactual,
            counterfactual=True,
        ),
        Scenario(
            "rcu-free-pmd-with-deposit",
            "counterfactual: a PMD table whose pmd_huge_pte still holds a THP deposit freed "
            "through the mmu_gather",
            2,
            _build_deposit_counterfactual,
            counterfactual=True,
        ),
    )
}


def names() -> list[str]:
    return list(SCENARIOS)


def get(name: str) -> Scenario:
    try:
        return SCENARIOS[name]
    except KeyError:
        raise ValueError(
            f"unknown scenario {name!r}; known scenarios: {', '.join(SCENARIOS)}"
        ) from None


def build(name: str, config: Config | None = None) -> Machine:
    """A fresh machine for scenario ``name`` under ``config`` (default: v6.14 native)."""
    sc = get(name)
    m = sc.builder(config or Config())
    m.scenario = name
    return m


# --------------------------------------------------------------------------- your own scenario

#: The kernel paths a custom scenario can put on a CPU: name → (arguments, description).
BLOCKS: dict[str, tuple[tuple[str, ...], str]] = {
    "madvise_dontneed": (("offset", "length"),
                         "MADV_DONTNEED of [offset, offset+length): zap, maybe reclaim tables"),
    "mincore": (("offset",), "pte_offset_map_lock() reader of the PTE at offset"),
    "pte_offset_map": (("offset",), "pte_offset_map() reader (no PTE lock) of the PTE at offset"),
    "gup_fast": (("offset",), "GUP-fast of the page at offset (interrupts off), then unpin"),
    "retract": (("offset",), "khugepaged retract_page_tables() of the table covering offset"),
}
CUSTOM_SIZE = 4 * PMD_SIZE


def _parse_size(tok: str, what: str) -> int:
    t = tok.strip().lower()
    mult = 1
    if t.endswith("k"):
        mult, t = 1 << 10, t[:-1]
    elif t.endswith("m"):
        mult, t = 1 << 20, t[:-1]
    try:
        v = int(t, 0) * mult
    except ValueError:
        raise ValueError(
            f"{what}: {tok!r} is not a number (use e.g. 0x1000, 4096, 4k, 2M)"
        ) from None
    if v < 0 or v % PAGE_SIZE:
        raise ValueError(f"{what}: {tok!r} must be a non-negative multiple of 4 KiB")
    return v


def parse_block(text: str) -> tuple[str, tuple[int, ...]]:
    """``"madvise_dontneed 0 2M"`` → ``("madvise_dontneed", (0, 2097152))``."""
    parts = text.split()
    if not parts or parts[0] not in BLOCKS:
        raise ValueError(
            f"unknown kernel path {parts[0] if parts else text!r}; choose from: "
            + ", ".join(f"{n} {' '.join(a)}" for n, (a, _) in BLOCKS.items())
        )
    name = parts[0]
    argnames = BLOCKS[name][0]
    if len(parts) - 1 != len(argnames):
        raise ValueError(f"{name} takes {' '.join(argnames)}; got {text!r}")
    vals = tuple(_parse_size(t, f"{name} {a}") for t, a in zip(parts[1:], argnames, strict=True))
    end = vals[0] + (vals[1] if len(vals) > 1 else PAGE_SIZE)
    if end > CUSTOM_SIZE:
        raise ValueError(
            f"{text!r} reaches past the {CUSTOM_SIZE >> 20} MiB mapping of a custom scenario"
        )
    return name, vals


def _block_thread(ref: MmRef, mm: Mm, blocks: list[tuple[str, tuple[int, ...]]]):  # type: ignore[no-untyped-def]
    slots = {}
    for _name, vals in blocks:
        loc = mm.pmd_entry_location(BASE + vals[0])
        if loc is not None:
            slots[vals[0]] = PmdSlot(_ptr(mm.mem, loc[0]), loc[1])

    def thread(k: Kernel) -> KGen:
        for name, vals in blocks:
            addr = BASE + vals[0]
            if name == "madvise_dontneed":
                yield from madvise_dontneed_single_vma(k, ref, addr, addr + vals[1])
            elif name == "mincore":
                yield from do_mincore(k, ref, addr)
            elif name == "pte_offset_map":
                yield from lockless_pte_reader(k, ref, addr)
            elif name == "gup_fast":
                yield from get_user_pages_fast_once(k, ref, addr)
            elif name == "retract" and vals[0] in slots:
                yield from retract_page_tables(k, slots[vals[0]], addr - addr % PMD_SIZE)

    return thread


def custom(
    threads: dict[int, list[str] | str],
    config: Config | None = None,
    *,
    touched: tuple[int, ...] = (0, PAGE_SIZE),
) -> Machine:
    """Build a scenario from kernel paths: ``{cpu: ["madvise_dontneed 0 2M", ...]}``.

    The address space is an 8 MiB anonymous mapping at :data:`BASE` with the pages at
    ``touched`` (offsets) faulted in.  Each CPU runs its paths one after the other.

    >>> m = custom({0: "mincore 0x1000", 1: "madvise_dontneed 0 2M"}, Config(kernel="v6.13"))
    >>> sorted(m.threads)
    ['CPU0', 'CPU1']
    """
    config = config or Config()
    if not threads:
        raise ValueError("a scenario needs at least one CPU with a kernel path")
    for cpu in threads:
        if not isinstance(cpu, int) or not 0 <= cpu < 4:
            raise ValueError(f"CPU {cpu!r} is not allowed; use CPU numbers 0 to 3")
    config = _at_least(config, max(threads) + 1)
    mm = Mm(PhysMem(), levels=4, pt_reclaim=config.pt_reclaim, kernel="v6.14")
    mm.mmap(BASE, CUSTOM_SIZE)
    for off in touched:
        if not 0 <= off < CUSTOM_SIZE or off % PAGE_SIZE:
            raise ValueError(f"touched offset {off:#x} must be page aligned and inside the mapping")
        mm.touch(BASE + off)
    ref = MmRef(_ptr(mm.mem, mm.pgd))
    m = _machine(config, mm, "custom")
    for cpu, spec in sorted(threads.items()):
        texts = [spec] if isinstance(spec, str) else list(spec)
        blocks = [parse_block(t) for t in texts]
        m.add_thread(cpu, _block_thread(ref, mm, blocks))
    return m
