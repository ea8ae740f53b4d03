"""An address space: ``struct mm_struct``, page faults, zapping and ``free_pgtables``.

Models, sequentially (one CPU, tables freed at once), the parts of v6.14
``mm/memory.c`` (``handle_mm_fault`` → ``__pud_alloc``/``__pmd_alloc``/``__pte_alloc``,
``do_anonymous_page``, ``zap_pte_range`` with ``CONFIG_PT_RECLAIM``, ``free_pgd_range``
and its per-level helpers), ``mm/mmap.c``/``mm/vma.c`` (munmap → ``unmap_region`` →
``free_pgtables`` with the floor/ceiling of the neighbouring VMAs),
``mm/huge_memory.c`` (anonymous THP fault with a deposited PTE table, ``zap_huge_pmd``,
PMD split), ``mm/pgtable-generic.c`` (``pgtable_trans_huge_deposit/withdraw``) and
``arch/x86/mm/pgtable.c`` (``pgd_alloc`` putting the PGD on ``pgd_list``).  The lead's
simulator (``ptlab.sim``) runs the RCU-deferred, multi-CPU versions of the freeing paths.

Page-table pages are real frames of :class:`~ptlab.mm.page.PhysMem` holding 512 entries;
``mm.pgtables_bytes`` moves exactly where the kernel's ``mm_inc/dec_nr_{ptes,pmds,puds}``
move it, so :attr:`Mm.vm_pte_kib` is ``VmPTE`` of ``/proc/PID/status``: PTE, PMD and PUD
tables (and THP-deposited PTE tables) count; the PGD and P4D tables do not
(``__p4d_alloc`` has no counter).

>>> mm = Mm()
>>> vma = mm.mmap(0x7f0000000000, 4 << 20)
>>> _ = mm.touch(0x7f0000001234)
>>> mm.vm_pte_kib           # one PUD, one PMD and one PTE table
12
>>> mm.madvise(0x7f0000000000, 4 << 20, "dontneed")   # PT_RECLAIM frees the PTE table
>>> mm.vm_pte_kib
8
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from ptlab.arch.x86 import paging as pg
from ptlab.arch.x86.paging import (
    _PAGE_ACCESSED,
    _PAGE_DIRTY,
    _PAGE_PSE,
    _PAGE_RW,
    _PAGE_TABLE,
    PAGE_SHIFT,
    PAGE_SIZE,
    PAGE_USER_DATA,
    PAGE_USER_READONLY,
    PMD_MASK,
    PMD_SHIFT,
    PMD_SIZE,
    PTE_PFN_MASK,
    PTRS_PER_PTE,
    PUD_MASK,
    PUD_SHIFT,
    PUD_SIZE,
    U64_MASK,
    VaddrSplit,
    check_canonical,
    entry_pfn,
    mk_entry,
    pmd_leaf,
    split_vaddr,
    task_size_max,
)
from ptlab.mm.page import SETUP, I64Array, PhysMem, Who
from ptlab.mm.ptdesc import (
    INIT_LIST_HEAD,
    KERNELS,
    Ptdesc,
    field_address,
    list_add,
    list_del,
    list_empty,
    list_entries,
    pagetable_ctor,
    pagetable_dtor,
    ptdesc_address,
)

HPAGE_PMD_ORDER = PMD_SHIFT - PAGE_SHIFT  # 9: a 2 MiB THP is 512 frames
TABLE_BYTES = PTRS_PER_PTE * 8  # mm_inc_nr_ptes(): PTRS_PER_PTE * sizeof(pte_t)
FIRST_USER_ADDRESS = 0
USER_PGTABLES_CEILING = 0  # 0 = "up to the top of the address space"
ADVICE = ("dontneed", "free")
MM_STRUCT_WORDS = 1472 // 8  # sizeof(struct mm_struct) on the live 6.18 kernel


@dataclass(frozen=True)
class Vma:
    """An anonymous private VMA ``[start, end)``; ``thp`` allows PMD-mapped THPs."""

    start: int
    end: int
    thp: bool = False

    def __contains__(self, addr: object) -> bool:
        return isinstance(addr, int) and self.start <= addr < self.end

    def __str__(self) -> str:
        return f"[{self.start:#x}, {self.end:#x}){' thp' if self.thp else ''}"


@dataclass(frozen=True)
class WalkLevel:
    """One step of a page walk: entry ``index`` of table ``table_pfn`` holds ``entry``,
    which leads to frame ``next_pfn`` (next table, data page or huge page) or nowhere."""

    level: str  # "pgd" | "p4d" | "pud" | "pmd" | "pte"
    table_pfn: int
    index: int
    entry: int
    next_pfn: int | None


@dataclass(frozen=True)
class Walk:
    """Result of :meth:`Mm.walk`: the steps and where they ended."""

    addr: int
    levels: int
    split: VaddrSplit
    steps: tuple[WalkLevel, ...]
    state: str  # "mapped" | "huge" | "not-present"
    phys: int | None = None

    @property
    def offset(self) -> int:
        return self.addr & (PAGE_SIZE - 1)


@dataclass
class _Loc:
    """A table entry: frame and index."""

    pfn: int
    index: int


def _addr_end(addr: int, end: int, size: int) -> int:
    """``pXd_addr_end()``: next ``size`` boundary after ``addr``, capped at ``end``
    (with the kernel's wrap-around-safe comparison)."""
    boundary = (addr + size) & ~(size - 1) & U64_MASK
    return boundary if ((boundary - 1) & U64_MASK) < ((end - 1) & U64_MASK) else end


def upper_table_free_allowed(start: int, end: int, floor: int, ceiling: int, mask: int) -> bool:
    """The floor/ceiling test ``free_{pmd,pud,p4d}_range()`` make before freeing the upper
    table that maps ``[start, end)`` (mm/memory.c).

    ``mask`` is the upper table's span mask (``PUD_MASK`` for a PMD table, …);
    ``floor``/``ceiling`` are the end of the previous VMA and the start of the next one
    (0 = none), so a table shared with a neighbouring VMA is kept.
    """
    start &= mask
    if start < floor:
        return False
    if ceiling:
        ceiling &= mask
        if not ceiling:
            return False
    return not ((end - 1) & U64_MASK) > ((ceiling - 1) & U64_MASK)


class Mm:
    """``struct mm_struct`` with its PGD, VMAs and page-table byte counter."""

    mem: PhysMem
    levels: int
    pt_reclaim: bool
    kernel: str
    pgd: int
    pgtables_bytes: int
    vmas: list[Vma]
    actor: str
    address: int

    def __init__(
        self,
        mem: PhysMem | None = None,
        *,
        levels: int = 4,
        pt_reclaim: bool = True,
        kernel: str = "v6.14",
        actor: str = "setup",
    ) -> None:
        if levels not in pg.LEVELS_ALLOWED or isinstance(levels, bool):
            raise ValueError(f"levels={levels!r} is not supported; allowed: 4 or 5")
        if kernel not in KERNELS:
            raise ValueError(f"kernel {kernel!r} unknown; allowed: {', '.join(KERNELS)}")
        self.mem = PhysMem() if mem is None else mem
        self.levels = levels
        self.pt_reclaim = bool(pt_reclaim)
        self.kernel = kernel
        self.actor = actor
        self.pgtables_bytes = 0
        self.vmas = []
        self._pgd_freed = False
        obj_pfn, obj_idx = self.mem.kernel_object("mm_struct", MM_STRUCT_WORDS)
        self.address = PhysMem.kaddr_of(obj_pfn, obj_idx)
        self.pgd = self._pgd_alloc()

    # ------------------------------------------------------------------ helpers
    def _who(self, *stack: str) -> Who:
        return Who(self.actor, stack, None)

    def _rd(self, loc: _Loc, who: Who) -> int:
        return self.mem.read(loc.pfn, loc.index, who)

    def _wr(self, loc: _Loc, value: int, who: Who) -> None:
        self.mem.write(loc.pfn, loc.index, value, who)

    def _alloc_table(self, level: str, who: Who) -> int:
        pfn = self.mem.alloc_page(who, kind="pagetable")
        pagetable_ctor(self.mem, pfn, who, level=level, kernel=self.kernel)
        return pfn

    def _free_table(self, pfn: int, level: str, who: Who) -> None:
        """``pagetable_dtor_free()``: what ``___pte_free_tlb`` & co. end in once the
        table may be freed (here immediately: the sequential model has no other CPU)."""
        pagetable_dtor(self.mem, pfn, who, kernel=self.kernel)
        self.mem.free_page(pfn, who)

    def _pgd_list_head(self) -> int:
        pfn, idx = self.mem.kernel_global("pgd_list", 2)
        head = PhysMem.kaddr_of(pfn, idx)
        if self.mem.read(pfn, idx) == 0:  # static LIST_HEAD(pgd_list)
            INIT_LIST_HEAD(self.mem, head)
        return head

    def _pgd_alloc(self) -> int:
        """``pgd_alloc()``: a PGD page, ``pgd_ctor()`` under ``pgd_lock``: owner mm in
        ``pt_mm`` (``pgd_set_mm``) and the page linked on ``pgd_list``.  The kernel half
        copied from ``swapper_pg_dir`` is not modelled (entries 256..511 stay empty)."""
        who = self._who("pgd_alloc", "_pgd_alloc")
        pfn = self._alloc_table("pgd", who)
        who = self._who("pgd_alloc", "pgd_ctor")
        Ptdesc(self.mem, pfn, who, kernel=self.kernel).set("pt_mm", self.address)
        list_add(self.mem, field_address(pfn, "pt_list", self.kernel), self._pgd_list_head(),
                 self._who("pgd_alloc", "pgd_ctor", "pgd_list_add"))
        return pfn

    def pgd_free(self) -> None:
        """``pgd_free()`` (reached from ``__mmdrop``): unlink from ``pgd_list`` and free
        the PGD page directly, never through ``tlb_remove_table`` (kernel-facts §1.3)."""
        if self._pgd_freed:
            raise ValueError("pgd_free: this mm's PGD was already freed")
        who = self._who("__mmdrop", "pgd_free", "pgd_dtor", "pgd_list_del")
        list_del(self.mem, field_address(self.pgd, "pt_list", self.kernel), who)
        self._free_table(self.pgd, "pgd", self._who("__mmdrop", "pgd_free", "_pgd_free"))
        self._pgd_freed = True

    def pgd_list(self) -> list[int]:
        """PGD pfns currently on the global ``pgd_list`` of this machine, in list order."""
        off = field_address(0, "pt_list", self.kernel) - ptdesc_address(0)
        return [
            (node - off - pg.VMEMMAP_START) // pg.STRUCT_PAGE_SIZE
            for node in list_entries(self.mem, self._pgd_list_head())
        ]

    def clone(self) -> Mm:
        """An independent copy with its own cloned PhysMem (for snapshots)."""
        c = Mm.__new__(Mm)
        c.__dict__.update(self.__dict__)
        c.mem = self.mem.clone()
        c.vmas = list(self.vmas)
        return c

    # ------------------------------------------------------------------ VMAs
    def _check_user_range(self, start: int, end: int, what: str) -> None:
        top = task_size_max(self.levels)
        if isinstance(start, bool) or not isinstance(start, int) or start < 0:
            raise ValueError(f"{what}: start {start!r} must be a non-negative int")
        if start % PAGE_SIZE:
            raise ValueError(f"{what}: start {start:#x} is not page aligned (multiple of 0x1000)")
        if end <= start:
            raise ValueError(f"{what}: empty range at {start:#x}; length must be > 0")
        if end > top:
            raise ValueError(
                f"{what}: range {start:#x}..{end:#x} exceeds the user address space "
                f"0x0..{top:#x} ({self.levels}-level paging)"
            )

    def find_vma(self, addr: int) -> Vma | None:
        """The VMA containing ``addr``, if any."""
        for v in self.vmas:
            if v.start <= addr < v.end:
                return v
        return None

    def _vmas_text(self) -> str:
        return ", ".join(str(v) for v in self.vmas) or "none"

    def mmap(self, start: int, length: int, *, thp: bool = False) -> Vma:
        """Create an anonymous private VMA at a fixed, page-aligned address
        (``MAP_FIXED_NOREPLACE``: overlapping an existing VMA is an error)."""
        if isinstance(length, bool) or not isinstance(length, int) or length <= 0:
            raise ValueError(f"mmap: length {length!r} must be a positive int")
        if length % PAGE_SIZE:
            raise ValueError(f"mmap: length {length:#x} is not a multiple of 0x1000")
        end = start + length
        self._check_user_range(start, end, "mmap")
        for v in self.vmas:
            if v.start < end and start < v.end:
                raise ValueError(
                    f"mmap: range [{start:#x}, {end:#x}) overlaps existing VMA {v}"
                )
        vma = Vma(start, end, bool(thp))
        self.vmas.append(vma)
        self.vmas.sort(key=lambda v: v.start)
        return vma

    def munmap(self, start: int, length: int) -> None:
        """``munmap()``: split the VMAs at the range ends, zap the removed part and free
        the page tables no remaining VMA needs (``free_pgtables`` with floor = end of the
        previous VMA, ceiling = start of the next one)."""
        if isinstance(length, bool) or not isinstance(length, int) or length <= 0:
            raise ValueError(f"munmap: length {length!r} must be a positive int")
        end = start + ((length + PAGE_SIZE - 1) & ~(PAGE_SIZE - 1))
        self._check_user_range(start, end, "munmap")
        removed: list[Vma] = []
        kept: list[Vma] = []
        for v in self.vmas:
            if v.end <= start or v.start >= end:
                kept.append(v)
                continue
            if v.start < start:
                kept.append(Vma(v.start, start, v.thp))
            removed.append(Vma(max(v.start, start), min(v.end, end), v.thp))
            if v.end > end:
                kept.append(Vma(end, v.end, v.thp))
        if not removed:
            return
        kept.sort(key=lambda v: v.start)
        prev = max((v for v in kept if v.end <= start), key=lambda v: v.end, default=None)
        nxt = min((v for v in kept if v.start >= end), key=lambda v: v.start, default=None)
        # Splitting a VMA inside a huge PMD splits the PMD first (vma_adjust_trans_huge).
        for addr in (start, end):
            self._split_huge_pmd_at(addr, self._who("do_vmi_munmap", "__split_vma"))
        who = self._who("do_vmi_munmap", "unmap_region", "unmap_vmas")
        for v in removed:
            self._zap_vma(v, v.start, v.end, reclaim_pt=False, who=who)
        self.vmas = kept
        self.free_pgtables(
            removed,
            prev.end if prev else FIRST_USER_ADDRESS,
            nxt.start if nxt else USER_PGTABLES_CEILING,
        )

    def exit_mmap(self) -> None:
        """``exit_mmap()``: zap every VMA and free all user page tables (floor
        ``FIRST_USER_ADDRESS``, ceiling ``USER_PGTABLES_CEILING``).  The PGD stays until
        :meth:`pgd_free`."""
        removed = list(self.vmas)
        who = self._who("exit_mmap", "unmap_vmas")
        for v in removed:
            self._zap_vma(v, v.start, v.end, reclaim_pt=False, who=who)
        self.vmas = []
        if removed:
            self.free_pgtables(removed, FIRST_USER_ADDRESS, USER_PGTABLES_CEILING)

    # ------------------------------------------------------------------ free_pgtables
    def free_pgtables(self, removed: list[Vma], floor: int, ceiling: int) -> None:
        """``free_pgtables()``: for each group of removed VMAs (neighbours closer than
        ``PMD_SIZE`` are gathered into one call) run ``free_pgd_range``."""
        vs = sorted(removed, key=lambda v: v.start)
        i = 0
        while i < len(vs):
            addr = vs[i].start
            j = i
            while j + 1 < len(vs) and vs[j + 1].start <= vs[j].end + PMD_SIZE:
                j += 1
            nxt_start = vs[j + 1].start if j + 1 < len(vs) else ceiling
            self.free_pgd_range(addr, vs[j].end, floor, nxt_start)
            i = j + 1

    def free_pgd_range(self, addr: int, end: int, floor: int, ceiling: int) -> None:
        """``free_pgd_range()``: free the tables that map only ``[addr, end)``, never
        one that also maps something below ``floor`` or at/above ``ceiling``."""
        who = self._who("free_pgtables", "free_pgd_range")
        addr &= PMD_MASK
        if addr < floor:
            addr = (addr + PMD_SIZE) & U64_MASK
            if not addr:
                return
        if ceiling:
            ceiling &= PMD_MASK
            if not ceiling:
                return
        if ((end - 1) & U64_MASK) > ((ceiling - 1) & U64_MASK):
            end -= PMD_SIZE
        if addr > ((end - 1) & U64_MASK):
            return
        pgdir_size = 1 << (pg.PGDIR_SHIFT_4 if self.levels == 4 else pg.PGDIR_SHIFT_5)
        while True:
            nxt = _addr_end(addr, end, pgdir_size)
            loc = _Loc(self.pgd, pg.pgd_index(addr, self.levels))
            if self._rd(loc, who) != 0:
                self._free_p4d_range(loc, addr, nxt, floor, ceiling)
            addr = nxt
            if addr == end:
                break

    def _free_p4d_range(self, pgd: _Loc, addr: int, end: int, floor: int, ceiling: int) -> None:
        if self.levels == 4:
            # P4D folded: the PGD entry is the P4D entry; p4d_free_tlb() is a no-op.
            self._free_pud_range(pgd, addr, end, floor, ceiling)
            return
        who = self._who("free_pgtables", "free_pgd_range", "free_p4d_range")
        start = addr
        p4d_pfn = entry_pfn(self._rd(pgd, who))
        while True:
            nxt = _addr_end(addr, end, pg.P4D_SIZE)
            loc = _Loc(p4d_pfn, pg.p4d_index(addr))
            if self._rd(loc, who) != 0:
                self._free_pud_range(loc, addr, nxt, floor, ceiling)
            addr = nxt
            if addr == end:
                break
        pgdir_mask = ~((1 << pg.PGDIR_SHIFT_5) - 1) & U64_MASK
        if not upper_table_free_allowed(start, end, floor, ceiling, pgdir_mask):
            return
        self._wr(pgd, 0, who)  # pgd_clear
        # p4d_free_tlb(): no mm_dec_nr_*() exists for P4D tables
        self._free_table(p4d_pfn, "p4d", self._who(*who.stack, "p4d_free_tlb"))

    def _free_pud_range(self, p4d: _Loc, addr: int, end: int, floor: int, ceiling: int) -> None:
        who = self._who("free_pgtables", "free_pgd_range", "free_pud_range")
        start = addr
        pud_pfn = entry_pfn(self._rd(p4d, who))
        while True:
            nxt = _addr_end(addr, end, PUD_SIZE)
            loc = _Loc(pud_pfn, pg.pud_index(addr))
            if self._rd(loc, who) != 0:
                self._free_pmd_range(loc, addr, nxt, floor, ceiling)
            addr = nxt
            if addr == end:
                break
        if not upper_table_free_allowed(start, end, floor, ceiling, pg.P4D_MASK):
            return
        self._wr(p4d, 0, who)  # p4d_clear (the PGD entry when folded)
        self._free_table(pud_pfn, "pud", self._who(*who.stack, "pud_free_tlb"))
        self.pgtables_bytes -= TABLE_BYTES  # mm_dec_nr_puds

    def _free_pmd_range(self, pud: _Loc, addr: int, end: int, floor: int, ceiling: int) -> None:
        who = self._who("free_pgtables", "free_pgd_range", "free_pmd_range")
        start = addr
        pmd_pfn = entry_pfn(self._rd(pud, who))
        while True:
            nxt = _addr_end(addr, end, PMD_SIZE)
            loc = _Loc(pmd_pfn, pg.pmd_index(addr))
            e = self._rd(loc, who)
            if e != 0 and not pmd_leaf(e):
                self._free_pte_range(loc)
            addr = nxt
            if addr == end:
                break
        if not upper_table_free_allowed(start, end, floor, ceiling, PUD_MASK):
            return
        self._wr(pud, 0, who)  # pud_clear
        self._free_table(pmd_pfn, "pmd", self._who(*who.stack, "pmd_free_tlb"))
        self.pgtables_bytes -= TABLE_BYTES  # mm_dec_nr_pmds

    def _free_pte_range(self, pmd: _Loc) -> None:
        who = self._who("free_pgtables", "free_pgd_range", "free_pte_range")
        pte_pfn = entry_pfn(self._rd(pmd, who))
        self._wr(pmd, 0, who)  # pmd_clear
        self._free_table(pte_pfn, "pte", self._who(*who.stack, "pte_free_tlb"))
        self.pgtables_bytes -= TABLE_BYTES  # mm_dec_nr_ptes

    # ------------------------------------------------------------------ page faults
    def _ensure_table(self, loc: _Loc, level: str, who: Who, *, counted: bool) -> int:
        """``__pud_alloc``/``__pmd_alloc``/``__pte_alloc``/``__p4d_alloc``: return the
        pfn of the table the entry at ``loc`` points to, allocating it if missing."""
        e = self._rd(loc, who)
        if e != 0:
            return entry_pfn(e)
        pfn = self._alloc_table(level, who)
        self._wr(loc, mk_entry(pfn, _PAGE_TABLE), who)  # pXd_populate
        if counted:
            self.pgtables_bytes += TABLE_BYTES  # mm_inc_nr_{puds,pmds,ptes}
        return pfn

    def _pmd_loc_alloc(self, addr: int, who: Who) -> _Loc:
        """Walk to the PMD entry of ``addr``, allocating P4D/PUD/PMD tables as needed."""
        s = split_vaddr(addr, self.levels)
        table = self.pgd
        if s.p4d is not None:
            table = self._ensure_table(_Loc(table, s.pgd), "p4d", who, counted=False)
            p4d_loc = _Loc(table, s.p4d)
        else:
            p4d_loc = _Loc(table, s.pgd)
        pud = self._ensure_table(p4d_loc, "pud", who, counted=True)
        pmd = self._ensure_table(_Loc(pud, s.pud), "pmd", who, counted=True)
        return _Loc(pmd, s.pmd)

    def _vma_for(self, addr: int) -> Vma:
        vma = self.find_vma(addr)
        if vma is None:
            raise ValueError(
                f"address {addr:#x} is not inside any VMA (segfault); VMAs: {self._vmas_text()}"
            )
        return vma

    @staticmethod
    def _thp_suitable(vma: Vma, addr: int) -> bool:
        """``thp_vma_allowable_order`` + ``transhuge_vma_suitable``: THP enabled for the
        VMA and the whole aligned 2 MiB range lies inside it."""
        h = addr & PMD_MASK
        return vma.thp and h >= vma.start and h + PMD_SIZE <= vma.end

    def touch(self, addr: int, *, write: bool = True) -> int:
        """A page fault at ``addr`` (or an access to a mapped page, which only sets the
        accessed/dirty bits as the CPU would).  Returns the pfn now mapped at ``addr``.

        A read fault on an empty PTE maps the shared zero page read-only; a write maps a
        fresh data frame (and replaces a zero-page mapping: copy-on-write).  In a THP VMA
        a fault on an empty PMD whose 2 MiB range lies inside the VMA maps a 2 MiB huge
        page (``do_huge_pmd_anonymous_page``; read faults too - the huge zero page is not
        modelled) and deposits a pre-allocated PTE table in the PMD table's
        ``pmd_huge_pte`` list, counted in ``pgtables_bytes`` like any PTE table.
        """
        check_canonical(addr, self.levels)
        vma = self._vma_for(addr)
        who = self._who("handle_mm_fault", "__handle_mm_fault")
        pmd = self._pmd_loc_alloc(addr, who)
        pmdval = self._rd(pmd, who)
        if pmdval == 0 and self._thp_suitable(vma, addr):
            return self._do_huge_pmd_anonymous_page(pmd, addr) + pg.pte_index(addr)
        if pmd_leaf(pmdval):
            bits = _PAGE_ACCESSED | (_PAGE_DIRTY if write else 0)
            self._wr(pmd, pmdval | bits, who)
            return entry_pfn(pmdval) + pg.pte_index(addr)
        pte_pfn = self._ensure_table(pmd, "pte", self._who(*who.stack, "__pte_alloc"),
                                     counted=True)
        loc = _Loc(pte_pfn, pg.pte_index(addr))
        e = self._rd(loc, who)
        if e == 0 and not write:
            zero = self.mem.zero_pfn()
            self._wr(loc, mk_entry(zero, PAGE_USER_READONLY), who)
            return zero
        if e == 0 or (write and not e & _PAGE_RW):
            # a fresh anonymous page, or copy-on-write away from the (read-only) zero page
            stack = ("do_anonymous_page",) if e == 0 else ("do_wp_page", "wp_page_copy")
            data = self.mem.alloc_page(self._who(*who.stack, *stack), kind="data")
            self._wr(loc, mk_entry(data, PAGE_USER_DATA), who)
            return data
        self._wr(loc, e | _PAGE_ACCESSED | (_PAGE_DIRTY if write else 0), who)
        return entry_pfn(e)

    def _do_huge_pmd_anonymous_page(self, pmd: _Loc, addr: int) -> int:
        who = self._who("handle_mm_fault", "do_huge_pmd_anonymous_page")
        head = self.mem.alloc_pages(HPAGE_PMD_ORDER, who, kind="data")
        pgtable = self._alloc_table("pte", self._who(*who.stack, "pte_alloc_one"))
        pgtable_trans_huge_deposit(self, pmd.pfn, pgtable, who)
        self._wr(pmd, mk_entry(head, PAGE_USER_DATA | _PAGE_PSE), who)  # set_pmd_at
        self.pgtables_bytes += TABLE_BYTES  # mm_inc_nr_ptes for the deposited table
        return head

    def touch_range(self, start: int, end: int, *, stride: int = PAGE_SIZE) -> None:
        """Write-fault every address ``start, start+stride, ... < end``: the same result
        (same frames, same order) as calling :meth:`touch` on each, but vectorised per
        PTE table so that 1 GiB takes a fraction of a second."""
        if isinstance(stride, bool) or not isinstance(stride, int) or stride <= 0:
            raise ValueError(f"stride {stride!r} must be a positive int")
        check_canonical(start, self.levels)
        if end <= start:
            return
        last = start + (end - 1 - start) // stride * stride
        check_canonical(last, self.levels)
        self._check_touched_in_vmas(start, last, stride)
        n_pages = (last - start) // max(stride, PAGE_SIZE) + 1
        self.mem.reserve(n_pages + n_pages // PTRS_PER_PTE + 8)
        for v in self.vmas:
            lo, hi = max(v.start, start), min(v.end, last + 1)
            if lo >= hi:
                continue
            first = start + -(-(lo - start) // stride) * stride
            if first >= hi:
                continue
            self._touch_range_vma(v, first, hi, stride)

    def _check_touched_in_vmas(self, start: int, last: int, stride: int) -> None:
        cursor = start
        for v in [*self.vmas, Vma(last + 1, last + 1 + PAGE_SIZE)]:
            if v.end <= cursor:
                continue
            gap_lo, gap_hi = cursor, min(v.start, last + 1)
            if gap_lo < gap_hi:
                first_in_gap = start + -(-(gap_lo - start) // stride) * stride
                if first_in_gap < gap_hi:
                    raise ValueError(
                        f"address {first_in_gap:#x} is not inside any VMA (segfault); "
                        f"VMAs: {self._vmas_text()}"
                    )
            cursor = max(cursor, v.end)
            if cursor > last:
                return

    def _touch_range_vma(self, vma: Vma, first: int, hi: int, stride: int) -> None:
        who = self._who("handle_mm_fault", "__handle_mm_fault")
        wdata = self._who("handle_mm_fault", "__handle_mm_fault", "do_anonymous_page")
        addr = first
        while addr < hi:
            span_end = min((addr & PMD_MASK) + PMD_SIZE, hi)
            pmd = self._pmd_loc_alloc(addr, who)
            pmdval = self._rd(pmd, who)
            if (pmdval == 0 and self._thp_suitable(vma, addr)) or pmd_leaf(pmdval):
                a = addr
                while a < span_end:
                    self.touch(a)
                    if pmd_leaf(self._rd(pmd, who)):
                        break
                    a += stride
                addr = addr + -(-(span_end - addr) // stride) * stride
                continue
            pte_pfn = self._ensure_table(pmd, "pte", self._who(*who.stack, "__pte_alloc"),
                                         counted=True)
            idx = np.arange(addr, span_end, stride, dtype=np.int64)
            idx = np.unique((idx >> PAGE_SHIFT) & (PTRS_PER_PTE - 1))
            i0, i1 = int(idx[0]), int(idx[-1]) + 1
            entries = self.mem.read_range(pte_pfn, i0, i1, who)
            rel = idx - i0
            cur = entries[rel]
            # write faults: empty PTEs and read-only ones (the zero page: copy-on-write)
            need = (cur & np.uint64(_PAGE_RW)) == 0
            n_new = int(need.sum())
            new_cur = cur | np.uint64(_PAGE_ACCESSED | _PAGE_DIRTY)
            if n_new:
                pfns = self.mem.alloc_pages_bulk(n_new, wdata)
                new_cur[need] = (pfns.astype(np.uint64) << np.uint64(PAGE_SHIFT)) | np.uint64(
                    PAGE_USER_DATA
                )
            entries[rel] = new_cur
            self.mem.write_range(pte_pfn, i0, entries, who)
            addr = addr + -(-(span_end - addr) // stride) * stride

    # ------------------------------------------------------------------ THP helpers
    def _split_huge_pmd_at(self, addr: int, who: Who) -> None:
        """Split the huge PMD covering ``addr`` unless ``addr`` is 2 MiB aligned."""
        if addr & (PMD_SIZE - 1) == 0:
            return
        loc = self.pmd_entry_location(addr)
        if loc is None:
            return
        pmd = _Loc(*loc)
        if pmd_leaf(self._rd(pmd, who)):
            self._split_huge_pmd(pmd, who)

    def _split_huge_pmd(self, pmd: _Loc, who: Who) -> None:
        """``__split_huge_pmd_locked()`` for an anonymous THP: withdraw the deposited
        PTE table, fill it with 512 PTEs mapping the subpages, point the PMD at it.
        ``pgtables_bytes`` does not change: the table was counted at deposit time."""
        who = self._who(*who.stack, "__split_huge_pmd")
        pmdval = self._rd(pmd, who)
        head = entry_pfn(pmdval)
        flags = pmdval & ~PTE_PFN_MASK & ~_PAGE_PSE & U64_MASK
        pgtable = pgtable_trans_huge_withdraw(self, pmd.pfn, who)
        ptes = ((np.arange(PTRS_PER_PTE, dtype=np.uint64) + np.uint64(head)) << np.uint64(
            PAGE_SHIFT
        )) | np.uint64(flags)
        self.mem.write_range(pgtable, 0, ptes, who)
        self._wr(pmd, mk_entry(pgtable, _PAGE_TABLE), who)  # pmd_populate

    def _zap_huge_pmd(self, pmd: _Loc, who: Who) -> None:
        """``zap_huge_pmd()``: clear the PMD, free the deposited table
        (``zap_deposited_table``: withdraw, ``pte_free``, ``mm_dec_nr_ptes``) and the
        2 MiB folio."""
        who = self._who(*who.stack, "zap_huge_pmd")
        pmdval = self._rd(pmd, who)
        self._wr(pmd, 0, who)
        w2 = self._who(*who.stack, "zap_deposited_table")
        pgtable = pgtable_trans_huge_withdraw(self, pmd.pfn, w2)
        self._free_table(pgtable, "pte", self._who(*w2.stack, "pte_free"))
        self.pgtables_bytes -= TABLE_BYTES
        self.mem.free_pages(entry_pfn(pmdval), HPAGE_PMD_ORDER, who)

    # ------------------------------------------------------------------ zapping
    def zap_range(self, start: int, end: int, *, reclaim_pt: bool = False) -> int:
        """Unmap the pages in ``[start, end)`` ∩ VMAs (``zap_page_range_single`` per VMA):
        clear PTEs and free their data frames; zap a fully covered huge PMD, split a
        partly covered one first.  With ``reclaim_pt`` (MADV_DONTNEED) and
        ``CONFIG_PT_RECLAIM`` (``self.pt_reclaim``), a PTE table whose whole 2 MiB span
        was zapped within one VMA and that is now empty is freed (kernel-facts §6.1).
        Returns the number of PTE tables so reclaimed."""
        if isinstance(start, bool) or not isinstance(start, int):
            raise ValueError(f"zap_range: start {start!r} must be an int")
        if isinstance(end, bool) or not isinstance(end, int):
            raise ValueError(f"zap_range: end {end!r} must be an int")
        if start % PAGE_SIZE or end % PAGE_SIZE:
            raise ValueError(
                f"zap_range: [{start:#x}, {end:#x}) must be page aligned (multiples of 0x1000)"
            )
        who = self._who("zap_page_range_single", "unmap_single_vma")
        freed = 0
        for v in list(self.vmas):
            lo, hi = max(v.start, start), min(v.end, end)
            if lo < hi:
                freed += self._zap_vma(v, lo, hi, reclaim_pt=reclaim_pt, who=who)
        return freed

    def _pmd_entries(self, start: int, end: int, who: Who) -> Iterator[tuple[_Loc, int, int]]:
        """Existing PMD entries covering ``[start, end)``: (location, lo, hi), skipping
        address ranges whose upper-level tables are absent (like the kernel's
        ``pXd_none_or_clear_bad`` loops)."""
        pgdir_size = 1 << (pg.PGDIR_SHIFT_4 if self.levels == 4 else pg.PGDIR_SHIFT_5)
        addr = start
        while addr < end:
            nxt_pgd = _addr_end(addr, end, pgdir_size)
            e = self._rd(_Loc(self.pgd, pg.pgd_index(addr, self.levels)), who)
            if e == 0:
                addr = nxt_pgd
                continue
            if self.levels == 5:
                a = addr
                while a < nxt_pgd:
                    nxt_p4d = _addr_end(a, nxt_pgd, pg.P4D_SIZE)
                    pe = self._rd(_Loc(entry_pfn(e), pg.p4d_index(a)), who)
                    if pe != 0:
                        yield from self._pmd_entries_in_pud(entry_pfn(pe), a, nxt_p4d, who)
                    a = nxt_p4d
            else:
                yield from self._pmd_entries_in_pud(entry_pfn(e), addr, nxt_pgd, who)
            addr = nxt_pgd

    def _pmd_entries_in_pud(
        self, pud_pfn: int, start: int, end: int, who: Who
    ) -> Iterator[tuple[_Loc, int, int]]:
        addr = start
        while addr < end:
            nxt_pud = _addr_end(addr, end, PUD_SIZE)
            pe = self._rd(_Loc(pud_pfn, pg.pud_index(addr)), who)
            if pe != 0:
                a = addr
                while a < nxt_pud:
                    nxt = _addr_end(a, nxt_pud, PMD_SIZE)
                    yield _Loc(entry_pfn(pe), pg.pmd_index(a)), a, nxt
                    a = nxt
            addr = nxt_pud

    def _zap_vma(self, vma: Vma, start: int, end: int, *, reclaim_pt: bool, who: Who) -> int:
        """``unmap_page_range()`` over ``[start, end)`` of one VMA."""
        reclaimed = 0
        for pmd, lo, hi in self._pmd_entries(start, end, who):
            pmdval = self._rd(pmd, who)
            if pmdval == 0:
                continue
            if pmd_leaf(pmdval):
                if hi - lo == PMD_SIZE:
                    self._zap_huge_pmd(pmd, who)
                    continue
                self._split_huge_pmd(pmd, who)
            reclaimed += self._zap_pte_range(pmd, lo, hi, reclaim_pt=reclaim_pt, who=who)
        return reclaimed

    def _zap_pte_range(self, pmd: _Loc, lo: int, hi: int, *, reclaim_pt: bool, who: Who) -> int:
        """``zap_pte_range()``: clear the PTEs of ``[lo, hi)`` and free their pages; with
        PT_RECLAIM (``reclaim_pt_is_enabled``: the range is a whole PMD span) free the
        table if it is empty afterwards (``try_to_free_pte`` → ``free_pte``)."""
        who = self._who(*who.stack, "zap_pte_range")
        pte_pfn = entry_pfn(self._rd(pmd, who))
        i0 = pg.pte_index(lo)
        i1 = i0 + (hi - lo) // PAGE_SIZE
        entries = self.mem.read_range(pte_pfn, i0, i1, who)
        present = entries != 0
        if present.any():
            pfns = ((entries[present] & np.uint64(PTE_PFN_MASK)) >> np.uint64(PAGE_SHIFT)).astype(
                np.int64
            )
            zero = self.mem._zero_pfn
            if zero is not None:
                pfns = pfns[pfns != zero]  # vm_normal_page(): the zero page is not freed
            self.mem.write_range(pte_pfn, i0, np.zeros(i1 - i0, dtype=np.uint64), who)
            self.mem.free_pages_bulk(pfns, self._who(*who.stack, "tlb_finish_mmu",
                                                     "free_pages_and_swap_cache"))
        can_reclaim = reclaim_pt and self.pt_reclaim and hi - lo >= PMD_SIZE
        if not can_reclaim:
            return 0
        w2 = self._who(*who.stack, "try_to_free_pte")
        if self.mem.read_range(pte_pfn, 0, PTRS_PER_PTE, w2).any():
            return 0
        self._wr(pmd, 0, w2)  # pmd_clear under the PMD lock
        self._free_table(pte_pfn, "pte", self._who(*w2.stack, "free_pte", "pte_free_tlb"))
        self.pgtables_bytes -= TABLE_BYTES  # mm_dec_nr_ptes
        return 1

    def madvise(self, start: int, length: int, advice: str) -> None:
        """``madvise(start, length, MADV_DONTNEED | MADV_FREE)``.

        ``"dontneed"`` zaps the range with ``reclaim_pt`` (empty PTE tables are freed
        when PT_RECLAIM is on).  ``"free"`` (MADV_FREE) only marks anonymous pages as
        lazily freeable - here: clears the accessed and dirty bits of mapped PTEs (a
        partly covered huge PMD is left alone) - and never frees page tables.
        The whole range must be mapped (the kernel would answer ENOMEM)."""
        if advice not in ADVICE:
            raise ValueError(f"advice {advice!r} unknown; allowed: {', '.join(ADVICE)}")
        if isinstance(length, bool) or not isinstance(length, int) or length < 0:
            raise ValueError(f"madvise: length {length!r} must be a non-negative int")
        if length == 0:
            return
        end = start + ((length + PAGE_SIZE - 1) & ~(PAGE_SIZE - 1))
        self._check_user_range(start, end, "madvise")
        cursor = start
        for v in self.vmas:
            if v.end <= cursor or v.start >= end:
                continue
            if v.start > cursor:
                break
            cursor = v.end
        if cursor < end:
            raise ValueError(
                f"madvise: {cursor:#x} in [{start:#x}, {end:#x}) is not mapped (ENOMEM); "
                f"VMAs: {self._vmas_text()}"
            )
        if advice == "dontneed":
            self.zap_range(start, end, reclaim_pt=True)
            return
        who = self._who("madvise_free_single_vma", "madvise_free_pte_range")
        clear = ~np.uint64(_PAGE_ACCESSED | _PAGE_DIRTY)
        for pmd, lo, hi in self._pmd_entries(start, end, who):
            pmdval = self._rd(pmd, who)
            if pmdval == 0:
                continue
            if pmd_leaf(pmdval):
                if hi - lo == PMD_SIZE:
                    self._wr(pmd, pmdval & ~(_PAGE_ACCESSED | _PAGE_DIRTY) & U64_MASK, who)
                continue
            pte_pfn = entry_pfn(pmdval)
            i0 = pg.pte_index(lo)
            i1 = i0 + (hi - lo) // PAGE_SIZE
            entries = self.mem.read_range(pte_pfn, i0, i1, who)
            zero = self.mem._zero_pfn
            mask = entries != 0
            if zero is not None:
                mask &= ((entries & np.uint64(PTE_PFN_MASK)) >> np.uint64(PAGE_SHIFT)) != (
                    np.uint64(zero)
                )
            entries[mask] &= clear
            self.mem.write_range(pte_pfn, i0, entries, who)

    # ------------------------------------------------------------------ inspection
    @property
    def vm_pte_kib(self) -> int:
        """``VmPTE`` in ``/proc/PID/status``: ``mm_pgtables_bytes(mm) >> 10``."""
        return self.pgtables_bytes >> 10

    def _entry(self, pfn: int, index: int) -> int:
        arr = self.mem.contents_view(pfn)
        return 0 if arr is None else int(arr[index])

    def walk(self, addr: int) -> Walk:
        """Follow ``addr`` through the tables (read-only, like a hardware walker)."""
        s = split_vaddr(addr, self.levels)
        steps: list[WalkLevel] = []
        table = self.pgd
        names = [name for name, _ in s.indices()]
        for level, index in s.indices():
            e = self._entry(table, index)
            present = bool(e & pg._PAGE_PRESENT)
            nxt = entry_pfn(e) if present else None
            steps.append(WalkLevel(level, table, index, e, nxt))
            if nxt is None:
                return Walk(addr, self.levels, s, tuple(steps), "not-present")
            if level == "pmd" and pmd_leaf(e):
                phys = (nxt << PAGE_SHIFT) + (addr & (PMD_SIZE - 1))
                return Walk(addr, self.levels, s, tuple(steps), "huge", phys)
            if level == names[-1]:
                return Walk(addr, self.levels, s, tuple(steps), "mapped",
                            (nxt << PAGE_SHIFT) + s.offset)
            table = nxt
        raise AssertionError("unreachable")

    def translate(self, addr: int) -> int | None:
        """Physical address ``addr`` maps to, or ``None``."""
        return self.walk(addr).phys

    def translate_many(self, addrs: npt.ArrayLike) -> I64Array:
        """Vectorised :meth:`translate`: physical addresses, -1 where unmapped."""
        a = np.asarray(addrs)
        if a.dtype.kind not in "iu":
            raise ValueError(f"addrs must be an integer array, got dtype {a.dtype}")
        if a.dtype.kind == "i" and (a < 0).any():
            raise ValueError(f"address {int(a[a < 0][0])} is negative")
        ua = a.astype(np.uint64)
        half = np.uint64(pg.user_half_end(self.levels))
        high_start = np.uint64(U64_MASK + 1 - pg.user_half_end(self.levels))
        bad = (ua >= half) & (ua < high_start)
        if bad.any():
            check_canonical(int(ua[bad][0]), self.levels)
        tables = np.array(self.mem.allocated_pfns("pagetable"), dtype=np.int64)
        rows = np.stack([self.mem.contents_view(int(p)) for p in tables])  # type: ignore[misc]
        out = np.full(ua.shape, -1, dtype=np.int64)
        row = np.full(ua.shape, int(np.searchsorted(tables, self.pgd)), dtype=np.int64)
        alive = ua < half  # the kernel half is not modelled
        shifts = [pg.PGDIR_SHIFT_4] if self.levels == 4 else [pg.PGDIR_SHIFT_5, pg.P4D_SHIFT]
        shifts += [PUD_SHIFT, PMD_SHIFT, PAGE_SHIFT]
        pfn_mask, nine = np.uint64(PTE_PFN_MASK), np.uint64(PTRS_PER_PTE - 1)
        for level, shift in enumerate(shifts):
            idx = ((ua >> np.uint64(shift)) & nine).astype(np.int64)
            e = np.zeros(ua.shape, dtype=np.uint64)
            e[alive] = rows[row[alive], idx[alive]]
            alive &= (e & np.uint64(pg._PAGE_PRESENT)) != 0
            nxt = ((e & pfn_mask) >> np.uint64(PAGE_SHIFT)).astype(np.int64)
            if level == len(shifts) - 1:
                phys = (nxt << PAGE_SHIFT) + (ua & np.uint64(PAGE_SIZE - 1)).astype(np.int64)
                out[alive] = phys[alive]
                break
            if shift == PMD_SHIFT:
                huge = alive & ((e & np.uint64(_PAGE_PSE)) != 0)
                phys = (nxt << PAGE_SHIFT) + (ua & np.uint64(PMD_SIZE - 1)).astype(np.int64)
                out[huge] = phys[huge]
                alive &= ~huge
            row = np.searchsorted(tables, nxt)
            row[~alive] = 0
        return out

    def _children(self, pfn: int) -> list[tuple[int, int]]:
        arr = self.mem.contents_view(pfn)
        if arr is None:
            return []
        nz = np.nonzero(arr)[0]
        return [(int(i), int(arr[i])) for i in nz]

    def table_pfns(self) -> dict[str, list[int]]:
        """Level → sorted pfns of the tables currently in the tree; ``"deposited"`` lists
        PTE tables deposited for THPs."""
        levels = ["pgd"] + (["p4d"] if self.levels == 5 else []) + ["pud", "pmd", "pte"]
        out: dict[str, list[int]] = {name: [] for name in levels}
        out["deposited"] = []
        frontier = [self.pgd]
        for name in levels:
            out[name] = sorted(frontier)
            if name == "pte":
                break
            nxt: list[int] = []
            for t in frontier:
                for idx, e in self._children(t):
                    if name == "pgd" and idx >= PTRS_PER_PTE // 2:
                        continue
                    if name == "pmd" and pmd_leaf(e):
                        continue
                    nxt.append(entry_pfn(e))
                if name == "pmd":
                    out["deposited"] += deposited_tables(self, t)
            frontier = nxt
        out["deposited"].sort()
        return out

    def reachable_frames(self) -> set[int]:
        """Every frame this mm holds: all tables (PGD included), deposited tables and
        mapped data frames (all 512 frames of a huge page; not the shared zero page)."""
        t = self.table_pfns()
        frames: set[int] = set()
        for pfns in t.values():
            frames.update(pfns)
        zero = self.mem._zero_pfn
        for pmd in t["pmd"]:
            for _, e in self._children(pmd):
                if pmd_leaf(e):
                    h = entry_pfn(e)
                    frames.update(range(h, h + PTRS_PER_PTE))
        for pte in t["pte"]:
            arr = self.mem.contents_view(pte)
            if arr is None:
                continue
            pfns = (arr[arr != 0] & np.uint64(PTE_PFN_MASK)) >> np.uint64(PAGE_SHIFT)
            frames.update(int(p) for p in pfns if int(p) != zero)
        return frames

    def pmd_entry_location(self, addr: int) -> tuple[int, int] | None:
        """(PMD table pfn, index) of the PMD entry covering ``addr``, or ``None`` if
        the PMD table does not exist."""
        w = self.walk(addr)
        for step in w.steps:
            if step.level == "pmd":
                return step.table_pfn, step.index
        return None

    def pte_table(self, addr: int) -> int | None:
        """pfn of the PTE table covering ``addr``, or ``None`` (absent or huge PMD)."""
        w = self.walk(addr)
        for step in w.steps:
            if step.level == "pte":
                return step.table_pfn
        return None


# --- THP deposit list (mm/pgtable-generic.c) ----------------------------------------------


def pgtable_trans_huge_deposit(mm: Mm, pmd_table: int, pgtable: int, who: Who = SETUP) -> None:
    """``pgtable_trans_huge_deposit()``: push PTE table ``pgtable`` on the deposit list
    headed by the PMD table's ``pmd_huge_pte`` (FIFO via the tables' ``lru``/``pt_list``;
    with split PMD locks the head lives in the PMD table's ptdesc)."""
    who = Who(who.actor, (*who.stack, "pgtable_trans_huge_deposit"), who.step)
    head = Ptdesc(mm.mem, pmd_table, who, kernel=mm.kernel)
    lru = field_address(pgtable, "pt_list", mm.kernel)
    first = head.get("pmd_huge_pte")
    if not first:
        INIT_LIST_HEAD(mm.mem, lru, who)
    else:
        list_add(mm.mem, lru, first + (lru - ptdesc_address(pgtable)), who)
    head.set("pmd_huge_pte", ptdesc_address(pgtable))


def pgtable_trans_huge_withdraw(mm: Mm, pmd_table: int, who: Who = SETUP) -> int:
    """``pgtable_trans_huge_withdraw()``: take the head table off the deposit list and
    return its pfn; the next one (if any) becomes the head."""
    who = Who(who.actor, (*who.stack, "pgtable_trans_huge_withdraw"), who.step)
    head = Ptdesc(mm.mem, pmd_table, who, kernel=mm.kernel)
    ptr = head.get("pmd_huge_pte")
    if not ptr:
        raise ValueError(f"PMD table pfn {pmd_table:#x} has no deposited page table")
    pgtable = (ptr - pg.VMEMMAP_START) // pg.STRUCT_PAGE_SIZE
    lru = field_address(pgtable, "pt_list", mm.kernel)
    if list_empty(mm.mem, lru, who):
        head.set("pmd_huge_pte", 0)
    else:
        nxt = mm.mem.read_kaddr(lru, who, what="pt_list.next")
        head.set("pmd_huge_pte", nxt - (lru - ptdesc_address(pgtable)))
        list_del(mm.mem, lru, who)
    return pgtable


def deposited_tables(mm: Mm, pmd_table: int) -> list[int]:
    """pfns of the PTE tables deposited on PMD table ``pmd_table`` (head first)."""
    ptr = Ptdesc(mm.mem, pmd_table, kernel=mm.kernel).get("pmd_huge_pte")
    if not ptr:
        return []
    first = (ptr - pg.VMEMMAP_START) // pg.STRUCT_PAGE_SIZE
    off = field_address(0, "pt_list", mm.kernel) - ptdesc_address(0)
    out = [first]
    node = ptdesc_address(first) + off
    while True:
        nxt = mm.mem.read_kaddr(node, what="pt_list.next")
        if nxt == ptdesc_address(first) + off or len(out) > PTRS_PER_PTE:
            return out
        out.append((nxt - off - pg.VMEMMAP_START) // pg.STRUCT_PAGE_SIZE)
        node = nxt
