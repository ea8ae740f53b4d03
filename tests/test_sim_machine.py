"""Machine semantics: IPIs, interrupts, RCU grace periods, replay (kernel-facts §5.3, §10)."""

from __future__ import annotations

import pytest

from ptlab.config import Config
from ptlab.sim.explore import parse_schedule, replay
from ptlab.sim.machine import StepRefused, run_to_end
from ptlab.sim.scenarios import build, custom


def step_until(m, lane: str, text: str) -> None:  # type: ignore[no-untyped-def]
    """Step ``lane`` until an event whose op contains ``text`` has happened; other CPUs
    take pending IPIs when they can (and only then) so that ``lane`` can go on."""
    for _ in range(200):
        if m.why_not(lane) and "take the IPI" in m.why_not(lane):
            for irq in [x for x in m.enabled_lanes() if x.endswith(":irq")]:
                m.step(irq)
        n = len(m.events)
        m.step(lane)
        if any(text in e.op for e in m.events[n:] if e.lane == lane):
            return
    raise AssertionError(f"{lane} never did {text!r}")


def test_ipi_waits_for_a_cpu_with_interrupts_off() -> None:
    # smp_call_function(wait=1) completes only when every other CPU took the IPI, and a
    # CPU takes it only with interrupts enabled; GUP-fast runs with interrupts off.
    m = build("reclaim-vs-gup-fast", Config(kernel="v6.13", paravirt="native"))
    step_until(m, "CPU0", "local_irq_save")
    step_until(m, "CPU1", "send IPI")
    assert m.why_not("CPU0:irq") == "CPU0 has interrupts disabled; the IPI stays pending"
    with pytest.raises(StepRefused, match="waits for CPU0 to take the IPI"):
        m.step("CPU1")
    assert "waits for CPU0" in m.lane_status("CPU1")
    step_until(m, "CPU0", "local_irq_restore")
    if m.cpus[0].ipis:  # (an idle CPU takes it by itself, at once)
        m.step("CPU0:irq")
    assert not m.cpus[0].ipis
    m.step("CPU1")  # the flush completes now


def test_rcu_read_lock_does_not_block_an_ipi() -> None:
    # rcu_read_lock() leaves interrupts enabled: the reader takes the IPI inside its
    # read-side section (the heart of the v6.13 bug).
    m = build("reclaim-vs-pte-offset-map-lock", Config(kernel="v6.13", paravirt="native"))
    step_until(m, "CPU0", "rcu_read_lock")
    step_until(m, "CPU1", "send IPI")
    assert m.cpus[0].rcu_nesting == 1
    assert m.why_not("CPU0:irq") is None
    m.step("CPU0:irq")
    m.step("CPU1")


def test_grace_period_waits_for_a_reader() -> None:
    # A grace period that starts while CPU0 is inside rcu_read_lock() cannot end before
    # CPU0 leaves it (R4).
    m = build("reclaim-vs-pte-offset-map-lock", Config(kernel="v6.14", paravirt="native"))
    step_until(m, "CPU0", "rcu_read_lock")
    step_until(m, "CPU1", "call_rcu(")
    m.step("RCU:gp")  # starts
    assert m.rcu.gp_active and m.rcu.qs_needed == frozenset({0})
    reason = m.why_not("RCU:gp")
    assert reason is not None and "CPU0" in reason
    assert m.why_not("RCU:cb") is not None
    while m.cpus[0].rcu_nesting:
        m.step("CPU0")
    assert m.why_not("RCU:gp") is None


def test_non_preemptible_rcu_waits_for_the_whole_syscall() -> None:
    # Without CONFIG_PREEMPT_RCU a CPU in kernel code is not quiescent until it
    # schedules or returns to user space — here until its thread has finished.
    m = build("reclaim-vs-pte-offset-map-lock",
              Config(kernel="v6.14", paravirt="native", preempt_rcu=False))
    step_until(m, "CPU0", "load pgd")
    step_until(m, "CPU1", "call_rcu(")
    m.step("RCU:gp")
    assert m.rcu.qs_needed == frozenset({0, 1})  # the freeing CPU is in kernel code too
    while not m.threads["CPU0"].done:
        m.step("CPU0")
    assert m.rcu.qs_needed == frozenset({1})
    while not m.threads["CPU1"].done:
        m.step("CPU1")
    assert m.why_not("RCU:gp") is None


def test_pv_flush_does_not_wait() -> None:
    # Xen PV / Hyper-V / KVM PV flush: the hypervisor flushes remote TLBs; nobody waits
    # for GUP-fast's CPU to enable interrupts.
    m = build("reclaim-vs-gup-fast", Config(kernel="v6.14", paravirt="xen-pv"))
    step_until(m, "CPU0", "local_irq_save")
    step_until(m, "CPU1", "hypervisor flushes")
    assert not m.cpus[0].ipis


def test_replay_is_deterministic() -> None:
    cfg = Config(kernel="v6.13", paravirt="native")
    m = build("reclaim-vs-both", cfg)
    run_to_end(m, prefer=["CPU2", "CPU1", "CPU0"])
    again = replay("reclaim-vs-both", cfg, list(m.schedule))
    assert [str(e) for e in again.events] == [str(e) for e in m.events]
    back = replay("reclaim-vs-both", cfg, list(m.schedule[:-1]))
    assert len(back.schedule) == len(m.schedule) - 1


def test_clone_continues_identically() -> None:
    cfg = Config(kernel="v6.14", batch="fails")
    m = build("reclaim-vs-pte-offset-map-lock", cfg)
    for lane in parse_schedule("CPU0*3 CPU1*10"):
        m.step(lane)
    c = m.clone()
    for x in (m, c):
        run_to_end(x, prefer=["CPU1", "RCU:gp", "RCU:cb", "CPU0:irq", "CPU0"])
    assert m.state_key() == c.state_key()


def test_step_refusals_name_the_lane_and_reason() -> None:
    m = build("munmap", Config())
    with pytest.raises(ValueError, match="unknown lane 'CPU9'"):
        m.step("CPU9")
    with pytest.raises(StepRefused, match="no callbacks are waiting"):
        m.step("RCU:gp")
    with pytest.raises(StepRefused, match="CPU1 has no kernel code"):
        m.step("CPU1")
    with pytest.raises(ValueError, match="bad repeat count"):
        parse_schedule("CPU0*x")


def test_munmap_batches_fill_at_509() -> None:
    # MAX_TABLE_BATCH = (4096 - 24) / 8 = 509.  1100 PTE tables + 3 PMD tables + the PUD
    # table = 1104 tables → batches of 509, 509 (flushed by tlb_remove_table when full)
    # and 86 (flushed by tlb_finish_mmu).
    m = build("munmap-batching", Config(kernel="v6.14", paravirt="native"))
    run_to_end(m, prefer=["CPU0", "CPU1:irq", "RCU:gp", "RCU:cb"])
    batches = [e for e in m.events if e.op.startswith("call_rcu(batch")]
    assert [len(e.frames) - 1 for e in batches] == [509, 509, 86]
    assert "tlb_remove_table" in batches[0].stack and "tlb_finish_mmu" not in batches[0].stack
    assert "tlb_finish_mmu" in batches[2].stack
    assert not m.reports() and not m.leaks()
    assert m.counters["pgtables_bytes"] == 0


def test_vmpte_drops_before_nr_pagetable_on_v614() -> None:
    # §2.4 / R9: mm_dec_nr_ptes at queue time, NR_PAGETABLE in the dtor, which v6.14
    # runs in the RCU callback.
    m = build("reclaim-vs-pte-offset-map-lock", Config(kernel="v6.14"))
    nr0, pt0 = m.counters["NR_PAGETABLE"], m.counters["pgtables_bytes"]
    step_until(m, "CPU1", "pgtables_bytes -4096")
    assert m.counters["pgtables_bytes"] == pt0 - 4096
    assert m.counters["NR_PAGETABLE"] == nr0
    run_to_end(m, prefer=["CPU1", "CPU0:irq", "RCU:gp", "RCU:cb", "CPU0"])
    assert m.counters["NR_PAGETABLE"] == nr0 - 1


def test_custom_scenarios_reject_bad_input() -> None:
    with pytest.raises(ValueError, match="unknown kernel path 'frobnicate'"):
        custom({0: "frobnicate 0"})
    with pytest.raises(ValueError, match="takes offset length"):
        custom({0: "madvise_dontneed 0"})
    with pytest.raises(ValueError, match="not a number"):
        custom({0: "mincore zzz"})
    with pytest.raises(ValueError, match="CPU 7 is not allowed"):
        custom({7: "mincore 0"})


@pytest.mark.parametrize("scenario", ["reclaim-vs-both", "munmap", "rcu-free-pgd-on-pgd-list"])
def test_enabled_lanes_agrees_with_why_not(scenario: str) -> None:
    # enabled_lanes() is the explorer's fast path; why_not() gives the reasons. Along a
    # whole run (IPIs pending, locks held, grace periods open) they must agree.
    m = build(scenario, Config(kernel="v6.14", batch="fails"))
    for _ in range(400):
        slow = [lane for lane in m.lanes() if m.why_not(lane) is None]
        assert m.enabled_lanes() == slow
        if not slow:
            break
        m.step(slow[len(m.schedule) % len(slow)])  # rotate through the choices
