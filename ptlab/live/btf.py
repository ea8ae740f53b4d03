"""A pure-Python reader for BTF, the kernel's own description of its types.

Models the on-disk format described by ``include/uapi/linux/btf.h`` (Linux 5.x–6.18): a
header, a *type section* (one ``struct btf_type`` record per type, each followed by a
kind-specific tail) and a *string section* (NUL-terminated names).  The running kernel
exports its BTF at ``/sys/kernel/btf/vmlinux`` (world-readable); Debian's pahole 1.24
cannot read the kinds newer kernels emit, so ptlab reads the bytes itself.

The reader makes one fast pass over the type section (record kind, name and where each
tail starts) and decodes members lazily, so the whole 6.18 vmlinux BTF (~126k types)
loads in a fraction of a second.

>>> btf = load_btf()                                     # doctest: +SKIP
>>> struct_layout(btf, "mmu_table_batch").size          # doctest: +SKIP
24

Layouts are returned as :class:`ptlab.mm.layout.StructLayout`, the same data ptlab's own
models use, so they can be compared with :func:`ptlab.mm.layout.compare_layouts`.
"""

from __future__ import annotations

import functools
import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass

from ptlab.mm.layout import Field, FieldDifference, StructLayout, compare_layouts

VMLINUX_BTF = "/sys/kernel/btf/vmlinux"
BTF_MAGIC = 0xEB9F

# Kind numbers of include/uapi/linux/btf.h.
BTF_KIND_INT = 1
BTF_KIND_PTR = 2
BTF_KIND_ARRAY = 3
BTF_KIND_STRUCT = 4
BTF_KIND_UNION = 5
BTF_KIND_ENUM = 6
BTF_KIND_FWD = 7
BTF_KIND_TYPEDEF = 8
BTF_KIND_VOLATILE = 9
BTF_KIND_CONST = 10
BTF_KIND_RESTRICT = 11
BTF_KIND_FUNC = 12
BTF_KIND_FUNC_PROTO = 13
BTF_KIND_VAR = 14
BTF_KIND_DATASEC = 15
BTF_KIND_FLOAT = 16
BTF_KIND_DECL_TAG = 17
BTF_KIND_TYPE_TAG = 18
BTF_KIND_ENUM64 = 19

KIND_NAMES: dict[int, str] = {
    BTF_KIND_INT: "INT",
    BTF_KIND_PTR: "PTR",
    BTF_KIND_ARRAY: "ARRAY",
    BTF_KIND_STRUCT: "STRUCT",
    BTF_KIND_UNION: "UNION",
    BTF_KIND_ENUM: "ENUM",
    BTF_KIND_FWD: "FWD",
    BTF_KIND_TYPEDEF: "TYPEDEF",
    BTF_KIND_VOLATILE: "VOLATILE",
    BTF_KIND_CONST: "CONST",
    BTF_KIND_RESTRICT: "RESTRICT",
    BTF_KIND_FUNC: "FUNC",
    BTF_KIND_FUNC_PROTO: "FUNC_PROTO",
    BTF_KIND_VAR: "VAR",
    BTF_KIND_DATASEC: "DATASEC",
    BTF_KIND_FLOAT: "FLOAT",
    BTF_KIND_DECL_TAG: "DECL_TAG",
    BTF_KIND_TYPE_TAG: "TYPE_TAG",
    BTF_KIND_ENUM64: "ENUM64",
}

# Size of the kind-specific tail that follows the 12-byte struct btf_type:
# (fixed bytes, bytes per vlen item).
_TAIL: dict[int, tuple[int, int]] = {
    BTF_KIND_INT: (4, 0),
    BTF_KIND_PTR: (0, 0),
    BTF_KIND_ARRAY: (12, 0),
    BTF_KIND_STRUCT: (0, 12),
    BTF_KIND_UNION: (0, 12),
    BTF_KIND_ENUM: (0, 8),
    BTF_KIND_FWD: (0, 0),
    BTF_KIND_TYPEDEF: (0, 0),
    BTF_KIND_VOLATILE: (0, 0),
    BTF_KIND_CONST: (0, 0),
    BTF_KIND_RESTRICT: (0, 0),
    BTF_KIND_FUNC: (0, 0),
    BTF_KIND_FUNC_PROTO: (0, 8),
    BTF_KIND_VAR: (4, 0),
    BTF_KIND_DATASEC: (0, 12),
    BTF_KIND_FLOAT: (0, 0),
    BTF_KIND_DECL_TAG: (4, 0),
    BTF_KIND_TYPE_TAG: (0, 0),
    BTF_KIND_ENUM64: (0, 12),
}

# Kinds whose "size_type" word is a type id that only qualifies/renames another type.
_QUALIFIERS = frozenset(
    {BTF_KIND_TYPEDEF, BTF_KIND_VOLATILE, BTF_KIND_CONST, BTF_KIND_RESTRICT, BTF_KIND_TYPE_TAG}
)
POINTER_SIZE = 8  # x86-64
ANON_STRUCT_PATH = "{anon struct}"

# Struct names ptlab knows how to show, and the BTF struct each one is.  There is no
# struct rcu_head in BTF: the kernel #defines rcu_head to callback_head.
LIVE_STRUCTS: dict[str, str] = {
    "ptdesc": "ptdesc",
    "page": "page",
    "rcu_head": "callback_head",
    "mmu_table_batch": "mmu_table_batch",
    "mmu_gather": "mmu_gather",
}


@dataclass(frozen=True)
class BtfMember:
    """One member of a STRUCT/UNION (``struct btf_member``), offsets in bits."""

    name: str
    type_id: int
    bit_offset: int
    bit_size: int  # 0 unless the member is a bitfield


@dataclass(frozen=True)
class BtfType:
    """A decoded type record.  ``size_or_type`` is a size (INT, STRUCT, UNION, ENUM,
    DATASEC, FLOAT, ENUM64) or a referenced type id (the others)."""

    id: int
    kind: int
    name: str
    vlen: int
    kind_flag: bool
    size_or_type: int

    @property
    def kind_name(self) -> str:
        return KIND_NAMES[self.kind]


class Btf:
    """Parsed BTF: type records indexed by id (id 0 is ``void``)."""

    def __init__(self, data: bytes, *, source: str = "<bytes>") -> None:
        self.source = source
        if len(data) < 24:
            raise ValueError(f"{source}: {len(data)} bytes is too short for a BTF header (24)")
        magic_le = struct.unpack_from("<H", data, 0)[0]
        if magic_le == BTF_MAGIC:
            self._endian = "<"
        elif struct.unpack_from(">H", data, 0)[0] == BTF_MAGIC:
            self._endian = ">"
        else:
            raise ValueError(
                f"{source}: bad BTF magic 0x{magic_le:04x}; a BTF file starts with 0x{BTF_MAGIC:x}"
            )
        e = self._endian
        version, _flags, hdr_len, type_off, type_len, str_off, str_len = struct.unpack_from(
            e + "BBIIIII", data, 2
        )
        if version != 1:
            raise ValueError(f"{source}: BTF version {version} is not supported (only 1)")
        t0, s0 = hdr_len + type_off, hdr_len + str_off
        if t0 + type_len > len(data) or s0 + str_len > len(data):
            raise ValueError(f"{source}: BTF sections run past the end of the file")
        self._data = data
        self._strings = data[s0 : s0 + str_len]
        # Parallel lists indexed by type id; index 0 is void.
        kinds = [0]
        names = [0]
        infos = [0]
        size_types = [0]
        tails = [0]
        unpack = struct.Struct(e + "III").unpack_from
        tail = _TAIL
        off, end = t0, t0 + type_len
        while off < end:
            name_off, info, size_type = unpack(data, off)
            kind = (info >> 24) & 0x1F
            try:
                fixed, per_item = tail[kind]
            except KeyError:
                raise ValueError(
                    f"{source}: type id {len(kinds)} has unknown BTF kind {kind}; "
                    f"known kinds are 1..{max(KIND_NAMES)}"
                ) from None
            kinds.append(kind)
            names.append(name_off)
            infos.append(info)
            size_types.append(size_type)
            tails.append(off + 12)
            off += 12 + fixed + per_item * (info & 0xFFFF)
        if off != end:
            raise ValueError(f"{source}: type section is truncated (last record overruns it)")
        self._kinds = kinds
        self._name_offs = names
        self._infos = infos
        self._size_types = size_types
        self._tails = tails
        self._by_name: dict[int, dict[str, list[int]]] = {}

    # -- basic access -------------------------------------------------------------
    def __len__(self) -> int:
        """Number of types including ``void`` (id 0)."""
        return len(self._kinds)

    def _check_id(self, type_id: int) -> None:
        if not 0 <= type_id < len(self._kinds):
            raise ValueError(f"BTF type id {type_id} out of range 0..{len(self._kinds) - 1}")

    def string(self, offset: int) -> str:
        """The NUL-terminated string at ``offset`` of the string section."""
        if not 0 <= offset < max(len(self._strings), 1):
            raise ValueError(f"string offset {offset} outside the string section")
        stop = self._strings.find(b"\0", offset)
        return self._strings[offset : stop if stop >= 0 else None].decode("utf-8", "replace")

    def kind(self, type_id: int) -> int:
        self._check_id(type_id)
        return self._kinds[type_id]

    def name(self, type_id: int) -> str:
        self._check_id(type_id)
        return self.string(self._name_offs[type_id]) if type_id else "void"

    def type(self, type_id: int) -> BtfType:
        """The decoded record of ``type_id``."""
        self._check_id(type_id)
        if type_id == 0:
            return BtfType(0, 0, "void", 0, False, 0)
        info = self._infos[type_id]
        return BtfType(
            type_id,
            self._kinds[type_id],
            self.name(type_id),
            info & 0xFFFF,
            bool(info >> 31),
            self._size_types[type_id],
        )

    def types(self) -> Iterator[BtfType]:
        for i in range(1, len(self._kinds)):
            yield self.type(i)

    def kind_counts(self) -> dict[str, int]:
        """How many types of each kind (sorted by kind number)."""
        counts: dict[str, int] = {}
        for k in sorted(set(self._kinds[1:])):
            counts[KIND_NAMES[k]] = 0
        for k in self._kinds[1:]:
            counts[KIND_NAMES[k]] += 1
        return counts

    # -- kind-specific tails ------------------------------------------------------
    def _u32s(self, offset: int, count: int) -> tuple[int, ...]:
        return struct.unpack_from(f"{self._endian}{count}I", self._data, offset)

    def members(self, type_id: int) -> tuple[BtfMember, ...]:
        """Members of a STRUCT or UNION.  With kind_flag set, the offset word packs the
        bitfield size in its top 8 bits and the bit offset in the low 24 bits."""
        kind = self.kind(type_id)
        if kind not in (BTF_KIND_STRUCT, BTF_KIND_UNION):
            raise ValueError(f"type id {type_id} is {KIND_NAMES.get(kind, kind)}, not STRUCT/UNION")
        info = self._infos[type_id]
        vlen, kflag = info & 0xFFFF, bool(info >> 31)
        words = self._u32s(self._tails[type_id], 3 * vlen)
        out = []
        for i in range(vlen):
            name_off, mtype, moff = words[3 * i : 3 * i + 3]
            bit_size, bit_off = ((moff >> 24), moff & 0xFFFFFF) if kflag else (0, moff)
            out.append(BtfMember(self.string(name_off), mtype, bit_off, bit_size))
        return tuple(out)

    def int_encoding(self, type_id: int) -> tuple[int, int, int]:
        """(encoding bits: 1 signed / 2 char / 4 bool, bit offset, number of bits) of an INT."""
        if self.kind(type_id) != BTF_KIND_INT:
            raise ValueError(f"type id {type_id} is not an INT")
        word = self._u32s(self._tails[type_id], 1)[0]
        return (word >> 24) & 0x0F, (word >> 16) & 0xFF, word & 0xFF

    def array_info(self, type_id: int) -> tuple[int, int, int]:
        """(element type id, index type id, number of elements) of an ARRAY."""
        if self.kind(type_id) != BTF_KIND_ARRAY:
            raise ValueError(f"type id {type_id} is not an ARRAY")
        elem, index, nelems = self._u32s(self._tails[type_id], 3)
        return elem, index, nelems

    def enum_values(self, type_id: int) -> tuple[tuple[str, int], ...]:
        """(name, value) pairs of an ENUM (32-bit, signed if kind_flag) or ENUM64."""
        kind = self.kind(type_id)
        info = self._infos[type_id]
        vlen, signed = info & 0xFFFF, bool(info >> 31)
        if kind == BTF_KIND_ENUM:
            words = self._u32s(self._tails[type_id], 2 * vlen)
            vals = []
            for i in range(vlen):
                v = words[2 * i + 1]
                if signed and v >= 1 << 31:
                    v -= 1 << 32
                vals.append((self.string(words[2 * i]), v))
            return tuple(vals)
        if kind == BTF_KIND_ENUM64:
            words = self._u32s(self._tails[type_id], 3 * vlen)
            vals = []
            for i in range(vlen):
                v = words[3 * i + 1] | (words[3 * i + 2] << 32)
                if signed and v >= 1 << 63:
                    v -= 1 << 64
                vals.append((self.string(words[3 * i]), v))
            return tuple(vals)
        raise ValueError(f"type id {type_id} is not an ENUM/ENUM64")

    def params(self, type_id: int) -> tuple[tuple[str, int], ...]:
        """(name, type id) of each FUNC_PROTO parameter."""
        if self.kind(type_id) != BTF_KIND_FUNC_PROTO:
            raise ValueError(f"type id {type_id} is not a FUNC_PROTO")
        vlen = self._infos[type_id] & 0xFFFF
        words = self._u32s(self._tails[type_id], 2 * vlen)
        return tuple((self.string(words[2 * i]), words[2 * i + 1]) for i in range(vlen))

    def var_linkage(self, type_id: int) -> int:
        if self.kind(type_id) != BTF_KIND_VAR:
            raise ValueError(f"type id {type_id} is not a VAR")
        return self._u32s(self._tails[type_id], 1)[0]

    def datasec_vars(self, type_id: int) -> tuple[tuple[int, int, int], ...]:
        """(var type id, offset, size) of each DATASEC entry."""
        if self.kind(type_id) != BTF_KIND_DATASEC:
            raise ValueError(f"type id {type_id} is not a DATASEC")
        vlen = self._infos[type_id] & 0xFFFF
        w = self._u32s(self._tails[type_id], 3 * vlen)
        return tuple((w[3 * i], w[3 * i + 1], w[3 * i + 2]) for i in range(vlen))

    def decl_tag_component(self, type_id: int) -> int:
        """Member/parameter index a DECL_TAG applies to (-1: the whole declaration)."""
        if self.kind(type_id) != BTF_KIND_DECL_TAG:
            raise ValueError(f"type id {type_id} is not a DECL_TAG")
        v = self._u32s(self._tails[type_id], 1)[0]
        return v - (1 << 32) if v >= 1 << 31 else v

    # -- resolution ---------------------------------------------------------------
    def strip(self, type_id: int) -> int:
        """Follow typedef/const/volatile/restrict/type_tag links to the underlying type."""
        seen = 0
        while self.kind(type_id) in _QUALIFIERS:
            type_id = self._size_types[type_id]
            seen += 1
            if seen > 64:
                raise ValueError(f"typedef chain loops at type id {type_id}")
        return type_id

    def size_of(self, type_id: int) -> int:
        """sizeof() the type in bytes (void and functions: 0)."""
        t = self.strip(type_id)
        kind = self._kinds[t]
        if kind in (BTF_KIND_INT, BTF_KIND_STRUCT, BTF_KIND_UNION, BTF_KIND_ENUM,
                    BTF_KIND_ENUM64, BTF_KIND_FLOAT, BTF_KIND_DATASEC):
            return self._size_types[t]
        if kind == BTF_KIND_PTR:
            return POINTER_SIZE
        if kind == BTF_KIND_ARRAY:
            elem, _, n = self.array_info(t)
            return n * self.size_of(elem)
        return 0

    def type_name(self, type_id: int) -> str:
        """A C-like spelling: ``struct list_head``, ``unsigned long *``, ``void *[8]``."""
        kind = self.kind(type_id)
        name = self.name(type_id)
        if type_id == 0:
            return "void"
        if kind in (BTF_KIND_STRUCT, BTF_KIND_UNION, BTF_KIND_ENUM, BTF_KIND_ENUM64):
            word = "struct" if kind == BTF_KIND_STRUCT else "union" if kind == BTF_KIND_UNION \
                else "enum"
            return f"{word} {name or '{anon}'}"
        if kind == BTF_KIND_FWD:
            return f"{'union' if self._infos[type_id] >> 31 else 'struct'} {name}"
        if kind == BTF_KIND_PTR:
            return self.type_name(self._size_types[type_id]) + " *"
        if kind == BTF_KIND_ARRAY:
            elem, _, n = self.array_info(type_id)
            return f"{self.type_name(elem)}[{n}]"
        if kind in (BTF_KIND_CONST, BTF_KIND_VOLATILE, BTF_KIND_RESTRICT):
            word = {BTF_KIND_CONST: "const", BTF_KIND_VOLATILE: "volatile",
                    BTF_KIND_RESTRICT: "restrict"}[kind]
            return f"{word} {self.type_name(self._size_types[type_id])}"
        if kind == BTF_KIND_TYPE_TAG:
            return self.type_name(self._size_types[type_id])
        if kind == BTF_KIND_FUNC_PROTO:
            return "func_proto"
        return name

    def find(self, name: str, kind: int = BTF_KIND_STRUCT) -> int:
        """Type id of the first type called ``name`` of ``kind``; ``ValueError`` if none."""
        table = self._by_name.get(kind)
        if table is None:
            table = {}
            for i, k in enumerate(self._kinds):
                if k == kind and self._name_offs[i]:
                    table.setdefault(self.string(self._name_offs[i]), []).append(i)
            self._by_name[kind] = table
        ids = table.get(name)
        if not ids:
            raise ValueError(f"{self.source} has no {KIND_NAMES.get(kind, kind)} named {name!r}")
        return ids[0]


def load_btf(path: str | os.PathLike[str] = VMLINUX_BTF) -> Btf:
    """Read and parse a BTF file (default: the running kernel's ``/sys/kernel/btf/vmlinux``).

    Unreadable because of permissions → ``PermissionError``; missing or not BTF →
    ``ValueError``; both say which file and why.
    """
    p = os.fspath(path)
    try:
        with open(p, "rb") as fh:
            data = fh.read()
    except PermissionError:
        raise PermissionError(
            f"cannot read BTF file {p}: permission denied (it is normally world-readable; "
            "is this a container with a restricted /sys?)"
        ) from None
    except FileNotFoundError:
        raise ValueError(
            f"BTF file {p} does not exist (needs Linux built with CONFIG_DEBUG_INFO_BTF=y "
            "and /sys mounted)"
        ) from None
    except OSError as exc:
        raise ValueError(f"cannot read BTF file {p}: {exc.strerror}") from None
    return Btf(data, source=p)


def btf_unavailable(path: str = VMLINUX_BTF) -> str | None:
    """Why the BTF at ``path`` cannot be read (one sentence), or None if it can."""
    if not os.path.exists(path):
        return f"{path} does not exist (no Linux, or a kernel without CONFIG_DEBUG_INFO_BTF)"
    if not os.access(path, os.R_OK):
        return f"{path} is not readable by this user"
    return None


@functools.lru_cache(maxsize=4)
def _cached_btf(path: str) -> Btf:
    return load_btf(path)


# -- flattening a struct into ptlab Fields ---------------------------------------------
def _flatten(
    btf: Btf,
    type_id: int,
    base_bits: int,
    prefix: str,
    union: str | None,
    path: str,
    out: list[Field],
    depth: int,
) -> None:
    for m in btf.members(type_id):
        abs_bits = base_bits + m.bit_offset
        under = btf.strip(m.type_id)
        ukind = btf.kind(under)
        aggregate = ukind in (BTF_KIND_STRUCT, BTF_KIND_UNION)
        if not m.name and aggregate:
            # Anonymous member: its members belong to the outer struct.
            if ukind == BTF_KIND_UNION:
                _flatten(btf, under, abs_bits, prefix, f"union@{abs_bits // 8}", path, out, depth)
            else:
                # Same convention as ptlab.mm.ptdesc: members of an anonymous struct
                # inside a union carry the path "{anon struct}".
                inner_path = ANON_STRUCT_PATH if union is not None else path
                _flatten(btf, under, abs_bits, prefix, union, inner_path, out, depth)
            continue
        size = btf.size_of(m.type_id)
        ctype = btf.type_name(m.type_id)
        if m.bit_size:
            out.append(
                Field(prefix + m.name, (abs_bits // 8) // size * size if size else abs_bits // 8,
                      size, ctype, union, abs_bits, m.bit_size, path)
            )
            continue
        out.append(Field(prefix + m.name, abs_bits // 8, size, ctype, union, None, None, path))
        # Named aggregate members (pt_rcu_head, pt_list, ...) are opened ``depth`` levels
        # deep; one-member wrappers such as atomic_t or spinlock_t are kept whole.
        if aggregate and depth > 0 and len(btf.members(under)) > 1:
            _flatten(btf, under, abs_bits, prefix + m.name + ".", union, prefix + m.name, out,
                     depth - 1)


def struct_layout(
    btf: Btf, name: str, *, kind: int = BTF_KIND_STRUCT, depth: int = 1
) -> StructLayout:
    """Flatten struct (or union) ``name`` into ptlab :class:`Field` records.

    Offsets are bytes from the start of ``name``.  Anonymous unions become union labels
    ``"union@<offset>"``; members of an anonymous struct inside a union get the path
    ``"{anon struct}"``; members of named struct/union members appear as dotted names
    with the member as path (``"pt_rcu_head.next"``, path ``"pt_rcu_head"``) — the
    conventions of :mod:`ptlab.mm.ptdesc`, ``depth`` levels deep (wrappers with a single
    member, like ``atomic_t``, are not opened).  A bitfield is reported at the storage
    unit of its type (offset rounded down to the type's size) with ``bit_offset`` (bits
    from the start of the struct) and ``bit_size`` set.
    """
    tid = btf.find(name, kind)
    fields: list[Field] = []
    _flatten(btf, tid, 0, "", None, "", fields, depth)
    word = "struct" if kind == BTF_KIND_STRUCT else "union"
    return StructLayout(name, btf.size_of(tid), tuple(fields), source=f"BTF {btf.source} "
                        f"({word} {name}, id {tid})")


def live_layout(name: str, *, path: str = VMLINUX_BTF) -> StructLayout:
    """The running kernel's layout of one of the structs in :data:`LIVE_STRUCTS`.

    ``"rcu_head"`` is read as ``struct callback_head`` (the kernel's rcu_head is a
    #define of it); the result keeps the name the caller asked for.
    """
    if name not in LIVE_STRUCTS:
        raise ValueError(
            f"unknown struct {name!r}; allowed: {', '.join(LIVE_STRUCTS)}"
        )
    btf = _cached_btf(os.fspath(path))
    lay = struct_layout(btf, LIVE_STRUCTS[name])
    return StructLayout(name, lay.size, lay.fields, lay.source)


def format_layout(layout: StructLayout) -> str:
    """An aligned text table of a layout (offset, size, union, bits, type, name)."""
    lines = [f"struct {layout.name}  /* size {layout.size} bytes; {layout.source} */"]
    for f in layout.fields:
        bits = f" bit {f.bit_offset} width {f.bit_size}" if f.bit_size else ""
        union = f" [{f.union}]" if f.union else ""
        lines.append(f"  off {f.offset:4d} size {f.size:3d}  {f.ctype:<28} {f.name}{union}{bits}")
    return "\n".join(lines)


def model_layout(name: str) -> StructLayout | None:
    """ptlab's own 6.18 model of ``name`` (ptdesc and page only), or None."""
    if name not in ("ptdesc", "page"):
        return None
    from ptlab.mm import ptdesc as model

    return model.layout(name, "v6.18")


def layout_report(name: str, *, path: str = VMLINUX_BTF) -> str:
    """The live BTF layout of ``name`` and how it differs from ptlab's 6.18 model.

    Used by ``ptlab layout --kernel live --struct NAME``.
    """
    live = live_layout(name, path=path)
    text = [format_layout(live), ""]
    model = model_layout(name)
    if model is None:
        text.append(f"ptlab has no model of struct {name} to compare with.")
        return "\n".join(text)
    diffs = compare_layouts(model, live)
    # A sub-member (``buddy_list.next``) the model leaves out while it has its parent at the
    # same place is missing detail, not a layout difference.
    model_names = {f.name: f for f in model.fields}
    live_names = {f.name: f for f in live.fields}

    def detail_only(d: FieldDifference) -> bool:
        if d.what != "missing-left" or "." not in d.name:
            return False
        parent = d.name.rsplit(".", 1)[0]
        a, b = model_names.get(parent), live_names.get(parent)
        return a is not None and b is not None and (a.offset, a.size) == (b.offset, b.size)

    real = [d for d in diffs if not detail_only(d)]
    omitted = [d.name for d in diffs if detail_only(d)]
    if not real:
        text.append(f"ptlab's v6.18 model of struct {name} matches the running kernel "
                    f"field by field ({len(model.fields)} fields, {model.size} bytes).")
    else:
        text.append(f"Differences, ptlab v6.18 model vs running kernel ({len(real)}):")
        text.extend(f"  {d}" for d in real)
    if omitted:
        text.append(f"Sub-members the model does not list (their parents match): "
                    f"{', '.join(omitted)}.")
    return "\n".join(text)
