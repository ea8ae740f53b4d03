"""Interrupts, preemption, spinlocks and cross-CPU function calls.

Models include/linux/irqflags.h, include/linux/preempt.h, include/linux/spinlock.h
and kernel/smp.c as they behave on x86-64 (v6.13–v6.15; unchanged in this area):

- ``local_irq_save`` disables interrupts on this CPU; while they are off the CPU
  cannot take an IPI, so a sender that waits for it keeps waiting.
- ``spin_lock`` disables preemption and then spins; it does not disable interrupts.
- ``smp_call_function(func, wait=1)`` sends an IPI to every other online CPU and, with
  ``wait``, spins until each has run ``func`` (``csd_lock_wait``).
"""

from __future__ import annotations

from ptlab.kernel.context import Kernel
from ptlab.sim.ops import (
    IrqRestore,
    IrqSave,
    KGen,
    LockAcquire,
    LockRef,
    LockRelease,
    LockTry,
    PreemptDisable,
    PreemptEnable,
    SendIpi,
    WaitIpi,
)


def local_irq_save(k: Kernel) -> KGen:
    """Disable interrupts; returns the previous state (``flags``)."""
    flags = yield IrqSave()
    return flags


def local_irq_restore(k: Kernel, flags: bool) -> KGen:
    yield IrqRestore(flags)


def preempt_disable(k: Kernel) -> KGen:
    yield PreemptDisable()


def preempt_enable(k: Kernel) -> KGen:
    yield PreemptEnable()


def spin_lock(k: Kernel, lock: LockRef) -> KGen:
    """``spin_lock``: ``preempt_disable()`` then spin until the lock is ours."""
    yield PreemptDisable()
    yield LockAcquire(lock)


def spin_lock_nested(k: Kernel, lock: LockRef) -> KGen:
    """``spin_lock_nested(lock, SINGLE_DEPTH_NESTING)``: a lockdep annotation only."""
    yield from spin_lock(k, lock)


def spin_trylock(k: Kernel, lock: LockRef) -> KGen:
    """``spin_trylock``: take the lock if it is free; never spins."""
    yield PreemptDisable()
    ok = yield LockTry(lock)
    if not ok:
        yield PreemptEnable()
    return bool(ok)


def spin_unlock(k: Kernel, lock: LockRef) -> KGen:
    yield LockRelease(lock)
    yield PreemptEnable()


def tlb_remove_table_smp_sync(k: Kernel) -> None:
    """mm/mmu_gather.c: the IPI handler of ``tlb_remove_table_sync_one`` does nothing.

    Taking the IPI is the whole point: it proves the target CPU had interrupts
    enabled at some moment after the sender's earlier stores.
    """


def smp_call_function(k: Kernel, handler: str, wait: bool = True) -> KGen:
    """kernel/smp.c: run ``handler`` on all other online CPUs; optionally wait."""
    yield PreemptDisable()
    targets = k.other_cpus()
    if targets:
        ticket = yield SendIpi(targets, handler)
        if wait:
            yield WaitIpi(ticket)
    yield PreemptEnable()


def on_each_cpu_mask(k: Kernel, targets: tuple[int, ...], handler: str, wait: bool) -> KGen:
    """kernel/smp.c ``on_each_cpu_cond_mask``: IPI the remote CPUs in ``targets``, wait."""
    remote = tuple(c for c in targets if c != k.cpu)
    if remote:
        ticket = yield SendIpi(remote, handler)
        if wait:
            yield WaitIpi(ticket)
