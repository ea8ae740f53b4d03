"""Thin, typed access to the running Linux: libc mmap/madvise/munmap and /proc readers.

Everything here talks to the real kernel of the current process; nothing needs root.
Constants are the x86-64 Linux ABI values (``include/uapi/asm-generic/mman-common.h``).

>>> vmpte_kib() >= 0                                     # doctest: +SKIP
True
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import re
from dataclasses import dataclass

PAGE_SIZE = 4096
PMD_SIZE = 2 << 20
PUD_SIZE = 1 << 30
PGDIR_SIZE = 1 << 39  # 4-level paging: one PGD entry maps 512 GiB

PROT_READ = 0x1
PROT_WRITE = 0x2
MAP_PRIVATE = 0x02
MAP_ANONYMOUS = 0x20
MAP_NORESERVE = 0x4000
MAP_FIXED_NOREPLACE = 0x100000
MADV_DONTNEED = 4
MADV_FREE = 8
MADV_HUGEPAGE = 14
MADV_NOHUGEPAGE = 15

STATUS_PATH = "/proc/self/status"
MAPS_PATH = "/proc/self/maps"
SMAPS_PATH = "/proc/self/smaps"
MEMINFO_PATH = "/proc/meminfo"
THP_DIR = "/sys/kernel/mm/transparent_hugepage"

_MAP_FAILED = ctypes.c_void_p(-1).value


class LiveError(OSError):
    """A system call on the live kernel failed (message names the call and errno)."""


def _libc() -> ctypes.CDLL:
    name = ctypes.util.find_library("c") or "libc.so.6"
    lib = ctypes.CDLL(name, use_errno=True)
    lib.mmap.restype = ctypes.c_void_p
    lib.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int,
                         ctypes.c_int, ctypes.c_long]
    lib.munmap.restype = ctypes.c_int
    lib.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
    lib.madvise.restype = ctypes.c_int
    lib.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    return lib


_LIBC: ctypes.CDLL | None = None


def libc() -> ctypes.CDLL:
    """The C library, loaded once."""
    global _LIBC
    if _LIBC is None:
        _LIBC = _libc()
    return _LIBC


def _fail(call: str) -> LiveError:
    err = ctypes.get_errno()
    return LiveError(err, f"{call} failed: {os.strerror(err)} (errno {err})")


def mmap_anon(addr: int, length: int) -> int:
    """Map ``length`` bytes of private anonymous memory exactly at ``addr``
    (MAP_FIXED_NOREPLACE: fails instead of clobbering an existing mapping)."""
    flags = MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED_NOREPLACE
    got = libc().mmap(addr, length, PROT_READ | PROT_WRITE, flags, -1, 0)
    if got is None or got == _MAP_FAILED:
        raise _fail(f"mmap(0x{addr:x}, {length})")
    if got != addr:  # kernels before 4.17 ignore MAP_FIXED_NOREPLACE and treat it as a hint
        libc().munmap(got, length)
        raise LiveError(0, f"mmap(0x{addr:x}) placed the mapping at 0x{got:x}")
    return int(got)


def munmap(addr: int, length: int) -> None:
    if libc().munmap(addr, length) != 0:
        raise _fail(f"munmap(0x{addr:x}, {length})")


def madvise(addr: int, length: int, advice: int) -> None:
    if libc().madvise(addr, length, advice) != 0:
        raise _fail(f"madvise(0x{addr:x}, {length}, {advice})")


_ONES = b"\x01" * 4096


def touch(addr: int, length: int, stride: int) -> None:
    """Write one byte every ``stride`` bytes of [addr, addr+length) (page faults).

    Writes in chunks from a preallocated buffer: no large temporary object is created
    while VmPTE is being measured (a big malloc would mmap and add page tables itself).
    """
    if length <= 0:
        return
    buf = (ctypes.c_ubyte * length).from_address(addr)
    view = memoryview(buf).cast("B")
    chunk = len(_ONES) * stride
    for lo in range(0, length, chunk):
        hi = min(lo + chunk, length)
        view[lo:hi:stride] = _ONES[: (hi - lo + stride - 1) // stride]
    view.release()


# -- /proc readers --------------------------------------------------------------------
_STATUS_BUF = bytearray(16384)
_VMPTE = re.compile(rb"VmPTE:\s*(\d+) kB")


def vmpte_kib() -> int:
    """``VmPTE`` of this process in KiB (all page-table levels, kernel-facts §6.4).

    Reads into a preallocated buffer so that reading it does not itself grow the heap.
    """
    fd = os.open(STATUS_PATH, os.O_RDONLY)
    try:
        n = os.readv(fd, [_STATUS_BUF])
    finally:
        os.close(fd)
    m = _VMPTE.search(_STATUS_BUF, 0, n)
    if m is None:
        raise LiveError(0, f"{STATUS_PATH} has no VmPTE line")
    return int(m.group(1))


def meminfo_kib(key: str) -> int:
    """One field of /proc/meminfo in KiB (e.g. ``"PageTables"``)."""
    with open(MEMINFO_PATH, "rb") as fh:
        for line in fh:
            if line.startswith(key.encode() + b":"):
                return int(line.split()[1])
    raise LiveError(0, f"{MEMINFO_PATH} has no {key} line")


@dataclass(frozen=True)
class Vma:
    """One line of /proc/self/maps: [start, end) and its name (may be empty)."""

    start: int
    end: int
    perms: str
    name: str


def read_maps(path: str = MAPS_PATH) -> list[Vma]:
    """The VMAs of this process, sorted by address."""
    out = []
    with open(path) as fh:
        for line in fh:
            parts = line.split(maxsplit=5)
            lo, hi = parts[0].split("-")
            out.append(Vma(int(lo, 16), int(hi, 16), parts[1],
                           parts[5].strip() if len(parts) > 5 else ""))
    return sorted(out, key=lambda v: v.start)


def anon_huge_kib(start: int, end: int, path: str = SMAPS_PATH) -> int:
    """Sum of ``AnonHugePages`` of the VMAs inside [start, end) (THP actually used)."""
    total = 0
    inside = False
    with open(path) as fh:
        for line in fh:
            head = line.split(maxsplit=1)[0]
            if "-" in head and not head.endswith(":"):
                lo, hi = head.split("-")
                inside = start <= int(lo, 16) and int(hi, 16) <= end
            elif inside and head == "AnonHugePages:":
                total += int(line.split()[1])
    return total


def thp_mode() -> str:
    """The effective THP mode for PMD-sized pages: "always", "madvise", "never" or
    "unavailable" (no THP in this kernel).  A per-size setting for 2048 kB (mTHP,
    Linux 6.8+) overrides the global one unless it says "inherit"."""

    def bracketed(path: str) -> str | None:
        try:
            with open(path) as fh:
                text = fh.read()
        except OSError:
            return None
        m = re.search(r"\[(\w+)\]", text)
        return m.group(1) if m else None

    top = bracketed(f"{THP_DIR}/enabled")
    if top is None:
        return "unavailable"
    per_size = bracketed(f"{THP_DIR}/hugepages-2048kB/enabled")
    if per_size is not None and per_size != "inherit":
        return per_size
    return top


# -- where to put an experiment ---------------------------------------------------------
USER_TOP = 1 << 47  # 4-level user address space ends here


def find_free_region(maps: list[Vma], *, margin: int = PUD_SIZE) -> tuple[int, Vma]:
    """A 1 GiB-aligned, 1 GiB-long region with no VMA in it nor within ``margin`` of it,
    inside the 512 GiB PGD-entry span of the stack (returned as the *anchor*).

    Why: the stack has certainly been touched, so its span already has a PUD table that
    outlives the experiment; the experiment then owns the PMD table and every PTE table
    of its region, and its VmPTE deltas do not depend on other mappings.  The margin keeps
    the kernel's top-down placement of unrelated mmap() calls (which hug the VMA above a
    gap) out of the region.  Among the candidates, the one farthest from any VMA wins
    (lowest address on ties), so the choice is deterministic for a given map.
    """
    user = [v for v in maps if v.end <= USER_TOP]
    if not user:
        raise ValueError("no user-space VMAs in /proc/self/maps")
    stacks = [v for v in user if v.name == "[stack]"]
    anchor = stacks[0] if stacks else max(user, key=lambda v: v.end)
    lo = anchor.start & ~(PGDIR_SIZE - 1)
    hi = min(lo + PGDIR_SIZE, USER_TOP)
    best: tuple[int, int] | None = None
    for base in range(lo, hi, PUD_SIZE):
        end = base + PUD_SIZE
        gap = min(
            (max(v.start - end, base - v.end) for v in user),
            default=PGDIR_SIZE,
        )
        if gap < margin:
            continue
        if best is None or gap > best[0]:
            best = (gap, base)
    if best is None:
        raise ValueError(
            f"no free 1 GiB region in the 512 GiB span 0x{lo:x}-0x{hi:x} of the stack"
        )
    return best[1], anchor
