"""The machine: N CPUs running kernel code over shared physical memory, one step at a time.

A scenario gives each CPU a *thread* (a generator of ``ptlab.sim.ops`` operations).
The machine has these *lanes*, each of which can take the next step when enabled:

- ``CPUi``: run CPU i's thread until it has performed its next operation;
- ``CPUi:irq``: CPU i takes a pending IPI (only while its interrupts are enabled);
- ``RCU:gp``: the grace-period machinery starts a grace period (callbacks are
  waiting) or ends one (every CPU that was not quiescent at its start has been since);
- ``RCU:cb``: invoke the next callback whose grace period is over / run its next step.

A *schedule* is the list of lanes stepped, in order.  Replaying a schedule from the
initial state reproduces every step exactly (nothing else is random), so stepping
*back* is replaying one step less.

Nothing here knows which outcome is expected: a use-after-free is reported only because
an operation touched a frame that had been freed (``ptlab.mm.page``'s small KASAN).

>>> from ptlab.sim.scenarios import build
>>> m = build("reclaim-vs-pte-offset-map-lock", Config(kernel="v6.13", batch="fails"))
>>> m.enabled_lanes()
['CPU0', 'CPU1']
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from ptlab.config import Config
from ptlab.kernel.context import Kernel
from ptlab.kernel.rcu import RCU_CALLBACKS, Callback, RcuState
from ptlab.mm.page import PhysMem, Report, Who
from ptlab.mm.ptdesc import Ptdesc, ptdesc_address
from ptlab.sim import ops as O
from ptlab.sim.ops import Entry, KGen, Ptr

ThreadFactory = Callable[[Kernel], KGen]

PTDESC_LAYOUT = "v6.14"
#: pt_list sits at byte 8 of struct ptdesc; list nodes point at it.
PT_LIST_OFFSET = 8
#: A made-up but stable kernel-text address per RCU callback function (what ``func``
#: in an rcu_head holds), so the ptdesc byte map shows a plausible pointer.
KERNEL_TEXT = 0xFFFFFFFF81000000


def symbol_address(name: str) -> int:
    """A deterministic fake kernel-text address for ``name``."""
    h = 0
    for ch in name:
        h = (h * 131 + ord(ch)) & 0xFFFFF
    return KERNEL_TEXT + (h << 4)


@dataclass
class CpuState:
    irqs_on: bool = True
    preempt: int = 0
    rcu_nesting: int = 0
    ipis: tuple[int, ...] = ()  # pending IPI tickets

    def key(self) -> tuple[Any, ...]:
        return (self.irqs_on, self.preempt, self.rcu_nesting, self.ipis)


@dataclass
class Ipi:
    ticket: int
    sender: int
    handler: str
    targets: tuple[int, ...]
    remaining: frozenset[int]


@dataclass
class Event:
    """One executed step: who did what, from where in the kernel, with what effect."""

    seq: int
    lane: str
    stack: tuple[str, ...]
    op: str
    effects: tuple[str, ...] = ()
    reports: tuple[Report, ...] = ()
    kind: str = "op"  # "op" | "irq" | "gp-start" | "gp-end" | "cb-invoke" | "mark"
    frames: tuple[int, ...] = ()  # the frames the step touched

    def function(self) -> str:
        return self.stack[-1] if self.stack else ""

    def __str__(self) -> str:
        where = " → ".join(self.stack[-3:]) if self.stack else ""
        eff = f"  [{'; '.join(self.effects)}]" if self.effects else ""
        bad = "".join(f"\n      !! {r.kind}: {r.what}" for r in self.reports)
        return f"{self.seq:4d} {self.lane:<9} {where}: {self.op}{eff}{bad}"


class Thread:
    """A lane's kernel code: the generator, the op it waits to perform, its history."""

    __slots__ = ("done", "factory", "gen", "hkey", "kernel", "lane", "marks", "nsteps",
                 "pending", "results", "retval")

    def __init__(self, lane: str, factory: ThreadFactory, kernel: Kernel) -> None:
        self.lane = lane
        self.factory = factory
        self.kernel = kernel
        self.results: list[Any] = []
        self.hkey: int = 0
        self.nsteps = 0
        self.done = False
        self.retval: Any = None
        self.pending: O.Op | None = None
        self.gen: KGen | None = None
        self.marks: list[tuple[tuple[str, ...], O.Mark]] = []
        self._start()

    def _start(self) -> None:
        self.gen = self.factory(self.kernel)
        try:
            self.pending = next(self.gen)
        except StopIteration as stop:
            self.done, self.retval, self.pending = True, stop.value, None
        self._skip_marks()

    def _skip_marks(self) -> None:
        """Consume Mark ops: they note private bookkeeping and are not steps."""
        while isinstance(self.pending, O.Mark):
            assert self.gen is not None
            self.marks.append((self.stack(), self.pending))
            self.results.append(None)
            self.hkey = hash((self.hkey, None))
            try:
                self.pending = self.gen.send(None)
            except StopIteration as stop:
                self.done, self.retval, self.pending = True, stop.value, None

    def _materialize(self) -> None:
        """Recreate the generator of a lazily cloned thread by replaying its results."""
        self.gen = self.factory(self.kernel)
        next(self.gen)
        for r in self.results:
            self.gen.send(r)

    def advance(self, result: Any) -> None:
        """Deliver the result of the pending op and fetch the next op."""
        if self.gen is None:
            self._materialize()
        assert self.gen is not None
        self.results.append(result)
        self.nsteps += 1
        self.hkey = hash((self.hkey, _hashable(result)))
        try:
            self.pending = self.gen.send(result)
        except StopIteration as stop:
            self.done, self.retval, self.pending = True, stop.value, None
        self._skip_marks()

    def clone(self) -> Thread:
        """A copy at the same position.  Its generator is created lazily (a fresh one fed
        the same results) only when the copy has to move; pending op and history are
        plain data and shared."""
        t = Thread.__new__(Thread)
        t.lane, t.factory, t.kernel = self.lane, self.factory, self.kernel
        t.results, t.hkey, t.nsteps = list(self.results), self.hkey, self.nsteps
        t.done, t.retval, t.pending, t.gen = self.done, self.retval, self.pending, None
        t.marks = []
        return t

    def stack(self) -> tuple[str, ...]:
        if self.gen is None and not self.done:
            self._materialize()
        names: list[str] = []
        g: Any = self.gen
        while g is not None and hasattr(g, "gi_code"):
            names.append(g.gi_code.co_name)
            g = g.gi_yieldfrom
        return tuple(names)


def _hashable(x: Any) -> Hashable:
    if isinstance(x, list):
        return tuple(_hashable(i) for i in x)
    return x  # type: ignore[no-any-return]


class StepRefused(ValueError):
    """The chosen lane cannot step now; the message says why."""


@dataclass
class Machine:
    """Shared state + threads.  Build one with ``ptlab.sim.scenarios.build``."""

    config: Config
    mem: PhysMem
    scenario: str = ""
    cpus: list[CpuState] = field(default_factory=list)
    threads: dict[str, Thread] = field(default_factory=dict)
    counters: dict[str, int] = field(default_factory=dict)
    locks: dict[tuple[str, Any], int] = field(default_factory=dict)  # lock → owner CPU
    ipis: dict[int, Ipi] = field(default_factory=dict)
    next_ticket: int = 1
    rcu: RcuState = field(default_factory=RcuState)
    lists: dict[str, int] = field(default_factory=dict)  # global list_head name → address
    schedule: list[str] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    record: bool = True
    extra_reports: list[Report] = field(default_factory=list)
    roots: dict[str, Any] = field(default_factory=dict)  # scenario data for checks/pictures
    queued: dict[int, str] = field(default_factory=dict)  # pfn → how it is waiting to be freed
    pending_marks: list[Event] = field(default_factory=list)

    # ------------------------------------------------------------------ construction

    def add_thread(self, cpu: int, factory: ThreadFactory) -> None:
        if not 0 <= cpu < self.config.ncpus:
            raise ValueError(f"CPU {cpu} does not exist; this config has {self.config.ncpus}")
        lane = f"CPU{cpu}"
        self.threads[lane] = Thread(lane, factory, Kernel(self.config, cpu))

    # ------------------------------------------------------------------ lanes

    def lanes(self) -> list[str]:
        out: list[str] = []
        for c in range(self.config.ncpus):
            out += [f"CPU{c}", f"CPU{c}:irq"]
        return [*out, "RCU:gp", "RCU:cb"]

    def why_not(self, lane: str) -> str | None:
        """None if ``lane`` can step now, else the reason in words."""
        if lane not in self.lanes():
            raise ValueError(f"unknown lane {lane!r}; lanes are: {', '.join(self.lanes())}")
        if lane.endswith(":irq"):
            cpu = int(lane[3:-4])
            st = self.cpus[cpu]
            if not st.ipis:
                return f"no IPI is pending for CPU{cpu}"
            if not st.irqs_on:
                return f"CPU{cpu} has interrupts disabled; the IPI stays pending"
            return None
        if lane == "RCU:gp":
            if self.rcu.gp_active:
                if self.rcu.qs_needed:
                    cpus = ", ".join(f"CPU{c}" for c in sorted(self.rcu.qs_needed))
                    return f"the grace period waits for {cpus} to pass a quiescent state"
                return None
            if self.rcu.pending:
                return None
            return "no callbacks are waiting for a grace period"
        if lane == "RCU:cb":
            if self.rcu.done:
                return None
            if self.rcu.waiting:
                return "callbacks are waiting for the current grace period to end"
            return "no callback is ready to run"
        t = self.threads.get(lane)
        if t is None:
            return f"{lane} has no kernel code to run in this scenario"
        if t.done:
            return f"{lane} has finished"
        return self._op_blocked(t)

    def _op_blocked(self, t: Thread) -> str | None:
        op = t.pending
        if isinstance(op, O.LockAcquire):
            key = _lock_key(op.lock)
            owner = self.locks.get(key)
            if owner is not None:
                return f"{t.lane} spins on {_lock_name(op.lock)}, held by CPU{owner}"
        elif isinstance(op, O.WaitIpi):
            ipi = self.ipis.get(op.ticket)
            if ipi is not None and ipi.remaining:
                cpus = ", ".join(f"CPU{c}" for c in sorted(ipi.remaining))
                return f"{t.lane} waits for {cpus} to take the IPI ({ipi.handler})"
        return None

    def enabled_lanes(self) -> list[str]:
        """The lanes that can step now, in lane order (same answer as ``why_not``)."""
        out: list[str] = []
        for c, st in enumerate(self.cpus):
            lane = _CPU_LANES[c]
            t = self.threads.get(lane)
            if t is not None and not t.done and self._op_blocked(t) is None:
                out.append(lane)
            if st.ipis and st.irqs_on:
                out.append(_IRQ_LANES[c])
        r = self.rcu
        if (r.qs_needed == frozenset() and r.gp_seq % 2 == 1) or (
            r.gp_seq % 2 == 0 and r.pending
        ):
            out.append("RCU:gp")
        if r.done:
            out.append("RCU:cb")
        return out

    def finished(self) -> bool:
        return not self.enabled_lanes()

    # ------------------------------------------------------------------ stepping

    def step(self, lane: str) -> Event | None:
        """Take one step of ``lane``; StepRefused (a ValueError) says why it cannot."""
        reason = self.why_not(lane)
        if reason is not None:
            raise StepRefused(f"cannot step {lane}: {reason}")
        return self.step_enabled(lane)

    def step_enabled(self, lane: str) -> Event | None:
        """``step`` for a lane known to be enabled (from ``enabled_lanes``)."""
        seq = len(self.schedule)
        self.schedule.append(lane)
        before = len(self.mem.reports) + len(self.extra_reports)
        ev: Event | None
        if lane.endswith(":irq"):
            ev = self._take_ipi(int(lane[3:-4]), seq)
        elif lane == "RCU:gp":
            ev = self._gp_step(seq)
        elif lane == "RCU:cb":
            ev = self._cb_step(seq)
        else:
            ev = self._thread_step(self.threads[lane], seq)
        self._take_ipis_on_idle_cpus(seq)
        self._note_quiescent()
        reports = self.reports()[before:]
        if ev is not None and reports and not (
            ev.reports or any(e.reports for e in self.pending_marks)
        ):
            ev.reports = tuple(reports)
        if self.record and ev is not None:
            self.events.append(ev)
        if self.pending_marks:
            self.events.extend(self.pending_marks)
            self.pending_marks.clear()
        return ev

    def run(self, schedule: Iterable[str]) -> None:
        for i, lane in enumerate(schedule):
            try:
                self.step(lane)
            except StepRefused as e:
                raise StepRefused(f"schedule step {i} ({lane!r}): {e}") from None

    def _who(self, t: Thread | None, seq: int, lane: str) -> Who:
        return Who(actor=lane, stack=t.stack() if t is not None else (), step=seq)

    def _thread_step(self, t: Thread, seq: int) -> Event:
        """Perform the thread's pending op, plus the ops fused with it (see ``_fuses``)."""
        first: Event | None = None
        while True:
            op = t.pending
            assert op is not None
            who = self._who(t, seq, t.lane)
            nrep = len(self.mem.reports) + len(self.extra_reports)
            result, text, effects = self._execute(op, t.kernel, who, t.lane)
            ev = Event(seq, t.lane, who.stack, text, tuple(effects), frames=op_frames(op),
                       reports=tuple(self.reports()[nrep:]))
            if first is None:
                first = ev
            elif self.record:
                self.pending_marks.append(ev)
            t.advance(result)
            if t.marks:
                if self.record:
                    self.pending_marks.extend(
                        Event(seq, t.lane, st, mk.text, kind="mark", frames=mk.frames)
                        for st, mk in t.marks
                    )
                t.marks.clear()
            if t.done or t.kernel.cpu is None or not _fuses(op, t.pending):
                return first
            if self._op_blocked(t) is not None:
                return first

    # ------------------------------------------------------------------ op semantics

    def _cpu(self, k: Kernel) -> CpuState | None:
        return None if k.cpu is None else self.cpus[k.cpu]

    def _execute(self, op: O.Op, k: Kernel, who: Who, lane: str) -> tuple[Any, str, list[str]]:
        mem = self.mem
        eff: list[str] = []
        if isinstance(op, O.ReadEntry):
            val = mem.read(op.table.pfn, op.index, who, gen=op.table.gen)
            ent = self._entry(val, op.level)
            return ent, f"load {op.level}[{op.index}] of {op.table.pfn:#x} = {val:#x}", eff
        if isinstance(op, O.WriteEntry):
            old = mem.read(op.table.pfn, op.index, who, gen=op.table.gen)
            mem.write(op.table.pfn, op.index, op.value, who, gen=op.table.gen)
            eff.append(f"{op.level}[{op.index}] of {op.table.pfn:#x}: {old:#x} → {op.value:#x}")
            return None, f"store {op.level}[{op.index}] of {op.table.pfn:#x} = {op.value:#x}", eff
        if isinstance(op, O.XchgEntry):
            old = mem.read(op.table.pfn, op.index, who, gen=op.table.gen)
            mem.write(op.table.pfn, op.index, op.value, who, gen=op.table.gen)
            eff.append(f"{op.level}[{op.index}] of {op.table.pfn:#x}: {old:#x} → {op.value:#x}")
            return (
                self._entry(old, op.level),
                f"xchg {op.level}[{op.index}] of {op.table.pfn:#x}",
                eff,
            )
        if isinstance(op, O.ScanEntries):
            arr = mem.read_range(op.table.pfn, op.start, op.stop, who, gen=op.table.gen)
            found = tuple(
                (op.start + i, int(v)) for i, v in enumerate(arr.tolist()) if int(v) != 0
            )
            text = (
                f"scan {op.level}[{op.start}..{op.stop - 1}] of {op.table.pfn:#x}: "
                f"{len(found)} in use"
            )
            return found, text, eff
        if isinstance(op, O.ReadField):
            v = self._ptdesc(op.page, who).get(op.field)
            return v, f"load ptdesc({op.page.pfn:#x})->{op.field} = {v:#x}", eff
        if isinstance(op, O.WriteField):
            self._ptdesc(op.page, who).set(op.field, op.value)
            eff.append(f"ptdesc({op.page.pfn:#x})->{op.field} = {op.value:#x}")
            return None, f"store ptdesc({op.page.pfn:#x})->{op.field} = {op.value:#x}", eff
        if isinstance(op, O.CounterAdd):
            self.counters[op.counter] = self.counters.get(op.counter, 0) + op.delta
            eff.append(f"{op.counter} {op.delta:+d} = {self.counters[op.counter]}")
            return None, f"{op.counter} {op.delta:+d}", eff
        if isinstance(op, O.LockAcquire):
            self._lock_word(op.lock, who, 1)
            self.locks[_lock_key(op.lock)] = k.smp_processor_id()
            return None, f"acquire {_lock_name(op.lock)}", eff
        if isinstance(op, O.LockTry):
            key = _lock_key(op.lock)
            if key in self.locks:
                self._lock_word(op.lock, who, None)
                return False, f"trylock {_lock_name(op.lock)}: busy", eff
            self._lock_word(op.lock, who, 1)
            self.locks[key] = k.smp_processor_id()
            return True, f"trylock {_lock_name(op.lock)}: acquired", eff
        if isinstance(op, O.LockRelease):
            self._lock_word(op.lock, who, 0)
            self.locks.pop(_lock_key(op.lock), None)
            return None, f"release {_lock_name(op.lock)}", eff
        cpu = self._cpu(k)
        if isinstance(op, O.IrqSave):
            assert cpu is not None
            prev = cpu.irqs_on
            cpu.irqs_on = False
            return prev, "local_irq_save: interrupts off", eff
        if isinstance(op, O.IrqRestore):
            assert cpu is not None
            cpu.irqs_on = op.enabled
            return None, f"local_irq_restore: interrupts {'on' if op.enabled else 'off'}", eff
        if isinstance(op, O.PreemptDisable):
            if cpu is not None:
                cpu.preempt += 1
            return None, "preempt_disable", eff
        if isinstance(op, O.PreemptEnable):
            if cpu is not None:
                cpu.preempt -= 1
            return None, "preempt_enable", eff
        if isinstance(op, O.RcuReadLock):
            assert cpu is not None
            cpu.rcu_nesting += 1
            if not self.config.preempt_rcu:
                cpu.preempt += 1
            return None, "rcu_read_lock", eff
        if isinstance(op, O.RcuReadUnlock):
            assert cpu is not None
            cpu.rcu_nesting -= 1
            if not self.config.preempt_rcu:
                cpu.preempt -= 1
            return None, "rcu_read_unlock", eff
        if isinstance(op, O.CallRcu):
            return self._call_rcu(op, who, eff)
        if isinstance(op, O.SendIpi):
            ticket = self.next_ticket
            self.next_ticket += 1
            self.ipis[ticket] = Ipi(
                ticket, k.smp_processor_id(), op.handler, op.targets, frozenset(op.targets)
            )
            for c in op.targets:
                self.cpus[c].ipis = (*self.cpus[c].ipis, ticket)
            names = ", ".join(f"CPU{c}" for c in op.targets)
            return ticket, f"send IPI ({op.handler}) to {names}", eff
        if isinstance(op, O.WaitIpi):
            self.ipis.pop(op.ticket, None)
            return None, "all targets took the IPI", eff
        if isinstance(op, O.HypervisorFlush):
            names = ", ".join(f"CPU{c}" for c in op.targets) or "nobody"
            return None, f"{op.how}: hypervisor flushes {names} without an IPI", eff
        if isinstance(op, O.AllocPage):
            if op.gfp.startswith("GFP_NOWAIT") and self.config.batch == "fails":
                return None, f"__get_free_page({op.gfp}) fails", eff
            pfn = mem.alloc_page(who, kind=op.kind)
            ptr = Ptr(pfn, mem.generation(pfn))
            eff.append(f"frame {pfn:#x} allocated")
            return ptr, f"__get_free_page({op.gfp}) = frame {pfn:#x}", eff
        if isinstance(op, O.FreePage):
            self._free(op.page, who, eff)
            return None, f"{op.how}(frame {op.page.pfn:#x})", eff
        if isinstance(op, O.FreePages):
            for p in op.pages:
                self._free(p, who, eff)
            frames = ", ".join(f"{p.pfn:#x}" for p in op.pages[:4])
            more = f" … ({len(op.pages)} frames)" if len(op.pages) > 4 else ""
            return None, f"{op.how}: free {frames}{more}", eff
        if isinstance(op, O.GetPage):
            pfn = op.page.pfn
            live = mem.is_allocated(pfn) and mem.generation(pfn) == op.page.gen
            if op.try_get and (not live or mem.refcount(pfn) <= 0):
                return False, f"folio_try_get(frame {pfn:#x}) fails: page is being freed", eff
            mem.get_page(pfn, who)
            eff.append(f"frame {pfn:#x} refcount {mem.refcount(pfn)}")
            return True, f"get_page(frame {pfn:#x})", eff
        if isinstance(op, O.PutPage):
            mem.put_page(op.page.pfn, who)
            return None, f"put_page(frame {op.page.pfn:#x})", eff
        if isinstance(op, O.ListWalk):
            return self._list_walk(op.head, who)
        raise TypeError(f"unknown op {op!r}")

    def _entry(self, val: int, level: str) -> Entry:
        if not (val & 1):
            return Entry(val)
        if level in ("pgd", "p4d", "pud", "pmd") and (val & 0x80):  # PSE: a huge leaf
            return Entry(val)
        pfn = (val & 0x000FFFFFFFFFF000) >> 12
        return Entry(val, Ptr(pfn, self.mem.generation(pfn)))

    def _ptdesc(self, page: Ptr, who: Who) -> Ptdesc:
        return Ptdesc(self.mem, page.pfn, who, gen=page.gen, kernel=PTDESC_LAYOUT)

    def _lock_word(self, lock: O.LockRef, who: Who, value: int | None) -> None:
        if isinstance(lock, O.PtlLock):
            pd = self._ptdesc(lock.page, who)
            if value is None:
                pd.get("ptl")
            else:
                pd.set("ptl", value)

    def _free(self, page: Ptr, who: Who, eff: list[str]) -> None:
        self.mem.free_page(page.pfn, who)
        self.queued.pop(page.pfn, None)
        eff.append(f"frame {page.pfn:#x} freed")

    def _call_rcu(self, op: O.CallRcu, who: Who, eff: list[str]) -> tuple[Any, str, list[str]]:
        kind, ptr = op.head
        func_addr = symbol_address(op.func)
        if kind == "ptdesc":
            pd = self._ptdesc(ptr, who)
            # The rcu_head overlays pt_list and {_pt_pad_1, pmd_huge_pte}: look at what is
            # about to be overwritten, the way a debugging kernel would.
            pt_list_next = pd.get("pt_list.next")
            huge = pd.get("pmd_huge_pte")
            if pt_list_next and self._on_list(ptr.pfn):
                self.extra_reports.append(Report(
                    "union-clobber", ptr.pfn, who, "write",
                    f"call_rcu writes pt_rcu_head over pt_list of frame {ptr.pfn:#x}, which is "
                    f"still linked on pgd_list (pt_list.next = {pt_list_next:#x})",
                    None, False))
            if huge:
                self.extra_reports.append(Report(
                    "union-clobber", ptr.pfn, who, "write",
                    f"call_rcu writes pt_rcu_head.func over pmd_huge_pte of frame {ptr.pfn:#x}, "
                    f"which still holds a deposited PTE table ({huge:#x})",
                    None, False))
            if any(c.head == op.head for c in self._all_callbacks()):
                self.extra_reports.append(Report(
                    "double-call_rcu", ptr.pfn, who, "write",
                    f"frame {ptr.pfn:#x}'s pt_rcu_head is already queued", None, False))
            pd.set("pt_rcu_head.next", 0)
            pd.set("pt_rcu_head.func", func_addr)
            self.queued[ptr.pfn] = "rcu"
            eff.append(f"ptdesc({ptr.pfn:#x})->pt_rcu_head = {{next=0, func={op.func}}}")
        else:  # struct mmu_table_batch: rcu head in the first 16 bytes of the batch page
            self.mem.write(ptr.pfn, 0, 0, who, gen=ptr.gen)
            self.mem.write(ptr.pfn, 1, func_addr, who, gen=ptr.gen)
            for t in op.arg[0] if op.arg else ():
                self.queued[t.pfn] = "rcu"
            self.queued[ptr.pfn] = "rcu"
            eff.append(f"batch {ptr.pfn:#x}->rcu = {{next=0, func={op.func}}}")
        # Link the previous tail's rcu_head to this one, as the callback list does.
        tail = self._last_callback()
        if tail is not None:
            self._write_head_next(tail.head, ptdesc_or_batch_addr(op.head), who)
        cb = Callback(self.rcu.next_seq, op.head, op.func, op.arg, who.step or 0)
        self.rcu.next_seq += 1
        self.rcu.pending = (*self.rcu.pending, cb)
        return None, f"call_rcu({kind} {ptr.pfn:#x}, {op.func})", eff

    def _all_callbacks(self) -> list[Callback]:
        r = self.rcu
        run = [r.running] if r.running is not None else []
        return [*r.done, *run, *r.waiting, *r.pending]

    def _last_callback(self) -> Callback | None:
        r = self.rcu
        for seg in (r.pending, r.waiting, r.done):
            if seg:
                return seg[-1]
        return None

    def _write_head_next(self, head: tuple[str, Ptr], value: int, who: Who) -> None:
        kind, ptr = head
        if not self.mem.is_allocated(ptr.pfn) or self.mem.generation(ptr.pfn) != ptr.gen:
            return
        if kind == "ptdesc":
            self._ptdesc(ptr, who).set("pt_rcu_head.next", value)
        else:
            self.mem.write(ptr.pfn, 0, value, who, gen=ptr.gen)

    def _on_list(self, pfn: int) -> bool:
        return any(pfn in self._list_members(name) for name in self.lists)

    def _list_members(self, name: str) -> list[int]:
        """Follow the list without reporting (used by checks, not by kernel code)."""
        from ptlab.mm.ptdesc import list_entries

        try:
            nodes = list_entries(self.mem, self.lists[name], limit=64)
        except ValueError:
            return []
        return [p for p in (_node_pfn(n) for n in nodes) if p is not None]

    def _list_walk(self, name: str, who: Who) -> tuple[Any, str, list[str]]:
        """``list_for_each_entry`` with CONFIG_DEBUG_LIST-style checks of each node."""
        head = self.lists[name]
        node = head
        members: list[int] = []
        for _ in range(64):
            nxt = self.mem.read_kaddr(node, who, what="list_head.next")
            if nxt == head:
                return tuple(members), f"walk {name}: {len(members)} PGD(s)", []
            pfn = _node_pfn(nxt)
            ok = pfn is not None and self.mem.is_allocated(pfn)
            if ok:
                assert pfn is not None
                back = Ptdesc(self.mem, pfn, who, kernel=PTDESC_LAYOUT).get("pt_list.prev")
                ok = back == node
            if not ok:
                desc = _describe_address(nxt)
                self.extra_reports.append(Report(
                    "list-corruption", pfn if pfn is not None else -1, who, "read",
                    f"{name}: next pointer {nxt:#x} is not a valid list node"
                    + (f" (it is {desc})" if desc else ""),
                    None, False))
                return tuple(members), f"walk {name}: corrupted after {len(members)}", []
            assert pfn is not None
            members.append(pfn)
            node = nxt
        return tuple(members), f"walk {name}: stopped after 64 nodes", []

    # ------------------------------------------------------------------ IPIs

    def idle(self, cpu: int) -> bool:
        """A CPU with no kernel code left to run in this scenario."""
        t = self.threads.get(f"CPU{cpu}")
        return t is None or t.done

    def _take_ipis_on_idle_cpus(self, seq: int) -> None:
        """Idle CPUs take IPIs at once.

        When an idle CPU takes an IPI matters to nobody but the sender waiting for it,
        and the sender's own wait step can still be scheduled at any later moment; so
        taking it immediately loses no interleaving and spares the explorer a lane.
        """
        for c, st in enumerate(self.cpus):
            while st.ipis and st.irqs_on and self.idle(c):
                ev = self._take_ipi(c, seq)
                if self.record:
                    self.pending_marks.append(ev)

    def _take_ipi(self, cpu: int, seq: int) -> Event:
        st = self.cpus[cpu]
        ticket, st.ipis = st.ipis[0], st.ipis[1:]
        ipi = self.ipis.get(ticket)
        handler = ipi.handler if ipi is not None else "?"
        if ipi is not None:
            ipi.remaining = ipi.remaining - {cpu}
        return Event(
            seq, f"CPU{cpu}:irq", ("irq", handler),
            f"takes IPI from CPU{ipi.sender if ipi else '?'}: runs {handler}", kind="irq",
        )

    # ------------------------------------------------------------------ RCU

    def quiescent(self, cpu: int) -> bool:
        """Can CPU ``cpu`` report a quiescent state right now?"""
        t = self.threads.get(f"CPU{cpu}")
        if not self.config.preempt_rcu:
            # Non-preemptible RCU: kernel code is a read-side section until the CPU
            # schedules, returns to user space or idles: here, until its thread ends.
            return t is None or t.done
        st = self.cpus[cpu]
        return st.rcu_nesting == 0 and st.preempt == 0 and st.irqs_on

    def _note_quiescent(self) -> None:
        r = self.rcu
        if r.gp_active and r.qs_needed:
            r.qs_needed = frozenset(c for c in r.qs_needed if not self.quiescent(c))

    def _gp_step(self, seq: int) -> Event:
        r = self.rcu
        if not r.gp_active:
            r.gp_seq += 1
            r.waiting, r.pending = r.pending, ()
            r.qs_needed = frozenset(c for c in range(self.config.ncpus) if not self.quiescent(c))
            r.history.append(("start", seq))
            busy = ", ".join(f"CPU{c}" for c in sorted(r.qs_needed)) or "no CPU"
            return Event(seq, "RCU:gp", ("rcu_gp_kthread",),
                         f"grace period {r.gp_seq // 2 + 1} starts for "
                         f"{len(r.waiting)} callback(s); must wait for {busy}",
                         kind="gp-start")
        r.gp_seq += 1
        r.done, r.waiting = (*r.done, *r.waiting), ()
        r.history.append(("end", seq))
        return Event(seq, "RCU:gp", ("rcu_gp_kthread",),
                     f"grace period {r.gp_seq // 2} ends", kind="gp-end")

    def _cb_step(self, seq: int) -> Event:
        """Invoke the next ready callback and run it to the end, as one step.

        A callback runs in softirq context after its grace period; everything it touches
        is by then unreachable for other CPUs (that is what the grace period is for), so
        no other CPU can observe its individual operations and ptlab does not interleave
        them.  Each operation is still recorded as an event of this step.
        """
        r = self.rcu
        cb, r.done = r.done[0], r.done[1:]
        r.running = cb
        fn = RCU_CALLBACKS[cb.func]
        kind, ptr = cb.head
        t = Thread("RCU:cb", _callback_factory(fn, kind, ptr, cb.arg), Kernel(self.config, None))
        first = Event(seq, "RCU:cb", ("rcu_do_batch", cb.func), f"invoke {cb.describe()}",
                      kind="cb-invoke")
        inner: list[Event] = []
        while not t.done:
            ev = self._thread_step(t, seq)
            ev.stack = ("rcu_do_batch", *ev.stack)
            inner.append(ev)
        r.running = None
        if self.record:
            self.pending_marks[:0] = inner
        return first

    # ------------------------------------------------------------------ results

    def reports(self) -> list[Report]:
        return [*self.mem.reports, *self.extra_reports]

    def lane_status(self, lane: str) -> str:
        """One line for the stepper's text panel."""
        reason = self.why_not(lane)
        if lane.startswith("CPU") and not lane.endswith(":irq"):
            t = self.threads.get(lane)
            if t is None:
                return f"{lane}: idle"
            if t.done:
                return f"{lane}: finished"
            fn = t.stack()[-1] if t.stack() else "?"
            nxt = describe_op(t.pending)
            if reason:
                return f"{lane}: {fn} — {reason}"
            return f"{lane}: {fn} — next: {nxt}"
        return f"{lane}: {reason or 'can step'}"

    def state_key(self) -> Hashable:
        th = tuple(
            (lane, t.done, t.nsteps, t.hkey) for lane, t in sorted(self.threads.items())
        )
        return (
            len(self.schedule),
            self.mem.state_key(history=False),
            tuple(c.key() for c in self.cpus),
            tuple(sorted(self.locks.items())),
            tuple(sorted((t, i.remaining) for t, i in self.ipis.items())),
            self.rcu.key(),
            th,
            tuple(sorted(self.counters.items())),
            tuple((r.kind, r.pfn) for r in self.extra_reports),
            tuple(sorted(self.queued.items())),
        )

    def clone(self) -> Machine:
        """An independent copy at the same position (events are not copied)."""
        m = Machine(
            config=self.config,
            mem=self.mem.clone(),
            scenario=self.scenario,
            cpus=[replace(c) for c in self.cpus],
            threads={lane: t.clone() for lane, t in self.threads.items()},
            counters=dict(self.counters),
            locks=dict(self.locks),
            ipis={t: replace(i) for t, i in self.ipis.items()},
            next_ticket=self.next_ticket,
            rcu=self.rcu.copy(),
            lists=dict(self.lists),
            schedule=list(self.schedule),
            events=[],
            record=self.record,
            extra_reports=list(self.extra_reports),
            roots=dict(self.roots),
            queued=dict(self.queued),
        )
        return m

    def leaks(self) -> list[int]:
        """Frames still allocated that nothing reaches once everything has settled."""
        reach: set[int] = set(self.roots.get("reachable", lambda m: set())(self))
        return [
            p for p in self.mem.allocated_pfns()
            if p not in reach and p not in self.roots.get("static", ())
        ]


#: Ops that only make their own CPU *less* quiescent (it enters an RCU read-side section
#: or disables preemption or interrupts), and ops that only make it *more* quiescent.
_LESS_QUIESCENT = (O.RcuReadLock, O.PreemptDisable, O.IrqSave)
_MORE_QUIESCENT = (O.RcuReadUnlock, O.PreemptEnable, O.IrqRestore)


def _fuses(done: O.Op, pending: O.Op | None) -> bool:
    """Does ``pending`` run in the same step as ``done``?  (ptlab's partial-order reduction.)

    These ops change only the CPU's own interrupt, preemption and RCU-nesting state, which
    no other CPU's code reads; only the RCU grace-period lane and the CPU's own IPI lane
    look at it.  Running a *less quiescent* op together with the op after it, or a *more
    quiescent* op together with the op before it, removes only intermediate states in
    which that CPU is not quiescent and cannot take an IPI anyway — a grace period that
    would start or end there can start or end just before or after the fused step with
    the same effect — so no outcome is lost, and the explorer sees far fewer states.
    """
    return isinstance(done, _LESS_QUIESCENT) or isinstance(pending, _MORE_QUIESCENT)


def op_frames(op: O.Op) -> tuple[int, ...]:
    """The frames an op touches (for tracing a table through its free)."""
    if isinstance(op, O.ReadEntry | O.WriteEntry | O.XchgEntry | O.ScanEntries):
        return (op.table.pfn,)
    if isinstance(op, O.ReadField | O.WriteField | O.FreePage | O.GetPage | O.PutPage):
        return (op.page.pfn,)
    if isinstance(op, O.FreePages):
        return tuple(p.pfn for p in op.pages)
    if isinstance(op, O.LockAcquire | O.LockTry | O.LockRelease) and isinstance(
        op.lock, O.PtlLock
    ):
        return (op.lock.page.pfn,)
    if isinstance(op, O.CallRcu):
        tables = op.arg[0] if op.arg and isinstance(op.arg[0], tuple) else ()
        return (op.head[1].pfn, *(t.pfn for t in tables if isinstance(t, Ptr)))
    return ()


_CPU_LANES = tuple(f"CPU{c}" for c in range(8))
_IRQ_LANES = tuple(f"CPU{c}:irq" for c in range(8))


def _callback_factory(
    fn: Callable[..., KGen], kind: str, ptr: Ptr, arg: tuple[Any, ...]
) -> ThreadFactory:
    def factory(k: Kernel) -> KGen:
        return fn(k, kind, ptr, *arg)

    return factory


def describe_op(op: O.Op | None) -> str:
    if op is None:
        return "nothing"
    name = type(op).__name__
    if isinstance(op, O.LockAcquire | O.LockTry | O.LockRelease):
        return f"{name} {_lock_name(op.lock)}"
    if isinstance(op, O.ReadEntry | O.WriteEntry | O.XchgEntry):
        return f"{name} {op.level}[{op.index}] of {op.table.pfn:#x}"
    if isinstance(op, O.CallRcu):
        return f"call_rcu → {op.func}"
    if isinstance(op, O.FreePage):
        return f"free frame {op.page.pfn:#x}"
    return name


def _lock_key(lock: O.LockRef) -> tuple[str, Any]:
    if isinstance(lock, O.PtlLock):
        return ("ptl", lock.page.pfn)
    return ("named", lock.name)


def _lock_name(lock: O.LockRef) -> str:
    if isinstance(lock, O.PtlLock):
        return f"ptl of frame {lock.page.pfn:#x}"
    return lock.name


def ptdesc_or_batch_addr(head: tuple[str, Ptr]) -> int:
    kind, ptr = head
    if kind == "ptdesc":
        return ptdesc_address(ptr.pfn) + PT_LIST_OFFSET
    return DIRECT_MAP + (ptr.pfn << 12)


#: x86-64 direct map base (4-level, no KASLR): page_address() of a frame.
DIRECT_MAP = 0xFFFF888000000000
VMEMMAP = 0xFFFFEA0000000000


def _node_pfn(addr: int) -> int | None:
    off = addr - VMEMMAP - PT_LIST_OFFSET
    if off < 0 or off % 64:
        return None
    return off // 64


def _describe_address(addr: int) -> str:
    if addr >= KERNEL_TEXT and addr < KERNEL_TEXT + (1 << 24):
        for name in RCU_CALLBACKS:
            if symbol_address(name) == addr:
                return f"the address of {name}(), an RCU callback"
        return "a kernel text address"
    if addr >= VMEMMAP and (addr - VMEMMAP) % 64 == 8:
        return f"the rcu_head of frame {(addr - VMEMMAP - 8) // 64:#x}"
    if addr == 0:
        return "NULL"
    return ""


def run_to_end(m: Machine, prefer: Sequence[str] = ()) -> Machine:
    """Step the first enabled lane (in ``prefer`` order, then lane order) until done."""
    while True:
        lanes = m.enabled_lanes()
        if not lanes:
            return m
        pick = next((p for p in prefer if p in lanes), lanes[0])
        m.step(pick)
