"""Random mmap/touch/zap/munmap/madvise sequences against a plain-dict reference model.

The reference knows only the VMAs and, per page, whether it is mapped and whether it was
written (written -> an own data frame; read only -> the shared zero page).  It encodes the
kernel rules the model must obey: faults map pages, zaps/munmap/MADV_DONTNEED unmap them,
MADV_FREE keeps them, a THP fault maps the whole 2 MiB.  After every step:

* translations agree with the reference, written pages have distinct data frames;
* no frame leaks: every allocated page-table/data frame is reachable from the PGD;
* nothing was freed twice and nothing touched after free (no KASAN reports);
* VmPTE = 4 KiB x (PUD + PMD + PTE tables + deposited PTE tables)  (kernel-facts §6.4);
* every table below the PGD still maps some part of a VMA (munmap's floor/ceiling rule).
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
SPAN_PAGES = PMD_SIZE // PAGE_SIZE

# plain random pages/lengths, plus 2 MiB-aligned ones so whole PTE tables get zapped
pages = st.one_of(
    st.integers(0, N_PAGES - 1), st.integers(0, N_PAGES // SPAN_PAGES - 1).map(
        lambda i: i * SPAN_PAGES
    )
)
lengths = st.one_of(st.integers(1, 1200), st.sampled_from([512, 1024, 1536, 2048, 3000]))


class AddressSpace(RuleBasedStateMachine):
    mm: Mm
    vmas: list[tuple[int, int, bool]]  # page numbers within the window: [start, end)
    ref: dict[int, bool]  # page -> written?

    # CONFIG_PT_RECLAIM=y as on the live machine; reclaim on/off is the zap rule's flag
    # (and tests/test_memory.py covers pt_reclaim=False)
    @initialize(
        levels=st.sampled_from([4, 5]),
        first=st.lists(st.tuples(pages, lengths, st.booleans()), min_size=1, max_size=3),
    )
    def setup(self, levels: int, first: list[tuple[int, int, bool]]) -> None:
        self.mm = Mm(levels=levels, pt_reclaim=True)
        self.vmas = []
        self.ref = {}
        for start, n, thp in first:
            self.mmap(start, n, thp)

    def _vma_of(self, page: int) -> tuple[int, int, bool] | None:
        return next((v for v in self.vmas if v[0] <= page < v[1]), None)

    @staticmethod
    def addr(page: int) -> int:
        return WINDOW + page * PAGE_SIZE

    @rule(start=pages, n=lengths, thp=st.booleans())
    def mmap(self, start: int, n: int, thp: bool) -> None:
        end = min(start + n, N_PAGES)
        overlap = any(s < end and start < e for s, e, _ in self.vmas)
        try:
            self.mm.mmap(self.addr(start), (end - start) * PAGE_SIZE, thp=thp)
        except ValueError:
            assert overlap
            return
        assert not overlap
        self.vmas.append((start, end, thp))

    def _pmd_empty(self, page: int) -> bool:
        a = self.addr(page)
        return self.mm.pte_table(a) is None and self.mm.walk(a).state != "huge"

    def _thp_span(self, vma: tuple[int, int, bool], page: int) -> int | None:
        span = page - page % SPAN_PAGES
        if vma[2] and vma[0] <= span and span + SPAN_PAGES <= vma[1]:
            return span
        return None

    def _fault(self, page: int, write: bool, pmd_empty: bool) -> None:
        """Reference effect of one fault: a THP fault maps the whole 2 MiB (written)."""
        vma = self._vma_of(page)
        assert vma is not None
        span = self._thp_span(vma, page)
        if span is not None and pmd_empty:
            event("THP fault")
            for p in range(span, span + SPAN_PAGES):
                self.ref[p] = True
        else:
            self.ref[page] = self.ref.get(page, False) or write

    @rule(page=pages, write=st.booleans())
    def touch_anywhere(self, page: int, write: bool) -> None:
        if self._vma_of(page) is None:
            try:
                self.mm.touch(self.addr(page), write=write)
            except ValueError:
                return
            raise AssertionError("touch outside every VMA must fail")
        empty = self._pmd_empty(page)
        self.mm.touch(self.addr(page), write=write)
        self._fault(page, write, empty)

    @rule(i=st.integers(0, 7), off=st.integers(0, N_PAGES), write=st.booleans())
    def touch_in_vma(self, i: int, off: int, write: bool) -> None:
        if not self.vmas:
            return
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
        touched = list(range(start, end, stride))
        empty = {p - p % SPAN_PAGES: self._pmd_empty(p) for p in touched}
        self.mm.touch_range(self.addr(start), self.addr(end), stride=stride * PAGE_SIZE)
        seen: set[int] = set()
        for p in touched:
            span = p - p % SPAN_PAGES
            self._fault(p, True, empty[span] and span not in seen)
            seen.add(span)

    @rule(start=pages, n=lengths, reclaim=st.booleans())
    def zap(self, start: int, n: int, reclaim: bool) -> None:
        end = min(start + n, N_PAGES)
        self.mm.zap_range(self.addr(start), self.addr(end), reclaim_pt=reclaim)
        for p in range(start, end):
            if self._vma_of(p) is not None:
                self.ref.pop(p, None)

    @rule(start=pages, n=lengths)
    def munmap(self, start: int, n: int) -> None:
        end = min(start + n, N_PAGES)
        before = self.mm.vm_pte_kib
        self.mm.munmap(self.addr(start), (end - start) * PAGE_SIZE)
        event(f"munmap freed tables: {self.mm.vm_pte_kib < before}")
        kept: list[tuple[int, int, bool]] = []
        for s, e, thp in self.vmas:
            if e <= start or s >= end:
                kept.append((s, e, thp))
                continue
            if s < start:
                kept.append((s, start, thp))
            if e > end:
                kept.append((end, e, thp))
        self.vmas = kept
        for p in range(start, end):
            self.ref.pop(p, None)

    @rule(start=pages, n=lengths, advice=st.sampled_from(["dontneed", "free"]))
    def madvise(self, start: int, n: int, advice: str) -> None:
        end = min(start + n, N_PAGES)
        covered = all(self._vma_of(p) is not None for p in range(start, end))
        try:
            self.mm.madvise(self.addr(start), (end - start) * PAGE_SIZE, advice)
        except ValueError:
            assert not covered
            return
        assert covered
        if advice == "dontneed":
            for p in range(start, end):
                self.ref.pop(p, None)

    @rule(k=st.integers(0, 15), spans=st.integers(1, 3), dontneed=st.booleans())
    def drop_whole_spans(self, k: int, spans: int, dontneed: bool) -> None:
        """MADV_DONTNEED / zap with reclaim of 2 MiB-aligned spans lying inside one VMA,
        preferring spans that hold mapped pages: where PT_RECLAIM frees PTE tables."""
        inside = [
            span
            for s, e, _ in self.vmas
            for span in range(-(-s // SPAN_PAGES) * SPAN_PAGES, e - SPAN_PAGES + 1, SPAN_PAGES)
        ]
        busy = [span for span in inside if any(p - p % SPAN_PAGES == span for p in self.ref)]
        choice = busy or inside
        if not choice:
            return
        first = choice[k % len(choice)]
        vma = self._vma_of(first)
        assert vma is not None
        end = min(first + spans * SPAN_PAGES, vma[1])
        before = self.mm.vm_pte_kib
        if dontneed:
            self.madvise(first, end - first, "dontneed")
        else:
            self.zap(first, end - first, True)
        event(f"whole-span drop freed tables: {self.mm.vm_pte_kib < before}")

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
    def vmpte_matches_tables(self) -> None:
        t = self.mm.table_pfns()
        counted = len(t["pud"]) + len(t["pmd"]) + len(t["pte"]) + len(t["deposited"])
        assert self.mm.pgtables_bytes == counted * 4096
        assert self.mm.vm_pte_kib == counted * 4

    @invariant()
    def every_table_serves_a_vma(self) -> None:
        vmas = [(self.addr(s), self.addr(e)) for s, e, _ in self.vmas]

        def used(pfns: list[int], size: int, level: str) -> None:
            for pfn in pfns:
                # find the span the table maps by walking the window for it
                spans = {a & ~(size - 1) for a in self._table_addrs(pfn, level)}
                assert spans, f"{level} table {pfn:#x} not reachable"
                for s in spans:
                    assert any(vs < s + size and s < ve for vs, ve in vmas), (level, hex(s))

        t = self.mm.table_pfns()
        used(t["pte"], PMD_SIZE, "pte")
        used(t["pmd"], PUD_SIZE, "pmd")

    def _table_addrs(self, pfn: int, level: str) -> list[int]:
        step = PMD_SIZE if level == "pte" else PUD_SIZE
        out = []
        a = WINDOW & ~(step - 1)
        while a < WINDOW + N_PAGES * PAGE_SIZE:
            w = self.mm.walk(a)
            if any(s.level == level and s.table_pfn == pfn for s in w.steps):
                out.append(a)
            a += step
        return out


AddressSpace.TestCase.settings = settings(
    max_examples=60,
    stateful_step_count=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestAddressSpace = AddressSpace.TestCase
