"""The call chain a table free takes, per config (kernel-facts §3.1, §4, commit 718b13861d22)."""

from __future__ import annotations

import pytest

from ptlab.config import Config
from ptlab.sim.paths import free_path

COMMON = ["free_pte", "pte_free_tlb", "__pte_free_tlb", "___pte_free_tlb"]


def is_subsequence(needle: list[str], hay: list[str]) -> bool:
    it = iter(hay)
    return all(n in it for n in needle)


def test_v614_native_goes_through_native_hook_to_rcu_batch() -> None:
    # Commit message tree: free_pte → pte_free_tlb → __pte_free_tlb → ___pte_free_tlb →
    # paravirt_tlb_remove_table → native_tlb_remove_table → tlb_remove_table (PT_RECLAIM).
    p = free_path(Config(kernel="v6.14", paravirt="native", batch="ok"))
    chains = [list(s.stack) for s in p.steps]
    assert any(
        is_subsequence([*COMMON, "paravirt_tlb_remove_table", "native_tlb_remove_table",
                        "tlb_remove_table"], c) for c in chains
    )
    assert "grace period" in p.waited_for
    assert "tlb_remove_table_rcu" in p.freed_by


def test_v614_slow_path_is_call_rcu_on_pt_rcu_head() -> None:
    # v6.14 + PT_RECLAIM, batch page allocation fails: __tlb_remove_table_one →
    # call_rcu(&ptdesc->pt_rcu_head, __tlb_remove_table_one_rcu), no sync IPI.
    p = free_path(Config(kernel="v6.14", paravirt="none", batch="fails"))
    texts = " | ".join(s.text for s in p.steps)
    assert "call_rcu(ptdesc" in texts and "__tlb_remove_table_one_rcu" in texts
    assert "tlb_remove_table_smp_sync" not in texts
    assert p.freed_by.startswith("after a grace period, alone")


def test_v613_slow_path_is_ipi_then_immediate_free() -> None:
    # "Semi RCU": tlb_remove_table_one = tlb_remove_table_sync_one + __tlb_remove_table.
    p = free_path(Config(kernel="v6.13", paravirt="xen-pv", batch="fails"))
    texts = [s.text for s in p.steps]
    sync = next(i for i, t in enumerate(texts) if "tlb_remove_table_smp_sync" in t)
    free = next(i for i, t in enumerate(texts) if "free_page_and_swap_cache" in t)
    assert sync < free
    assert all(s.lane == "CPU0" for s in p.steps[sync:free + 1])
    assert "not a grace period" in p.waited_for


@pytest.mark.parametrize("env", ["native", "none", "kvm"])
@pytest.mark.parametrize("batch", ["ok", "fails"])
def test_v613_native_frees_tables_without_rcu(env: str, batch: str) -> None:
    # kernel-facts §4.5/§7.4: native x86 before the patch used tlb_remove_page(): the
    # table is freed right after the TLB-flush IPIs, with no RCU involved at all.
    p = free_path(Config(kernel="v6.13", paravirt=env, batch=batch))
    assert all(s.lane.startswith("CPU") for s in p.steps)
    assert not any("call_rcu" in s.text for s in p.steps)
    assert any("tlb_remove_page" in s.stack for s in p.steps)
    assert "tlb_remove_page" in p.freed_by


def test_v615_calls_tlb_remove_table_directly() -> None:
    # a37259732a7d / f2c5c2105827: no paravirt hook any more.
    p = free_path(Config(kernel="v6.15", paravirt="native"))
    chains = [list(s.stack) for s in p.steps]
    assert not any("paravirt_tlb_remove_table" in c for c in chains)
    assert any(is_subsequence([*COMMON, "tlb_remove_table"], c) for c in chains)


def test_dtor_timing() -> None:
    # kernel-facts §2.4 / R8: v6.13 runs the dtor when the table is queued (on the
    # freeing CPU); v6.14 runs it in __tlb_remove_table, i.e. in the RCU callback.
    def dtor_lanes(c: Config) -> set[str]:
        return {s.lane for s in free_path(c).steps if "__page_type" in s.text}

    assert dtor_lanes(Config(kernel="v6.13", paravirt="xen-pv")) == {"CPU0"}
    assert dtor_lanes(Config(kernel="v6.14", paravirt="xen-pv")) == {"RCU:cb"}


@pytest.mark.parametrize("level", ["pmd", "pud"])
def test_upper_levels_share_the_hook(level: str) -> None:
    # §3.3: PMD and PUD tables go through the same paravirt_tlb_remove_table / batch.
    p = free_path(Config(kernel="v6.14", paravirt="native"), level)
    assert any("tlb_remove_table" in s.stack for s in p.steps)
    assert any(f"___{level}_free_tlb" in s.stack for s in p.steps)


def test_bad_level() -> None:
    with pytest.raises(ValueError, match="unknown level 'pgd'"):
        free_path(Config(), "pgd")
