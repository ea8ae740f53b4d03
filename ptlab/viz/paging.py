"""Page-table pictures: an address cut into index fields, a walk, an address space's tree.

* :func:`draw_address_split` - the 64 bits of a virtual address, grouped into the
  sign extension, one coloured 9-bit index per level and the 12-bit page offset.
* :func:`draw_walk` - CR3 → PGD → (P4D) → PUD → PMD → PTE: each table page drawn as a
  column of its 512 entries (populated entries ticked, the used one highlighted with its
  index and value) with arrows from each used entry to the next table, and the address
  bits above.
* :func:`draw_mm_tree` - how many table pages an ``Mm`` holds per level, which tables
  hang below which entry, which 2 MiB spans have a PTE table, and VmPTE.

All are pure functions of model data that return a ``matplotlib.figure.Figure``; they
only read the model (table contents through ``PhysMem.contents_view``, which is not a
kernel access and leaves no KASAN trace).

>>> [(f.level, f.high, f.low) for f in address_fields(4)][:2]
[('sign', 63, 48), ('pgd', 47, 39)]
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import FancyArrowPatch, Rectangle

from ptlab.arch.x86 import paging
from ptlab.viz import style

if TYPE_CHECKING:
    from ptlab.mm.memory import Mm, Walk


@dataclass(frozen=True)
class BitField:
    """Bits ``high``..``low`` (inclusive) of an address and what they select."""

    level: str  # "sign", "pgd", "p4d", "pud", "pmd", "pte", "offset"
    high: int
    low: int

    @property
    def width(self) -> int:
        return self.high - self.low + 1

    def value(self, addr: int) -> int:
        return (addr >> self.low) & ((1 << self.width) - 1)


def address_fields(levels: int = 4) -> list[BitField]:
    """The bit fields of a virtual address, from bit 63 down (kernel-facts §1.1)."""
    paging.va_bits(levels)  # validates levels
    names = ["pgd", "pud", "pmd", "pte"] if levels == 4 else ["pgd", "p4d", "pud", "pmd", "pte"]
    top = paging.va_bits(levels) - 1
    fields = [BitField("sign", 63, top + 1)]
    for i, name in enumerate(names):
        high = top - 9 * i
        fields.append(BitField(name, high, high - 8))
    fields.append(BitField("offset", paging.PAGE_SHIFT - 1, 0))
    return fields


def _level_label(level: str) -> str:
    return level.upper() if level in ("pgd", "p4d", "pud", "pmd", "pte") else level


def draw_address_bits(ax: Axes, addr: int, levels: int = 4) -> None:
    """Draw the 64 bits of ``addr`` on ``ax`` as coloured fields.

    Each field is a ``Rectangle`` with gid ``"bits:<level>"``; the text under an index
    field (gid ``"bitval:<level>"``) reads ``"= 255"``, under the offset ``"= 0x678"``.
    """
    paging.check_canonical(addr, levels)
    for f in address_fields(levels):
        x0 = 63 - f.high
        color = style.LEVEL_COLORS[f.level] if f.level != "sign" else "#dddddd"
        ax.add_patch(Rectangle((x0, 0), f.width, 1, facecolor=color, edgecolor="#333333",
                               linewidth=0.8, alpha=0.85, gid=f"bits:{f.level}"))
        digits = " ".join(str((addr >> bit) & 1) for bit in range(f.high, f.low - 1, -1))
        ax.text(x0 + f.width / 2, 0.5, digits, ha="center", va="center",
                fontsize=style.FONT_TINY, family=style.FONT_FAMILY_MONO,
                color=style.TEXT_COLOR, gid=f"digits:{f.level}")
        label = (f"sign ext. [{f.high}:{f.low}]" if f.level == "sign"
                 else f"{_level_label(f.level)} [{f.high}:{f.low}]")
        ax.text(x0 + f.width / 2, 1.25, label, ha="center", va="bottom",
                fontsize=style.FONT_SMALL, color=style.TEXT_COLOR)
        v = f.value(addr)
        if f.level == "offset":
            vtext = f"= {v:#x}"
        elif f.level == "sign":
            vtext = "all 1s" if v else "all 0s"
        else:
            vtext = f"= {v}"
        ax.text(x0 + f.width / 2, -0.25, vtext, ha="center", va="top",
                fontsize=style.FONT_LABEL, fontweight="bold",
                color=style.TEXT_COLOR, gid=f"bitval:{f.level}")
    ax.set_xlim(-0.5, 64.5)
    ax.set_ylim(-1.4, 2.2)
    ax.axis("off")


def draw_address_split(addr: int, levels: int = 4) -> Figure:
    """A figure of ``addr`` split into sign extension, per-level indices and offset.

    >>> fig = draw_address_split(0x7ffc12345678)
    >>> sorted(t.get_text() for t in fig.axes[0].texts if (t.get_gid() or "").startswith("bitval:"))
    ['= 0x678', '= 145', '= 255', '= 325', '= 496', 'all 0s']
    """
    fig = style.new_figure(1.7)
    ax = fig.add_axes((0.02, 0.05, 0.96, 0.75))
    draw_address_bits(ax, addr, levels)
    fig.suptitle(f"{addr:#x} with {levels}-level paging", fontsize=style.FONT_TITLE,
                 family=style.FONT_FAMILY_MONO)
    return fig


# ------------------------------------------------------------------------- the walk
_COL_H = 10.0  # a table column's height in data units (512 entries)
_COL_W = 1.25
_COL_GAP = 0.75


def _entry_y(index: int, n: int = 512) -> float:
    """Centre of entry ``index`` of ``n`` in a column whose top is at ``_COL_H``."""
    return _COL_H - (index + 0.5) * _COL_H / n


def walk_rows(walk: Walk) -> list[list[str]]:
    """A text table of a walk: one row per level (level, index, table pfn, entry), then
    the page reached (or ``not present``).

    >>> from ptlab.mm.memory import Mm
    >>> mm = Mm(); _ = mm.mmap(0x7ffc12345000, 0x1000); _ = mm.touch(0x7ffc12345678)
    >>> [r[:2] for r in walk_rows(mm.walk(0x7ffc12345678))]
    [['PGD', '255'], ['PUD', '496'], ['PMD', '145'], ['PTE', '325'], ['page', '+0x678']]
    """
    rows = [[s.level.upper(), str(s.index), f"{s.table_pfn:#x}", paging.format_entry(s.entry)]
            for s in walk.steps]
    if walk.state == "mapped" and walk.phys is not None:
        rows.append(["page", f"+{walk.offset:#x}", f"{walk.phys >> paging.PAGE_SHIFT:#x}",
                     f"physical address {walk.phys:#x}"])
    elif walk.state == "huge" and walk.phys is not None:
        off = walk.addr & (paging.PMD_SIZE - 1)
        rows.append(["2 MiB page", f"+{off:#x}", f"{walk.steps[-1].next_pfn:#x}",
                     f"physical address {walk.phys:#x}"])
    else:
        rows.append(["not present", "", "", f"the {walk.steps[-1].level.upper()} entry is empty"])
    return rows


def _draw_table_column(
    ax: Axes, x: float, level: str, pfn: int, index: int, entry: int,
    contents: npt.NDArray[np.uint64] | None, present: bool,
) -> None:
    color = style.LEVEL_COLORS[level]
    ax.add_patch(Rectangle((x, 0), _COL_W, _COL_H, facecolor=color, alpha=0.18,
                           edgecolor=color, linewidth=1.2, gid=f"table:{level}"))
    if contents is not None:
        for i in np.nonzero(contents)[0]:
            if int(i) != index:
                y = _entry_y(int(i))
                ax.plot([x + 0.1, x + _COL_W - 0.1], [y, y], color=color, linewidth=0.8,
                        alpha=0.8, gid=f"used:{level}")
    h = 0.55
    y = _entry_y(index)
    ax.add_patch(Rectangle(
        (x, y - h / 2), _COL_W, h, facecolor=color if present else "#ffffff",
        edgecolor=style.HIGHLIGHT_EDGE, linewidth=2.0, hatch=None if present else "xx",
        gid=f"entry:{level}",
    ))
    ax.text(x + _COL_W / 2, y, f"[{index}]", ha="center", va="center",
            fontsize=style.FONT_LABEL, fontweight="bold",
            color="white" if present else style.ERROR_COLOR, gid=f"index:{level}")
    ax.text(x + _COL_W / 2, _COL_H + 0.35, f"{level.upper()} table\npfn {pfn:#x}",
            ha="center", va="bottom", fontsize=style.FONT_SMALL, color=style.TEXT_COLOR)
    ax.text(x + 0.02, _COL_H - 0.1, "0", ha="left", va="top", fontsize=style.FONT_TINY,
            color="#666666")
    ax.text(x + 0.02, 0.1, "511", ha="left", va="bottom", fontsize=style.FONT_TINY,
            color="#666666")
    if present:
        flags = " ".join(paging.decode_entry(entry).names())
        value = f"{entry:#018x}\n{flags}"
    else:
        value = "empty entry\n(not present)"
    ax.text(x + _COL_W / 2, -0.35, value, ha="center", va="top", fontsize=style.FONT_TINY,
            family=style.FONT_FAMILY_MONO, color=style.TEXT_COLOR if present else
            style.ERROR_COLOR, gid=f"entryval:{level}")


def _arrow(ax: Axes, start: tuple[float, float], end: tuple[float, float], n: int,
           color: str) -> None:
    ax.add_patch(FancyArrowPatch(start, end, arrowstyle="-|>", mutation_scale=12,
                                 color=color, linewidth=1.4, gid=f"arrow:{n}",
                                 connectionstyle="arc3,rad=0.0"))


def draw_walk(mm: Mm, addr: int) -> Figure:
    """The walk of ``addr`` in ``mm`` (see :meth:`ptlab.mm.memory.Mm.walk`), drawn.

    Artists (gids): one ``"table:<level>"`` column per table visited, ``"entry:<level>"``
    for the used entry and ``"index:<level>"`` for its index text, ``"arrow:<n>"`` for
    CR3 → PGD and every entry → next frame, ``"page"`` for the data page reached; the
    address bits are drawn above (``"bits:<level>"``).
    """
    walk = mm.walk(addr)
    fig = style.new_figure(5.4)
    ax_bits = fig.add_axes((0.02, 0.80, 0.96, 0.16))
    draw_address_bits(ax_bits, addr, mm.levels)
    ax = fig.add_axes((0.01, 0.02, 0.98, 0.68))

    # CR3 register
    ax.add_patch(Rectangle((0, _COL_H - 1.2), 1.0, 1.2, facecolor=style.LEVEL_COLORS["cr3"],
                           alpha=0.85, edgecolor="#333333", gid="cr3"))
    ax.text(0.5, _COL_H - 0.6, f"CR3\n{mm.pgd:#x}", ha="center", va="center",
            fontsize=style.FONT_SMALL, color="white")
    x = 1.0 + _COL_GAP
    prev: tuple[float, float] = (1.0, _COL_H - 0.6)
    narrows = 0
    for step in walk.steps:
        present = step.next_pfn is not None
        _draw_table_column(ax, x, step.level, step.table_pfn, step.index, step.entry,
                           mm.mem.contents_view(step.table_pfn), present)
        _arrow(ax, prev, (x, _COL_H), narrows, style.TEXT_COLOR)
        narrows += 1
        prev = (x + _COL_W, _entry_y(step.index))
        x += _COL_W + _COL_GAP
    if mm.levels == 4:
        ax.text(1.0 + _COL_GAP + _COL_W / 2, -2.0, "P4D folded:\nthe PGD entry is the P4D entry",
                ha="center", va="top", fontsize=style.FONT_TINY, color="#666666", style="italic")

    # the page reached
    if walk.state in ("mapped", "huge"):
        huge = walk.state == "huge"
        size = paging.PMD_SIZE if huge else paging.PAGE_SIZE
        off = addr & (size - 1)
        ax.add_patch(Rectangle((x, 0), _COL_W, _COL_H, facecolor=style.LEVEL_COLORS["page"],
                               alpha=0.4, edgecolor="#666666", gid="page"))
        pfn = walk.steps[-1].next_pfn
        ax.text(x + _COL_W / 2, _COL_H + 0.35,
                f"{'2 MiB page' if huge else 'data page'}\npfn {pfn:#x}",
                ha="center", va="bottom", fontsize=style.FONT_SMALL)
        y = _COL_H - (off / size) * _COL_H
        ax.plot([x, x + _COL_W], [y, y], color=style.HIGHLIGHT_EDGE, linewidth=2.0,
                gid="offset")
        ax.text(x + _COL_W / 2, y - 0.2, f"+{off:#x}", ha="center", va="top",
                fontsize=style.FONT_LABEL, fontweight="bold", color=style.HIGHLIGHT_EDGE,
                gid="offset-text")
        _arrow(ax, prev, (x, _COL_H), narrows, style.TEXT_COLOR)
        narrows += 1
        if walk.phys is not None:
            ax.text(x + _COL_W / 2, -0.35, f"phys\n{walk.phys:#x}", ha="center", va="top",
                    fontsize=style.FONT_TINY, family=style.FONT_FAMILY_MONO)
        x += _COL_W
    else:
        ax.text(x, _COL_H / 2, "walk stops:\nnot present\n(page fault)", ha="left",
                va="center", fontsize=style.FONT_LABEL, color=style.ERROR_COLOR,
                gid="not-present")
        x += _COL_W + 0.5
    ax.set_xlim(-0.1, max(x, 5 * (_COL_W + _COL_GAP) + 2.6) + 0.1)
    ax.set_ylim(-3.0, _COL_H + 1.6)
    ax.axis("off")
    state = {"mapped": "mapped", "huge": "mapped by a 2 MiB huge PMD",
             "not-present": "not mapped"}[walk.state]
    fig.suptitle(f"walk of {addr:#x} ({mm.levels}-level paging): {state}",
                 fontsize=style.FONT_TITLE, family=style.FONT_FAMILY_MONO)
    return fig


# ------------------------------------------------------------------------- the tree
@dataclass(frozen=True)
class TableNode:
    """One page-table page of an address space.

    ``va_start``/``va_size``: the virtual range its entries cover; ``parent``: pfn of the
    table whose entry ``parent_index`` points to it (``None`` for the PGD); ``present``:
    number of non-empty entries; ``huge``: entries that are 2 MiB leaves (PMD tables).
    """

    level: str
    pfn: int
    va_start: int
    va_size: int
    parent: int | None
    parent_index: int | None
    present: int
    huge: int = 0


_SHIFTS = {"pgd4": paging.PGDIR_SHIFT_4, "pgd5": paging.PGDIR_SHIFT_5,
           "p4d": paging.P4D_SHIFT, "pud": paging.PUD_SHIFT, "pmd": paging.PMD_SHIFT,
           "pte": paging.PAGE_SHIFT}


def page_table_tree(mm: Mm) -> list[TableNode]:
    """Every page-table page of ``mm``'s user half, top level first, by address.

    Read from the tables themselves (entries with the present bit lead to the next
    level; PSE entries in a PMD table are huge leaves).  THP-deposited PTE tables are not
    in the tree (nothing points at them); ``mm.table_pfns()["deposited"]`` lists them.

    >>> from ptlab.mm.memory import Mm
    >>> mm = Mm(); _ = mm.mmap(0x7ffc12345000, 0x1000); _ = mm.touch(0x7ffc12345000)
    >>> [(n.level, hex(n.va_start)) for n in page_table_tree(mm)][1:]
    [('pud', '0x7f8000000000'), ('pmd', '0x7ffc00000000'), ('pte', '0x7ffc12200000')]
    """
    names = ["pgd", "pud", "pmd", "pte"] if mm.levels == 4 else ["pgd", "p4d", "pud", "pmd", "pte"]
    shifts = [_SHIFTS["pgd4" if mm.levels == 4 else "pgd5"]] + [_SHIFTS[n] for n in names[1:]]
    nodes: list[TableNode] = []
    frontier: list[tuple[int, int, int | None, int | None]] = [(mm.pgd, 0, None, None)]
    for depth, level in enumerate(names):
        span = 1 << (shifts[depth] + 9)
        nxt: list[tuple[int, int, int | None, int | None]] = []
        for pfn, base, parent, pidx in frontier:
            arr = mm.mem.contents_view(pfn)
            idxs = [] if arr is None else [int(i) for i in np.nonzero(arr)[0]]
            if level == "pgd":
                idxs = [i for i in idxs if i < paging.PTRS_PER_PGD // 2]  # user half
            huge = 0
            for i in idxs:
                e = int(arr[i]) if arr is not None else 0
                if not paging.pte_present(e) or level == "pte":
                    continue
                if level == "pmd" and paging.pmd_leaf(e):
                    huge += 1
                    continue
                nxt.append((paging.entry_pfn(e), base + (i << shifts[depth]), pfn, i))
            nodes.append(TableNode(level, pfn, base, span, parent, pidx, len(idxs), huge))
        frontier = sorted(nxt, key=lambda t: t[1])
    return nodes


_MAX_BOXES = 16


def draw_mm_tree(mm: Mm, *, title: str | None = None) -> Figure:
    """The page-table tree of ``mm``: one row per level, one box per table page.

    Each box (gid ``"node:<level>:<pfn>"``) is filled in proportion to its used entries;
    lines (gid ``"edge"``) join a table to the tables its entries point to.  Under each
    PTE table the 2 MiB span it maps is written; past 16 tables in a row the rest are
    summarised (``"+N more"``).  The title gives VmPTE and the count per level.
    """
    nodes = page_table_tree(mm)
    names = ["pgd", "pud", "pmd", "pte"] if mm.levels == 4 else ["pgd", "p4d", "pud", "pmd", "pte"]
    deposited = len(mm.table_pfns().get("deposited", []))
    fig = style.new_figure(1.4 + 0.95 * len(names) + 0.6)
    ax = fig.add_axes((0.1, 0.02, 0.88, 0.86))
    pos: dict[int, tuple[float, float]] = {}
    row_h = 1.0
    box_h = 0.45
    for r, level in enumerate(names):
        y = (len(names) - 1 - r) * row_h * 1.4
        row = [n for n in nodes if n.level == level]
        shown = row[:_MAX_BOXES]
        ax.text(-0.3, y + box_h / 2, f"{level.upper()} ×{len(row)}", ha="right", va="center",
                fontsize=style.FONT_LABEL, color=style.LEVEL_COLORS[level], fontweight="bold")
        width = 16.0 / max(len(shown), 1)
        bw = min(width * 0.8, 2.2)
        for k, n in enumerate(shown):
            x = k * width + (width - bw) / 2
            color = style.LEVEL_COLORS[level]
            ax.add_patch(Rectangle((x, y), bw, box_h, facecolor="white", edgecolor=color,
                                   linewidth=1.2, gid=f"node:{level}:{n.pfn:#x}"))
            frac = n.present / paging.PTRS_PER_PTE
            ax.add_patch(Rectangle((x, y), bw * frac, box_h, facecolor=color, alpha=0.7,
                                   edgecolor="none", gid=f"fill:{level}"))
            ax.text(x + bw / 2, y + box_h / 2, f"{n.pfn:#x}", ha="center", va="center",
                    fontsize=style.FONT_TINY, family=style.FONT_FAMILY_MONO)
            pos[n.pfn] = (x + bw / 2, y)
            if n.parent is not None and n.parent in pos:
                px, py = pos[n.parent]
                ax.plot([px, x + bw / 2], [py, y + box_h], color="#888888", linewidth=0.8,
                        gid="edge")
            if level == "pte":
                ax.text(x + bw / 2, y - 0.08, f"{n.va_start:#x}", ha="center", va="top",
                        rotation=90 if len(shown) > 4 else 0, fontsize=style.FONT_TINY,
                        family=style.FONT_FAMILY_MONO, gid="span")
            if n.huge:
                ax.text(x + bw / 2, y - 0.08, f"{n.huge} × 2 MiB THP", ha="center", va="top",
                        fontsize=style.FONT_TINY, color=style.LEVEL_COLORS["pmd"])
        if len(row) > len(shown):
            ax.text(16.1, y + box_h / 2, f"+{len(row) - len(shown)} more", ha="left",
                    va="center", fontsize=style.FONT_SMALL, gid=f"more:{level}")
    per_level = ", ".join(f"{lv.upper()} {sum(1 for n in nodes if n.level == lv)}"
                          for lv in names)
    if deposited:
        per_level += f", deposited PTE {deposited}"
    kib = mm.vm_pte_kib
    fig.suptitle(title or f"VmPTE = {kib} KiB (= {kib // 4} table pages of 4 KiB)    "
                 f"tables: {per_level}", fontsize=style.FONT_LABEL + 1)
    ax.set_xlim(-0.2, 17.5)
    ax.set_ylim(-1.9, (len(names) - 1) * row_h * 1.4 + box_h + 0.1)
    ax.axis("off")
    ax.text(8, -1.9, "PTE tables are labelled with the 2 MiB span they map; bars show "
            "how many of 512 entries are used", ha="center", va="bottom",
            fontsize=style.FONT_TINY, color="#666666")
    return fig
