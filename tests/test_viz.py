"""Pictures: figures are built from model data with the artists the lesson relies on.

Expected artist counts are derived from the data drawn (fields of a layout, levels of a
walk, tables of an address space), stated next to each assertion.
"""

from __future__ import annotations

import dataclasses
import subprocess
import sys

import pytest
from matplotlib.figure import Figure
from matplotlib.patches import FancyArrowPatch, Rectangle

from ptlab.arch.x86.paging import PAGE_SIZE, PMD_SIZE, PUD_SIZE, split_vaddr
from ptlab.mm import ptdesc as ptdesc_mod
from ptlab.mm.layout import Field, StructLayout
from ptlab.mm.memory import Mm
from ptlab.viz import style
from ptlab.viz.layout import (
    byte_map_boxes,
    draw_layout_comparison,
    draw_struct_layout,
    leaf_fields,
)
from ptlab.viz.paging import (
    address_fields,
    draw_address_split,
    draw_mm_tree,
    draw_walk,
    page_table_tree,
    walk_rows,
)

ADDR = 0x7FFC_1234_5678


def gids(fig: Figure, prefix: str) -> list[str]:
    out = []
    for ax in fig.axes:
        for a in [*ax.patches, *ax.texts]:
            gid = a.get_gid() or ""
            if gid.startswith(prefix):
                out.append(gid)
    out += [t.get_gid() or "" for t in fig.texts if (t.get_gid() or "").startswith(prefix)]
    return out


def patches(fig: Figure, prefix: str) -> list[Rectangle]:
    return [p for ax in fig.axes for p in ax.patches
            if isinstance(p, Rectangle) and (p.get_gid() or "").startswith(prefix)]


def texts(fig: Figure, prefix: str) -> dict[str, str]:
    return {t.get_gid() or "": t.get_text() for ax in fig.axes for t in ax.texts
            if (t.get_gid() or "").startswith(prefix)}


# ---------------------------------------------------------------- style
def test_style_palettes_are_distinct_and_errors_name_the_value() -> None:
    levels = ["pgd", "p4d", "pud", "pmd", "pte"]
    assert len({style.level_color(lv) for lv in levels}) == 5
    assert len({style.cpu_color(c) for c in range(4)}) == 4
    with pytest.raises(ValueError, match="'pxd'"):
        style.level_color("pxd")
    with pytest.raises(ValueError, match="-1"):
        style.cpu_color(-1)


def test_viz_and_widgets_do_not_use_pyplot() -> None:
    # Pictures use Figure directly; pyplot would keep every figure in a global registry.
    # A fresh interpreter, because other tests in the session may import pyplot.
    code = (
        "import sys\n"
        "from ptlab.viz.paging import draw_address_split\n"
        "from ptlab.widgets.walk import WalkExplorer\n"
        "draw_address_split(0x7ffc12345678); WalkExplorer()\n"
        "assert 'matplotlib.pyplot' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# ---------------------------------------------------------------- byte maps
def _union_demo() -> StructLayout:
    # bytes 0..7 plain, 8..23 a union of a two-pointer struct (a.next/a.prev) and an
    # anonymous struct {pad@8, huge@16}, 24..31 a union of an 8-byte and a 4-byte member.
    return StructLayout("demo", 32, (
        Field("flags", 0, 8, "long"),
        Field("a", 8, 16, "struct list_head", union="union@8"),
        Field("a.next", 8, 8, "void *", union="union@8"),
        Field("a.prev", 16, 8, "void *", union="union@8"),
        Field("pad", 8, 8, "long", union="union@8", path="struct@8"),
        Field("huge", 16, 8, "void *", union="union@8", path="struct@8"),
        Field("wide", 24, 8, "long", union="union@24"),
        Field("narrow", 24, 4, "int", union="union@24"),
    ))


def test_leaf_fields_drop_containers() -> None:
    assert [f.name for f in leaf_fields(_union_demo())] == [
        "flags", "a.next", "a.prev", "pad", "huge", "wide", "narrow"]


def test_byte_map_boxes_stack_aliases_in_lanes() -> None:
    boxes = byte_map_boxes(_union_demo())
    by = {(b.name, b.row): b for b in boxes}
    # one box per (leaf, row it touches): every leaf here lies in one 8-byte row
    assert len(boxes) == 7
    # members of one union that share bytes never share a lane
    for x in boxes:
        for y in boxes:
            if x is not y and x.row == y.row and x.col < y.end_col and y.col < x.end_col:
                assert x.lane != y.lane, (x, y)
    # the two members of a.* line up (same lane in rows 1 and 2), the anonymous struct
    # {pad, huge} is the second alternative of union@8
    assert by[("a.next", 1)].lane == by[("a.prev", 2)].lane == 0
    assert by[("pad", 1)].lane == by[("huge", 2)].lane == 1
    assert by[("a.next", 1)].lanes == 2
    flags = by[("flags", 0)]
    assert flags.lanes == 1 and (flags.col, flags.end_col) == (0, 8)
    assert (by[("narrow", 3)].col, by[("narrow", 3)].end_col) == (0, 4)


def test_field_spanning_rows_is_split() -> None:
    lay = StructLayout("s", 24, (Field("big", 4, 16, "char[16]"), Field("x", 0, 4, "int")))
    parts = [(b.row, b.col, b.end_col, b.first) for b in byte_map_boxes(lay) if b.name == "big"]
    # bytes 4..19: 4..7 in row 0, 8..15 row 1, 16..19 row 2
    assert parts == [(0, 4, 8, True), (1, 0, 8, False), (2, 0, 4, False)]


def test_byte_map_rejects_field_outside_struct() -> None:
    lay = StructLayout("s", 8, (Field("x", 4, 8, "long"),))
    with pytest.raises(ValueError, match="'x'"):
        byte_map_boxes(lay)


@pytest.mark.parametrize("kernel", ptdesc_mod.KERNELS)
def test_ptdesc_byte_map_has_one_box_per_leaf_row(kernel: str) -> None:
    lay = ptdesc_mod.layout("ptdesc", kernel)
    fig = draw_struct_layout(lay)
    drawn = patches(fig, "field:")
    expected = sum(
        (f.end - 1) // 8 - f.offset // 8 + 1 for f in leaf_fields(lay)
    )
    assert len(drawn) == expected
    names = {(p.get_gid() or "").removeprefix("field:") for p in drawn}
    # the aliases of the union at byte 8 are all drawn
    assert {"pt_rcu_head.next", "pt_rcu_head.func", "pt_list.next", "pt_list.prev",
            "pmd_huge_pte"} <= names
    # pt_rcu_head.func and pmd_huge_pte occupy the same bytes (16..23) in different lanes
    boxes = {b.name: b for b in byte_map_boxes(lay)}
    assert (boxes["pt_rcu_head.func"].row, boxes["pt_rcu_head.func"].col) == (
        boxes["pmd_huge_pte"].row, boxes["pmd_huge_pte"].col) == (2, 0)
    assert boxes["pt_rcu_head.func"].lane != boxes["pmd_huge_pte"].lane
    # a legend entry per union group of the struct (v6.14: unions at 8, 32, 40)
    legend_labels = {t.get_text() for t in fig.legends[0].get_texts()}
    assert {f.union for f in lay.fields if f.union} == legend_labels


def test_live_members_highlighted_and_values_shown() -> None:
    lay = ptdesc_mod.layout("ptdesc", "v6.14")
    fig = draw_struct_layout(lay, live={"pt_list"}, values={"pt_list.next": 0xABC0})
    thick = {p.get_gid() for p in patches(fig, "field:") if (p.get_linewidth() or 0) > 2}
    assert thick == {"field:pt_list.next", "field:pt_list.prev"}
    faded = [p for p in patches(fig, "field:") if (p.get_alpha() or 1.0) < 1]
    assert len(faded) == len(patches(fig, "field:")) - 2
    assert "0xabc0" in texts(fig, "value:")["value:pt_list.next"]


def test_values_for_unknown_field_rejected() -> None:
    lay = ptdesc_mod.layout("ptdesc", "v6.14")
    with pytest.raises(ValueError, match="no_such_field"):
        draw_struct_layout(lay, values={"no_such_field": 1})


def test_byte_map_is_deterministic() -> None:
    lay = ptdesc_mod.layout("ptdesc", "v6.18")

    def signature(fig: Figure) -> list[tuple[str, tuple[float, ...]]]:
        return [(p.get_gid() or "", tuple(p.get_bbox().bounds)) for p in patches(fig, "field:")]

    assert signature(draw_struct_layout(lay)) == signature(draw_struct_layout(lay))


def test_comparison_marks_exactly_the_differing_fields() -> None:
    left = ptdesc_mod.layout("ptdesc", "v6.14")
    # move ptl by 4 bytes and drop pt_share_count: two differences
    moved = tuple(dataclasses.replace(f, offset=44) if f.name == "ptl" else f
                  for f in left.fields if f.name != "pt_share_count")
    right = dataclasses.replace(left, fields=moved)
    fig = draw_layout_comparison(left, right)
    assert len(fig.axes) == 2
    hatched_left = {p.get_gid() for p in fig.axes[0].patches if p.get_hatch()}
    hatched_right = {p.get_gid() for p in fig.axes[1].patches if p.get_hatch()}
    assert hatched_left == {"field:ptl", "field:pt_share_count"}
    assert hatched_right == {"field:ptl"}
    diff_text = next(t.get_text() for t in fig.texts if t.get_gid() == "differences")
    assert "ptl: offset (40 vs 44)" in diff_text and "pt_share_count" in diff_text


def test_comparison_of_equal_layouts_says_so() -> None:
    lay = ptdesc_mod.layout("ptdesc", "v6.18")
    fig = draw_layout_comparison(lay, lay)
    assert not [p for ax in fig.axes for p in ax.patches if p.get_hatch()]
    assert "No differences" in next(t.get_text() for t in fig.texts if t.get_gid() == "differences")


# ---------------------------------------------------------------- address bits
@pytest.mark.parametrize("levels", [4, 5])
def test_address_fields_cover_64_bits_without_overlap(levels: int) -> None:
    fields = address_fields(levels)
    assert sum(f.width for f in fields) == 64
    assert [f.level for f in fields][1:-1] == (
        ["pgd", "pud", "pmd", "pte"] if levels == 4 else ["pgd", "p4d", "pud", "pmd", "pte"])
    # each index field is 9 bits (512 entries per table), the offset 12 bits (4 KiB)
    assert all(f.width == 9 for f in fields[1:-1]) and fields[-1].width == 12


def test_address_split_picture_shows_the_indices() -> None:
    fig = draw_address_split(ADDR)
    vals = texts(fig, "bitval:")
    s = split_vaddr(ADDR)
    assert vals["bitval:pgd"] == f"= {s.pgd}"
    assert vals["bitval:pud"] == f"= {s.pud}"
    assert vals["bitval:pmd"] == f"= {s.pmd}"
    assert vals["bitval:pte"] == f"= {s.pte}"
    assert vals["bitval:offset"] == f"= {s.offset:#x}"
    assert len(patches(fig, "bits:")) == 6  # sign, 4 indices, offset


def test_address_split_rejects_non_canonical() -> None:
    with pytest.raises(ValueError, match="0x800000000000"):
        draw_address_split(0x8000_0000_0000)


# ---------------------------------------------------------------- the walk picture
def _mm_with(*addrs: int, levels: int = 4, thp: bool = False) -> Mm:
    mm = Mm(levels=levels)
    mm.mmap(0x7FFC_0000_0000, PUD_SIZE, thp=thp)
    for a in addrs:
        mm.touch(a)
    return mm


def arrows(fig: Figure) -> list[FancyArrowPatch]:
    return [p for ax in fig.axes for p in ax.patches if isinstance(p, FancyArrowPatch)]


def test_walk_picture_4_level() -> None:
    mm = _mm_with(ADDR)
    fig = draw_walk(mm, ADDR)
    s = split_vaddr(ADDR)
    # 4-level: the P4D is folded, so four table pages are visited (PGD, PUD, PMD, PTE)
    assert sorted(gids(fig, "table:")) == ["table:pgd", "table:pmd", "table:pte", "table:pud"]
    # the used index of each table is highlighted and written in it
    idx = texts(fig, "index:")
    assert idx == {"index:pgd": f"[{s.pgd}]", "index:pud": f"[{s.pud}]",
                   "index:pmd": f"[{s.pmd}]", "index:pte": f"[{s.pte}]"}
    assert len(patches(fig, "entry:")) == 4
    # arrows: CR3 -> PGD, then one per entry followed (PGD, PUD, PMD, PTE -> page) = 5
    assert len(arrows(fig)) == 5
    assert gids(fig, "page") == ["page"]
    assert texts(fig, "offset-text")["offset-text"] == f"+{s.offset:#x}"
    # the address bits are drawn above
    assert len(patches(fig, "bits:")) == 6


def test_walk_picture_5_level_has_p4d_column() -> None:
    mm = _mm_with(ADDR, levels=5)
    fig = draw_walk(mm, ADDR)
    assert len(gids(fig, "table:")) == 5
    assert "index:p4d" in texts(fig, "index:")
    assert len(arrows(fig)) == 6  # CR3 + 5 levels


def test_walk_picture_huge_pmd_stops_at_pmd() -> None:
    base = 0x7FFC_0020_0000  # 2 MiB aligned inside a THP VMA: the fault maps a huge PMD
    mm = _mm_with(base, thp=True)
    fig = draw_walk(mm, base + 0x12345)
    assert sorted(gids(fig, "table:")) == ["table:pgd", "table:pmd", "table:pud"]
    assert len(arrows(fig)) == 4  # CR3, PGD, PUD, PMD -> 2 MiB page
    # the offset into a 2 MiB page is the low 21 bits
    assert texts(fig, "offset-text")["offset-text"] == "+0x12345"


def test_walk_picture_not_present() -> None:
    mm = _mm_with(ADDR)
    other = ADDR + PMD_SIZE  # same PMD table, next (empty) PMD entry
    fig = draw_walk(mm, other)
    assert sorted(gids(fig, "table:")) == ["table:pgd", "table:pmd", "table:pud"]
    hatched = [p for p in patches(fig, "entry:") if p.get_hatch()]
    assert [p.get_gid() for p in hatched] == ["entry:pmd"]
    assert len(arrows(fig)) == 3  # CR3 -> PGD -> PUD -> PMD, nothing beyond
    assert gids(fig, "not-present") == ["not-present"]


def test_walk_rows_table() -> None:
    mm = _mm_with(ADDR)
    rows = walk_rows(mm.walk(ADDR))
    s = split_vaddr(ADDR)
    assert [r[0] for r in rows] == ["PGD", "PUD", "PMD", "PTE", "page"]
    assert [int(r[1]) for r in rows[:4]] == [s.pgd, s.pud, s.pmd, s.pte]
    walk = mm.walk(ADDR)
    assert rows[-1][3] == f"physical address {walk.phys:#x}"


def test_walk_picture_deterministic() -> None:
    a, b = _mm_with(ADDR), _mm_with(ADDR)

    def sig(fig: Figure) -> list[tuple[str, str]]:
        return sorted((t.get_gid() or "", t.get_text()) for ax in fig.axes for t in ax.texts)

    assert sig(draw_walk(a, ADDR)) == sig(draw_walk(b, ADDR))


# ---------------------------------------------------------------- the tree picture
def test_tree_counts_tables_and_spans() -> None:
    # Three pages: ADDR, the next page (same PTE table), and one 2 MiB further (a new PTE
    # table under the same PMD table): 1 PUD + 1 PMD + 2 PTE tables.
    mm = _mm_with(ADDR, ADDR + PAGE_SIZE, ADDR + PMD_SIZE)
    nodes = page_table_tree(mm)
    assert [n.level for n in nodes] == ["pgd", "pud", "pmd", "pte", "pte"]
    ptes = [n for n in nodes if n.level == "pte"]
    assert [n.va_start for n in ptes] == [ADDR & ~(PMD_SIZE - 1),
                                          (ADDR + PMD_SIZE) & ~(PMD_SIZE - 1)]
    assert [n.present for n in ptes] == [2, 1]
    assert all(n.va_size == PMD_SIZE for n in ptes)
    pmd = next(n for n in nodes if n.level == "pmd")
    assert {n.parent for n in ptes} == {pmd.pfn}
    # agrees with the model's own table list
    tp = mm.table_pfns()
    for level in ("pgd", "pud", "pmd", "pte"):
        assert sorted(n.pfn for n in nodes if n.level == level) == tp[level]

    fig = draw_mm_tree(mm)
    assert len(gids(fig, "node:pte:")) == 2 and len(gids(fig, "node:pmd:")) == 1
    # edges: PGD-PUD, PUD-PMD, PMD-PTE x2
    edges = [ln for ax in fig.axes for ln in ax.lines if ln.get_gid() == "edge"]
    assert len(edges) == 4
    spans = sorted(t.get_text() for ax in fig.axes for t in ax.texts if t.get_gid() == "span")
    assert spans == sorted(f"{n.va_start:#x}" for n in ptes)
    assert f"VmPTE = {mm.vm_pte_kib} KiB" in fig.texts[0].get_text()


def test_tree_summarises_many_tables() -> None:
    mm = Mm()
    mm.mmap(0x7F00_0000_0000, 40 * PMD_SIZE)
    mm.touch_range(0x7F00_0000_0000, 0x7F00_0000_0000 + 40 * PMD_SIZE, stride=PMD_SIZE)
    fig = draw_mm_tree(mm)
    assert len(gids(fig, "node:pte:")) == 16
    assert texts(fig, "more:")["more:pte"] == "+24 more"


def test_tree_shows_thp_and_deposit() -> None:
    base = 0x7FFC_0020_0000
    mm = _mm_with(base, thp=True)
    nodes = page_table_tree(mm)
    pmd = next(n for n in nodes if n.level == "pmd")
    assert pmd.huge == 1 and not [n for n in nodes if n.level == "pte"]
    fig = draw_mm_tree(mm)
    assert "deposited PTE 1" in fig.texts[0].get_text()
