"""Config validation and the Kconfig / hook derivation (kernel-facts §3.2, §3.4)."""

from __future__ import annotations

import pytest

from ptlab.arch.x86.paravirt import pv_ops_tlb_remove_table
from ptlab.config import KERNELS, PARAVIRT_ENVS, Config


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"kernel": "v6.12"}, "unknown kernel 'v6.12'"),
        ({"paravirt": "vmware"}, "unknown paravirt environment 'vmware'"),
        ({"batch": "maybe"}, "unknown batch choice 'maybe'"),
        ({"ncpus": 0}, "ncpus must be an integer from 1 to 4"),
        ({"ncpus": 9}, "ncpus must be an integer from 1 to 4"),
        ({"pt_reclaim": "yes"}, "pt_reclaim must be True or False"),
        ({"paravirt": "kvm-pv-flush", "ncpus": 1}, "needs ncpus > 1"),
    ],
)
def test_bad_configs_name_the_value(kwargs: dict[str, object], needle: str) -> None:
    with pytest.raises(ValueError, match=needle):
        Config(**kwargs)  # type: ignore[arg-type]


def test_rcu_table_free_kconfig() -> None:
    # arch/x86/Kconfig before v6.15: select MMU_GATHER_RCU_TABLE_FREE if PARAVIRT;
    # mm/Kconfig (v6.14): PT_RECLAIM selects it; v6.15 (a37259732a7d): unconditional.
    assert not Config(kernel="v6.13", paravirt="none", pt_reclaim=False).rcu_table_free
    assert Config(kernel="v6.13", paravirt="native", pt_reclaim=False).rcu_table_free
    assert Config(kernel="v6.14", paravirt="none", pt_reclaim=True).rcu_table_free
    assert not Config(kernel="v6.14", paravirt="none", pt_reclaim=False).rcu_table_free
    assert Config(kernel="v6.15", paravirt="none", pt_reclaim=False).rcu_table_free
    k = Config(kernel="v6.14", paravirt="none").kconfig()
    assert k["CONFIG_MMU_GATHER_TABLE_FREE"] == k["CONFIG_MMU_GATHER_RCU_TABLE_FREE"]


@pytest.mark.parametrize("kernel", ["v6.13", "v6.14"])
def test_hook_per_environment(kernel: str) -> None:
    # kernel-facts §3.2: native and KVM-without-PV-flush keep the static initializer
    # native_tlb_remove_table; Xen PV, Hyper-V (remote-flush hint) and KVM with PV TLB
    # flush install tlb_remove_table; CONFIG_PARAVIRT=n has no pv_ops at all.
    expected = {
        "none": None,
        "native": "native_tlb_remove_table",
        "kvm": "native_tlb_remove_table",
        "xen-pv": "tlb_remove_table",
        "hyperv": "tlb_remove_table",
        "kvm-pv-flush": "tlb_remove_table",
    }
    for env in PARAVIRT_ENVS:
        assert pv_ops_tlb_remove_table(Config(kernel=kernel, paravirt=env)) == expected[env], env


def test_v615_has_no_hook() -> None:
    # f2c5c2105827 removed pv_ops.mmu.tlb_remove_table (the live 6.18 BTF has no member).
    for env in PARAVIRT_ENVS:
        assert pv_ops_tlb_remove_table(Config(kernel="v6.15", paravirt=env)) is None
        assert Config(kernel="v6.15", paravirt=env).tlb_remove_table_hook == "tlb_remove_table"


def test_pv_flush_environments() -> None:
    # Hypervisor-assisted remote flush: Xen PV, Hyper-V, KVM with PV TLB flush.
    assert {e for e in PARAVIRT_ENVS if Config(paravirt=e).pv_flush} == {
        "xen-pv", "hyperv", "kvm-pv-flush"
    }


def test_counterfactual_and_replace() -> None:
    assert Config(kernel="v6.13", pt_reclaim=True).counterfactual
    assert not Config(kernel="v6.14", pt_reclaim=True).counterfactual
    c = Config().replace(kernel="v6.13")
    assert c.kernel == "v6.13"
    with pytest.raises(ValueError, match="unknown config field"):
        Config().replace(colour="red")
    assert Config.from_dict(Config(kernel="v6.15").to_dict()) == Config(kernel="v6.15")
    assert set(KERNELS) == {"v6.13", "v6.14", "v6.15"}
