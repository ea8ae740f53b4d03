"""ptlab.mm.page: frames, struct page words, the allocator and the small KASAN.

Rules from kernel-facts Appendix A (struct page is 8 u64 words; _refcount at byte 52,
page_type/_mapcount at byte 48) and from the allocator behaviour the brief fixes: LIFO
reuse, generation bump per allocation, poison 0x6b.. on freed contents.
"""

from __future__ import annotations

import numpy as np
import pytest

from ptlab.mm.page import POISON_FREE, SETUP, PhysMem, Who

CPU0 = Who("CPU0", ("zap_pte_range", "pte_offset_map_lock"), step=7)
CPU1 = Who("CPU1", ("tlb_remove_table", "__tlb_remove_table"), step=5)


def test_fresh_frames_and_struct_page() -> None:
    mem = PhysMem(first_pfn=0x100)
    a, b = mem.alloc_page(), mem.alloc_page(kind="data")
    assert (a, b) == (0x100, 0x101)  # bump allocator from first_pfn
    assert mem.generation(a) == 1 and mem.kind(a) == "pagetable" and mem.kind(b) == "data"
    assert mem.refcount(a) == 1 and mem.refcount(b) == 1
    # word 6: _refcount (high half) = 1, page_type/_mapcount (low half) = -1 as u32
    assert mem.page_word(a, 6) == (1 << 32) | 0xFFFF_FFFF
    assert all(mem.page_word(a, w) == 0 for w in (0, 1, 2, 3, 4, 5, 7))
    assert mem.page_word(b, 6) == (1 << 32) | 0xFFFF_FFFF  # data frames look the same
    assert mem.read(a, 511) == 0
    assert mem.n_allocated() == 2 and mem.allocated_pfns("data") == [b]
    assert mem.reports == []


def test_lifo_reuse_bumps_generation_and_zeroes() -> None:
    mem = PhysMem()
    a, b = mem.alloc_page(), mem.alloc_page()
    mem.write(a, 3, 0x1234)
    mem.free_page(a)
    mem.free_page(b)
    assert mem.free_list == [b, a]  # most recently freed first
    assert mem.alloc_page() == b and mem.alloc_page() == a
    assert mem.generation(a) == 2 and mem.read(a, 3) == 0
    assert mem.reports == []


def test_use_after_free_read_reports_and_sees_poison() -> None:
    mem = PhysMem()
    pfn = mem.alloc_page()
    mem.write(pfn, 325, 0xABC)
    mem.free_page(pfn, CPU1)
    assert mem.read(pfn, 325, CPU0) == POISON_FREE
    (r,) = mem.reports
    assert (r.kind, r.pfn, r.access, r.what, r.reused) == (
        "use-after-free", pfn, "read", "entry 325", False
    )
    assert r.who == CPU0 and r.freed is not None and r.freed.who == CPU1
    assert r.freed.generation == 1 and r.freed.kind == "pagetable"
    msg = r.message()
    for part in ("BUG: KASAN: use-after-free in pte_offset_map_lock", "CPU0", "step 7",
                 "freed by CPU1", "__tlb_remove_table", "step 5"):
        assert part in msg


def test_write_after_free_still_happens() -> None:
    mem = PhysMem()
    pfn = mem.alloc_page()
    mem.free_page(pfn, CPU1)
    mem.write(pfn, 0, 7, CPU0)
    assert mem.read(pfn, 0) == 7  # the access happened (and was reported twice)
    assert [r.access for r in mem.reports] == ["write", "read"]


def test_stale_generation_after_reuse() -> None:
    mem = PhysMem()
    pfn = mem.alloc_page()
    gen = mem.generation(pfn)
    mem.free_page(pfn, CPU1)
    again = mem.alloc_page(Who("CPU1"), kind="data")  # LIFO: the same frame comes back
    assert again == pfn
    mem.write(pfn, 10, 1, CPU0, gen=gen)
    (r,) = mem.reports
    assert r.kind == "use-after-free" and r.reused and r.freed is not None
    assert r.freed.generation == gen and r.freed.who == CPU1
    assert "allocated again" in r.message()
    mem.reports.clear()
    mem.write(pfn, 10, 1, CPU0, gen=mem.generation(pfn))  # the current owner: fine
    assert mem.reports == []


def test_double_free_reported_once_and_not_requeued() -> None:
    mem = PhysMem()
    pfn = mem.alloc_page()
    mem.free_page(pfn, CPU1)
    mem.free_page(pfn, CPU0)
    assert [r.kind for r in mem.reports] == ["double-free"]
    assert mem.reports[0].freed is not None and mem.reports[0].freed.who == CPU1
    assert mem.free_list == [pfn]
    assert mem.alloc_page() == pfn and mem.alloc_page() != pfn


def test_bad_pfn() -> None:
    mem = PhysMem(first_pfn=0x100)
    assert mem.read(0x50, 0) == 0
    mem.free_page(0x5000)
    assert [r.kind for r in mem.reports] == ["bad-pfn", "bad-pfn"]
    assert "never allocated" in mem.reports[0].message()
    with pytest.raises(ValueError):
        mem.read(-1, 0)
    with pytest.raises(ValueError, match="index"):
        mem.read(mem.alloc_page(), 512)


def test_refcounts_get_put_and_underflow() -> None:
    mem = PhysMem()
    pfn = mem.alloc_page(kind="data")
    mem.get_page(pfn)
    assert mem.refcount(pfn) == 2
    mem.free_page(pfn)  # __free_pages drops one reference: still in use
    assert mem.is_allocated(pfn) and mem.refcount(pfn) == 1
    mem.put_page(pfn, CPU0)  # last reference: freed
    assert not mem.is_allocated(pfn) and mem.refcount(pfn) == 0
    assert mem.freed_record(pfn) is not None and mem.freed_record(pfn).who == CPU0  # type: ignore[union-attr]
    mem.put_page(pfn, CPU1)
    assert [r.kind for r in mem.reports] == ["refcount-underflow"]
    assert mem.reports[0].access == "put"


def test_page_word_masked_write_is_one_access() -> None:
    mem = PhysMem()
    pfn = mem.alloc_page()
    mem.set_page_word(pfn, 5, 0x1111_2222_3333_4444)
    mem.set_page_word(pfn, 5, 0xFFFF_FFFF, mask=0xFFFF_FFFF, what="struct page +40 (ptl)")
    assert mem.page_word(pfn, 5) == 0x1111_2222_FFFF_FFFF
    mem.free_page(pfn, CPU1)
    mem.set_page_word(pfn, 5, 0, CPU0, mask=0xFFFF_FFFF, what="struct page +40 (ptl)")
    (r,) = mem.reports
    assert r.what == "struct page +40 (ptl)" and r.access == "write"
    with pytest.raises(ValueError, match="64-bit"):
        mem.set_page_word(pfn, 5, 1 << 64)


def test_data_frames_have_no_contents_objects() -> None:
    mem = PhysMem()
    pfns = mem.alloc_pages_bulk(1000, kind="data")
    assert all(mem.contents_view(int(p)) is None for p in pfns[:10])
    table = mem.alloc_page()
    assert mem.contents_view(table) is not None


def _history(mem: PhysMem) -> None:
    pfns = [mem.alloc_page(kind="data") for _ in range(6)]
    for p in (pfns[1], pfns[4], pfns[2]):
        mem.free_page(p, CPU1)


def test_bulk_alloc_matches_single_allocs() -> None:
    m1, m2 = PhysMem(), PhysMem()
    _history(m1)
    _history(m2)
    single = [m1.alloc_page(kind="data") for _ in range(5)]
    bulk = m2.alloc_pages_bulk(5, kind="data").tolist()
    assert bulk == single
    assert m1.state_key() == m2.state_key()


def test_bulk_free_matches_single_frees() -> None:
    m1, m2 = PhysMem(), PhysMem()
    a = m1.alloc_pages_bulk(8, kind="data")
    m2.alloc_pages_bulk(8, kind="data")
    order = [a[3], a[0], a[7]]
    for p in order:
        m1.free_page(int(p), CPU0)
    m2.free_pages_bulk(np.array(order), CPU0)
    assert m1.state_key() == m2.state_key()
    assert m2.freed_record(int(a[0])).who == CPU0  # type: ignore[union-attr]


def test_compound_allocation_is_aligned() -> None:
    mem = PhysMem(first_pfn=0x100)
    mem.alloc_page()
    head = mem.alloc_pages(9)
    assert head % 512 == 0 and head >= 0x101
    assert all(mem.is_allocated(p) for p in range(head, head + 512))


def test_clone_is_independent_and_state_key_tracks_contents() -> None:
    mem = PhysMem()
    pfn = mem.alloc_page()
    mem.write(pfn, 1, 42)
    key = mem.state_key()
    copy = mem.clone()
    assert copy.state_key() == key
    copy.write(pfn, 1, 43)
    copy.free_page(pfn)
    assert mem.read(pfn, 1) == 42 and mem.is_allocated(pfn)
    assert copy.state_key() != key and mem.state_key() == key
    mem.write(pfn, 1, 41)
    assert mem.state_key() != key  # cached digest was invalidated
    mem.write(pfn, 1, 42)
    assert mem.state_key() == key
    hash(key)


def test_state_key_sees_free_list_order() -> None:
    m1, m2 = PhysMem(), PhysMem()
    a1, b1 = m1.alloc_page(), m1.alloc_page()
    a2, b2 = m2.alloc_page(), m2.alloc_page()
    m1.free_page(a1)
    m1.free_page(b1)
    m2.free_page(b2)
    m2.free_page(a2)
    assert m1.state_key() != m2.state_key()


def test_kernel_addresses_roundtrip() -> None:
    mem = PhysMem()
    pfn = mem.alloc_page()
    mem.write_kaddr(PhysMem.kaddr_of(pfn, 9), 77)
    assert mem.read(pfn, 9) == 77
    # vmemmap: struct page of pfn at 0xffffea0000000000 + pfn*64; word 5 at +40
    vmemmap = 0xFFFF_EA00_0000_0000 + pfn * 64 + 40
    mem.write_kaddr(vmemmap, 5)
    assert mem.page_word(pfn, 5) == 5 and mem.read_kaddr(vmemmap) == 5
    with pytest.raises(ValueError, match="aligned"):
        mem.read_kaddr(vmemmap + 4)


def test_bad_kind_rejected() -> None:
    with pytest.raises(ValueError, match="pagetable, data, kernel"):
        PhysMem().alloc_page(SETUP, kind="slab")
