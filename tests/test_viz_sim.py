"""Pictures of the simulator (timeline, call tree, tables, ptdesc, matrix, pending memory).

Runs are driven by *conditions*, not by step counts copied from a trace: "CPU0 steps
until it is inside rcu_read_lock() and about to take the PTE lock", "CPU1 runs until it
has finished".  Expected facts come from kernel-facts:

* §5.2: ``pte_offset_map_lock()`` holds ``rcu_read_lock()`` while it takes the PTE lock;
* §5.3: ``rcu_read_lock()`` leaves interrupts on, so an IPI is taken inside the reader's
  section; a grace period cannot end while a CPU is inside one;
* §4.5: before v6.14 native x86 freed a page table right after the TLB-flush IPI
  (``tlb_remove_page``); §4.3: v6.14 with PT_RECLAIM queues the single table with
  ``call_rcu(&ptdesc->pt_rcu_head, ...)``; §4.2: a batch is one extra page holding table
  pointers, handed to ``call_rcu`` as a whole.
"""

from __future__ import annotations

import doctest
from collections.abc import Callable
from types import ModuleType

import pytest
from matplotlib.collections import PolyCollection
from matplotlib.colors import to_hex
from matplotlib.figure import Figure

import ptlab.viz.callchain
import ptlab.viz.machine
import ptlab.viz.matrix
import ptlab.viz.timeline
from ptlab.config import PARAVIRT_ENVS, Config
from ptlab.sim.machine import Machine, run_to_end, symbol_address
from ptlab.sim.matrix import safety_matrix
from ptlab.sim.ops import LockAcquire, PreemptDisable
from ptlab.sim.paths import free_path
from ptlab.sim.scenarios import BASE, build
from ptlab.viz.callchain import call_tree, describe_configs, draw_free_path, leaf_text
from ptlab.viz.machine import (
    draw_machine_tables,
    draw_ptdesc_at,
    live_ptdesc_members,
    machine_tables,
    ptdesc_values,
)
from ptlab.viz.matrix import CATEGORY_COLORS, cell_category, draw_safety_matrix
from ptlab.viz.timeline import draw_pending_memory, draw_timeline, pending_memory, timeline

RACE = "reclaim-vs-pte-offset-map-lock"
SEMI_RCU = Config(kernel="v6.13", paravirt="native", batch="fails")
PATCHED = Config(kernel="v6.14", paravirt="native", batch="fails")


# ---------------------------------------------------------------- helpers
def gids(fig: Figure, prefix: str) -> list[str]:
    out: list[str] = []
    for ax in fig.axes:
        for a in [*ax.patches, *ax.lines, *ax.texts, *ax.collections]:
            g = a.get_gid() or ""
            if g.startswith(prefix):
                out.append(g)
    out += [t.get_gid() or "" for t in fig.texts if (t.get_gid() or "").startswith(prefix)]
    return out


def collection(fig: Figure, gid: str) -> PolyCollection:
    found = [c for ax in fig.axes for c in ax.collections if c.get_gid() == gid]
    assert len(found) == 1, f"expected one collection {gid!r}, found {len(found)}"
    c = found[0]
    assert isinstance(c, PolyCollection)
    return c


def step_until(m: Machine, lane: str, done: Callable[[Machine], bool], limit: int = 200) -> None:
    for _ in range(limit):
        if done(m):
            return
        m.step(lane)
    raise AssertionError(f"{lane} did not reach the condition in {limit} steps")


def reader_at_ptl(m: Machine) -> bool:
    """CPU0 is inside rcu_read_lock() and its next step takes the PTE lock (§5.2)."""
    t = m.threads["CPU0"]
    # spin_lock = preempt_disable + the acquire, which ptlab runs as one step
    return (m.cpus[0].rcu_nesting > 0 and isinstance(t.pending, LockAcquire | PreemptDisable)
            and "spin_lock" in t.stack())


def reclaim_runs(m: Machine, *, rcu: bool) -> None:
    """CPU1 (PT reclaim) runs to its end; CPU0 only takes IPIs; RCU may advance."""
    prefer = ["CPU1", "CPU0:irq"] + (["RCU:gp", "RCU:cb"] if rcu else [])
    for _ in range(500):
        lanes = [ln for ln in prefer if m.why_not(ln) is None]
        if not lanes:
            return
        m.step(lanes[0])
    raise AssertionError("reclaim did not finish")


def pte_table(m: Machine) -> int:
    mm = m.roots["mm"]
    return int(next(s.table_pfn for s in mm.walk(BASE).steps if s.level == "pte"))


def race(config: Config, *, rcu: bool) -> tuple[Machine, int]:
    """The race of §7: the reader is at spin_lock(ptl), then reclaim runs; returns the
    machine and the PTE table's pfn (found by walking the address before the run)."""
    m = build(RACE, config)
    table = pte_table(m)
    step_until(m, "CPU0", reader_at_ptl)
    reclaim_runs(m, rcu=rcu)
    return m, table


# ---------------------------------------------------------------- timeline
def test_timeline_of_the_v6_13_use_after_free() -> None:
    m, table = race(SEMI_RCU, rcu=False)
    m.step("CPU0")  # spin_lock() on the freed table's ptl
    tl = timeline(m)
    reader = [s for s in tl.spans if s.row == "CPU0" and s.kind == "rcu-read"]
    assert len(reader) == 1 and reader[0].end is None  # still inside rcu_read_lock()
    ipis = [ln for ln in tl.links if ln.kind == "ipi"]
    assert [(ln.src_row, ln.dst_row) for ln in ipis] == [("CPU1", "CPU0")]
    assert ipis[0].label == "flush_tlb_func"
    # §5.3: the IPI was taken *inside* the reader's RCU section
    assert reader[0].start < ipis[0].dst_seq
    free = [p for p in tl.points if p.kind == "free" and f"{table:#x}" in p.label]
    assert len(free) == 1 and free[0].row == "CPU1" and free[0].seq > ipis[0].dst_seq
    reports = [p for p in tl.points if p.kind == "report"]
    assert reports and reports[0].row == "CPU0" and reports[0].seq > free[0].seq
    assert "use-after-free" in reports[0].label
    # §4.5: no RCU on this path
    assert not [p for p in tl.points if p.kind in ("call_rcu", "gp-start", "callback")]
    assert not [s for s in tl.spans if s.kind == "gp"]

    fig = draw_timeline(m)
    assert len(collection(fig, "spans:rcu-read").get_paths()) == len(
        [s for s in tl.spans if s.kind == "rcu-read"])
    assert len(gids(fig, "link:ipi")) == 1
    report_line = [ln for ax in fig.axes for ln in ax.lines if ln.get_gid() == "points:report"]
    assert len(report_line) == 1 and len(report_line[0].get_xdata()) == len(reports)
    assert "report" in fig.axes[0].get_title()


def test_timeline_of_v6_14_grace_period_waits_for_the_reader() -> None:
    m, table = race(PATCHED, rcu=True)
    tl = timeline(m)
    calls = [p for p in tl.points if p.kind == "call_rcu"]
    assert len(calls) == 1 and "ptdesc" in calls[0].label and calls[0].row == "CPU1"
    gp = [s for s in tl.spans if s.kind == "gp"]
    # the grace period started but cannot end: CPU0 is still a reader (§5.3)
    assert len(gp) == 1 and gp[0].end is None
    assert m.why_not("RCU:gp") is not None and "CPU0" in (m.why_not("RCU:gp") or "")
    assert not [p for p in tl.points if p.kind == "free" and f"{table:#x}" in p.label]
    run_to_end(m, prefer=["CPU0", "RCU:gp", "RCU:cb"])
    tl = timeline(m)
    assert not m.reports()
    gp_span = next(s for s in tl.spans if s.kind == "gp")
    reader_end = next(s.end for s in tl.spans if s.row == "CPU0" and s.kind == "rcu-read")
    assert gp_span.end is not None and reader_end is not None and gp_span.end > reader_end
    links = [ln for ln in tl.links if ln.kind == "rcu"]
    assert len(links) == 1 and links[0].src_row == "CPU1" and links[0].dst_row == "RCU"
    assert links[0].dst_seq is not None and links[0].dst_seq > gp_span.end
    fig = draw_timeline(m, window=20)
    assert gids(fig, "spans:gp") and len(gids(fig, "link:rcu")) <= 1
    assert fig.axes[0].get_xlim()[0] == len(m.schedule) - 20


def test_timeline_shows_an_ipi_still_pending() -> None:
    # GUP-fast disables interrupts (§5.1): the flush IPI stays pending until it is done.
    m = build("reclaim-vs-gup-fast", SEMI_RCU)
    step_until(m, "CPU0", lambda mm: not mm.cpus[0].irqs_on)
    step_until(m, "CPU1", lambda mm: mm.why_not("CPU1") is not None)
    assert "waits for CPU0" in (m.why_not("CPU1") or "")
    tl = timeline(m)
    assert [(ln.kind, ln.dst_row) for ln in tl.links] == [("ipi-pending", "CPU0")]
    assert [s.end for s in tl.spans if s.kind == "irq-off"] == [None]
    assert [s.end for s in tl.spans if s.kind == "ipi-wait"] == [None]
    assert len(gids(draw_timeline(m), "link:ipi-pending")) == 1


def test_timeline_rejects_bad_window() -> None:
    with pytest.raises(ValueError, match="window"):
        draw_timeline(build(RACE, PATCHED), window=0)


# ---------------------------------------------------------------- pending memory
def test_pending_memory_single_table_and_batch() -> None:
    page = 4096
    single = pending_memory(run_to_end(build(RACE, PATCHED)))
    assert max(single.single) == page and max(single.batch) == 0  # one pt_rcu_head
    assert single.single[-1] == 0  # freed after the grace period
    ok = pending_memory(run_to_end(build(RACE, PATCHED.replace(batch="ok"))))
    assert max(ok.batch) == 2 * page and max(ok.single) == 0  # the table + the batch page
    # munmap frees 3 PTE + 1 PMD + 1 PUD table (scenario summary); with the batch page
    # they wait together (6 pages); without, each takes the slow path alone (5 pages)
    mb = run_to_end(build("munmap", PATCHED.replace(batch="ok")))
    mf = run_to_end(build("munmap", PATCHED))
    assert pending_memory(mb).peak == 6 * page
    assert pending_memory(mf).peak == 5 * page and max(pending_memory(mf).batch) == 0
    fig = draw_pending_memory([mb, mf])
    assert len(fig.axes) == 2
    assert gids(fig, "pending:batch") and gids(fig, "pending:single")
    assert len(gids(fig, "gp-end")) == len(pending_memory(mb).gp_ends) + len(
        pending_memory(mf).gp_ends)
    with pytest.raises(ValueError, match="at least one"):
        draw_pending_memory([])


# ---------------------------------------------------------------- call tree
def names_in(fp_steps: list[tuple[str, ...]]) -> set[str]:
    return {name for stack in fp_steps for name in stack}


def taken_texts(fig: Figure) -> set[str]:
    out: set[str] = set()
    for t in fig.axes[0].texts:
        if t.get_gid() == "taken":
            text = t.get_text().split("] ", 1)[-1]
            out.update(x.strip() for x in text.removeprefix("⇒ ").split(" → "))
    return out


def test_call_tree_v6_13_slow_path_is_ipi_and_immediate_free() -> None:
    cfg = Config(kernel="v6.13", paravirt="xen-pv", batch="fails")
    tree = call_tree(cfg)
    node = tree.find("free_pte", "pte_free_tlb", "__pte_free_tlb", "___pte_free_tlb",
                     "paravirt_tlb_remove_table", "tlb_remove_table", "tlb_remove_table_one")
    assert node.taken
    assert "tlb_remove_table_sync_one" in node.children
    assert node.children["tlb_remove_table_sync_one"].taken
    # the highlighted path is exactly what free_path recorded for this config: its
    # stacks' functions plus the step executed at each leaf
    fp = free_path(cfg)
    expected = names_in([s.stack for s in fp.steps])
    leaves = {leaf_text(s.text, fp.table) for s in fp.steps}
    fig = draw_free_path(cfg)
    assert taken_texts(fig) == expected | leaves
    assert gids(fig, "other") and gids(fig, "edges:taken") and gids(fig, "edges:other")
    assert "immediately after an IPI" in next(t.get_text() for t in fig.texts
                                              if t.get_gid() == "summary")


def test_call_tree_v6_14_slow_path_is_call_rcu() -> None:
    tree = call_tree(Config(kernel="v6.14", paravirt="xen-pv", batch="fails"))
    one = tree.find("free_pte", "pte_free_tlb", "__pte_free_tlb", "___pte_free_tlb",
                    "paravirt_tlb_remove_table", "tlb_remove_table", "tlb_remove_table_one")
    inner = one.children["__tlb_remove_table_one"]
    assert inner.taken and inner.children["call_rcu"].taken
    # v6.14 without PT_RECLAIM keeps the IPI + immediate free (§4.3): greyed, not taken
    sync = inner.children.get("tlb_remove_table_sync_one")
    assert sync is not None and not sync.taken
    assert "tlb_remove_table_sync_one" not in one.children
    # 6 environments × batch ok/fails × PT_RECLAIM on/off
    assert len(tree.configs) == len(PARAVIRT_ENVS) * 2 * 2
    assert tree.find("rcu_do_batch").taken


def test_call_tree_v6_13_native_uses_tlb_remove_page() -> None:
    tree = call_tree(Config(kernel="v6.13", paravirt="native", batch="ok"))
    base = ("free_pte", "pte_free_tlb", "__pte_free_tlb", "___pte_free_tlb",
            "paravirt_tlb_remove_table")
    assert tree.find(*base, "native_tlb_remove_table", "tlb_remove_page").taken
    assert not tree.find(*base, "tlb_remove_table").taken  # Xen/Hyper-V/KVM hook: grey
    assert not tree.find("rcu_do_batch").taken  # no RCU at all on this path (§4.5)


def test_describe_configs_and_leaf_text() -> None:
    cs = [Config(paravirt=e, batch=b) for e in ("native", "xen-pv") for b in ("ok", "fails")]
    assert describe_configs({1, 3}, cs) == "batch=fails"
    assert describe_configs({0, 1}, cs) == "paravirt=native"
    assert describe_configs({0, 1, 2, 3}, cs) == "all configs"
    assert leaf_text("table 0x104 queued in batch 0x105 (1/509)", 0x104) == \
        "table T queued in batch …"
    with pytest.raises(ValueError, match="'pgd'"):
        call_tree(Config(), "pgd")
    with pytest.raises(ValueError, match="nope"):
        call_tree(Config()).find("free_pte", "nope")


# ---------------------------------------------------------------- tables
def test_tables_follow_the_reclaimed_table() -> None:
    m = build(RACE, PATCHED)
    table = pte_table(m)
    before = machine_tables(m).by_pfn()
    assert [t.level for t in machine_tables(m).tables] == ["pgd", "pud", "pmd", "pte"]
    assert before[table].status == "live" and before[table].used == 2  # two pages touched
    step_until(m, "CPU0", reader_at_ptl)
    # CPU0 has just read the PMD entry that points to the table (its next step, a
    # fused preempt_disable + acquire, takes that table's lock)
    assert machine_tables(m).pointers[0].pfn == before[table].parent
    # CPU1 zaps under the PTE lock
    step_until(m, "CPU1", lambda mm: ("ptl", table) in mm.locks)
    assert machine_tables(m).locks == {table: ["ptl held by CPU1"]}
    reclaim_runs(m, rcu=False)  # reclaim done; no grace period yet
    mt = machine_tables(m).by_pfn()
    assert mt[table].status == "queued" and not mt[table].attached
    assert mt[table].parent == before[table].parent
    fig = draw_machine_tables(m)
    status = {t.get_gid(): t.get_text() for t in fig.axes[0].texts
              if (t.get_gid() or "").startswith("status:")}
    assert status[f"status:{table:#x}"] == "queued"
    assert len(gids(fig, "cleared")) == 1 and len(gids(fig, "edge")) == 2
    assert gids(fig, "ptr:CPU0") and gids(fig, "cpu:CPU1")
    run_to_end(m, prefer=["CPU0", "RCU:gp", "RCU:cb"])
    assert machine_tables(m).by_pfn()[table].status == "freed"


def test_tables_batched_then_queued_with_the_batch() -> None:
    m = build(RACE, PATCHED.replace(batch="ok"))
    table = pte_table(m)
    step_until(m, "CPU1", lambda mm: any("queued in batch" in e.op for e in mm.events))
    assert machine_tables(m).by_pfn()[table].status == "batched"
    step_until(m, "CPU1", lambda mm: mm.why_not("CPU1") is not None
               or any(e.op.startswith("call_rcu") for e in mm.events))
    if m.why_not("CPU1") is not None:  # the flush IPI must be taken first
        m.step("CPU0:irq")
        step_until(m, "CPU1", lambda mm: any(e.op.startswith("call_rcu") for e in mm.events))
    assert machine_tables(m).by_pfn()[table].status == "queued"


def test_tables_of_counterfactuals() -> None:
    # a PMD table whose pmd_huge_pte holds a deposited PTE table (§2): drawn under it
    m = build("rcu-free-pmd-with-deposit", Config())
    deposits = [t for t in machine_tables(m).tables if t.deposit]
    assert len(deposits) == 1 and deposits[0].level == "pte"
    pgd = build("rcu-free-pgd-on-pgd-list", Config())
    run_to_end(pgd)
    assert machine_tables(pgd).tables[0].status == "freed"
    assert gids(draw_machine_tables(pgd), "table:pgd:")


# ---------------------------------------------------------------- ptdesc
def test_ptdesc_after_call_rcu_shows_pt_rcu_head() -> None:
    m, table = race(PATCHED, rcu=False)
    assert live_ptdesc_members(m, table) == ["pt_rcu_head", "ptl"]
    values = ptdesc_values(m, table)
    func = symbol_address("__tlb_remove_table_one_rcu")
    # pt_rcu_head.func shares its 8 bytes with pmd_huge_pte and pt_list.prev (§2)
    assert values["pt_rcu_head.func"] == values["pmd_huge_pte"] == func
    fig = draw_ptdesc_at(m, table)
    thick = {p.get_gid() for p in fig.axes[0].patches
             if (p.get_gid() or "").startswith("field:") and p.get_linewidth() > 2}
    assert thick == {"field:pt_rcu_head.next", "field:pt_rcu_head.func", "field:ptl"}
    assert "queued" in fig.axes[0].get_title()


def test_ptdesc_of_a_freed_frame_adds_no_report() -> None:
    m, table = race(SEMI_RCU, rcu=False)
    assert not m.mem.is_allocated(table)
    before = len(m.reports())
    fig = draw_ptdesc_at(m, table)
    assert len(m.reports()) == before == 0
    assert "freed" in fig.axes[0].get_title() and gids(fig, "field:ptl")
    assert live_ptdesc_members(m, table) == []
    with pytest.raises(ValueError, match="0x5000"):
        draw_ptdesc_at(m, 0x5000)


# ---------------------------------------------------------------- matrix
def test_safety_matrix_heat_map() -> None:
    configs = [SEMI_RCU, PATCHED]
    scs = [RACE, "reclaim-vs-gup-fast"]
    mat = safety_matrix(configs=configs, scenarios=scs)
    fig = draw_safety_matrix(mat)
    cells = collection(fig, "cells")
    colors = [to_hex(c) for c in cells.get_facecolors()]
    # §7: the v6.13 slow path races with the pte_offset_map_lock() reader in some
    # schedules; GUP-fast (interrupts off, §5.1) is safe on both; v6.14 is safe.
    assert colors == [CATEGORY_COLORS["sometimes"], CATEGORY_COLORS["safe"],
                      CATEGORY_COLORS["safe"], CATEGORY_COLORS["safe"]]
    texts = {t.get_gid(): t.get_text() for t in fig.axes[0].texts
             if (t.get_gid() or "").startswith("cell:")}
    assert len(texts) == 4
    uaf = texts[f"cell:{SEMI_RCU.label()}|{RACE}"]
    n = mat.cell(SEMI_RCU, RACE).kinds["use-after-free"]
    assert uaf.startswith("UAF sometimes") and str(n)[:1] in uaf.splitlines()[1]


def test_cell_category_checks_counts() -> None:
    assert cell_category(0, 5, False) == "bounded"
    with pytest.raises(ValueError, match="between 0"):
        cell_category(6, 5, True)


@pytest.mark.parametrize(
    "module",
    [ptlab.viz.timeline, ptlab.viz.callchain, ptlab.viz.machine, ptlab.viz.matrix],
    ids=lambda m: m.__name__,
)
def test_docstring_examples(module: ModuleType) -> None:
    result = doctest.testmod(module)
    assert result.attempted > 0 and result.failed == 0
