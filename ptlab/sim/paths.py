"""Which call chain a page-table free takes in a configuration — computed by running it.

``free_path(config, level)`` builds a one-table machine, runs the kernel's freeing code
for a PTE (``free_pte``, as PT reclaim does), PMD or PUD table on CPU0 with CPU1 idle,
lets the RCU machinery finish, and reports every step that touched the table or made
someone wait.  The chain is read off the recorded call stacks, so it shows what the
model did, not what a table says it should do.

>>> from ptlab.config import Config
>>> p = free_path(Config(kernel="v6.13", paravirt="native"), "pte")
>>> p.freed_by
'after the TLB flush, with the page batch (tlb_remove_page)'
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ptlab.arch.x86.paging import PAGE_SIZE, PMD_SIZE
from ptlab.config import Config
from ptlab.kernel.context import Kernel
from ptlab.mm.memory import Mm
from ptlab.mm.mmu_gather import pmd_free_tlb, pud_free_tlb, tlb_finish_mmu, tlb_gather_mmu
from ptlab.mm.page import PhysMem
from ptlab.mm.pt_reclaim import free_pte
from ptlab.sim.machine import Event, Machine, run_to_end
from ptlab.sim.ops import Entry, KGen, Ptr, WriteEntry
from ptlab.sim.scenarios import BASE, _machine

LEVELS = ("pte", "pmd", "pud")


@dataclass
class PathStep:
    lane: str
    stack: tuple[str, ...]
    text: str

    def chain(self) -> str:
        return " → ".join(self.stack)

    def __str__(self) -> str:
        return f"[{self.lane}] {self.chain()}: {self.text}"


@dataclass
class FreePath:
    config: Config
    level: str
    table: int
    hook: str
    steps: list[PathStep] = field(default_factory=list)
    freed_by: str = ""
    waited_for: str = ""

    def render(self) -> str:
        lines = [
            f"{self.level.upper()} table free — {self.config.label()}",
            f"table-freeing hook: {self.hook}",
        ]
        lines += [f"  {i + 1}. {s}" for i, s in enumerate(self.steps)]
        lines.append(f"freed: {self.freed_by}")
        lines.append(f"waited for: {self.waited_for}")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {
            "config": self.config.to_dict(),
            "level": self.level,
            "hook": self.hook,
            "steps": [{"lane": s.lane, "stack": list(s.stack), "text": s.text} for s in self.steps],
            "freed_by": self.freed_by,
            "waited_for": self.waited_for,
        }


def _free_one(k: Kernel, level: str, upper: Ptr, index: int, table: Ptr, val: int) -> KGen:
    tlb = tlb_gather_mmu()
    yield WriteEntry(upper, index, 0, {"pte": "pmd", "pmd": "pud", "pud": "pgd"}[level])
    if level == "pte":
        yield from free_pte(k, BASE, tlb, Entry(val, table))
    elif level == "pmd":
        yield from pmd_free_tlb(k, tlb, table, BASE)
    else:
        yield from pud_free_tlb(k, tlb, table, BASE)
    yield from tlb_finish_mmu(k, tlb)


def free_path(config: Config, level: str = "pte") -> FreePath:
    """Run one ``level`` table free under ``config`` and describe the path it took."""
    if level not in LEVELS:
        raise ValueError(f"unknown level {level!r}; allowed: {', '.join(LEVELS)}")
    config = config if config.ncpus >= 2 else config.replace(ncpus=2)
    mm = Mm(PhysMem(), levels=4, pt_reclaim=config.pt_reclaim, kernel="v6.14")
    mm.mmap(BASE, PMD_SIZE)
    mm.touch(BASE)
    mm.zap_range(BASE, BASE + PAGE_SIZE)  # the table is empty, as PT reclaim needs
    w = mm.walk(BASE)
    by_level = {s.level: s for s in w.steps}
    step = by_level[level]
    parent = by_level[{"pte": "pmd", "pmd": "pud", "pud": "pgd"}[level]]
    mem = mm.mem
    table = Ptr(step.table_pfn, mem.generation(step.table_pfn))
    upper = Ptr(parent.table_pfn, mem.generation(parent.table_pfn))
    m: Machine = _machine(config, mm, "free-path")
    m.add_thread(
        0, lambda k: _free_one(k, level, upper, parent.index, table, parent.entry)
    )
    run_to_end(m, prefer=("CPU0", "CPU1:irq", "RCU:gp", "RCU:cb"))
    return _describe(m, config, level, table.pfn)


def _describe(m: Machine, config: Config, level: str, pfn: int) -> FreePath:
    from ptlab.arch.x86.paravirt import pv_ops_tlb_remove_table

    hook = pv_ops_tlb_remove_table(config)
    if hook is None:
        hook = (
            "none: tlb_remove_table() called directly (v6.15)"
            if config.kernel == "v6.15"
            else "static paravirt_tlb_remove_table() (CONFIG_PARAVIRT=n)"
        )
    else:
        hook = f"pv_ops.mmu.tlb_remove_table = {hook}"
    out = FreePath(config, level, pfn, hook)
    freeing: Event | None = None
    ipi_sync = False
    flush_ipi = False
    started = False
    for ev in m.events:
        touches = pfn in ev.frames and ev.seq > 0  # step 0 only unhooks the table
        started = started or ev.seq > 0
        waits = ev.kind in ("gp-start", "gp-end") or ev.op.startswith("send IPI") or (
            "hypervisor" in ev.op
        )
        if touches or (started and waits):
            stack = tuple(s for s in ev.stack if s not in ("_free_one",))
            out.steps.append(PathStep(ev.lane, stack, ev.op))
        if "tlb_remove_table_smp_sync" in ev.op:
            ipi_sync = True
        if "flush_tlb_func" in ev.op and ev.op.startswith("send"):
            flush_ipi = True
        if ev.kind == "op" and touches and ("free" in ev.op) and ev.op.split("(")[0] != "store":
            freeing = ev
    if freeing is None:
        out.freed_by = "not freed"
    elif freeing.lane == "RCU:cb":
        if "tlb_remove_table_rcu" in freeing.stack:
            out.freed_by = "after a grace period, with its batch (tlb_remove_table_rcu)"
        else:
            out.freed_by = f"after a grace period, alone ({freeing.stack[1]})"
        out.waited_for = "an RCU grace period: every CPU passed a quiescent state"
    elif ipi_sync:
        out.freed_by = "immediately after an IPI to every CPU (tlb_remove_table_sync_one)"
        out.waited_for = "every other CPU taking an IPI (interrupts enabled) — not a grace period"
    else:
        out.freed_by = "after the TLB flush, with the page batch (tlb_remove_page)"
        out.waited_for = (
            "the TLB-flush IPIs (every CPU with interrupts enabled)" if flush_ipi
            else "nothing: the hypervisor flushed remote TLBs without an IPI"
        )
    return out
