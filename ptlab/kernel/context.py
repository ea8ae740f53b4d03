"""What a piece of simulated kernel code knows about where it runs.

Every modelled kernel function takes a :class:`Kernel` as its first argument: the
configuration being simulated and the CPU the code runs on (``smp_processor_id()``).
It carries no mutable state: all shared state lives in the machine and is reached only
through the operations in ``ptlab.sim.ops``.
"""

from __future__ import annotations

from dataclasses import dataclass

from ptlab.config import Config


@dataclass(frozen=True)
class Kernel:
    config: Config
    cpu: int | None  # None for code run by the RCU callback machinery

    def smp_processor_id(self) -> int:
        if self.cpu is None:
            raise ValueError("smp_processor_id() called from the RCU callback lane")
        return self.cpu

    def other_cpus(self) -> tuple[int, ...]:
        """All online CPUs except this one (``smp_call_function`` targets)."""
        return tuple(c for c in range(self.config.ncpus) if c != self.cpu)
