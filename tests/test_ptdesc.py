"""ptlab.mm.ptdesc: layouts, TABLE_MATCH, the union-aliasing view, ctor/dtor, lists.

Offsets and sizes are the table of kernel-facts §2.1 (v6.14) and the BTF dump of
Appendix A (6.18); the union semantics are C's: members of a union share bytes.
"""

from __future__ import annotations

import pytest

from ptlab.mm.layout import compare_layouts
from ptlab.mm.page import PhysMem, Who
from ptlab.mm.ptdesc import (
    INIT_LIST_HEAD,
    LIST_POISON1,
    LIST_POISON2,
    PTDESC_LAYOUTS,
    PageTable,
    Ptdesc,
    field_address,
    layout,
    list_add,
    list_del,
    list_entries,
    page_type,
    pagetable_ctor,
    pagetable_dtor,
    ptdesc_address,
    table_match_checks,
)

# (member, offset, size) from kernel-facts §2.1
V614_PTDESC = [
    ("__page_flags", 0, 8), ("pt_rcu_head", 8, 16), ("pt_list", 8, 16), ("_pt_pad_1", 8, 8),
    ("pmd_huge_pte", 16, 8), ("__page_mapping", 24, 8), ("pt_index", 32, 8), ("pt_mm", 32, 8),
    ("pt_frag_refcount", 32, 4), ("pt_share_count", 32, 4), ("_pt_pad_2", 40, 8),
    ("ptl", 40, 4), ("__page_type", 48, 4), ("__page_refcount", 52, 4),
    ("pt_memcg_data", 56, 8),
]


@pytest.mark.parametrize(("name", "offset", "size"), V614_PTDESC)
def test_v614_ptdesc_offsets(name: str, offset: int, size: int) -> None:
    f = layout("ptdesc", "v6.14").field(name)
    assert (f.offset, f.size) == (offset, size)


def test_union_groups_and_sub_members() -> None:
    lay = layout("ptdesc", "v6.14")
    assert {f.name for f in lay if f.union == "union@8"} >= {
        "pt_rcu_head", "pt_list", "_pt_pad_1", "pmd_huge_pte"
    }
    assert lay.field("pt_rcu_head.func").offset == 16
    assert lay.field("pt_rcu_head.func").path == "pt_rcu_head"
    assert lay.field("pt_list.prev").offset == 16
    assert "pmd_huge_pte" in {f.name for f in lay.aliases("pt_rcu_head")}
    assert layout("ptdesc", "v6.18").size == layout("page", "v6.18").size == 64


def test_v618_differs_only_in_first_member() -> None:
    # Appendix A vs §2.1: only __page_flags became pt_flags (memdesc_flags_t) in 6.18
    diffs = compare_layouts(PTDESC_LAYOUTS["v6.14"], PTDESC_LAYOUTS["v6.18"])
    assert sorted((d.name, d.what) for d in diffs) == [
        ("__page_flags", "missing-right"), ("pt_flags", "missing-left")
    ]


def test_page_layout_members() -> None:
    page = layout("page", "v6.18")
    expect = {"flags": 0, "lru": 8, "compound_head": 8, "callback_head": 8, "mapping": 24,
              "__folio_index": 32, "private": 40, "page_type": 48, "_mapcount": 48,
              "_refcount": 52, "memcg_data": 56}
    assert {n: page.field(n).offset for n in expect} == expect
    assert layout("page", "v6.14").field("rcu_head").size == 16


@pytest.mark.parametrize("kernel", ["v6.14", "v6.18"])
def test_table_match_checks_hold(kernel: str) -> None:
    checks = table_match_checks(kernel)
    assert len(checks) == 10  # nine TABLE_MATCH pairs of §2.2 plus the sizeof check
    assert all(ok for _, _, ok in checks)
    assert ("compound_head", "pt_list", True) in checks


def test_layout_errors_name_allowed_values() -> None:
    with pytest.raises(ValueError, match=r"v6\.14, v6\.18"):
        layout("ptdesc", "v5.10")
    with pytest.raises(ValueError, match="ptdesc, page"):
        layout("folio", "v6.14")


def test_addresses() -> None:
    assert ptdesc_address(0x101) == 0xFFFF_EA00_0000_0000 + 0x101 * 64
    assert field_address(0x101, "ptl") == ptdesc_address(0x101) + 40


def test_rcu_head_write_clobbers_aliases() -> None:
    mem = PhysMem()
    pt = Ptdesc(mem, mem.alloc_page())
    pt.set("pmd_huge_pte", 0xFFFF_EA00_0000_4000)
    pt.set("pt_list.next", 0x1111)
    # call_rcu() fills the rcu_head: next pointer and callback function
    pt.set("pt_rcu_head.next", 0xFFFF_8880_0000_2000)
    pt.set("pt_rcu_head.func", 0xFFFF_FFFF_8123_4560)
    assert pt.get("pmd_huge_pte") == 0xFFFF_FFFF_8123_4560
    assert pt.get("pt_list.next") == 0xFFFF_8880_0000_2000
    assert pt.get("_pt_pad_1") == 0xFFFF_8880_0000_2000
    # the 16-byte member is both words, little-endian
    assert pt.get("pt_list") == (0xFFFF_FFFF_8123_4560 << 64) | 0xFFFF_8880_0000_2000
    assert {"pt_rcu_head.next", "pt_rcu_head.func", "pmd_huge_pte"} <= set(pt.live_members())


def test_four_byte_members_share_words() -> None:
    mem = PhysMem()
    pt = Ptdesc(mem, mem.alloc_page())
    pt.set("pt_mm", 0xFFFF_8880_1234_5678)
    assert pt.get("pt_frag_refcount") == 0x1234_5678  # low half of the same 8 bytes
    pt.set("ptl", 1)
    assert pt.get("_pt_pad_2") == 1
    before = pt.get("__page_refcount")
    pt.set("__page_type", 0)
    assert pt.get("__page_refcount") == before == 1  # neighbour half untouched
    with pytest.raises(ValueError, match="ptl"):
        pt.set("ptl", 1 << 32)
    with pytest.raises(ValueError, match="no field"):
        pt.get("pt_nothing")


def test_ctor_dtor() -> None:
    mem = PhysMem()
    pfn = mem.alloc_page()
    pt = Ptdesc(mem, pfn)
    pt.set("pmd_huge_pte", 123)
    pt.set("ptl", 1)
    pagetable_ctor(mem, pfn, level="pmd")
    assert mem.nr_pagetable == 1 and PageTable(mem, pfn)
    assert page_type(mem, pfn) == 0xF2 << 24  # PGTY_table in the top byte
    assert pt.get("ptl") == 0 and pt.get("pmd_huge_pte") == 0
    pagetable_dtor(mem, pfn)
    assert mem.nr_pagetable == 0 and not PageTable(mem, pfn)
    assert page_type(mem, pfn) == 0xFFFF_FFFF


def test_stale_view_reports_field_name() -> None:
    mem = PhysMem()
    pfn = mem.alloc_page()
    view = Ptdesc(mem, pfn, Who("CPU0", ("spin_lock",)), gen=mem.generation(pfn))
    mem.free_page(pfn, Who("CPU1", ("__tlb_remove_table",)))
    view.set("ptl", 1)
    (r,) = mem.reports
    assert r.kind == "use-after-free" and r.what == "struct page +40 (ptl)"


def test_list_helpers_and_corruption_detection() -> None:
    mem = PhysMem()
    head_pfn = mem.alloc_page(kind="kernel")
    head = PhysMem.kaddr_of(head_pfn, 0)
    INIT_LIST_HEAD(mem, head)
    tables = [mem.alloc_page() for _ in range(3)]
    nodes = [field_address(p, "pt_list") for p in tables]
    for n in nodes:
        list_add(mem, n, head)
    assert list_entries(mem, head) == nodes[::-1]  # list_add inserts at the front
    list_del(mem, nodes[1], Who("CPU0"))
    assert list_entries(mem, head) == [nodes[2], nodes[0]]
    assert Ptdesc(mem, tables[1]).get("pt_list.next") == LIST_POISON1
    assert Ptdesc(mem, tables[1]).get("pt_list.prev") == LIST_POISON2
    # call_rcu() on a page still on the list overwrites its pt_list: the list breaks
    Ptdesc(mem, tables[2]).set("pt_rcu_head.func", 0xFFFF_FFFF_8123_4560)
    with pytest.raises(ValueError, match="list corruption"):
        list_entries(mem, head)
