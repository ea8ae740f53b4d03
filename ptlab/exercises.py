"""Lesson helpers whose answers come from running the model (no answer keys).

Model-only (no matplotlib, no ipywidgets): widgets and notebooks display the result
objects returned here.

* :func:`touch_and_measure` - one page fault (``Mm.touch``) and what it cost: which
  page-table pages it allocated and how VmPTE changed.
* :func:`lesson_mm` - a fresh address space with one VMA covering given addresses.
* :func:`check_vmpte_answer` - the lesson-01 exercise: "by how many KiB does VmPTE grow
  when you touch these addresses?"  The model runs the touches; the learner's number is
  compared with what the model measured, and the explanation lists every touch's cost.
* :func:`rcu_head_clobber_demo` - a table's ``struct ptdesc`` before and after the two
  stores ``call_rcu()`` makes into ``pt_rcu_head``, showing the union aliases it clobbers.

>>> mm = lesson_mm([0x7ffc12345678])
>>> cost = touch_and_measure(mm, 0x7ffc12345678)
>>> cost.levels_allocated(), cost.kib
(('pud', 'pmd', 'pte'), 12)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ptlab.arch.x86 import paging
from ptlab.arch.x86.paging import PAGE_SIZE, PMD_SIZE
from ptlab.mm import ptdesc as ptdesc_mod
from ptlab.mm.memory import Mm

#: Table levels from the top, as ``Mm.table_pfns()`` names them ("deposited": PTE
#: tables deposited for a THP, counted in VmPTE like any PTE table).
LEVEL_ORDER: tuple[str, ...] = ("pgd", "p4d", "pud", "pmd", "pte", "deposited")
_LEVEL_NAMES = {"deposited": "deposited PTE"}


def level_name(level: str) -> str:
    """How a level is written in messages: ``"pmd"`` → ``"PMD"``, ``"deposited"`` →
    ``"deposited PTE"``."""
    return _LEVEL_NAMES.get(level, level.upper())


def _table_set(mm: Mm) -> dict[str, set[int]]:
    return {level: set(pfns) for level, pfns in mm.table_pfns().items()}


@dataclass(frozen=True)
class TouchCost:
    """What one touch (page fault) cost in page-table pages."""

    addr: int
    new_tables: tuple[tuple[str, int], ...]  # (level, pfn), top level first
    vmpte_before_kib: int
    vmpte_after_kib: int

    @property
    def kib(self) -> int:
        """VmPTE growth caused by this touch, in KiB."""
        return self.vmpte_after_kib - self.vmpte_before_kib

    def levels_allocated(self) -> tuple[str, ...]:
        return tuple(level for level, _ in self.new_tables)

    def describe(self) -> str:
        """``"touch 0x7ffc12345678: new PUD + PMD + PTE table -> VmPTE +12 KiB (now 12 KiB)"``."""
        if self.new_tables:
            what = "new " + " + ".join(level_name(lv) for lv in self.levels_allocated()) + " table"
        else:
            what = "no new table (all tables on the path already exist)"
        return (f"touch {self.addr:#x}: {what} -> VmPTE {self.kib:+d} KiB "
                f"(now {self.vmpte_after_kib} KiB)")


def touch_and_measure(mm: Mm, addr: int, *, write: bool = True) -> TouchCost:
    """Touch ``addr`` in ``mm`` (a page fault, ``Mm.touch``) and report the tables it added."""
    before = _table_set(mm)
    kib_before = mm.vm_pte_kib
    mm.touch(addr, write=write)
    after = _table_set(mm)
    new = tuple(
        (level, pfn)
        for level in LEVEL_ORDER
        for pfn in sorted(after.get(level, set()) - before.get(level, set()))
    )
    return TouchCost(addr, new, kib_before, mm.vm_pte_kib)


def lesson_mm(addresses: Sequence[int], *, levels: int = 4) -> Mm:
    """A fresh ``Mm`` with one anonymous VMA from the lowest to the highest page touched.

    ``ValueError`` if there are no addresses or one is not a canonical user address.
    """
    if len(addresses) == 0:
        raise ValueError("no addresses given; give at least one user-space address")
    pages = []
    for a in addresses:
        if isinstance(a, bool) or not isinstance(a, int):
            raise ValueError(f"address {a!r} must be an int (use 0x... hex literals)")
        paging.check_canonical(a, levels)
        if a >= paging.task_size_max(levels):
            raise ValueError(
                f"address {a:#x} is not a user address; allowed: 0x0.."
                f"{paging.task_size_max(levels) - 1:#x} for {levels}-level paging"
            )
        pages.append(a & ~(PAGE_SIZE - 1))
    mm = Mm(levels=levels)
    start = min(pages)
    mm.mmap(start, max(pages) + PAGE_SIZE - start)
    return mm


@dataclass(frozen=True)
class ExerciseResult:
    """The verdict on a learner's answer, with the model's own account of why."""

    correct: bool | None  # None: no answer given yet
    answer: int | None
    expected: int
    unit: str
    steps: tuple[TouchCost, ...]

    @property
    def explanation(self) -> str:
        lines = [s.describe() for s in self.steps]
        lines.append(f"total: VmPTE grew by {self.expected} {self.unit} "
                     f"({self.expected // 4} page-table page(s) of 4 KiB; the PGD is not counted)")
        return "\n".join(lines)

    def __str__(self) -> str:
        if self.correct is None:
            return "No answer yet: set your answer and run the check again."
        if self.correct:
            return f"Right: {self.answer} {self.unit}.\n{self.explanation}"
        return (f"Not quite: you said {self.answer} {self.unit}, the model measured "
                f"{self.expected} {self.unit}.\n{self.explanation}")


def _parse_answer(answer: int | str | None) -> int | None:
    if answer is None:
        return None
    if isinstance(answer, bool):
        raise ValueError(f"answer {answer!r} must be a whole number of KiB")
    if isinstance(answer, int):
        value = answer
    elif isinstance(answer, str):
        text = answer.strip().lower().removesuffix("kib").strip()
        if not text.isdigit():
            raise ValueError(f"answer {answer!r} must be a whole number of KiB, e.g. 16")
        value = int(text)
    else:
        raise ValueError(f"answer {answer!r} must be a whole number of KiB, e.g. 16")
    if value < 0:
        raise ValueError(f"answer {value} must be >= 0 KiB")
    return value


def check_vmpte_answer(
    addresses: Sequence[int], answer: int | str | None, *, levels: int = 4
) -> ExerciseResult:
    """Touch ``addresses`` in order in a fresh address space and judge ``answer`` (KiB).

    The expected value is whatever the model's VmPTE did; nothing is precomputed.
    ``answer=None`` means "not answered yet" and gives a result with ``correct=None``.

    >>> r = check_vmpte_answer([0x7ffc12345678, 0x7ffc12346000], 12)
    >>> r.correct, r.expected
    (True, 12)
    """
    value = _parse_answer(answer)
    mm = lesson_mm(addresses, levels=levels)
    start = mm.vm_pte_kib
    steps = tuple(touch_and_measure(mm, a) for a in addresses)
    expected = mm.vm_pte_kib - start
    return ExerciseResult(
        correct=None if value is None else value == expected,
        answer=value,
        expected=expected,
        unit="KiB",
        steps=steps,
    )


# ------------------------------------------------------------------ the union clobber
#: An illustrative kernel-text address standing in for ``tlb_remove_table_rcu``, the
#: callback the table-freeing path queues (not a real symbol address).
TLB_REMOVE_TABLE_RCU = 0xFFFF_FFFF_8123_4560

DEMO_TABLES: tuple[str, ...] = ("pmd", "pgd")


@dataclass(frozen=True)
class PtdescSnapshot:
    """All field values of one table's ``struct ptdesc`` at one moment."""

    kernel: str
    table: str  # "pmd" (with a THP-deposited PTE table) or "pgd" (on pgd_list)
    stage: str  # "before call_rcu" | "after call_rcu"
    pfn: int
    values: dict[str, int]
    live: tuple[str, ...]  # members in use at this moment


def _snapshot(view: ptdesc_mod.Ptdesc, kernel: str, table: str, stage: str,
              live: tuple[str, ...]) -> PtdescSnapshot:
    lay = ptdesc_mod.layout("ptdesc", kernel)
    names = [f.name for f in lay.fields
             if not any(o.name.startswith(f.name + ".") for o in lay.fields)]
    return PtdescSnapshot(kernel, table, stage, view.pfn,
                          {n: view.get(n) for n in names}, live)


def rcu_head_clobber_demo(
    kernel: str = "v6.14", table: str = "pmd"
) -> tuple[PtdescSnapshot, PtdescSnapshot]:
    """A table's ptdesc before and after ``call_rcu()`` writes its ``pt_rcu_head``.

    The table comes from a real model address space: ``table="pmd"`` is the PMD table
    of a THP fault, whose ``pmd_huge_pte`` holds the deposited PTE table
    (kernel-facts §2.3 point 3); ``table="pgd"`` is an mm's PGD, linked on ``pgd_list``
    through ``pt_list`` with its owner in ``pt_mm`` (§1.3).  The write models the two
    stores ``__call_rcu()`` (kernel/rcu/tree.c) makes before queueing a callback:
    ``head->func`` = the callback, ``head->next`` = NULL.  Both land on bytes 8..23, the
    union shared with ``pt_list`` and ``{_pt_pad_1, pmd_huge_pte}``: the "after" snapshot
    shows those aliases holding the RCU values - why no table may be RCU-freed while
    one of them is in use (the kernel never does: PGDs are freed directly, deposits are
    withdrawn first).

    >>> before, after = rcu_head_clobber_demo("v6.14", "pmd")
    >>> after.values["pmd_huge_pte"] == TLB_REMOVE_TABLE_RCU != before.values["pmd_huge_pte"]
    True
    """
    if table not in DEMO_TABLES:
        raise ValueError(f"unknown table {table!r}; allowed: {', '.join(DEMO_TABLES)}")
    ptdesc_mod.layout("ptdesc", kernel)  # validates kernel
    mm = Mm(kernel=kernel)
    if table == "pmd":
        start = 0x7F00_0000_0000  # 2 MiB aligned: the fault maps a THP
        mm.mmap(start, PMD_SIZE, thp=True)
        mm.touch(start)
        loc = mm.pmd_entry_location(start)
        assert loc is not None
        pfn = loc[0]
        live_before: tuple[str, ...] = ("pmd_huge_pte", "ptl")
    else:
        pfn = mm.pgd
        live_before = ("pt_list", "pt_mm")
    view = ptdesc_mod.Ptdesc(mm.mem, pfn, kernel=kernel)
    before = _snapshot(view, kernel, table, "before call_rcu", live_before)
    view.set("pt_rcu_head.func", TLB_REMOVE_TABLE_RCU)
    view.set("pt_rcu_head.next", 0)
    after = _snapshot(view, kernel, table, "after call_rcu", ("pt_rcu_head",))
    return before, after


def changed_fields(before: PtdescSnapshot, after: PtdescSnapshot) -> list[str]:
    """Names whose value differs between two snapshots, in layout order."""
    return [n for n in before.values if before.values[n] != after.values.get(n)]
