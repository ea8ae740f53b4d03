"""BTF reader: a hand-built blob with known structs, and the running kernel's BTF.

The blob is written byte by byte from the format in include/uapi/linux/btf.h: a 24-byte
header (magic 0xeB9F, version 1, flags, hdr_len, type_off, type_len, str_off, str_len),
then 12-byte ``struct btf_type`` records (name_off, info = kind<<24 | kind_flag<<31 | vlen,
size-or-type) each followed by its kind's tail, then the string section.
"""

from __future__ import annotations

import builtins
import os
import struct
from pathlib import Path
from typing import Any

import pytest

from ptlab.live import btf as B
from ptlab.mm.layout import compare_layouts


class Blob:
    """Builds BTF bytes; type ids are handed out in add order starting at 1."""

    def __init__(self, endian: str = "<") -> None:
        self.e = endian
        self.strings = bytearray(b"\0")
        self.types = bytearray()
        self.next_id = 1

    def s(self, name: str) -> int:
        if not name:
            return 0
        off = len(self.strings)
        self.strings += name.encode() + b"\0"
        return off

    def add(self, kind: int, name: str, size_type: int, vlen: int = 0, kflag: int = 0,
            tail: bytes = b"") -> int:
        info = (kflag << 31) | (kind << 24) | vlen
        self.types += struct.pack(self.e + "III", self.s(name), info, size_type) + tail
        tid = self.next_id
        self.next_id += 1
        return tid

    def u32(self, *vals: int) -> bytes:
        return struct.pack(self.e + f"{len(vals)}I", *vals)

    def members(self, items: list[tuple[str, int, int]]) -> bytes:
        return b"".join(self.u32(self.s(n), t, o) for n, t, o in items)

    def bytes(self) -> bytes:
        hdr = struct.pack(self.e + "HBBIIIII", B.BTF_MAGIC, 1, 0, 24, 0, len(self.types),
                          len(self.types), len(self.strings))
        return hdr + bytes(self.types) + bytes(self.strings)


def build(endian: str = "<") -> bytes:
    b = Blob(endian)
    t_int = b.add(B.BTF_KIND_INT, "int", 4, tail=b.u32((1 << 24) | 32))  # signed, 32 bits
    t_uint = b.add(B.BTF_KIND_INT, "unsigned int", 4, tail=b.u32(32))
    t_ulong = b.add(B.BTF_KIND_INT, "long unsigned int", 8, tail=b.u32(64))
    # struct list_head { struct list_head *next, *prev; } refers to a pointer defined later.
    t_lh = b.add(B.BTF_KIND_STRUCT, "list_head", 16, vlen=2,
                 tail=b.members([("next", 5, 0), ("prev", 5, 64)]))
    t_lhp = b.add(B.BTF_KIND_PTR, "", t_lh)
    assert t_lhp == 5
    t_u32 = b.add(B.BTF_KIND_TYPEDEF, "u32", t_uint)
    t_my = b.add(B.BTF_KIND_TYPEDEF, "myu32", t_u32)  # typedef chain: myu32 -> u32 -> uint
    t_c = b.add(B.BTF_KIND_CONST, "", t_my)
    t_v = b.add(B.BTF_KIND_VOLATILE, "", t_c)
    # struct demo (kind_flag: offsets carry bitfield sizes in the top 8 bits)
    members = [
        ("a", t_v, 0),
        ("flags", t_uint, (1 << 24) | 32),
        ("mode", t_uint, (3 << 24) | 33),
        ("", 11, 64),  # anonymous union
        ("tail", 13, 192),
    ]
    t_demo = b.add(B.BTF_KIND_STRUCT, "demo", 32, vlen=5, kflag=1, tail=b.members(members))
    assert t_demo == 10
    t_union = b.add(B.BTF_KIND_UNION, "", 16, vlen=3,
                    tail=b.members([("x", t_ulong, 0), ("lh", t_lh, 0), ("", 12, 0)]))
    assert t_union == 11
    t_anon = b.add(B.BTF_KIND_STRUCT, "", 16, vlen=2,
                   tail=b.members([("p", t_ulong, 0), ("q", t_ulong, 64)]))
    assert t_anon == 12
    t_arr = b.add(B.BTF_KIND_ARRAY, "", 0, tail=b.u32(t_int, t_int, 2))
    assert t_arr == 13
    # One of every other kind, so the parser has to step over each tail correctly.
    t_enum = b.add(B.BTF_KIND_ENUM, "color", 4, vlen=2, kflag=1,
                   tail=b.u32(b.s("RED"), 0) + b.u32(b.s("MINUS"), 0xFFFFFFFF))
    b.add(B.BTF_KIND_FWD, "opaque", 0)
    b.add(B.BTF_KIND_RESTRICT, "", t_lhp)
    t_proto = b.add(B.BTF_KIND_FUNC_PROTO, "", t_int, vlen=2,
                    tail=b.u32(b.s("x"), t_int) + b.u32(b.s("y"), t_ulong))
    t_func = b.add(B.BTF_KIND_FUNC, "f", t_proto, vlen=1)
    t_var = b.add(B.BTF_KIND_VAR, "v", t_int, tail=b.u32(1))
    b.add(B.BTF_KIND_DATASEC, ".data", 4, vlen=1, tail=b.u32(t_var, 0, 4))
    b.add(B.BTF_KIND_FLOAT, "double", 8)
    b.add(B.BTF_KIND_DECL_TAG, "tag", t_func, tail=b.u32(0xFFFFFFFF))
    b.add(B.BTF_KIND_TYPE_TAG, "user", t_int)
    b.add(B.BTF_KIND_ENUM64, "big", 8, vlen=1, tail=b.u32(b.s("HUGE"), 0, 1))
    assert t_enum == 14
    return b.bytes()


@pytest.fixture(params=["<", ">"], ids=["little-endian", "big-endian"])
def tiny(request: Any) -> B.Btf:
    return B.Btf(build(request.param), source="tiny")


def test_all_kinds_are_parsed(tiny: B.Btf) -> None:
    # 13 structural types + 11 others; void is id 0.
    assert len(tiny) == 25
    assert set(tiny.kind_counts()) == set(B.KIND_NAMES.values())
    assert tiny.enum_values(14) == (("RED", 0), ("MINUS", -1))
    assert tiny.enum_values(24) == (("HUGE", 1 << 32),)
    assert tiny.params(17) == (("x", 1), ("y", 3))
    assert tiny.type(18).name == "f"
    assert tiny.var_linkage(19) == 1
    assert tiny.datasec_vars(20) == ((19, 0, 4),)
    assert tiny.decl_tag_component(22) == -1
    assert tiny.int_encoding(1) == (1, 0, 32)
    assert tiny.array_info(13) == (1, 1, 2)


def test_typedef_chain_resolves(tiny: B.Btf) -> None:
    assert tiny.strip(9) == 2  # volatile const myu32 -> unsigned int
    assert tiny.size_of(9) == 4
    assert tiny.type_name(9) == "volatile const myu32"
    assert tiny.type_name(5) == "struct list_head *"
    assert tiny.type_name(13) == "int[2]"


def test_struct_with_bitfields_anon_union_and_anon_struct(tiny: B.Btf) -> None:
    lay = B.struct_layout(tiny, "demo")
    assert lay.size == 32
    got = {f.name: (f.offset, f.size, f.union, f.bit_offset, f.bit_size, f.path)
           for f in lay.fields}
    assert got == {
        "a": (0, 4, None, None, None, ""),
        # bitfields live in the 4-byte unit of their type at byte 4, bits 32 and 33..35
        "flags": (4, 4, None, 32, 1, ""),
        "mode": (4, 4, None, 33, 3, ""),
        # anonymous union at byte 8: its members share the label union@8
        "x": (8, 8, "union@8", None, None, ""),
        "lh": (8, 16, "union@8", None, None, ""),
        "lh.next": (8, 8, "union@8", None, None, "lh"),
        "lh.prev": (16, 8, "union@8", None, None, "lh"),
        # members of the anonymous struct inside the union
        "p": (8, 8, "union@8", None, None, "{anon struct}"),
        "q": (16, 8, "union@8", None, None, "{anon struct}"),
        "tail": (24, 8, None, None, None, ""),
    }
    assert [f.name for f in lay.aliases("q")] == ["lh", "lh.prev"]


def test_depth_zero_keeps_named_members_whole(tiny: B.Btf) -> None:
    names = B.struct_layout(tiny, "demo", depth=0).names()
    assert "lh" in names and "lh.next" not in names


def test_unknown_struct_and_bad_ids(tiny: B.Btf) -> None:
    with pytest.raises(ValueError, match="no STRUCT named 'nope'"):
        B.struct_layout(tiny, "nope")
    with pytest.raises(ValueError, match="out of range"):
        tiny.type(999)
    with pytest.raises(ValueError, match="not STRUCT/UNION"):
        tiny.members(1)


def test_malformed_blobs_are_rejected() -> None:
    good = build()
    with pytest.raises(ValueError, match="bad BTF magic"):
        B.Btf(b"\0" * 24 + good[24:])
    with pytest.raises(ValueError, match="too short"):
        B.Btf(good[:10])
    with pytest.raises(ValueError, match="run past the end"):
        B.Btf(good[:-5])
    # Make the first type's kind 31 (unknown).
    bad = bytearray(good)
    struct.pack_into("<I", bad, 24 + 4, 31 << 24)
    with pytest.raises(ValueError, match="unknown BTF kind 31"):
        B.Btf(bytes(bad))


def test_load_btf_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValueError, match="does not exist"):
        B.load_btf(tmp_path / "missing")
    path = tmp_path / "tiny.btf"
    path.write_bytes(build())
    assert B.struct_layout(B.load_btf(path), "list_head").size == 16

    def deny(*args: object, **kwargs: object) -> None:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(builtins, "open", deny)
    with pytest.raises(PermissionError, match="permission denied"):
        B.load_btf(path)


def test_live_layout_rejects_unknown_names() -> None:
    with pytest.raises(ValueError, match="allowed: ptdesc, page, rcu_head"):
        B.live_layout("task_struct")


# -- the running kernel's BTF ---------------------------------------------------------------
def _btf_unreadable() -> str | None:
    if not os.path.exists(B.VMLINUX_BTF):
        return f"{B.VMLINUX_BTF} does not exist (kernel without CONFIG_DEBUG_INFO_BTF)"
    if not os.access(B.VMLINUX_BTF, os.R_OK):
        return f"{B.VMLINUX_BTF} is not readable by this user"
    return None


live = pytest.mark.skipif(_btf_unreadable() is not None, reason=str(_btf_unreadable()))


@live
def test_live_ptdesc_equals_ptlab_v618_model() -> None:
    from ptlab.mm import ptdesc

    model = ptdesc.layout("ptdesc", "v6.18")
    kernel = B.live_layout("ptdesc")
    assert compare_layouts(model, kernel) == []
    assert "matches the running kernel" in B.layout_report("ptdesc")


@live
def test_live_small_structs() -> None:
    # struct mmu_table_batch: rcu_head (16) + unsigned int nr (4) + 4 padding, then the
    # flexible tables[] array; kernel-facts §4.1 derives MAX_TABLE_BATCH = (4096-24)/8.
    batch = B.live_layout("mmu_table_batch")
    assert batch.size == 24
    assert batch.field("tables").offset == 24 and batch.field("tables").size == 0
    # struct rcu_head is struct callback_head: two pointers.
    head = B.live_layout("rcu_head")
    assert head.size == 16 and head.names() == ("next", "func")
    # struct mmu_gather has its flag bits packed in one unsigned int at byte 32.
    gather = B.live_layout("mmu_gather")
    freed = gather.field("freed_tables")
    assert (freed.offset, freed.size, freed.bit_size) == (32, 4, 1)


@live
def test_live_report_for_struct_without_model() -> None:
    text = B.layout_report("mmu_table_batch")
    assert "struct mmu_table_batch" in text and "no model" in text


@live
def test_live_page_matches_model_up_to_omitted_sub_members() -> None:
    # ptlab's struct page model may leave out sub-members (buddy_list.next ...) whose
    # parent it has; everything it lists must sit where the kernel has it.
    assert "matches the running kernel" in B.layout_report("page")
