"""x86-64 paging as Linux uses it: geometry, address split, canonical check, entry bits.

Models ``arch/x86/include/asm/pgtable_64_types.h`` and ``pgtable_types.h`` (v6.14; the
values used here did not change up to v6.18).  A virtual address is cut into one 9-bit
index per level plus a 12-bit byte offset.  With 4-level paging the P4D level is *folded*:
the PGD entry plays the role of the P4D entry and there is no P4D table (this is how the
live 6.18 machine of the project runs, having no ``la57`` CPU flag).

>>> s = split_vaddr(0x7ffc12345678)
>>> (s.pgd, s.p4d, s.pud, s.pmd, s.pte, hex(s.offset))
(255, None, 496, 145, 325, '0x678')
>>> format_entry(mk_entry(0x123456, _PAGE_TABLE))
'0x0000000123456067 pfn=0x123456 P RW US A D'
"""

from __future__ import annotations

from dataclasses import dataclass

U64_MASK = (1 << 64) - 1

# --- geometry (pgtable_64_types.h, page_types.h) ---------------------------------------
PAGE_SHIFT = 12
PAGE_SIZE = 1 << PAGE_SHIFT
PAGE_MASK = ~(PAGE_SIZE - 1) & U64_MASK

PTRS_PER_PTE = 512
PTRS_PER_PMD = 512
PTRS_PER_PUD = 512
PTRS_PER_P4D = 512  # when LA57 is enabled; 1 ("folded") with 4-level paging
PTRS_PER_PGD = 512

PMD_SHIFT = 21
PUD_SHIFT = 30
P4D_SHIFT = 39
PGDIR_SHIFT_4 = 39  # 4-level: the PGD entry covers 512 GiB (P4D folded into it)
PGDIR_SHIFT_5 = 48  # 5-level: the PGD entry covers 256 TiB

PMD_SIZE = 1 << PMD_SHIFT
PUD_SIZE = 1 << PUD_SHIFT
P4D_SIZE = 1 << P4D_SHIFT
PMD_MASK = ~(PMD_SIZE - 1) & U64_MASK
PUD_MASK = ~(PUD_SIZE - 1) & U64_MASK
P4D_MASK = ~(P4D_SIZE - 1) & U64_MASK

#: Where ``struct page`` array starts (``VMEMMAP_START``, 4-level layout, no KASLR).
VMEMMAP_START = 0xFFFF_EA00_0000_0000
#: Start of the kernel's direct mapping of all physical memory (``__PAGE_OFFSET``, no KASLR).
PAGE_OFFSET = 0xFFFF_8880_0000_0000
#: ``sizeof(struct page)`` on x86-64 (kernel-facts Appendix A).
STRUCT_PAGE_SIZE = 64

# --- entry bits (pgtable_types.h) ------------------------------------------------------
_PAGE_BIT_PRESENT = 0
_PAGE_BIT_RW = 1
_PAGE_BIT_USER = 2
_PAGE_BIT_PWT = 3
_PAGE_BIT_PCD = 4
_PAGE_BIT_ACCESSED = 5
_PAGE_BIT_DIRTY = 6
_PAGE_BIT_PSE = 7  # huge leaf in a PMD/PUD entry
_PAGE_BIT_PAT = 7  # the same bit in a PTE
_PAGE_BIT_GLOBAL = 8
_PAGE_BIT_SOFTW1 = 9
_PAGE_BIT_SOFTW2 = 10
_PAGE_BIT_SOFTW3 = 11
_PAGE_BIT_PAT_LARGE = 12
_PAGE_BIT_NX = 63

_PAGE_PRESENT = 1 << _PAGE_BIT_PRESENT
_PAGE_RW = 1 << _PAGE_BIT_RW
_PAGE_USER = 1 << _PAGE_BIT_USER
_PAGE_PWT = 1 << _PAGE_BIT_PWT
_PAGE_PCD = 1 << _PAGE_BIT_PCD
_PAGE_ACCESSED = 1 << _PAGE_BIT_ACCESSED
_PAGE_DIRTY = 1 << _PAGE_BIT_DIRTY
_PAGE_PSE = 1 << _PAGE_BIT_PSE
_PAGE_GLOBAL = 1 << _PAGE_BIT_GLOBAL
_PAGE_NX = 1 << _PAGE_BIT_NX

#: Flags of a non-leaf user entry pointing to a lower table (``pmd_populate`` & co).
_PAGE_TABLE = _PAGE_PRESENT | _PAGE_RW | _PAGE_USER | _PAGE_ACCESSED | _PAGE_DIRTY
#: The same for kernel tables (no USER bit).
_KERNPG_TABLE = _PAGE_PRESENT | _PAGE_RW | _PAGE_ACCESSED | _PAGE_DIRTY

#: Physical-frame bits 12..51 of an entry.
PTE_PFN_MASK = ((1 << 52) - 1) & ~(PAGE_SIZE - 1)
MAX_PFN = (1 << 40) - 1

#: Flags the model writes for a written anonymous user page (present, writable, user,
#: accessed, dirty, no-execute).
PAGE_USER_DATA = _PAGE_PRESENT | _PAGE_RW | _PAGE_USER | _PAGE_ACCESSED | _PAGE_DIRTY | _PAGE_NX
#: Flags for a read-only mapping of the shared zero page after a read fault.
PAGE_USER_READONLY = _PAGE_PRESENT | _PAGE_USER | _PAGE_ACCESSED | _PAGE_NX

_FLAG_NAMES: tuple[tuple[str, int], ...] = (
    ("P", _PAGE_PRESENT),
    ("RW", _PAGE_RW),
    ("US", _PAGE_USER),
    ("PWT", _PAGE_PWT),
    ("PCD", _PAGE_PCD),
    ("A", _PAGE_ACCESSED),
    ("D", _PAGE_DIRTY),
    ("PSE", _PAGE_PSE),
    ("G", _PAGE_GLOBAL),
    ("NX", _PAGE_NX),
)

LEVELS_ALLOWED = (4, 5)


def _check_levels(levels: int) -> None:
    if isinstance(levels, bool) or levels not in LEVELS_ALLOWED:
        raise ValueError(f"levels={levels!r} is not supported; allowed: 4 or 5")


def va_bits(levels: int = 4) -> int:
    """Number of significant virtual-address bits: 48 (4-level) or 57 (5-level)."""
    _check_levels(levels)
    return 48 if levels == 4 else 57


def user_half_end(levels: int = 4) -> int:
    """First address above the canonical lower (user) half: 2**47 or 2**56."""
    return 1 << (va_bits(levels) - 1)


def task_size_max(levels: int = 4) -> int:
    """``TASK_SIZE_MAX``: end of the user address space (the top page is a guard page)."""
    return user_half_end(levels) - PAGE_SIZE


def check_canonical(addr: int, levels: int = 4) -> int:
    """Return ``addr`` if it is a canonical 64-bit address for ``levels``-level paging.

    Canonical means bits 63..47 (4-level) or 63..56 (5-level) are all copies of the top
    significant bit.  Anything else raises ``ValueError`` naming the allowed ranges.

    >>> hex(check_canonical(0xffff800000000000))
    '0xffff800000000000'
    >>> check_canonical(0x800000000000)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: address 0x800000000000 is not canonical for 4-level paging (48-bit); ...
    """
    _check_levels(levels)
    if isinstance(addr, bool) or not isinstance(addr, int):
        raise ValueError(f"address {addr!r} must be an int")
    if addr < 0 or addr > U64_MASK:
        raise ValueError(
            f"address {addr:#x} is outside 0..0xffffffffffffffff (a 64-bit unsigned value)"
            if addr >= 0
            else f"address {addr} is negative; addresses are 64-bit unsigned values"
        )
    bits = va_bits(levels)
    low_end = 1 << (bits - 1)
    high_start = U64_MASK + 1 - low_end
    if low_end <= addr < high_start:
        raise ValueError(
            f"address {addr:#x} is not canonical for {levels}-level paging ({bits}-bit); "
            f"allowed: 0x0..{low_end - 1:#x} or {high_start:#x}..{U64_MASK:#x}"
        )
    return addr


def parse_address(text: str) -> int:
    """Parse ``"0x7ffc_1234_5678"``, ``"0X..."`` or decimal text into an int.

    >>> hex(parse_address("0x7ffc_1234_5678"))
    '0x7ffc12345678'
    >>> parse_address("4096")
    4096
    """
    if not isinstance(text, str):
        raise ValueError(f"address {text!r} must be text")
    s = text.strip().replace("_", "")
    try:
        if s[:2].lower() == "0x" and len(s) > 2:
            value = int(s[2:], 16)
        elif s.isdigit():
            value = int(s, 10)
        else:
            raise ValueError
    except ValueError:
        raise ValueError(
            f"invalid address {text!r}: expected hexadecimal (0x...) or decimal digits"
        ) from None
    if value > U64_MASK:
        raise ValueError(f"address {text!r} does not fit in 64 bits")
    return value


@dataclass(frozen=True)
class VaddrSplit:
    """The per-level indices of a virtual address.

    ``p4d`` is ``None`` with 4-level paging (the level is folded into the PGD entry).
    """

    levels: int
    pgd: int
    p4d: int | None
    pud: int
    pmd: int
    pte: int
    offset: int

    def indices(self) -> list[tuple[str, int]]:
        """``[(level name, index), ...]`` from the top level down, skipping a folded P4D."""
        out = [("pgd", self.pgd)]
        if self.p4d is not None:
            out.append(("p4d", self.p4d))
        out += [("pud", self.pud), ("pmd", self.pmd), ("pte", self.pte)]
        return out


def split_vaddr(addr: int, levels: int = 4) -> VaddrSplit:
    """Split a canonical virtual address into table indices and the page offset.

    >>> split_vaddr(0x7ffc12345678, levels=5).p4d
    255
    """
    check_canonical(addr, levels)
    idx = PTRS_PER_PTE - 1
    if levels == 4:
        pgd, p4d = (addr >> PGDIR_SHIFT_4) & idx, None
    else:
        pgd, p4d = (addr >> PGDIR_SHIFT_5) & idx, (addr >> P4D_SHIFT) & idx
    return VaddrSplit(
        levels=levels,
        pgd=pgd,
        p4d=p4d,
        pud=(addr >> PUD_SHIFT) & idx,
        pmd=(addr >> PMD_SHIFT) & idx,
        pte=(addr >> PAGE_SHIFT) & idx,
        offset=addr & (PAGE_SIZE - 1),
    )


def pgd_index(addr: int, levels: int = 4) -> int:
    """Index into the PGD (``pgd_index()``); 4-level unless ``levels=5``."""
    shift = PGDIR_SHIFT_4 if levels == 4 else PGDIR_SHIFT_5
    _check_levels(levels)
    return (addr >> shift) & (PTRS_PER_PGD - 1)


def p4d_index(addr: int) -> int:
    """Index into a P4D table (meaningful with 5-level paging only)."""
    return (addr >> P4D_SHIFT) & (PTRS_PER_P4D - 1)


def pud_index(addr: int) -> int:
    """Index into a PUD table (``pud_index()``)."""
    return (addr >> PUD_SHIFT) & (PTRS_PER_PUD - 1)


def pmd_index(addr: int) -> int:
    """Index into a PMD table (``pmd_index()``)."""
    return (addr >> PMD_SHIFT) & (PTRS_PER_PMD - 1)


def pte_index(addr: int) -> int:
    """Index into a PTE table (``pte_index()``)."""
    return (addr >> PAGE_SHIFT) & (PTRS_PER_PTE - 1)


# --- entries -----------------------------------------------------------------------------


def mk_entry(pfn: int, flags: int) -> int:
    """Compose a table entry from a page frame number and flag bits (``pfn_pte()``-like).

    >>> hex(mk_entry(0x102, _PAGE_TABLE))
    '0x102067'
    """
    if isinstance(pfn, bool) or not isinstance(pfn, int) or not 0 <= pfn <= MAX_PFN:
        raise ValueError(f"pfn {pfn!r} out of range; allowed 0..{MAX_PFN:#x} (40 bits)")
    if not isinstance(flags, int) or flags < 0 or flags > U64_MASK or flags & PTE_PFN_MASK:
        raise ValueError(
            f"flags {flags!r} invalid; allowed: 64-bit value with bits 12..51 clear "
            f"(those hold the pfn)"
        )
    return (pfn << PAGE_SHIFT) | flags


def entry_pfn(e: int) -> int:
    """Page frame number in an entry (bits 12..51)."""
    return (e & PTE_PFN_MASK) >> PAGE_SHIFT


def entry_flags(e: int) -> int:
    """All non-pfn bits of an entry."""
    return e & ~PTE_PFN_MASK & U64_MASK


@dataclass(frozen=True)
class EntryBits:
    """An entry's flag bits under their Linux short names, and its pfn."""

    P: bool
    RW: bool
    US: bool
    PWT: bool
    PCD: bool
    A: bool
    D: bool
    PSE: bool
    G: bool
    NX: bool
    pfn: int

    def names(self) -> list[str]:
        """Names of the bits that are set, in bit order (``["P", "RW", ...]``)."""
        return [name for name, _ in _FLAG_NAMES if getattr(self, name)]


def decode_entry(e: int) -> EntryBits:
    """Decode a 64-bit table entry.

    >>> decode_entry(0x8000000000102067).NX
    True
    """
    if isinstance(e, bool) or not isinstance(e, int) or not 0 <= e <= U64_MASK:
        raise ValueError(f"entry {e!r} must be a 64-bit unsigned int")
    kw = {name: bool(e & mask) for name, mask in _FLAG_NAMES}
    return EntryBits(pfn=entry_pfn(e), **kw)


def format_entry(e: int) -> str:
    """One-line rendering: hex value, pfn and set flag names (``(none)`` for 0)."""
    if e == 0:
        return "0x0000000000000000 (none)"
    bits = decode_entry(e)
    return f"{e:#018x} pfn={bits.pfn:#x} " + " ".join(bits.names())


def pte_none(e: int) -> bool:
    """The entry is completely empty (``pte_none()``)."""
    return e == 0


def pmd_none(e: int) -> bool:
    """The PMD entry is completely empty (``pmd_none()``)."""
    return e == 0


def pte_present(e: int) -> bool:
    """Present bit set (the kernel also treats PROTNONE as present; not modelled)."""
    return bool(e & _PAGE_PRESENT)


def pmd_present(e: int) -> bool:
    """Present bit set in a PMD entry."""
    return bool(e & _PAGE_PRESENT)


def pmd_leaf(e: int) -> bool:
    """Present PMD entry mapping a 2 MiB page directly (PSE set), ``pmd_leaf()``."""
    return bool(e & _PAGE_PRESENT) and bool(e & _PAGE_PSE)
