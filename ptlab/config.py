"""Which kernel, which Kconfig, which (para)virtual environment ptlab simulates.

A :class:`Config` is what a learner flips: the kernel version (``v6.13`` semi-RCU,
``v6.14`` the patch, ``v6.15`` RCU always), ``CONFIG_PT_RECLAIM``, the paravirt
environment, preemptible RCU, the number of CPUs and whether the ``GFP_NOWAIT`` page
for a table batch can be allocated.  From it ptlab derives the Kconfig symbols and
the function installed as the table-freeing hook, following

- arch/x86/Kconfig (v6.13/v6.14: ``select MMU_GATHER_RCU_TABLE_FREE if PARAVIRT``;
  v6.15, commit a37259732a7d: unconditionally),
- mm/Kconfig (v6.14: ``PT_RECLAIM`` selects ``MMU_GATHER_RCU_TABLE_FREE``),
- arch/x86/kernel/paravirt.c, arch/x86/xen/mmu_pv.c, arch/x86/hyperv/mmu.c,
  arch/x86/kernel/kvm.c (who installs ``pv_ops.mmu.tlb_remove_table``, ≤ v6.14;
  the member is gone in v6.15, commit f2c5c2105827).

>>> c = Config(kernel="v6.13", paravirt="native", pt_reclaim=True)
>>> c.kconfig()["CONFIG_MMU_GATHER_RCU_TABLE_FREE"]
True
>>> c.tlb_remove_table_hook
'native_tlb_remove_table'
>>> Config(kernel="v6.12")
Traceback (most recent call last):
...
ValueError: unknown kernel 'v6.12'; allowed: v6.13, v6.14, v6.15
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

KERNELS: tuple[str, ...] = ("v6.13", "v6.14", "v6.15")
PARAVIRT_ENVS: tuple[str, ...] = ("none", "native", "xen-pv", "hyperv", "kvm-pv-flush", "kvm")
#: Environments whose remote TLB flush is done by the hypervisor, not by an IPI that
#: every target must take (kernel-facts §3.2).
PV_FLUSH_ENVS: frozenset[str] = frozenset({"xen-pv", "hyperv", "kvm-pv-flush"})
BATCH_CHOICES: tuple[str, ...] = ("ok", "fails")
MAX_CPUS = 4

ENV_DESCRIPTIONS: dict[str, str] = {
    "none": "CONFIG_PARAVIRT=n: bare metal kernel without paravirt hooks",
    "native": "CONFIG_PARAVIRT=y on bare metal (or any hypervisor without PV TLB flush)",
    "xen-pv": "Xen PV guest: xen_flush_tlb_multi hypercall, hook = tlb_remove_table",
    "hyperv": "Hyper-V guest with HV_X64_REMOTE_TLB_FLUSH_RECOMMENDED",
    "kvm-pv-flush": "KVM guest with KVM_FEATURE_PV_TLB_FLUSH (kvm_flush_tlb_multi)",
    "kvm": "KVM guest without PV TLB flush: behaves like native",
}


@dataclass(frozen=True)
class Config:
    """A kernel configuration and machine to simulate.  Invalid values raise ValueError."""

    kernel: str = "v6.14"
    pt_reclaim: bool = True
    paravirt: str = "native"
    preempt_rcu: bool = True
    ncpus: int = 2
    batch: str = "ok"

    def __post_init__(self) -> None:
        if self.kernel not in KERNELS:
            raise ValueError(
                f"unknown kernel {self.kernel!r}; allowed: {', '.join(KERNELS)}"
            )
        if self.paravirt not in PARAVIRT_ENVS:
            raise ValueError(
                f"unknown paravirt environment {self.paravirt!r}; allowed: "
                f"{', '.join(PARAVIRT_ENVS)}"
            )
        if self.batch not in BATCH_CHOICES:
            raise ValueError(
                f"unknown batch choice {self.batch!r}; allowed: {', '.join(BATCH_CHOICES)} "
                "(whether the GFP_NOWAIT batch page can be allocated)"
            )
        for name in ("pt_reclaim", "preempt_rcu"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be True or False, not {getattr(self, name)!r}")
        if not isinstance(self.ncpus, int) or isinstance(self.ncpus, bool) or not (
            1 <= self.ncpus <= MAX_CPUS
        ):
            raise ValueError(f"ncpus must be an integer from 1 to {MAX_CPUS}, not {self.ncpus!r}")
        if self.paravirt == "kvm-pv-flush" and self.ncpus == 1:
            # pv_tlb_flush_supported() requires num_possible_cpus() != 1; KVM would not
            # install kvm_flush_tlb_multi, so this environment cannot exist.
            raise ValueError(
                "paravirt 'kvm-pv-flush' needs ncpus > 1: KVM installs its PV TLB flush only "
                "when num_possible_cpus() != 1 (use paravirt 'kvm' for one CPU)"
            )

    # ------------------------------------------------------------------ Kconfig

    @property
    def counterfactual(self) -> bool:
        """PT_RECLAIM did not exist before v6.14: v6.13 with it is the 'what if'."""
        return self.kernel == "v6.13" and self.pt_reclaim

    def kconfig(self) -> dict[str, bool]:
        """The Kconfig symbols this configuration implies."""
        paravirt = self.paravirt != "none"
        # v6.15 (a37259732a7d): x86 selects it unconditionally.
        rcu_table_free = self.kernel == "v6.15" or paravirt or self.pt_reclaim
        return {
            "CONFIG_PARAVIRT": paravirt,
            "CONFIG_PT_RECLAIM": self.pt_reclaim,
            "CONFIG_MMU_GATHER_RCU_TABLE_FREE": rcu_table_free,
            # MMU_GATHER_RCU_TABLE_FREE selects MMU_GATHER_TABLE_FREE.
            "CONFIG_MMU_GATHER_TABLE_FREE": rcu_table_free,
            "CONFIG_PREEMPT_RCU": self.preempt_rcu,
            "CONFIG_SMP": True,
        }

    @property
    def rcu_table_free(self) -> bool:
        return self.kconfig()["CONFIG_MMU_GATHER_RCU_TABLE_FREE"]

    @property
    def pv_flush(self) -> bool:
        """True when remote TLB flushes go through the hypervisor instead of IPIs."""
        return self.paravirt in PV_FLUSH_ENVS

    @property
    def tlb_remove_table_hook(self) -> str:
        """What ``___pte_free_tlb`` hands a table to, for this environment.

        ≤ v6.14 with CONFIG_PARAVIRT: the function in ``pv_ops.mmu.tlb_remove_table``;
        without CONFIG_PARAVIRT: the static ``paravirt_tlb_remove_table`` in
        arch/x86/mm/pgtable.c; v6.15: no hook, ``tlb_remove_table`` directly.
        """
        if self.kernel == "v6.15":
            return "tlb_remove_table"
        if self.paravirt == "none":
            return "paravirt_tlb_remove_table (static, CONFIG_PARAVIRT=n)"
        if self.paravirt in PV_FLUSH_ENVS:
            return "tlb_remove_table"
        return "native_tlb_remove_table"

    def label(self) -> str:
        """Short, stable text for tables and file names."""
        return (
            f"{self.kernel} {self.paravirt} reclaim={'on' if self.pt_reclaim else 'off'} "
            f"batch={self.batch}"
            + ("" if self.preempt_rcu else " !PREEMPT_RCU")
            + ("" if self.ncpus == 2 else f" cpus={self.ncpus}")
        )

    def replace(self, **changes: Any) -> Config:
        """A copy with some fields changed (validated again)."""
        data = asdict(self)
        unknown = set(changes) - set(data)
        if unknown:
            raise ValueError(
                f"unknown config field(s) {', '.join(sorted(unknown))}; allowed: "
                f"{', '.join(f.name for f in fields(self))}"
            )
        data.update(changes)
        return Config(**data)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Config:
        if not isinstance(data, dict):
            raise ValueError(f"a config must be a JSON object, not {type(data).__name__}")
        allowed = {f.name for f in fields(cls)}
        unknown = set(data) - allowed
        if unknown:
            raise ValueError(
                f"unknown config field(s) {', '.join(sorted(unknown))}; allowed: "
                f"{', '.join(sorted(allowed))}"
            )
        return cls(**data)


def parse_on_off(value: str, what: str) -> bool:
    """'on'/'off' (also yes/no, true/false, 1/0) → bool; ValueError names ``what``."""
    v = value.strip().lower()
    if v in ("on", "yes", "true", "1", "y"):
        return True
    if v in ("off", "no", "false", "0", "n"):
        return False
    raise ValueError(f"{what} must be 'on' or 'off', not {value!r}")
