"""Exhaustive exploration: the v6.13 race, the v6.14 fix, counterfactuals, witnesses.

Expected results come from kernel-facts §7 (the race), §5.1/§5.3 (why IRQ-off GUP-fast
was always protected), §2.3 (union aliasing), not from running ptlab.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ptlab.config import Config
from ptlab.sim.explore import compact_schedule, explore, parse_schedule, replay
from ptlab.sim.scenarios import custom

RACING = ("reclaim-vs-pte-offset-map-lock", "reclaim-vs-gup-fast", "khugepaged-vs-pte-offset-map")
#: One environment per behaviour class: no pv_ops, native hook, PV hook + hypervisor
#: flush, and KVM without PV flush (native hook).
ENVS = ("none", "native", "xen-pv", "kvm")


@pytest.mark.parametrize("env", ["xen-pv", "hyperv", "kvm-pv-flush"])
def test_v613_slow_path_frees_under_an_rcu_reader(env: str) -> None:
    # §7.2: batch page allocation fails → invalidate + IPI + immediate free; the
    # pte_offset_map_lock() reader took the IPI inside rcu_read_lock() and then locks
    # the freed table's ptl.
    r = explore("reclaim-vs-pte-offset-map-lock", Config(kernel="v6.13", paravirt=env,
                                                        batch="fails"))
    assert r.exhaustive
    assert r.verdict("use-after-free") == "sometimes"
    w = r.witnesses["use-after-free"]
    assert "ptl" in w.message


@pytest.mark.parametrize("env", ["xen-pv", "native", "none"])
@pytest.mark.parametrize("batch", ["ok", "fails"])
def test_v613_never_frees_under_gup_fast(env: str, batch: str) -> None:
    # §5.1: GUP-fast keeps interrupts off; every pre-patch free waits for an IPI (TLB
    # flush or tlb_remove_table_sync_one) it cannot take, or for a grace period.
    r = explore("reclaim-vs-gup-fast", Config(kernel="v6.13", paravirt=env, batch=batch))
    assert r.exhaustive and r.verdict("use-after-free") == "never"


@pytest.mark.parametrize("env", ["native", "none", "kvm"])
def test_v613_native_batch_ok_still_unsafe(env: str) -> None:
    # §7.4: native x86 freed tables through tlb_remove_page(), no RCU at all, so even
    # with the batch page available the rcu reader can be run over.
    r = explore("reclaim-vs-pte-offset-map-lock", Config(kernel="v6.13", paravirt=env))
    assert r.verdict("use-after-free") == "sometimes"


def test_v613_pv_batch_path_was_already_rcu() -> None:
    # §7.4: PV environments with the batch page: call_rcu(batch) → safe.
    r = explore("reclaim-vs-pte-offset-map-lock", Config(kernel="v6.13", paravirt="xen-pv"))
    assert r.verdict("use-after-free") == "never" and not r.kinds


@pytest.mark.parametrize("kernel", ["v6.14", "v6.15"])
@pytest.mark.parametrize("env", ENVS)
@pytest.mark.parametrize("batch", ["ok", "fails"])
@pytest.mark.parametrize("reclaim", [True, False])
def test_patched_kernels_are_safe(kernel: str, env: str, batch: str, reclaim: bool) -> None:
    # v6.14 routes every x86 hook to tlb_remove_table under PT_RECLAIM and makes the
    # slow path call_rcu; without PT_RECLAIM nothing frees the table early. Either way no
    # interleaving touches a freed table.
    cfg = Config(kernel=kernel, paravirt=env, batch=batch, pt_reclaim=reclaim)
    for scenario in RACING:
        r = explore(scenario, cfg)
        assert r.exhaustive, scenario
        assert not r.kinds, (scenario, r.summary())


@pytest.mark.parametrize("kernel", ["v6.14", "v6.15"])
def test_three_cpus_safe_after_the_patch(kernel: str) -> None:
    r = explore("reclaim-vs-both", Config(kernel=kernel, paravirt="native", batch="fails"))
    assert r.exhaustive and not r.kinds


def test_three_cpus_v613_only_the_rcu_reader_is_hit() -> None:
    r = explore("reclaim-vs-both", Config(kernel="v6.13", paravirt="native"))
    assert r.verdict("use-after-free") == "sometimes"
    # The witness's use-after-free is by the pte_offset_map_lock reader on CPU0.
    m = replay("reclaim-vs-both", r.config, r.witnesses["use-after-free"].schedule)
    uaf = [x for x in m.reports() if x.kind == "use-after-free"]
    assert uaf and uaf[0].who.actor == "CPU0"


def test_witness_replays_to_the_same_outcome() -> None:
    cfg = Config(kernel="v6.13", paravirt="xen-pv", batch="fails")
    r = explore("reclaim-vs-pte-offset-map-lock", cfg)
    w = r.witnesses["use-after-free"]
    m = replay("reclaim-vs-pte-offset-map-lock", r.config, w.schedule)
    assert [x.kind for x in m.reports()][:1] == ["use-after-free"]
    assert m.events[-1].reports  # the last step of the witness is the bad touch
    assert parse_schedule(compact_schedule(w.schedule)) == w.schedule
    # One step less: the table has not been touched after its free yet.
    shorter = replay("reclaim-vs-pte-offset-map-lock", r.config, w.schedule[:-1])
    assert not shorter.reports()


def test_khugepaged_retract_is_rcu_safe_even_before_the_patch() -> None:
    # §5.4: pte_free_defer() has used RCU since 2023.
    r = explore("khugepaged-vs-pte-offset-map", Config(kernel="v6.13", paravirt="native"))
    assert not r.kinds


@pytest.mark.parametrize("kernel", ["v6.14", "v6.15"])
def test_pgd_counterfactual_is_caught(kernel: str) -> None:
    # §2.3: pt_rcu_head overlays pt_list; RCU-freeing a PGD still on pgd_list through the
    # single-table path overwrites its list pointers (union clobber), and a pgd_list walker
    # can then follow garbage.
    r = explore("rcu-free-pgd-on-pgd-list", Config(kernel=kernel, batch="fails"))
    assert r.verdict("union-clobber") == "always"
    assert r.verdict("list-corruption") == "sometimes"


def test_pmd_deposit_counterfactual_is_caught() -> None:
    # §2.3: call_rcu's func pointer lands on pmd_huge_pte; the deposited table is lost.
    r = explore("rcu-free-pmd-with-deposit", Config(kernel="v6.14", batch="fails"))
    assert r.verdict("union-clobber") == "always"
    assert r.verdict("leak") == "always"
    # With the batch page the ptdesc's rcu_head is not used: no clobber, but the
    # deposit still leaks because nobody withdrew it.
    r = explore("rcu-free-pmd-with-deposit", Config(kernel="v6.14", batch="ok"))
    assert r.verdict("union-clobber") == "never" and r.verdict("leak") == "always"


def test_schedule_counts_add_up() -> None:
    r = explore("reclaim-vs-pte-offset-map-lock", Config(kernel="v6.13"))
    assert sum(r.outcomes.values()) == r.schedules
    assert 0 < r.kinds["use-after-free"] < r.schedules


PATHS = st.sampled_from([
    "madvise_dontneed 0 2M", "madvise_dontneed 0 4M", "madvise_dontneed 0x1000 2M",
    "mincore 0x1000", "mincore 0", "pte_offset_map 0x1000", "gup_fast 0x1000",
    "gup_fast 0", "retract 0",
])


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    cpu0=st.lists(PATHS, min_size=1, max_size=2),
    cpu1=st.lists(PATHS, min_size=1, max_size=1),
    kernel=st.sampled_from(["v6.14", "v6.15"]),
    env=st.sampled_from(["none", "native", "xen-pv"]),
    batch=st.sampled_from(["ok", "fails"]),
)
def test_random_scenarios_never_use_after_free_after_the_patch(
    cpu0: list[str], cpu1: list[str], kernel: str, env: str, batch: str
) -> None:
    cfg = Config(kernel=kernel, paravirt=env, batch=batch)
    r = explore(lambda: custom({0: cpu0, 1: cpu1}, cfg), max_states=50_000)
    assert "use-after-free" not in r.kinds, (cpu0, cpu1, cfg.label(), r.witnesses)
    assert "double-free" not in r.kinds
