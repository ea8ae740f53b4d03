"""Pictures of a simulated machine at one step: its page-table tree and one table's ptdesc.

* :func:`machine_tables` / :func:`draw_machine_tables` - the scenario's page tables, read
  from the machine's memory starting at ``m.roots["pgd"]``, plus every table that was
  unhooked during the run (found in the recorded effects ``"pmd[0] of 0x103: 0x104067 →
  0x0"``), each with its state: ``live`` (reachable), ``detached`` (unhooked, still
  allocated), ``batched`` (in an mmu_gather batch), ``queued`` (waiting for an RCU grace
  period, ``m.queued``), ``freed``.  Each CPU's pointer goes to the frame its next step
  touches (or, if that touches none, the last one it touched), and held page-table
  locks are written under their tables.
* :func:`draw_ptdesc_at` - the ``struct ptdesc`` byte map of one frame, values read
  from the machine's memory at this step, the union members in use outlined.

Both only read the machine: table contents through ``PhysMem.contents_view`` (no KASAN
check) and struct page words of freed frames from a *clone* of the memory, so drawing
never adds a report to the machine.

>>> from ptlab.config import Config
>>> from ptlab.sim.scenarios import build
>>> [(t.level, t.status) for t in machine_tables(build("munmap", Config())).tables][:2]
[('pgd', 'live'), ('pud', 'live')]
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from matplotlib.figure import Figure
from matplotlib.patches import FancyArrowPatch, Rectangle

from ptlab.arch.x86.paging import PTE_PFN_MASK, PTRS_PER_PGD, STRUCT_PAGE_SIZE, VMEMMAP_START
from ptlab.mm.ptdesc import Ptdesc
from ptlab.mm.ptdesc import layout as struct_layout
from ptlab.sim.machine import PTDESC_LAYOUT, Machine, describe_op, op_frames
from ptlab.viz import style
from ptlab.viz.layout import draw_struct_layout

LEVELS = ("pgd", "pud", "pmd", "pte")
_CHILD = {"pgd": "pud", "pud": "pmd", "pmd": "pte"}
_CLEARED = re.compile(
    r"^(?P<level>pgd|p4d|pud|pmd)\[(?P<index>\d+)\] of (?P<table>0x[0-9a-f]+): "
    r"(?P<old>0x[0-9a-f]+) → 0x0$"
)
_BATCHED = re.compile(r"queued (in batch|on the page batch)")

#: Fill colour and edge style per table state.
STATUS_STYLE: dict[str, tuple[str, str, str]] = {
    "live": ("#ffffff", "-", "reachable from the PGD"),
    "detached": ("#fde9c9", "--", "unhooked, not yet handed to a freeing path"),
    "batched": ("#f1ce63", "--", "in an mmu_gather batch, waiting for the flush"),
    "queued": (style.RCU_COLOR, "--", "queued for RCU: freed after a grace period"),
    "freed": ("#d9d9d9", ":", "freed: back in the page allocator"),
}


@dataclass(frozen=True)
class TableInfo:
    """One page-table page in the picture."""

    level: str
    pfn: int
    parent: int | None  # the table whose entry pointed (or points) to it
    index: int | None  # that entry's index; None for the PGD and a THP deposit
    status: str
    used: int  # non-empty entries (0 when freed)
    attached: bool  # still pointed to by its parent entry
    deposit: bool = False  # a PTE table deposited in a PMD table's pmd_huge_pte


@dataclass(frozen=True)
class Pointer:
    """Where a lane is in the tree: ``pfn`` is the frame its ``when`` step touches."""

    lane: str
    pfn: int
    when: str  # "next" | "last"
    text: str


@dataclass
class MachineTables:
    tables: list[TableInfo]
    pointers: list[Pointer] = field(default_factory=list)
    locks: dict[int, list[str]] = field(default_factory=dict)  # pfn → lock descriptions

    def by_pfn(self) -> dict[int, TableInfo]:
        return {t.pfn: t for t in self.tables}


def _entry_child(val: int, level: str) -> int | None:
    """pfn of the next-level table an entry of a ``level`` table points to, if any."""
    if not val & 1 or level == "pte":
        return None
    if level == "pmd" and val & 0x80:  # a 2 MiB leaf
        return None
    return (val & PTE_PFN_MASK) >> 12


def _status(m: Machine, pfn: int, reachable: bool, batched: set[int]) -> str:
    if not m.mem.is_allocated(pfn):
        return "freed"
    if m.queued.get(pfn) == "rcu":
        return "queued"
    if pfn in batched:
        return "batched"
    return "live" if reachable else "detached"


def table_status(m: Machine, pfn: int, tables: MachineTables | None = None) -> str:
    """The state of frame ``pfn`` as :func:`machine_tables` names it (pass ``tables``
    when already computed for this step)."""
    for t in (tables or machine_tables(m)).tables:
        if t.pfn == pfn:
            return t.status
    return "freed" if not m.mem.is_allocated(pfn) else "not a page table of this scenario"


def machine_tables(m: Machine) -> MachineTables:
    """The tables, pointers and locks drawn by :func:`draw_machine_tables`."""
    mem = m.mem
    pgd = m.roots.get("pgd")
    if not isinstance(pgd, int):
        raise ValueError(
            f"machine of scenario {m.scenario!r} has no page-table root (roots['pgd'])"
        )
    batched: set[int] = set()
    cleared: list[tuple[str, int, int, int]] = []  # child level, pfn, parent, index
    for ev in m.events:
        if ev.kind == "mark" and _BATCHED.search(ev.op):
            batched.update(ev.frames[:1])
        for eff in ev.effects:
            mt = _CLEARED.match(eff)
            if mt:
                child = _entry_child(int(mt["old"], 16), mt["level"])
                if child is not None and mt["level"] in _CHILD:
                    cleared.append((_CHILD[mt["level"]], child, int(mt["table"], 16),
                                    int(mt["index"])))

    infos: dict[int, TableInfo] = {}

    def visit(level: str, pfn: int, parent: int | None, index: int | None, attached: bool,
              reachable: bool, deposit: bool = False) -> None:
        if pfn in infos:
            return
        alive = mem.is_allocated(pfn)
        arr = mem.contents_view(pfn) if alive else None
        idxs: list[int] = []
        if arr is not None:
            idxs = [int(i) for i in arr.nonzero()[0]]
            if level == "pgd":
                idxs = [i for i in idxs if i < PTRS_PER_PGD // 2]  # the user half
        infos[pfn] = TableInfo(level, pfn, parent, index,
                               _status(m, pfn, reachable, batched), len(idxs), attached,
                               deposit)
        if arr is None or level == "pte":
            return
        for i in idxs:
            child = _entry_child(int(arr[i]), level)
            if child is not None:
                visit(_CHILD[level], child, pfn, i, True, reachable)
        if level == "pmd":
            dep = Ptdesc(mem, pfn, kernel=PTDESC_LAYOUT).get("pmd_huge_pte")  # allocated
            off = dep - VMEMMAP_START
            if dep and off >= 0 and off % STRUCT_PAGE_SIZE == 0:
                visit("pte", off // STRUCT_PAGE_SIZE, pfn, None, True, reachable, deposit=True)

    visit("pgd", pgd, None, None, True, True)
    for level, pfn, parent, index in cleared:
        visit(level, pfn, parent, index, False, False)

    out = MachineTables(list(infos.values()))
    lanes = [(lane, t) for lane, t in sorted(m.threads.items())]
    for lane, t in lanes:
        if t.done:
            continue
        frames = [p for p in op_frames(t.pending) if p in infos] if t.pending else []
        if frames:
            out.pointers.append(Pointer(lane, frames[0], "next", describe_op(t.pending)))
            continue
        for ev in reversed(m.events):
            if ev.lane == lane and ev.kind != "mark":
                hit = [p for p in ev.frames if p in infos]
                if hit:
                    out.pointers.append(Pointer(lane, hit[0], "last", ev.op))
                    break
    for (kind, key), owner in sorted(m.locks.items(), key=lambda kv: str(kv[0])):
        if kind == "ptl" and key in infos:
            out.locks.setdefault(key, []).append(f"ptl held by CPU{owner}")
    return out


_MAX_PER_ROW = 10


def _shown(row: list[TableInfo], wanted: set[int]) -> list[TableInfo]:
    """At most ``_MAX_PER_ROW`` tables of a row: pointed-to or unusual ones first."""
    if len(row) <= _MAX_PER_ROW:
        return row
    first = [t for t in row if t.pfn in wanted or t.status != "live"]
    rest = [t for t in row if t not in first]
    keep = set(id(t) for t in (first + rest)[:_MAX_PER_ROW])
    return [t for t in row if id(t) in keep]


def draw_machine_tables(m: Machine) -> Figure:
    """The page-table tree of the scenario at this step, detached tables and CPU pointers.

    Artists (gids): ``"table:<level>:<pfn>"`` boxes, ``"status:<pfn>"`` texts (the
    state), ``"edge"`` lines (entries present), ``"cleared"`` dashed lines (entries
    cleared during the run), ``"cpu:<lane>"`` boxes and ``"ptr:<lane>"`` arrows,
    ``"lock:<pfn>"`` texts, ``"more:<level>"`` when a row has too many tables.
    """
    mt = machine_tables(m)
    wanted = {p.pfn for p in mt.pointers} | set(mt.locks)
    rows = {lv: [t for t in mt.tables if t.level == lv] for lv in LEVELS}
    height = 4.3
    fig = style.new_figure(height)
    ax = fig.add_axes((0.01, 0.02, 0.98, 0.86))
    row_y = {lv: 4.0 - i * 1.0 for i, lv in enumerate(LEVELS)}
    bw, bh = 1.5, 0.42
    pos: dict[int, tuple[float, float]] = {}
    for lv in LEVELS:
        y = row_y[lv]
        shown = _shown(rows[lv], wanted)
        ax.text(-0.2, y + bh / 2, lv.upper(), ha="right", va="center", fontweight="bold",
                fontsize=style.FONT_LABEL, color=style.LEVEL_COLORS[lv])
        slot = 16.0 / max(len(shown), 1)
        for k, t in enumerate(shown):
            x = k * slot + (slot - bw) / 2 if len(shown) > 1 else 8.0 - bw / 2
            fill, ls, _ = STATUS_STYLE[t.status]
            ax.add_patch(Rectangle((x, y), bw, bh, facecolor=fill,
                                   edgecolor=style.LEVEL_COLORS[lv], linewidth=1.4,
                                   linestyle=ls, hatch="xx" if t.status == "freed" else None,
                                   gid=f"table:{lv}:{t.pfn:#x}"))
            label = f"{t.pfn:#x}" + ("" if t.status == "freed" else f"  {t.used}/512")
            ax.text(x + bw / 2, y + bh * 0.62, label, ha="center", va="center",
                    fontsize=style.FONT_TINY, family=style.FONT_FAMILY_MONO)
            state = t.status + (" (THP deposit)" if t.deposit else "")
            ax.text(x + bw / 2, y + bh * 0.22, state, ha="center", va="center",
                    fontsize=style.FONT_TINY, fontweight="bold" if t.status != "live" else
                    "normal", color=style.TEXT_COLOR, gid=f"status:{t.pfn:#x}")
            if t.pfn in mt.locks:
                ax.text(x + bw + 0.05, y + bh / 2, "\n".join(mt.locks[t.pfn]), ha="left",
                        va="center", fontsize=style.FONT_TINY, color="#7a5c00",
                        gid=f"lock:{t.pfn:#x}")
            pos[t.pfn] = (x + bw / 2, y)
            if t.parent is not None and t.parent in pos:
                px, py = pos[t.parent]
                if t.attached:
                    ax.plot([px, x + bw / 2], [py, y + bh], color="#777777", linewidth=0.9,
                            linestyle=":" if t.deposit else "-", gid="edge")
                else:
                    ax.plot([px, x + bw / 2], [py, y + bh], color=style.ERROR_COLOR,
                            linewidth=0.9, linestyle=(0, (3, 3)), alpha=0.6, gid="cleared")
                    ax.text((px + x + bw / 2) / 2, (py + y + bh) / 2,
                            f"[{t.index}] cleared", fontsize=style.FONT_TINY,
                            color=style.ERROR_COLOR, ha="center", va="center")
        if len(rows[lv]) > len(shown):
            ax.text(16.1, y + bh / 2, f"+{len(rows[lv]) - len(shown)} more", ha="left",
                    va="center", fontsize=style.FONT_SMALL, gid=f"more:{lv}")
    # CPUs below the PTE row (an RCU callback runs as one step, so it never points anywhere)
    lanes = [ln for ln in m.lanes() if ":" not in ln]
    cpu_y = row_y["pte"] - 1.05
    slot = 16.0 / max(len(lanes), 1)
    for k, lane in enumerate(lanes):
        x = k * slot + (slot - 1.2) / 2
        color = style.RCU_COLOR if lane.startswith("RCU") else style.cpu_color(int(lane[3:]))
        ax.add_patch(Rectangle((x, cpu_y), 1.2, 0.36, facecolor=color, alpha=0.85,
                               edgecolor="#333333", gid=f"cpu:{lane}"))
        ax.text(x + 0.6, cpu_y + 0.18, lane, ha="center", va="center", color="white",
                fontsize=style.FONT_SMALL, fontweight="bold")
        ptr = next((p for p in mt.pointers if p.lane == lane), None)
        thread = m.threads.get(lane)
        if ptr is None:
            if thread is None and lane.startswith("CPU"):
                idle = "idle (no kernel code in this scenario)"
            else:
                idle = "finished" if thread is not None and thread.done else "no table"
            ax.text(x + 0.6, cpu_y - 0.05, idle, ha="center", va="top",
                    fontsize=style.FONT_TINY, color="#666666")
            continue
        ax.text(x + 0.6, cpu_y - 0.05, f"{ptr.when}: {ptr.text}"[:48], ha="center", va="top",
                fontsize=style.FONT_TINY, color=color, family=style.FONT_FAMILY_MONO)
        if ptr.pfn in pos:
            tx, ty = pos[ptr.pfn]
            ax.add_patch(FancyArrowPatch((x + 0.6, cpu_y + 0.36), (tx + 0.2 * (k - 0.5), ty),
                                         arrowstyle="-|>", mutation_scale=11, color=color,
                                         linewidth=1.5, linestyle="-" if ptr.when == "next"
                                         else "--", connectionstyle="arc3,rad=0.1",
                                         gid=f"ptr:{lane}"))
    ax.set_xlim(-0.9, 17.6)
    ax.set_ylim(cpu_y - 0.45, row_y["pgd"] + bh + 0.15)
    ax.axis("off")
    counts = ", ".join(f"{k} = {v}" for k, v in sorted(m.counters.items()))
    fig.suptitle(f"{m.scenario or 'run'} — step {len(m.schedule)} — {m.config.label()}\n"
                 f"{counts}", fontsize=style.FONT_LABEL, y=0.99)
    return fig


# --------------------------------------------------------------------------- ptdesc


def live_ptdesc_members(
    m: Machine, pfn: int, tables: MachineTables | None = None
) -> list[str]:
    """The ``struct ptdesc`` union members in use for frame ``pfn`` at this step.

    Decided from the machine's state, not from which bytes happen to be non-zero:
    ``pt_rcu_head`` once a ``call_rcu`` on this ptdesc has been recorded and the frame
    is still queued or its callback is running; ``pmd_huge_pte`` for a PMD table holding
    a THP deposit; ``pt_list`` and ``pt_mm`` for a PGD; ``ptl`` for PTE and PMD tables
    (the split page-table lock).
    """
    info = (tables or machine_tables(m)).by_pfn().get(pfn)
    live: list[str] = []
    rcu_head = any(
        ev.op.startswith(f"call_rcu(ptdesc {pfn:#x},") for ev in m.events
    ) and (m.queued.get(pfn) == "rcu" or (m.rcu.running is not None
                                          and m.rcu.running.head[1].pfn == pfn))
    mem = m.mem if m.mem.is_allocated(pfn) else m.mem.clone()
    pd = Ptdesc(mem, pfn, kernel=PTDESC_LAYOUT)
    if rcu_head:
        live.append("pt_rcu_head")
    elif info is not None and info.level == "pgd" and pd.get("pt_list.next"):
        live.append("pt_list")
    elif info is not None and info.level == "pmd" and pd.get("pmd_huge_pte"):
        live.append("pmd_huge_pte")
    if info is not None and info.level == "pgd" and pd.get("pt_mm"):
        live.append("pt_mm")
    if info is not None and info.level in ("pte", "pmd") and info.status != "freed":
        live.append("ptl")
    return live


def ptdesc_values(m: Machine, pfn: int) -> dict[str, int]:
    """Every leaf member of frame ``pfn``'s ``struct ptdesc`` as the memory holds it now.

    A freed frame is read from a clone of the memory, so no report is added to ``m``.
    """
    if m.mem.generation(pfn) == 0:
        known = ", ".join(f"{t.pfn:#x}" for t in machine_tables(m).tables)
        raise ValueError(
            f"frame {pfn:#x} was never allocated in this machine; pick one of its tables: {known}"
        )
    mem = m.mem if m.mem.is_allocated(pfn) else m.mem.clone()
    pd = Ptdesc(mem, pfn, kernel=PTDESC_LAYOUT)
    names = [f.name for f in struct_layout("ptdesc", PTDESC_LAYOUT)]
    parents = {n.rsplit(".", 1)[0] for n in names if "." in n}
    return {n: pd.get(n) for n in names if n not in parents}


def draw_ptdesc_at(m: Machine, pfn: int, tables: MachineTables | None = None) -> Figure:
    """The ``struct ptdesc`` of frame ``pfn`` at this step, as a byte map with values.

    Live union members (:func:`live_ptdesc_members`) have a thick red edge; the title
    gives the frame's state.  Field boxes have gid ``"field:<name>"`` (see
    :func:`ptlab.viz.layout.draw_byte_map`).
    """
    values = ptdesc_values(m, pfn)
    tables = tables or machine_tables(m)
    live = live_ptdesc_members(m, pfn, tables)
    status = table_status(m, pfn, tables)
    fig = draw_struct_layout(
        struct_layout("ptdesc", PTDESC_LAYOUT), live=live, values=values,
        title=f"struct ptdesc of frame {pfn:#x} — {status}",
    )
    note = ("in use: " + ", ".join(live)) if live else "no union member in use"
    if status == "freed":
        note += " — freed frame: the bytes as the page allocator left them"
    fig.text(0.5, 0.995, note, ha="center", va="top", fontsize=style.FONT_SMALL,
             color=style.ERROR_COLOR if status == "freed" else style.TEXT_COLOR, gid="note")
    return fig
