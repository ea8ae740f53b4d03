"""Random mmap/touch/zap/munmap/madvise sequences against a plain-dict reference model.

The reference is written from the kernel rules alone (kernel-facts §1, §6.1, §6.4), not
from ptlab's code.  It knows the VMAs and, per page, whether it is mapped and whether it
was written (written -> an own data frame; read only -> the shared zero page), and per
2 MiB span / 1 GiB / 512 GiB region which page tables the kernel would hold:

* a fault creates the PUD, PMD and PTE tables on its path (PTE only off the THP path);
* a THP fault (THP VMA, whole 2 MiB span inside it, PMD entry empty) maps all 512 pages
  and deposits one PTE table;
* a zap clears pages; a fully covered huge PMD goes with its deposit, a partly covered
  one is split (its deposit becomes the span's PTE table); with reclaim, a PTE table
  whose whole span the zap covers inside one VMA is freed (PT_RECLAIM);
* MADV_FREE changes no mapping; munmap zaps, then frees every table whose span no
  remaining VMA overlaps (free_pgtables' floor/ceiling).

After every step: translations agree, written pages have distinct data frames, no frame
leaks (allocated frames == frames reachable from the PGD), no KASAN report (nothing freed
twice or touched after free), the tables per level are the ones the reference expects,
and VmPTE = 4 KiB x (PUD + PMD + PTE tables + THP deposits).
"""

from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from ptlab.arch.x86.paging import PAGE_SIZE, PMD_SIZE, PUD_SIZE
from ptlab.mm.memory import Mm

# 16 MiB window straddling a 512 GiB boundary, so PUD and PMD tables get freed too
WINDOW = 0x7F80_0000_0000 - 4 * (1 << 20)
N_PAGES = 4096
SPAN = PMD_SIZE // PAGE_SIZE  # pages per PTE table
N_SPANS = N_PAGES // SPAN

pages = st.one_of(
    st.integers(0, N_PAGES - 1), st.integers(0, N_SPANS - 1).map(lambda i: i * SPAN)
)
lengths = st.one_of(st.integers(1, 1200), st.sampled_from([512, 1024, 1536, 2048, 3000]))

Vma = tuple[int, int, bool]  # pages [start, end) within the window, thp


def addr(page: int) -> int:
    return WINDOW + page * PAGE_SIZE


def region(page: int, size: int) -> int:
    """Number of the naturally aligned ``size``-byte region holding ``page``."""
    return addr(page) // size


class AddressSpace(RuleBasedStateMachine):
    mm: Mm
    vmas: list[Vma]
    ref: dict[int, bool]  # page -> written?
    pte_spans: set[int]  # spans with a PTE table
    huge: set[int]  # spans mapped by a huge PMD (each with one deposited PTE table)
    pmds: set[int]  # 1 GiB regions with a PMD table
    puds: set[int]  # 512 GiB regions with a PUD table
    p4d: bool  # 5-level only: the P4D table exists

    # CONFIG_PT_RECLAIM=y as on the live machine; reclaim on/off is the zap rule's flag
    # (tests/test_memory.py covers pt_reclaim=False)
    @initialize(
        levels=st.sampled_from([4, 5]),
        first=st.lists(st.tuples(pages, lengths, st.booleans()), min_size=1, max_size=3),
    )
    def setup(self, levels: int, first: list[tuple[int, int, bool]]) -> None:
        self.mm = Mm(levels=levels, pt_reclaim=True)
        self.vmas, self.ref = [], {}
        self.pte_spans, self.huge, self.pmds, self.puds = set(), set(), set(), set()
        self.p4d = False
        for start, n, thp in first:
            self.mmap(start, n, thp)

    # ---------------------------------------------------------------- reference rules
    def _vma_of(self, page: int) -> Vma | None:
        return next((v for v in self.vmas if v[0] <= page < v[1]), None)

    def _fault(self, page: int, write: bool) -> None:
        vma = self._vma_of(page)
        assert vma is not None
        self.p4d = True
        self.puds.add(region(page, 512 * PUD_SIZE))
        self.pmds.add(region(page, PUD_SIZE))
        span = page // SPAN
        if span in self.huge:
            return
        start = span * SPAN
        if vma[2] and vma[0] <= start and start + SPAN <= vma[1] and span not in self.pte_spans:
            event("THP fault")
            self.huge.add(span)
            for p in range(start, start + SPAN):
                self.ref[p] = True
            return
        self.pte_spans.add(span)
        self.ref[page] = self.ref.get(page, False) or write

    def _zap(self, start: int, end: int, reclaim: bool) -> None:
        for s, e, _ in self.vmas:
            lo, hi = max(s, start), min(e, end)
            if lo >= hi:
                continue
            for span in range(lo // SPAN, (hi - 1) // SPAN + 1):
                whole = lo <= span * SPAN and (span + 1) * SPAN <= hi
                if span in self.huge:
                    self.huge.discard(span)
                    if not whole:  # split: the deposit becomes the PTE table
                        self.pte_spans.add(span)
                for p in range(max(lo, span * SPAN), min(hi, (span + 1) * SPAN)):
                    self.ref.pop(p, None)
                if reclaim and whole:
                    self.pte_spans.discard(span)

    def _overlaps_vma(self, first_page: int, n_pages: int) -> bool:
        return any(s < first_page + n_pages and first_page < e for s, e, _ in self.vmas)

    # ---------------------------------------------------------------- rules
    @rule(start=pages, n=lengths, thp=st.booleans())
    def mmap(self, start: int, n: int, thp: bool) -> None:
        end = min(start + n, N_PAGES)
        overlap = self._overlaps_vma(start, end - start)
        try:
            self.mm.mmap(addr(start), (end - start) * PAGE_SIZE, thp=thp)
        except ValueError:
            assert overlap
            return
        assert not overlap
        self.vmas.append((start, end, thp))

    @rule(page=pages, write=st.booleans())
    def touch_anywhere(self, page: int, write: bool) -> None:
        if self._vma_of(page) is None:
            try:
                self.mm.touch(addr(page), write=write)
            except ValueError:
                return
            raise AssertionError("touch outside every VMA must fail")
        self.mm.touch(addr(page), write=write)
        self._fault(page, write)

    @rule(i=st.integers(0, 7), off=st.integers(0, N_PAGES), write=st.booleans())
    def touch_in_vma(self, i: int, off: int, write: bool) -> None:
        if self.vmas:
            s, e, _ = self.vmas[i % len(self.vmas)]
            self.touch_anywhere(s + off % (e - s), write)

    @rule(i=st.integers(0, 7), off=st.integers(0, N_PAGES), n=lengths,
          stride=st.sampled_from([1, 2, 7, 512]))
    def touch_range(self, i: int, off: int, n: int, stride: int) -> None:
        if not self.vmas:
            return
        s, e, _ = self.vmas[i % len(self.vmas)]
        start = s + off % (e - s)
        end = min(start + n, e)
        self.mm.touch_range(addr(start), addr(end), stride=stride * PAGE_SIZE)
        for p in range(start, end, stride):
            self._fault(p, True)

    @rule(start=pages, n=lengths, reclaim=st.booleans())
    def zap(self, start: int, n: int, reclaim: bool) -> None:
        end = min(start + n, N_PAGES)
        self.mm.zap_range(addr(start), addr(end), reclaim_pt=reclaim)
        self._zap(start, end, reclaim)

    @rule(k=st.integers(0, 15), spans=st.integers(1, 3), dontneed=st.booleans(),
          part=st.sampled_from([0, 0, 1, 2, 3]))
    def drop_spans(self, k: int, spans: int, dontneed: bool, part: int) -> None:
        """MADV_DONTNEED / zap with reclaim of 2 MiB-aligned spans inside one VMA
        (``part`` = 0) or of a piece of one (``part`` > 0), preferring spans holding
        mapped pages or huge PMDs: where PT_RECLAIM frees tables and THPs get split."""
        inside = [
            span
            for s, e, _ in self.vmas
            for span in range(-(-s // SPAN), e // SPAN)
            if span * SPAN >= s and (span + 1) * SPAN <= e
        ]
        busy = [span for span in inside if span in self.pte_spans or span in self.huge]
        choice = busy or inside
        if not choice:
            return
        first = choice[k % len(choice)] * SPAN
        vma = self._vma_of(first)
        assert vma is not None
        end = min(first + spans * SPAN, vma[1])
        if part:
            first, end = first + 60 * part, first + 60 * part + 130 * part
        before = self.mm.vm_pte_kib
        if dontneed:
            self.madvise(first, end - first, "dontneed")
        else:
            self.zap(first, end - first, True)
        event(f"span drop (part {part}) freed tables: {self.mm.vm_pte_kib < before}")

    @rule(start=pages, n=lengths)
    def munmap(self, start: int, n: int) -> None:
        end = min(start + n, N_PAGES)
        before = self.mm.vm_pte_kib
        self.mm.munmap(addr(start), (end - start) * PAGE_SIZE)
        event(f"munmap freed tables: {self.mm.vm_pte_kib < before}")
        self._zap(start, end, reclaim=False)
        kept: list[Vma] = []
        for s, e, thp in self.vmas:
            if e <= start or s >= end:
                kept.append((s, e, thp))
                continue
            if s < start:
                kept.append((s, start, thp))
            if e > end:
                kept.append((end, e, thp))
        self.vmas = kept
        # free_pgtables: a table goes when no remaining VMA overlaps what it maps
        self.pte_spans = {sp for sp in self.pte_spans if self._overlaps_vma(sp * SPAN, SPAN)}
        for tables, size in ((self.pmds, PUD_SIZE), (self.puds, 512 * PUD_SIZE)):
            for r in list(tables):
                first = (r * size - WINDOW) // PAGE_SIZE
                if not self._overlaps_vma(first, size // PAGE_SIZE):
                    tables.discard(r)
        if not self.vmas:
            self.p4d = False

    @rule(start=pages, n=lengths, advice=st.sampled_from(["dontneed", "free"]))
    def madvise(self, start: int, n: int, advice: str) -> None:
        end = min(start + n, N_PAGES)
        covered = all(self._vma_of(p) is not None for p in range(start, end))
        try:
            self.mm.madvise(addr(start), (end - start) * PAGE_SIZE, advice)
        except ValueError:
            assert not covered
            return
        assert covered
        if advice == "dontneed":
            self._zap(start, end, reclaim=True)

    # ---------------------------------------------------------------- invariants
    @invariant()
    def translations_agree(self) -> None:
        phys = self.mm.translate_many(WINDOW + np.arange(N_PAGES, dtype=np.int64) * PAGE_SIZE)
        mapped = {int(p) for p in np.nonzero(phys >= 0)[0]}
        assert mapped == set(self.ref)
        zero = self.mm.mem._zero_pfn
        written = [int(phys[p]) // PAGE_SIZE for p, w in self.ref.items() if w]
        assert len(set(written)) == len(written)
        assert all(self.mm.mem.kind(f) == "data" for f in written)
        assert all(int(phys[p]) // PAGE_SIZE == zero for p, w in self.ref.items() if not w)

    @invariant()
    def no_leaks_no_reports(self) -> None:
        mem = self.mm.mem
        allocated = set(mem.allocated_pfns("pagetable")) | set(mem.allocated_pfns("data"))
        assert allocated == self.mm.reachable_frames()
        assert mem.reports == []
        assert mem.nr_pagetable == len(mem.allocated_pfns("pagetable"))

    @invariant()
    def tables_are_the_kernels(self) -> None:
        pte_spans = {sp for sp in range(N_SPANS) if self.mm.pte_table(addr(sp * SPAN))}
        huge = {sp for sp in range(N_SPANS) if self.mm.walk(addr(sp * SPAN)).state == "huge"}
        assert (pte_spans, huge) == (self.pte_spans, self.huge)
        t = self.mm.table_pfns()
        assert len(t["deposited"]) == len(self.huge)
        assert (len(t["pmd"]), len(t["pud"])) == (len(self.pmds), len(self.puds))
        if self.mm.levels == 5:
            assert len(t["p4d"]) == int(self.p4d)
        counted = len(self.pte_spans) + len(self.huge) + len(self.pmds) + len(self.puds)
        assert self.mm.vm_pte_kib == 4 * counted


AddressSpace.TestCase.settings = settings(
    max_examples=60,
    stateful_step_count=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestAddressSpace = AddressSpace.TestCase
