"""ptlab.arch.x86.paging: address split, canonical check, entry encoding.

Expected values come from the x86-64 geometry (kernel-facts §1.1: 9 index bits per level,
shifts 39/30/21/12, 48- or 57-bit canonical addresses) and the entry bits of §1.2.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ptlab.arch.x86 import paging as pg
from ptlab.arch.x86.paging import (
    _PAGE_ACCESSED,
    _PAGE_DIRTY,
    _PAGE_NX,
    _PAGE_PRESENT,
    _PAGE_PSE,
    _PAGE_RW,
    _PAGE_TABLE,
    _PAGE_USER,
    check_canonical,
    decode_entry,
    entry_flags,
    entry_pfn,
    format_entry,
    mk_entry,
    parse_address,
    pmd_leaf,
    split_vaddr,
)


def test_geometry_constants() -> None:
    assert pg.PAGE_SIZE == 4096
    assert pg.PMD_SIZE == 2 << 20 and pg.PUD_SIZE == 1 << 30
    assert pg.PTRS_PER_PTE == pg.PTRS_PER_PMD == pg.PTRS_PER_PUD == pg.PTRS_PER_PGD == 512
    # bits 12..51 inclusive are the frame number
    assert sum(1 << b for b in range(12, 52)) == pg.PTE_PFN_MASK


def test_issue_example_split() -> None:
    # 0x7ffc12345678: bits 47..39 = 0xff = 255, 38..30 = 0x1f0 = 496, 29..21 = 0x91 = 145,
    # 20..12 = 0x145 = 325, 11..0 = 0x678 (worked by hand from the hex digits)
    s = split_vaddr(0x7FFC12345678)
    assert (s.levels, s.pgd, s.p4d, s.pud, s.pmd, s.pte, s.offset) == (
        4, 255, None, 496, 145, 325, 0x678
    )
    assert [name for name, _ in s.indices()] == ["pgd", "pud", "pmd", "pte"]


def test_five_level_split_has_p4d() -> None:
    # With LA57 the PGD index is bits 56..48 (all zero here) and P4D takes bits 47..39.
    s = split_vaddr(0x7FFC12345678, levels=5)
    assert (s.pgd, s.p4d, s.pud, s.pmd, s.pte) == (0, 255, 496, 145, 325)
    assert [name for name, _ in s.indices()] == ["pgd", "p4d", "pud", "pmd", "pte"]


def test_index_helpers_match_split() -> None:
    addr = 0x7FFC12345678
    assert pg.pgd_index(addr) == 255 and pg.pud_index(addr) == 496
    assert pg.pmd_index(addr) == 145 and pg.pte_index(addr) == 325
    assert pg.pgd_index(addr, levels=5) == 0 and pg.p4d_index(addr) == 255


@given(st.one_of(st.integers(0, (1 << 47) - 1), st.integers((1 << 64) - (1 << 47), (1 << 64) - 1)))
def test_split_reassembles_to_address(addr: int) -> None:
    s = split_vaddr(addr)
    low = (s.pgd << 39) | (s.pud << 30) | (s.pmd << 21) | (s.pte << 12) | s.offset
    # sign-extend bit 47 to recover the canonical 64-bit address
    assert (low | (0xFFFF << 48) if low >> 47 else low) == addr


@pytest.mark.parametrize(
    ("addr", "levels"),
    [(0, 4), (0x7FFF_FFFF_FFFF, 4), (0xFFFF_8000_0000_0000, 4), ((1 << 64) - 1, 4),
     (0x00FF_FFFF_FFFF_FFFF, 5), (0xFF00_0000_0000_0000, 5), (0x8000_0000_0000, 5)],
)
def test_canonical_accepts(addr: int, levels: int) -> None:
    assert check_canonical(addr, levels) == addr


@pytest.mark.parametrize(
    ("addr", "levels"),
    [(0x8000_0000_0000, 4), (0xFFFF_7FFF_FFFF_FFFF, 4), (0x0100_0000_0000_0000, 5),
     (0xFEFF_FFFF_FFFF_FFFF, 5)],
)
def test_canonical_rejects_with_ranges(addr: int, levels: int) -> None:
    with pytest.raises(ValueError) as exc:
        check_canonical(addr, levels)
    msg = str(exc.value)
    assert f"{addr:#x}" in msg and "allowed" in msg
    low_end = (1 << 47) - 1 if levels == 4 else (1 << 56) - 1
    assert f"{low_end:#x}" in msg


@pytest.mark.parametrize("bad", [-1, 1 << 64, "0x10", 1.5])
def test_canonical_rejects_non_addresses(bad: object) -> None:
    with pytest.raises(ValueError):
        check_canonical(bad)  # type: ignore[arg-type]


@pytest.mark.parametrize("levels", [3, 6, True])
def test_bad_levels(levels: int) -> None:
    with pytest.raises(ValueError, match="levels"):
        split_vaddr(0x1000, levels)


@pytest.mark.parametrize(
    ("text", "value"),
    [("0x7ffc12345678", 0x7FFC12345678), ("0X7FFC_1234_5678", 0x7FFC12345678),
     ("4096", 4096), ("  0x10 ", 16), ("1_000", 1000)],
)
def test_parse_address(text: str, value: int) -> None:
    assert parse_address(text) == value


@pytest.mark.parametrize("text", ["", "0x", "zz", "12ab", "-5", "0xg1", "0x1" + "0" * 16])
def test_parse_address_rejects(text: str) -> None:
    with pytest.raises(ValueError) as exc:
        parse_address(text)
    assert repr(text) in str(exc.value)


def test_page_table_flags() -> None:
    # P|RW|US|A|D = bits 0,1,2,5,6 = 1+2+4+32+64 = 0x67
    assert _PAGE_TABLE == 0x67
    assert _PAGE_PSE == 0x80 and _PAGE_NX == 1 << 63


def test_entry_roundtrip_and_format() -> None:
    e = mk_entry(0x123456, _PAGE_TABLE)
    assert e == 0x0000000123456067
    assert entry_pfn(e) == 0x123456 and entry_flags(e) == 0x67
    assert format_entry(e) == "0x0000000123456067 pfn=0x123456 P RW US A D"
    bits = decode_entry(e | _PAGE_NX)
    assert (bits.P, bits.RW, bits.US, bits.A, bits.D, bits.NX, bits.PSE, bits.G) == (
        True, True, True, True, True, True, False, False
    )
    assert bits.pfn == 0x123456
    assert format_entry(0) == "0x0000000000000000 (none)"


def test_mk_entry_rejects_bad_values() -> None:
    with pytest.raises(ValueError, match="pfn"):
        mk_entry(1 << 40, 0)
    with pytest.raises(ValueError, match="flags"):
        mk_entry(1, 1 << 12)  # bit 12 belongs to the pfn field


def test_entry_predicates() -> None:
    table = mk_entry(5, _PAGE_TABLE)
    huge = mk_entry(512, _PAGE_PRESENT | _PAGE_RW | _PAGE_USER | _PAGE_ACCESSED | _PAGE_PSE)
    assert pg.pte_none(0) and not pg.pte_none(table)
    assert pg.pmd_none(0) and pg.pte_present(table)
    assert pmd_leaf(huge) and not pmd_leaf(table)
    # PSE without present is not a leaf (a swap/migration entry shape)
    assert not pmd_leaf(_PAGE_PSE | _PAGE_DIRTY)
