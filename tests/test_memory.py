"""ptlab.mm.memory: faults, VmPTE accounting, zapping, PT_RECLAIM, free_pgtables, THP.

Expected numbers come from kernel rules (kernel-facts §1, §6.1, §6.4, Appendix B):
every PTE/PMD/PUD table is 4 KiB of VmPTE, the PGD and P4D tables are not counted,
MADV_DONTNEED frees only PTE tables whose whole 2 MiB span it covers, MADV_FREE frees none,
munmap frees a table only if no remaining VMA overlaps its span.
"""

from __future__ import annotations

import numpy as np
import pytest

from ptlab.arch.x86.paging import PAGE_SIZE, PMD_SIZE, PUD_SIZE, entry_pfn
from ptlab.mm.memory import Mm, deposited_tables
from ptlab.mm.ptdesc import Ptdesc, ptdesc_address

MiB = 1 << 20
BASE = 0x7F00_0000_0000  # 1 GiB aligned


def n_tables(mm: Mm, *levels: str) -> int:
    t = mm.table_pfns()
    return sum(len(t[lv]) for lv in levels)


def test_first_touch_builds_three_counted_tables() -> None:
    mm = Mm()
    mm.mmap(BASE, 4 * MiB)
    pfn = mm.touch(BASE + 0x1234)
    # PUD + PMD + PTE table, 4 KiB each; the PGD is not in mm_pgtables_bytes
    assert mm.vm_pte_kib == 12
    t = mm.table_pfns()
    assert [len(t[lv]) for lv in ("pgd", "pud", "pmd", "pte")] == [1, 1, 1, 1]
    assert mm.translate(BASE + 0x1234) == pfn * PAGE_SIZE + 0x234
    assert mm.mem.kind(pfn) == "data"
    w = mm.walk(BASE + 0x1234)
    assert [s.level for s in w.steps] == ["pgd", "pud", "pmd", "pte"] and w.state == "mapped"
    assert w.steps[-1].next_pfn == pfn and w.steps[0].table_pfn == mm.pgd


def test_five_level_p4d_not_counted() -> None:
    mm = Mm(levels=5)
    mm.mmap(BASE, 4 * MiB)
    mm.touch(BASE)
    assert n_tables(mm, "p4d") == 1
    assert mm.vm_pte_kib == 12  # __p4d_alloc has no mm_inc_nr_*()
    assert [s.level for s in mm.walk(BASE).steps] == ["pgd", "p4d", "pud", "pmd", "pte"]


def test_appendix_b1_vmpte_experiments() -> None:
    # 256 MiB, every page touched: 128 PTE tables (+512 KiB), MADV_DONTNEED of the whole
    # range reclaims all of them; PMD and PUD stay.
    mm = Mm()
    mm.mmap(BASE, 256 * MiB)
    mm.touch_range(BASE, BASE + 256 * MiB)
    assert n_tables(mm, "pte") == 128 and mm.vm_pte_kib == 4 * (128 + 2)
    mm.madvise(BASE, 256 * MiB, "free")
    assert mm.vm_pte_kib == 4 * 130  # MADV_FREE never frees tables
    mm.madvise(BASE, 1 * MiB, "dontneed")
    assert mm.vm_pte_kib == 4 * 130  # less than one table span: no reclaim
    mm.madvise(BASE, 256 * MiB, "dontneed")
    assert mm.vm_pte_kib == 8 and n_tables(mm, "pte") == 0
    assert mm.translate(BASE + 5 * MiB) is None
    # one page per 2 MiB needs the same 128 tables
    mm.touch_range(BASE, BASE + 256 * MiB, stride=PMD_SIZE)
    assert n_tables(mm, "pte") == 128


def test_madvise_free_clears_dirty_keeps_pages() -> None:
    mm = Mm()
    mm.mmap(BASE, 2 * MiB)
    pfn = mm.touch(BASE)
    mm.madvise(BASE, PAGE_SIZE, "free")
    e = mm.walk(BASE).steps[-1].entry
    assert entry_pfn(e) == pfn and not e & 0x60  # accessed (0x20) and dirty (0x40) clear


def test_no_reclaim_without_config_or_on_plain_zap() -> None:
    for pt_reclaim, reclaim_arg in ((False, True), (True, False)):
        mm = Mm(pt_reclaim=pt_reclaim)
        mm.mmap(BASE, 4 * MiB)
        mm.touch_range(BASE, BASE + 4 * MiB)
        assert mm.zap_range(BASE, BASE + 4 * MiB, reclaim_pt=reclaim_arg) == 0
        assert n_tables(mm, "pte") == 2 and mm.translate(BASE) is None


def test_reclaim_needs_the_span_within_one_vma() -> None:
    # zap_pte_range runs per VMA; each call covers only half the PMD span here
    mm = Mm()
    mm.mmap(BASE, 1 * MiB)
    mm.mmap(BASE + 1 * MiB, 1 * MiB)
    mm.touch_range(BASE, BASE + 2 * MiB)
    mm.madvise(BASE, 2 * MiB, "dontneed")
    assert n_tables(mm, "pte") == 1
    mm.mmap(BASE + 2 * MiB, 2 * MiB)
    mm.touch(BASE + 2 * MiB)
    assert mm.zap_range(BASE, BASE + 4 * MiB, reclaim_pt=True) == 1


def test_munmap_respects_neighbour_vmas() -> None:
    mm = Mm()
    mm.mmap(BASE, 1 * MiB)
    mm.mmap(BASE + 1 * MiB, 2 * MiB)
    mm.touch(BASE)
    mm.touch(BASE + 1 * MiB)
    mm.touch(BASE + 2 * MiB)
    assert n_tables(mm, "pte") == 2
    mm.munmap(BASE, 1 * MiB)  # the second VMA still overlaps span 0: keep its table
    assert n_tables(mm, "pte") == 2 and mm.translate(BASE) is None
    assert mm.translate(BASE + 1 * MiB) is not None
    mm.munmap(BASE + 1 * MiB, 2 * MiB)  # nothing left: everything below the PGD goes
    assert mm.vm_pte_kib == 0 and n_tables(mm, "pud", "pmd", "pte") == 0
    assert mm.mem.reports == []
    assert set(mm.mem.allocated_pfns("pagetable")) == {mm.pgd}
    assert mm.mem.allocated_pfns("data") == []


def test_munmap_splits_vma() -> None:
    mm = Mm()
    mm.mmap(BASE, 8 * MiB)
    mm.touch_range(BASE, BASE + 8 * MiB)
    mm.munmap(BASE + 2 * MiB, 2 * MiB)
    assert [(v.start - BASE, v.end - BASE) for v in mm.vmas] == [(0, 2 * MiB),
                                                                  (4 * MiB, 8 * MiB)]
    assert n_tables(mm, "pte") == 3  # the table of span 1 had no other user
    with pytest.raises(ValueError, match="not inside any VMA"):
        mm.touch(BASE + 3 * MiB)


def test_munmap_far_neighbour_frees_upper_tables() -> None:
    # VMAs in different 1 GiB regions: unmapping one frees its PMD table, the PUD stays
    mm = Mm()
    mm.mmap(BASE, 2 * MiB)
    mm.mmap(BASE + PUD_SIZE, 2 * MiB)
    mm.touch(BASE)
    mm.touch(BASE + PUD_SIZE)
    assert n_tables(mm, "pmd") == 2
    mm.munmap(BASE + PUD_SIZE, 2 * MiB)
    assert n_tables(mm, "pud", "pmd", "pte") == 3 and mm.vm_pte_kib == 12


def test_read_fault_maps_zero_page_then_cow() -> None:
    mm = Mm()
    mm.mmap(BASE, 2 * MiB)
    zero = mm.touch(BASE, write=False)
    assert zero == mm.mem.zero_pfn() and mm.mem.kind(zero) == "kernel"
    assert not mm.walk(BASE).steps[-1].entry & 0x2  # read-only
    data = mm.touch(BASE, write=True)
    assert data != zero and mm.mem.kind(data) == "data"
    mm.touch(BASE + PAGE_SIZE, write=False)
    mm.madvise(BASE, 2 * MiB, "dontneed")
    assert mm.mem.is_allocated(zero) and mm.mem.reports == []  # zero page never freed


def test_thp_fault_deposits_a_table() -> None:
    mm = Mm()
    mm.mmap(BASE, 4 * MiB, thp=True)
    head = mm.touch(BASE + 5 * PAGE_SIZE) - 5
    assert head % 512 == 0
    w = mm.walk(BASE + 5 * PAGE_SIZE)
    assert w.state == "huge" and w.phys == (head + 5) * PAGE_SIZE
    pmd_pfn, _ = mm.pmd_entry_location(BASE)  # type: ignore[misc]
    deposits = deposited_tables(mm, pmd_pfn)
    assert len(deposits) == 1 and mm.pte_table(BASE) is None
    assert Ptdesc(mm.mem, pmd_pfn).get("pmd_huge_pte") == ptdesc_address(deposits[0])
    assert mm.vm_pte_kib == 12  # PUD + PMD + the deposited PTE table
    mm.touch(BASE + 2 * MiB)
    assert len(deposited_tables(mm, pmd_pfn)) == 2 and mm.vm_pte_kib == 16
    mm.madvise(BASE, 2 * MiB, "dontneed")  # zap_huge_pmd + zap_deposited_table
    assert len(deposited_tables(mm, pmd_pfn)) == 1 and mm.vm_pte_kib == 12
    assert not mm.mem.is_allocated(head)


def test_partial_zap_splits_huge_pmd() -> None:
    mm = Mm()
    mm.mmap(BASE, 2 * MiB, thp=True)
    head = mm.touch(BASE)
    pmd_pfn, _ = mm.pmd_entry_location(BASE)  # type: ignore[misc]
    deposit = deposited_tables(mm, pmd_pfn)[0]
    mm.zap_range(BASE, BASE + 1 * MiB, reclaim_pt=True)
    assert mm.pte_table(BASE) == deposit and deposited_tables(mm, pmd_pfn) == []
    assert mm.translate(BASE) is None
    assert mm.translate(BASE + 1 * MiB) == (head + 256) * PAGE_SIZE
    assert mm.vm_pte_kib == 12  # the deposit became the live PTE table: same count
    assert not mm.mem.is_allocated(head) and mm.mem.is_allocated(head + 256)


def test_no_thp_when_range_leaves_vma() -> None:
    mm = Mm()
    mm.mmap(BASE + PAGE_SIZE, 2 * MiB, thp=True)
    mm.touch(BASE + PAGE_SIZE)
    assert mm.walk(BASE + PAGE_SIZE).state == "mapped"


def test_touch_range_equals_repeated_touch() -> None:
    def build() -> Mm:
        mm = Mm()
        mm.mmap(BASE, 6 * MiB)
        mm.mmap(BASE + 8 * MiB, 4 * MiB, thp=True)
        mm.touch(BASE + 3 * PAGE_SIZE, write=False)  # a zero-page PTE to copy on write
        mm.touch_range(BASE, BASE + 64 * PAGE_SIZE)
        mm.madvise(BASE, 64 * PAGE_SIZE, "dontneed")  # puts frames on the free list
        return mm

    for stride in (PAGE_SIZE, 3 * PAGE_SIZE, 1000):
        a, b = build(), build()
        start, end = BASE + PAGE_SIZE, BASE + 12 * MiB - 7
        a.touch_range(start, BASE + 6 * MiB, stride=stride)
        b_addr = start
        while b_addr < BASE + 6 * MiB:
            b.touch(b_addr)
            b_addr += stride
        assert a.mem.state_key() == b.mem.state_key()
        a.touch_range(BASE + 8 * MiB, end, stride=stride)
        b_addr = BASE + 8 * MiB
        while b_addr < end:
            b.touch(b_addr)
            b_addr += stride
        assert a.mem.state_key() == b.mem.state_key() and a.vm_pte_kib == b.vm_pte_kib


def test_touch_range_rejects_gaps_before_changing_anything() -> None:
    mm = Mm()
    mm.mmap(BASE, 1 * MiB)
    mm.mmap(BASE + 2 * MiB, 1 * MiB)
    key = mm.mem.state_key()
    with pytest.raises(ValueError, match=f"{BASE + 1 * MiB:#x}"):
        mm.touch_range(BASE, BASE + 3 * MiB)
    assert mm.mem.state_key() == key
    mm.touch_range(BASE, BASE + 3 * MiB, stride=2 * MiB)  # skips the gap: fine


def test_translate_many_matches_translate() -> None:
    mm = Mm()
    mm.mmap(BASE, 8 * MiB)
    mm.mmap(BASE + 8 * MiB, 4 * MiB, thp=True)
    rng = np.random.default_rng(2)
    pages = rng.choice(2048, size=300, replace=False)
    for p in pages[:200]:
        mm.touch(BASE + int(p) * PAGE_SIZE, write=bool(p % 2))
    mm.touch(BASE + 9 * MiB)
    addrs = BASE + rng.integers(0, 12 * MiB, size=2000)
    addrs = np.append(addrs, [0, 0x7FFF_FFFF_F000, 0xFFFF_8000_0000_0000])
    got = mm.translate_many(addrs.astype(np.uint64))
    want = [mm.translate(int(a)) for a in addrs]
    assert got.tolist() == [-1 if w is None else w for w in want]
    assert (got >= 0).sum() > 200
    with pytest.raises(ValueError, match="not canonical"):
        mm.translate_many(np.array([0x8000_0000_0000], dtype=np.uint64))


def test_pgd_list_and_pgd_free() -> None:
    mm = Mm()
    other = Mm(mm.mem)
    assert mm.pgd_list() == [other.pgd, mm.pgd]  # list_add puts the newest first
    assert Ptdesc(mm.mem, mm.pgd).get("pt_mm") == mm.address
    other.mmap(BASE, 4 * MiB, thp=True)
    other.touch_range(BASE, BASE + 4 * MiB)
    other.exit_mmap()
    other.pgd_free()
    assert mm.pgd_list() == [mm.pgd]
    assert mm.mem.allocated_pfns("pagetable") == [mm.pgd]
    assert mm.mem.allocated_pfns("data") == [] and mm.mem.reports == []
    assert mm.mem.nr_pagetable == 1
    with pytest.raises(ValueError, match="already freed"):
        other.pgd_free()


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda mm: mm.touch(BASE + 64 * MiB), "not inside any VMA"),
        (lambda mm: mm.touch(0x8000_0000_0000), "not canonical"),
        (lambda mm: mm.mmap(BASE + 1 * MiB, 1 * MiB), "overlaps"),
        (lambda mm: mm.mmap(BASE + 100, PAGE_SIZE), "page aligned"),
        (lambda mm: mm.mmap(0x7FFF_FFFF_F000, PAGE_SIZE), "user address space"),
        (lambda mm: mm.madvise(BASE, 2 * MiB, "cold"), "dontneed, free"),
        (lambda mm: mm.madvise(BASE, 8 * MiB, "dontneed"), "not mapped"),
        (lambda mm: mm.zap_range(BASE + 1, BASE + 2 * MiB), "page aligned"),
        (lambda mm: Mm(levels=3), "levels"),
        (lambda mm: Mm(kernel="v6.13"), "v6.14, v6.18"),
    ],
)
def test_bad_input_is_one_value_error(call: object, match: str) -> None:
    mm = Mm()
    mm.mmap(BASE, 4 * MiB)
    with pytest.raises(ValueError, match=match):
        call(mm)  # type: ignore[operator]


def test_clone_is_independent() -> None:
    mm = Mm()
    mm.mmap(BASE, 4 * MiB)
    mm.touch(BASE)
    c = mm.clone()
    c.munmap(BASE, 4 * MiB)
    assert mm.translate(BASE) is not None and c.translate(BASE) is None
    assert mm.vm_pte_kib == 12 and c.vm_pte_kib == 0
