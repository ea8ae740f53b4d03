"""Struct layouts as data: fields with byte offsets, sizes and union groups.

Both ptlab's own models of ``struct page`` / ``struct ptdesc`` (``ptlab.mm.ptdesc``) and
the layouts read from the running kernel's BTF (``ptlab.live.btf``) are expressed with
these two classes, so they can be compared field by field.

A *field* is a leaf or named member at a byte offset from the start of the outermost
struct.  Members of the same anonymous union share a ``union`` label (for example
``"union@8"`` for the union that starts at byte 8 of ``struct ptdesc``); members of a
nested anonymous struct inside a union carry the union label of that union and a
``path`` that names the struct they sit in.

>>> f = Field("pt_rcu_head", offset=8, size=16, ctype="struct rcu_head", union="union@8")
>>> f.end
24
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Field:
    """One member of a struct layout.

    ``name`` is the C member name (``"pt_list"``), or a dotted path for members of a
    nested named struct (``"pt_rcu_head.next"``).  ``bit_offset``/``bit_size`` are set
    for bitfields only (bit position inside the struct, width in bits).
    """

    name: str
    offset: int
    size: int
    ctype: str
    union: str | None = None
    bit_offset: int | None = None
    bit_size: int | None = None
    path: str = ""

    @property
    def end(self) -> int:
        """First byte after the field."""
        return self.offset + self.size


@dataclass(frozen=True)
class StructLayout:
    """A struct's name, total size and members in declaration order."""

    name: str
    size: int
    fields: tuple[Field, ...] = field(default_factory=tuple)
    source: str = ""

    def __iter__(self) -> Iterator[Field]:
        return iter(self.fields)

    def field(self, name: str) -> Field:
        """Return the member called ``name``; ``ValueError`` names the allowed ones."""
        for f in self.fields:
            if f.name == name:
                return f
        allowed = ", ".join(f.name for f in self.fields)
        raise ValueError(f"struct {self.name} has no field {name!r}; fields are: {allowed}")

    def names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.fields)

    def aliases(self, name: str) -> tuple[Field, ...]:
        """Fields that share at least one byte with ``name`` (its union siblings)."""
        me = self.field(name)
        return tuple(
            f
            for f in self.fields
            if f.name != name and f.offset < me.end and me.offset < f.end
        )


@dataclass(frozen=True)
class FieldDifference:
    """One disagreement between two layouts of the same struct."""

    name: str
    what: str  # "missing-left", "missing-right", "offset", "size"
    left: str
    right: str

    def __str__(self) -> str:
        return f"{self.name}: {self.what} ({self.left} vs {self.right})"


def compare_layouts(left: StructLayout, right: StructLayout) -> list[FieldDifference]:
    """Field-by-field comparison by name: offsets and sizes must agree.

    >>> a = StructLayout("s", 8, (Field("x", 0, 4, "int"), Field("y", 4, 4, "int")))
    >>> b = StructLayout("s", 8, (Field("x", 0, 4, "int"), Field("y", 2, 4, "int")))
    >>> [str(d) for d in compare_layouts(a, b)]
    ['y: offset (4 vs 2)']
    """
    diffs: list[FieldDifference] = []
    if left.size != right.size:
        diffs.append(FieldDifference("<size>", "size", str(left.size), str(right.size)))
    rmap = {f.name: f for f in right.fields}
    lmap = {f.name: f for f in left.fields}
    for f in left.fields:
        other = rmap.get(f.name)
        if other is None:
            diffs.append(FieldDifference(f.name, "missing-right", f"@{f.offset}", "-"))
            continue
        if f.offset != other.offset:
            diffs.append(FieldDifference(f.name, "offset", str(f.offset), str(other.offset)))
        if f.size != other.size:
            diffs.append(FieldDifference(f.name, "size", str(f.size), str(other.size)))
    for f in right.fields:
        if f.name not in lmap:
            diffs.append(FieldDifference(f.name, "missing-left", "-", f"@{f.offset}"))
    return diffs
