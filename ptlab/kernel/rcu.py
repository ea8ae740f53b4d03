"""RCU as ptlab models it (kernel/rcu/tree.c, include/linux/rcupdate.h; v4.20+ semantics).

Readers: ``rcu_read_lock()``/``rcu_read_unlock()``.  With ``CONFIG_PREEMPT_RCU`` they
only count a per-task nesting level; without it they disable preemption.  Neither
disables interrupts, so a CPU inside ``rcu_read_lock()`` still takes IPIs (kernel-facts
§5.3).

Updaters: ``call_rcu(head, func)`` queues a callback; it runs after a grace period.
Since the RCU flavour consolidation (v4.20) a grace period also waits for regions with
interrupts or preemption disabled, so IRQ-off GUP-fast is an RCU reader too.

The grace-period machinery itself is not kernel code a CPU runs in ptlab; it is two
extra lanes of the machine (``RCU:gp`` starts and ends grace periods, ``RCU:cb`` runs
callbacks), so the explorer considers every moment at which they can act.  A CPU is
*quiescent* when it holds no RCU read lock, has preemption and interrupts enabled
(preemptible RCU), or — without preemptible RCU — when it is not running kernel code
at all (its scenario thread has finished).  A grace period that starts while a CPU is
not quiescent cannot end before that CPU has been quiescent.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ptlab.kernel.context import Kernel
from ptlab.sim.ops import CallRcu, KGen, Ptr, RcuReadLock, RcuReadUnlock

#: Callback functions by name: ``func(k, head_kind, head_ptr, *arg)`` generators.
RCU_CALLBACKS: dict[str, Callable[..., KGen]] = {}


def rcu_callback(fn: Callable[..., KGen]) -> Callable[..., KGen]:
    """Register a generator function as an RCU callback under its own (kernel) name."""
    RCU_CALLBACKS[fn.__name__] = fn
    return fn


def rcu_read_lock(k: Kernel) -> KGen:
    """include/linux/rcupdate.h: enter an RCU read-side critical section."""
    yield RcuReadLock()


def rcu_read_unlock(k: Kernel) -> KGen:
    """include/linux/rcupdate.h: leave an RCU read-side critical section."""
    yield RcuReadUnlock()


def call_rcu(k: Kernel, head: tuple[str, Ptr], func: str, *arg: Any) -> KGen:
    """kernel/rcu/tree.c: queue ``func`` to run after the next full grace period.

    ``head`` names the ``struct rcu_head`` written: ``("ptdesc", table)`` for
    ``ptdesc->pt_rcu_head`` (aliasing ``pt_list`` / ``pmd_huge_pte``) or
    ``("batch", page)`` for ``mmu_table_batch->rcu``.
    """
    if func not in RCU_CALLBACKS:
        known = ", ".join(sorted(RCU_CALLBACKS))
        raise ValueError(f"unknown RCU callback {func!r}; known: {known}")
    yield CallRcu(head, func, tuple(arg))


@dataclass(frozen=True)
class Callback:
    """A queued ``call_rcu`` callback: which head, which function, its argument."""

    seq: int
    head: tuple[str, Ptr]
    func: str
    arg: tuple[Any, ...]
    queued_at: int  # machine step of the call_rcu

    def describe(self) -> str:
        kind, ptr = self.head
        return f"{self.func}({kind} {ptr.pfn:#x})"


@dataclass
class RcuState:
    """Grace-period bookkeeping (the parts of struct rcu_state ptlab needs)."""

    gp_seq: int = 0  # even: idle, odd: a grace period is in progress (as in the kernel)
    qs_needed: frozenset[int] = frozenset()
    next_seq: int = 0
    pending: tuple[Callback, ...] = ()  # queued, waiting for a grace period to start
    waiting: tuple[Callback, ...] = ()  # assigned to the grace period in progress
    done: tuple[Callback, ...] = ()  # grace period over, ready to be invoked
    running: Callback | None = None
    history: list[tuple[str, int]] = field(default_factory=list)  # ("start"/"end", step)

    @property
    def gp_active(self) -> bool:
        return self.gp_seq % 2 == 1

    def copy(self) -> RcuState:
        return RcuState(
            self.gp_seq,
            self.qs_needed,
            self.next_seq,
            self.pending,
            self.waiting,
            self.done,
            self.running,
            list(self.history),
        )

    def key(self) -> tuple[Any, ...]:
        def cbs(t: tuple[Callback, ...]) -> tuple[Any, ...]:
            return tuple((c.seq, c.head, c.func) for c in t)

        return (
            self.gp_seq,
            self.qs_needed,
            cbs(self.pending),
            cbs(self.waiting),
            cbs(self.done),
            None if self.running is None else self.running.seq,
        )
