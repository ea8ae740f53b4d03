"""``struct ptdesc`` overlaying ``struct page``: layouts, a field view, ctor/dtor, lists.

Models ``include/linux/mm_types.h`` (``struct page``, ``struct ptdesc``, the
``TABLE_MATCH`` assertions) and ``include/linux/mm.h`` (``pagetable_*_ctor``,
``pagetable_dtor``) for v6.14, plus the live 6.18 layout read from BTF
(kernel-facts §2.1, §2.2 and Appendix A), and the ``list_head`` helpers of
``include/linux/list.h`` that ``pgd_list`` and THP deposits use.

A page-table page's ``struct page`` *is* its ``struct ptdesc``: the same 64 bytes seen
through different member names.  Union members share bytes, so writing one changes its
aliases - ``call_rcu()`` writing ``pt_rcu_head`` overwrites ``pt_list`` and
``pmd_huge_pte``:

>>> from ptlab.mm.page import PhysMem
>>> mem = PhysMem()
>>> pt = Ptdesc(mem, mem.alloc_page())
>>> pt.set("pt_rcu_head.func", 0xffffffff81234560)
>>> hex(pt.get("pmd_huge_pte"))
'0xffffffff81234560'
"""

from __future__ import annotations

from ptlab.arch.x86.paging import STRUCT_PAGE_SIZE, U64_MASK, VMEMMAP_START
from ptlab.mm.layout import Field, StructLayout
from ptlab.mm.page import REFCOUNT_WORD, SETUP, PhysMem, Who

KERNELS = ("v6.14", "v6.18")
STRUCTS = ("ptdesc", "page")

#: ``enum pagetype`` value marking a page table (include/linux/page-flags.h, v6.12+):
#: a typed page keeps the type in the top byte of ``page_type``; ``__SetPageTable`` stores
#: ``PGTY_table << 24`` and ``__ClearPageTable`` stores ``UINT_MAX`` (no type).
PGTY_table = 0xF2
PAGE_TYPE_TABLE = PGTY_table << 24
PAGE_TYPE_NONE = 0xFFFF_FFFF

#: ``LIST_POISON1/2`` with x86-64's ``POISON_POINTER_DELTA`` (written by ``list_del``).
LIST_POISON1 = 0xDEAD_0000_0000_0100
LIST_POISON2 = 0xDEAD_0000_0000_0122

_ANON = "{anon struct}"


def _f(
    name: str, off: int, size: int, ctype: str, union: str | None = None, path: str = ""
) -> Field:
    return Field(name, off, size, ctype, union=union, path=path)


def _ptdesc_fields(kernel: str) -> tuple[Field, ...]:
    first = (
        _f("__page_flags", 0, 8, "unsigned long")
        if kernel == "v6.14"
        else _f("pt_flags", 0, 8, "memdesc_flags_t")
    )
    u8, u32, u40 = "union@8", "union@32", "union@40"
    return (
        first,
        _f("pt_rcu_head", 8, 16, "struct rcu_head", u8),
        _f("pt_rcu_head.next", 8, 8, "struct callback_head *", u8, "pt_rcu_head"),
        _f("pt_rcu_head.func", 16, 8, "rcu_callback_t", u8, "pt_rcu_head"),
        _f("pt_list", 8, 16, "struct list_head", u8),
        _f("pt_list.next", 8, 8, "struct list_head *", u8, "pt_list"),
        _f("pt_list.prev", 16, 8, "struct list_head *", u8, "pt_list"),
        _f("_pt_pad_1", 8, 8, "unsigned long", u8, _ANON),
        _f("pmd_huge_pte", 16, 8, "pgtable_t", u8, _ANON),
        _f("__page_mapping", 24, 8, "unsigned long"),
        _f("pt_index", 32, 8, "pgoff_t", u32),
        _f("pt_mm", 32, 8, "struct mm_struct *", u32),
        _f("pt_frag_refcount", 32, 4, "atomic_t", u32),
        _f("pt_share_count", 32, 4, "atomic_t", u32),
        _f("_pt_pad_2", 40, 8, "unsigned long", u40),
        _f("ptl", 40, 4, "spinlock_t", u40),
        _f("__page_type", 48, 4, "unsigned int"),
        _f("__page_refcount", 52, 4, "atomic_t"),
        _f("pt_memcg_data", 56, 8, "unsigned long"),
    )


def _page_fields(kernel: str) -> tuple[Field, ...]:
    u8, u48 = "union@8", "union@48"
    # In the source the member is ``struct rcu_head rcu_head``; since ``rcu_head`` is a
    # macro for ``callback_head``, the compiled struct (and BTF) calls it callback_head.
    rcu = "rcu_head" if kernel == "v6.14" else "callback_head"
    fields = [
        _f("flags", 0, 8, "unsigned long" if kernel == "v6.14" else "memdesc_flags_t"),
        _f("lru", 8, 16, "struct list_head", u8),
        _f("lru.next", 8, 8, "struct list_head *", u8, "lru"),
        _f("lru.prev", 16, 8, "struct list_head *", u8, "lru"),
        _f("buddy_list", 8, 16, "struct list_head", u8),
        _f("pcp_list", 8, 16, "struct list_head", u8),
    ]
    if kernel != "v6.14":
        fields.append(_f("pcp_llist", 8, 8, "struct llist_node", u8))
    fields.append(_f("mapping", 24, 8, "struct address_space *", u8))
    if kernel == "v6.14":
        fields.append(_f("index", 32, 8, "pgoff_t", u8))
    else:
        fields += [
            _f("__folio_index", 32, 8, "unsigned long", u8),
            _f("share", 32, 8, "unsigned long", u8),
            _f("buddy_since", 32, 8, "unsigned long", u8),
        ]
    fields += [
        _f("private", 40, 8, "unsigned long", u8),
        _f("pp_magic", 8, 8, "unsigned long", u8),
        _f("pp", 16, 8, "struct page_pool *", u8),
        _f("_pp_mapping_pad", 24, 8, "unsigned long", u8),
        _f("dma_addr", 32, 8, "unsigned long", u8),
        _f("pp_ref_count", 40, 8, "atomic_long_t", u8),
        _f("compound_head", 8, 8, "unsigned long", u8),
        _f("_unused_pgmap_compound_head", 8, 8, "void *", u8),
        _f("zone_device_data", 16, 8, "void *", u8),
        _f(rcu, 8, 16, "struct rcu_head", u8),
        _f(f"{rcu}.next", 8, 8, "struct callback_head *", u8, rcu),
        _f(f"{rcu}.func", 16, 8, "rcu_callback_t", u8, rcu),
        _f("page_type", 48, 4, "unsigned int", u48),
        _f("_mapcount", 48, 4, "atomic_t", u48),
        _f("_refcount", 52, 4, "atomic_t"),
        _f("memcg_data", 56, 8, "unsigned long"),
    ]
    return tuple(fields)


def _build() -> tuple[dict[str, StructLayout], dict[str, StructLayout]]:
    pt: dict[str, StructLayout] = {}
    pg: dict[str, StructLayout] = {}
    for k in KERNELS:
        src = (
            "kernel-facts §2.1 (include/linux/mm_types.h, v6.14)"
            if k == "v6.14"
            else "kernel-facts Appendix A (BTF of Linux 6.18.44)"
        )
        pt[k] = StructLayout("ptdesc", STRUCT_PAGE_SIZE, _ptdesc_fields(k), src)
        pg[k] = StructLayout("page", STRUCT_PAGE_SIZE, _page_fields(k), src)
    return pt, pg


PTDESC_LAYOUTS, PAGE_LAYOUTS = _build()


def _check_kernel(kernel: str) -> None:
    if kernel not in KERNELS:
        raise ValueError(f"kernel {kernel!r} unknown; allowed: {', '.join(KERNELS)}")


def layout(struct: str, kernel: str = "v6.14") -> StructLayout:
    """The model's layout of ``struct ptdesc`` or ``struct page`` for a kernel version.

    >>> layout("ptdesc", "v6.18").field("ptl").offset
    40
    """
    _check_kernel(kernel)
    if struct == "ptdesc":
        return PTDESC_LAYOUTS[kernel]
    if struct == "page":
        return PAGE_LAYOUTS[kernel]
    raise ValueError(f"struct {struct!r} unknown; allowed: {', '.join(STRUCTS)}")


def table_match_checks(kernel: str = "v6.14") -> list[tuple[str, str, bool]]:
    """Evaluate the ``TABLE_MATCH(page member, ptdesc member)`` static assertions of
    mm_types.h on the model's layouts, plus ``sizeof(struct ptdesc) <= sizeof(struct
    page)``.  Each item: (page member, ptdesc member, holds?).

    >>> all(ok for _, _, ok in table_match_checks("v6.14"))
    True
    """
    page, pt = layout("page", kernel), layout("ptdesc", kernel)
    v14 = kernel == "v6.14"
    pairs = [
        ("flags", "__page_flags" if v14 else "pt_flags"),
        ("compound_head", "pt_list"),
        ("compound_head", "_pt_pad_1"),
        ("mapping", "__page_mapping"),
        ("index" if v14 else "__folio_index", "pt_index"),
        ("rcu_head" if v14 else "callback_head", "pt_rcu_head"),
        ("page_type", "__page_type"),
        ("_refcount", "__page_refcount"),
        ("memcg_data", "pt_memcg_data"),
    ]
    out = [(a, b, page.field(a).offset == pt.field(b).offset) for a, b in pairs]
    out.append(("sizeof(struct page)", "sizeof(struct ptdesc)", pt.size <= page.size))
    return out


def ptdesc_address(pfn: int) -> int:
    """Kernel address of the frame's ptdesc (= its ``struct page`` in vmemmap:
    ``page_ptdesc()`` is a plain cast).

    >>> hex(ptdesc_address(0x101))
    '0xffffea0000004040'
    """
    return VMEMMAP_START + pfn * STRUCT_PAGE_SIZE


def field_address(pfn: int, name: str, kernel: str = "v6.14") -> int:
    """Kernel address of ptdesc member ``name`` of frame ``pfn``."""
    return ptdesc_address(pfn) + layout("ptdesc", kernel).field(name).offset


class Ptdesc:
    """A view of frame ``pfn``'s struct page words as ``struct ptdesc`` members.

    Every ``get``/``set`` goes through :class:`PhysMem` with ``who`` and ``gen``, so a
    stale view of a freed (or freed and reused) frame produces KASAN reports.  Values are
    raw unsigned bytes (an ``atomic_t`` of -1 reads 0xffffffff).
    """

    def __init__(
        self,
        mem: PhysMem,
        pfn: int,
        who: Who = SETUP,
        gen: int | None = None,
        kernel: str = "v6.14",
    ) -> None:
        _check_kernel(kernel)
        self.mem = mem
        self.pfn = pfn
        self.who = who
        self.gen = gen
        self.kernel = kernel
        self.layout = PTDESC_LAYOUTS[kernel]

    @property
    def address(self) -> int:
        """The ptdesc pointer (equal to the struct page pointer)."""
        return ptdesc_address(self.pfn)

    def _span(self, name: str) -> tuple[Field, int, int]:
        f = self.layout.field(name)
        return f, f.offset // 8, (f.end - 1) // 8

    def get(self, name: str) -> int:
        """Read member ``name`` (e.g. ``"ptl"``, ``"pt_list.next"``)."""
        f, first, last = self._span(name)
        what = f"struct page +{f.offset} ({name})"
        total = 0
        for i, w in enumerate(range(first, last + 1)):
            word = self.mem.page_word(self.pfn, w, self.who, gen=self.gen, what=what)
            total |= word << (64 * i)
        shift = (f.offset - first * 8) * 8
        return (total >> shift) & ((1 << (8 * f.size)) - 1)

    def set(self, name: str, value: int) -> None:
        """Write member ``name``; bytes shared with union siblings change for them too."""
        f, first, last = self._span(name)
        limit = (1 << (8 * f.size)) - 1
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= limit:
            raise ValueError(
                f"value {value!r} does not fit ptdesc member {name} ({f.size} bytes): "
                f"allowed 0..{limit:#x}"
            )
        what = f"struct page +{f.offset} ({name})"
        shift = (f.offset - first * 8) * 8
        big_val, big_mask = value << shift, limit << shift
        for i, w in enumerate(range(first, last + 1)):
            part_mask = (big_mask >> (64 * i)) & U64_MASK
            part_val = (big_val >> (64 * i)) & U64_MASK
            self.mem.set_page_word(
                self.pfn, w, part_val, self.who, gen=self.gen, what=what, mask=part_mask
            )

    def live_members(self) -> list[str]:
        """Leaf members whose bytes are currently non-zero, in layout order.  Aliases of
        a union appear together: that is the point (after ``call_rcu`` wrote
        ``pt_rcu_head``, ``pt_list.next`` is non-zero too)."""
        parents = {f.path for f in self.layout if f.path}
        return [f.name for f in self.layout if f.name not in parents and self.get(f.name)]

    def aliases(self, name: str) -> list[str]:
        """Members sharing at least one byte with ``name``."""
        return [f.name for f in self.layout.aliases(name)]


# --- page-table constructor / destructor (include/linux/mm.h) ---------------------------

_CTOR_LEVELS = ("pgd", "p4d", "pud", "pmd", "pte")


def page_type(mem: PhysMem, pfn: int, who: Who = SETUP) -> int:
    """The u32 ``page_type`` of the frame (``PAGE_TYPE_NONE`` for an untyped page)."""
    return mem.page_word(pfn, REFCOUNT_WORD, who, what="struct page +48 (page_type)") & (
        0xFFFF_FFFF
    )


def PageTable(mem: PhysMem, pfn: int, who: Who = SETUP) -> bool:
    """``PageTable()``: the frame is marked as a page table."""
    return page_type(mem, pfn, who) >> 24 == PGTY_table


def pagetable_ctor(
    mem: PhysMem, pfn: int, who: Who = SETUP, *, level: str = "pte", kernel: str = "v6.14"
) -> None:
    """``pagetable_{pte,pmd,pud,p4d,pgd}_ctor()``: mark the page as a page table
    (``page_type`` = ``PGTY_table << 24`` = 0xf2000000), count it in ``NR_PAGETABLE``
    and, for PTE/PMD tables, initialise the split lock ``ptl`` (0 = unlocked).  A PMD
    table also starts with no THP deposit (``pmd_huge_pte = NULL``)."""
    if level not in _CTOR_LEVELS:
        raise ValueError(f"level {level!r} unknown; allowed: {', '.join(_CTOR_LEVELS)}")
    pt = Ptdesc(mem, pfn, who, kernel=kernel)
    if level in ("pte", "pmd"):
        pt.set("ptl", 0)  # ptlock_init(): spin_lock_init() on the embedded lock
    if level == "pmd":
        pt.set("pmd_huge_pte", 0)
    pt.set("__page_type", PAGE_TYPE_TABLE)
    mem.nr_pagetable += 1


def pagetable_dtor(mem: PhysMem, pfn: int, who: Who = SETUP, *, kernel: str = "v6.14") -> None:
    """``pagetable_dtor()``: free the split lock (nothing to free while it is embedded),
    clear the page-table type and decrement ``NR_PAGETABLE``."""
    Ptdesc(mem, pfn, who, kernel=kernel).set("__page_type", PAGE_TYPE_NONE)
    mem.nr_pagetable -= 1


# --- list_head on kernel addresses (include/linux/list.h) -------------------------------


def INIT_LIST_HEAD(mem: PhysMem, head: int, who: Who = SETUP) -> None:
    """Make the list_head at kernel address ``head`` an empty list (points to itself)."""
    mem.write_kaddr(head, head, who, what="list_head.next")
    mem.write_kaddr(head + 8, head, who, what="list_head.prev")


def list_add(mem: PhysMem, new: int, head: int, who: Who = SETUP) -> None:
    """Insert the node at ``new`` right after ``head``."""
    nxt = mem.read_kaddr(head, who, what="list_head.next")
    mem.write_kaddr(nxt + 8, new, who, what="list_head.prev")
    mem.write_kaddr(new, nxt, who, what="list_head.next")
    mem.write_kaddr(new + 8, head, who, what="list_head.prev")
    mem.write_kaddr(head, new, who, what="list_head.next")


def list_del(mem: PhysMem, entry: int, who: Who = SETUP) -> None:
    """Unlink ``entry`` and poison its pointers (``LIST_POISON1/2``)."""
    nxt = mem.read_kaddr(entry, who, what="list_head.next")
    prv = mem.read_kaddr(entry + 8, who, what="list_head.prev")
    mem.write_kaddr(nxt + 8, prv, who, what="list_head.prev")
    mem.write_kaddr(prv, nxt, who, what="list_head.next")
    mem.write_kaddr(entry, LIST_POISON1, who, what="list_head.next")
    mem.write_kaddr(entry + 8, LIST_POISON2, who, what="list_head.prev")


def list_empty(mem: PhysMem, head: int, who: Who = SETUP) -> bool:
    """``list_empty()``: ``head->next == head``."""
    return mem.read_kaddr(head, who, what="list_head.next") == head


def list_entries(mem: PhysMem, head: int, who: Who = SETUP, *, limit: int = 10_000) -> list[int]:
    """Addresses of the nodes of the list at ``head``, checking ``next->prev == node``
    on the way (like ``CONFIG_DEBUG_LIST``).  A corrupted list raises ``ValueError``
    naming the bad pointer."""
    out: list[int] = []
    node = head
    for _ in range(limit):
        nxt = mem.read_kaddr(node, who, what="list_head.next")
        if nxt == head:
            if mem.read_kaddr(head + 8, who, what="list_head.prev") != node:
                raise ValueError(f"list corruption: {head:#x}->prev does not point to {node:#x}")
            return out
        try:
            back = mem.read_kaddr(nxt + 8, who, what="list_head.prev")
        except ValueError:
            raise ValueError(
                f"list corruption: {node:#x}->next is {nxt:#x}, not a list node"
            ) from None
        if back != node:
            raise ValueError(
                f"list corruption: {nxt:#x}->prev is {back:#x}, expected {node:#x}"
            )
        out.append(nxt)
        node = nxt
    raise ValueError(f"list at {head:#x} has more than {limit} nodes (a loop?)")
