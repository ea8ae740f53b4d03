"""Which kernel am I on, and which page-table rules should ptlab predict for it?

The rule that matters for the live lab is ``CONFIG_PT_RECLAIM`` (mm/pt_reclaim.c, Linux
6.14+, kernel-facts §6): with it, ``madvise(MADV_DONTNEED)`` frees PTE tables that become
empty when the advice covers their whole 2 MiB span.  It is found, in this order, from:

1. the kernel version (``os.uname``): before 6.14 the option did not exist;
2. ``/proc/config.gz`` or ``/boot/config-$(uname -r)`` when readable;
3. a probe experiment: map 4 MiB, touch it, MADV_DONTNEED it, and see whether VmPTE drops.

Not Linux, or no ``/proc/self/status`` with VmPTE: "predictions only" — ptlab still
predicts (for a 6.14+ kernel with PT_RECLAIM) but measures nothing.

>>> info = detect_kernel(probe=False)                   # doctest: +SKIP
>>> info.rule_set                                       # doctest: +SKIP
'PT_RECLAIM'
"""

from __future__ import annotations

import functools
import gzip
import os
import re
import sys
from dataclasses import dataclass

from ptlab.live import linux

PT_RECLAIM_FIRST = (6, 14)
CONFIG_PATHS = ("/proc/config.gz", "/boot/config-{release}")

RULES = {
    "PT_RECLAIM": (
        "MADV_DONTNEED frees each PTE table whose whole 2 MiB span the range covers "
        "(it is then empty); MADV_FREE frees no tables; munmap frees tables with "
        "free_pgtables (only spans no remaining VMA touches); a huge PMD keeps a "
        "deposited PTE table counted in VmPTE"
    ),
    "no PT_RECLAIM": (
        "madvise never frees page tables (neither MADV_DONTNEED nor MADV_FREE); only "
        "munmap frees them, with free_pgtables; a huge PMD keeps a deposited PTE table "
        "counted in VmPTE"
    ),
}


@dataclass(frozen=True)
class KernelInfo:
    """What ptlab knows about the running kernel and the rule set it predicts with."""

    system: str
    release: str
    version: tuple[int, int] | None
    live: bool  # experiments can run: Linux with VmPTE in /proc/self/status
    pt_reclaim: bool
    pt_reclaim_source: str  # how pt_reclaim was decided
    thp_mode: str  # "always" | "madvise" | "never" | "unavailable"

    @property
    def rule_set(self) -> str:
        return "PT_RECLAIM" if self.pt_reclaim else "no PT_RECLAIM"

    @property
    def rules(self) -> str:
        return RULES[self.rule_set]

    @property
    def model_kernel(self) -> str:
        """The ptlab kernel model closest to this kernel (for ``ptlab.mm.memory.Mm``):
        "v6.18" from 6.18 on, else "v6.14" (the VmPTE rules are the same in both)."""
        return "v6.18" if self.version is not None and self.version >= (6, 18) else "v6.14"

    def summary(self) -> str:
        where = "live experiments" if self.live else "predictions only (no live kernel)"
        return (
            f"{self.system} {self.release}: {where}; rule set {self.rule_set} "
            f"({self.pt_reclaim_source}); THP mode {self.thp_mode}"
        )

    def to_json(self) -> dict[str, object]:
        return {
            "system": self.system,
            "release": self.release,
            "version": list(self.version) if self.version else None,
            "live": self.live,
            "pt_reclaim": self.pt_reclaim,
            "pt_reclaim_source": self.pt_reclaim_source,
            "thp_mode": self.thp_mode,
            "rule_set": self.rule_set,
            "rules": self.rules,
        }


def parse_version(release: str) -> tuple[int, int] | None:
    """``"6.18.44-fc-v669"`` → ``(6, 18)``; None if the string has no version.

    >>> parse_version("6.18.44-fc-v669")
    (6, 18)
    """
    m = re.match(r"(\d+)\.(\d+)", release)
    return (int(m.group(1)), int(m.group(2))) if m else None


def config_pt_reclaim(text: str) -> bool | None:
    """PT_RECLAIM from a kernel .config text: True/False, None if the text is silent.

    >>> config_pt_reclaim("CONFIG_MMU=y\\nCONFIG_PT_RECLAIM=y\\n")
    True
    >>> config_pt_reclaim("# CONFIG_PT_RECLAIM is not set\\n")
    False
    """
    if re.search(r"^CONFIG_PT_RECLAIM=y$", text, re.M):
        return True
    if re.search(r"^# CONFIG_PT_RECLAIM is not set$", text, re.M):
        return False
    if re.search(r"^CONFIG_MMU=y$", text, re.M):
        return False  # a complete config without the symbol: the option does not exist
    return None


def read_config(release: str, paths: tuple[str, ...] = CONFIG_PATHS) -> tuple[str, str] | None:
    """(path, text) of the first readable kernel config, or None."""
    for pattern in paths:
        path = pattern.format(release=release)
        try:
            if path.endswith(".gz"):
                with gzip.open(path, "rt", errors="replace") as fh:
                    return path, fh.read()
            with open(path, errors="replace") as fh:
                return path, fh.read()
        except (OSError, EOFError):
            continue
    return None


def probe_pt_reclaim() -> tuple[bool, str]:
    """Ask the kernel itself: 4 MiB mapping 2 MiB-aligned (two PTE tables), touch every
    page, MADV_DONTNEED all of it; with PT_RECLAIM VmPTE falls by 8 KiB."""
    region, _ = linux.find_free_region(linux.read_maps())
    size = 2 * linux.PMD_SIZE
    addr = linux.mmap_anon(region, size)
    try:
        linux.madvise(addr, size, linux.MADV_NOHUGEPAGE)
        linux.touch(addr, size, linux.PAGE_SIZE)
        before = linux.vmpte_kib()
        linux.madvise(addr, size, linux.MADV_DONTNEED)
        after = linux.vmpte_kib()
    finally:
        linux.munmap(addr, size)
    freed = before - after
    return freed >= 8, f"probe: MADV_DONTNEED of a touched 4 MiB mapping, VmPTE {before}→{after} kB"


def has_vmpte() -> bool:
    try:
        linux.vmpte_kib()
    except OSError:
        return False
    return True


def detect_kernel(
    *,
    probe: bool = True,
    config_paths: tuple[str, ...] = CONFIG_PATHS,
    uname: tuple[str, str] | None = None,
    live: bool | None = None,
) -> KernelInfo:
    """Detect the running kernel (``uname``/``live`` override for tests and lessons)."""
    if uname is None:
        u = os.uname() if hasattr(os, "uname") else None
        system, release = (u.sysname, u.release) if u else (sys.platform, "")
    else:
        system, release = uname
    version = parse_version(release) if system == "Linux" else None
    if live is None:
        live = system == "Linux" and has_vmpte()
    thp = linux.thp_mode() if live else "unavailable"
    if not live:
        return KernelInfo(system, release, version, False, True,
                          "predictions only: assumed a 6.14+ kernel with PT_RECLAIM", thp)
    if version is not None and version < PT_RECLAIM_FIRST:
        return KernelInfo(system, release, version, True, False,
                          f"version {version[0]}.{version[1]} < 6.14 has no PT_RECLAIM", thp)
    found = read_config(release, config_paths)
    if found is not None:
        value = config_pt_reclaim(found[1])
        if value is not None:
            word = "=y" if value else " not set"
            return KernelInfo(system, release, version, True, value,
                              f"{found[0]}: CONFIG_PT_RECLAIM{word}", thp)
    if probe:
        value, how = probe_pt_reclaim()
        return KernelInfo(system, release, version, True, value, how, thp)
    return KernelInfo(system, release, version, True, True,
                      "no readable config, probe disabled: assumed PT_RECLAIM (6.14+ default)",
                      thp)


@functools.lru_cache(maxsize=1)
def running_kernel() -> KernelInfo:
    """:func:`detect_kernel` once per process."""
    return detect_kernel()
