"""Lesson-01 widgets: walk an address, touch and zap ranges, look at struct ptdesc.

* :class:`WalkExplorer` - type a hex address or slide over a range, pick 4- or 5-level
  paging: the address is faulted in (``Mm.touch``) and its walk is drawn and tabulated.
* :class:`TouchLab` - touch and zap page ranges in one address space and watch
  page-table pages appear and VmPTE grow (and shrink with PT_RECLAIM).
* :class:`PtdescView` - the ``struct ptdesc`` byte map for v6.14 or v6.18, before and
  after ``call_rcu()`` writes ``pt_rcu_head``.
* :class:`VmPteQuiz` - the exercise box: the learner's number is judged by the model.

Every widget object has ``.widget`` (the box to display; the object itself also displays
as it) and keeps its model (``.mm``) and sub-widgets as attributes, so tests can drive
them with ``.value = ...`` and ``.click()`` and inspect the outcome.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from typing import Any

import ipywidgets as widgets

from ptlab import exercises
from ptlab.arch.x86 import paging
from ptlab.arch.x86.paging import PAGE_SIZE, PMD_SIZE
from ptlab.mm import ptdesc as ptdesc_mod
from ptlab.mm.memory import Mm
from ptlab.viz.layout import draw_struct_layout
from ptlab.viz.paging import draw_mm_tree, draw_walk, walk_rows
from ptlab.widgets.common import ErrorBox, FigureView

__all__ = ["PtdescView", "TouchLab", "VmPteQuiz", "WalkExplorer"]

LESSON_ADDRESS = 0x7FFC_1234_5678


class _App:
    widget: widgets.Box

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        return self.widget._repr_mimebundle_(**kwargs)


def _html_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    head = "".join(f"<th style='text-align:left;padding:0 8px'>{html.escape(h)}</th>"
                   for h in header)
    body = "".join(
        "<tr>" + "".join(f"<td style='padding:0 8px'><code>{html.escape(c)}</code></td>"
                         for c in row) + "</tr>"
        for row in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"


class WalkExplorer(_App):
    """Walk any address; the slider steps page by page through ``[start, end)``.

    The address space starts empty; each walked user address is first touched (a page
    fault that builds the missing tables), so the walk always reaches a page.  Kernel
    or non-canonical addresses are rejected in the red error line.
    """

    def __init__(
        self,
        start: int = 0x7FFC_1220_0000,
        end: int = 0x7FFC_1260_0000,
        *,
        addr: int = LESSON_ADDRESS,
        levels: int = 4,
    ) -> None:
        if start % PAGE_SIZE or end % PAGE_SIZE or not start < end:
            raise ValueError(
                f"slider range {start:#x}..{end:#x} must be page aligned with start < end"
            )
        paging.check_canonical(start, levels)
        self.start, self.end = start, end
        self._mms: dict[int, Mm] = {}
        self.addr: int | None = None
        self.walk: Any = None
        self._syncing = False

        self.error = ErrorBox()
        self.address = widgets.Text(value=f"{addr:#x}", description="address",
                                    continuous_update=False)
        self.slider = widgets.IntSlider(
            value=0, min=0, max=(end - start) // PAGE_SIZE - 1, description="page",
            continuous_update=False, readout=False,
            layout=widgets.Layout(width="60%"),
        )
        self.levels = widgets.ToggleButtons(options=[("4-level", 4), ("5-level (LA57)", 5)],
                                            value=levels, description="paging")
        self.table = widgets.HTML()
        self.view = FigureView()
        self.address.observe(self._on_text, names="value")
        self.slider.observe(self._on_slider, names="value")
        self.levels.observe(self._on_levels, names="value")
        self.widget = widgets.VBox([
            widgets.HBox([self.address, self.levels]),
            self.slider,
            self.error.widget,
            self.table,
            self.view.widget,
        ])
        self._update()

    @property
    def mm(self) -> Mm:
        """The address space for the current number of levels."""
        levels = int(self.levels.value)
        if levels not in self._mms:
            self._mms[levels] = Mm(levels=levels)
        return self._mms[levels]

    def _ensure_vma(self, addr: int) -> None:
        page = addr & ~(PAGE_SIZE - 1)
        if not any(v.start <= addr < v.end for v in self.mm.vmas):
            self.mm.mmap(page, PAGE_SIZE)

    def _update(self) -> None:
        with self.error.guard():
            addr = paging.parse_address(self.address.value)
            levels = int(self.levels.value)
            paging.check_canonical(addr, levels)
            if addr >= paging.task_size_max(levels):
                raise ValueError(
                    f"address {addr:#x} is not a user address; the explorer faults pages in "
                    f"and needs 0x0..{paging.task_size_max(levels) - 1:#x}"
                )
            self._ensure_vma(addr)
            self.mm.touch(addr)
            walk = self.mm.walk(addr)
            self.addr, self.walk = addr, walk
            self.table.value = _html_table(["level", "index", "table pfn", "entry"],
                                           walk_rows(walk))
            self.view.show(draw_walk(self.mm, addr))
            if self.start <= addr < self.end:
                self._syncing = True
                try:
                    self.slider.value = (addr - self.start) // PAGE_SIZE
                finally:
                    self._syncing = False

    def _on_text(self, change: dict[str, Any]) -> None:
        if not self._syncing:
            self._update()

    def _on_slider(self, change: dict[str, Any]) -> None:
        if self._syncing:
            return
        offset = (self.addr or 0) & (PAGE_SIZE - 1)
        self.address.value = f"{self.start + int(change['new']) * PAGE_SIZE + offset:#x}"

    def _on_levels(self, change: dict[str, Any]) -> None:
        self._update()


class TouchLab(_App):
    """Touch and zap page ranges in one VMA; VmPTE and the table tree update live."""

    def __init__(
        self,
        start: int = 0x7F00_0000_0000,
        length: int = 1 << 31,
        *,
        levels: int = 4,
        pt_reclaim: bool = True,
    ) -> None:
        self.mm = Mm(levels=levels, pt_reclaim=pt_reclaim)
        self.vma = self.mm.mmap(start, length)
        self.log_lines: list[str] = []

        self.error = ErrorBox()
        self.address = widgets.Text(value=f"{start:#x}", description="address",
                                    continuous_update=False)
        self.pages = widgets.BoundedIntText(value=1, min=1, max=4096, description="pages")
        self.touch_button = widgets.Button(description="touch", button_style="success",
                                           tooltip="fault the pages in (write)")
        self.zap_button = widgets.Button(description="zap (MADV_DONTNEED)",
                                         button_style="warning",
                                         layout=widgets.Layout(width="auto"))
        self.reclaim = widgets.Checkbox(value=pt_reclaim,
                                        description="PT_RECLAIM: free empty PTE tables on zap",
                                        indent=False, layout=widgets.Layout(width="auto"))
        self.next_2m = widgets.Button(description="+2 MiB", tooltip="move the address 2 MiB up")
        self.status = widgets.Label()
        self.log = widgets.HTML()
        self.view = FigureView()
        self.touch_button.on_click(lambda _b: self.touch())
        self.zap_button.on_click(lambda _b: self.zap())
        self.next_2m.on_click(lambda _b: self.step_address(PMD_SIZE))
        self.widget = widgets.VBox([
            widgets.HBox([self.address, self.pages, self.next_2m]),
            widgets.HBox([self.touch_button, self.zap_button, self.reclaim]),
            self.error.widget,
            self.status,
            self.log,
            self.view.widget,
        ])
        self._refresh()

    def _range(self) -> tuple[int, int]:
        addr = paging.parse_address(self.address.value)
        n = int(self.pages.value)
        return addr, addr + n * PAGE_SIZE

    def _say(self, line: str) -> None:
        self.log_lines.append(line)
        del self.log_lines[:-6]
        self.log.value = "<br>".join(f"<code>{html.escape(x)}</code>" for x in self.log_lines)

    def _refresh(self) -> None:
        counts = {lv: len(p) for lv, p in self.mm.table_pfns().items()}
        deposited = counts.pop("deposited", 0)
        per_level = ", ".join(f"{lv.upper()} {n}" for lv, n in counts.items())
        if deposited:
            per_level += f", deposited PTE {deposited}"
        self.status.value = f"VmPTE: {self.mm.vm_pte_kib} KiB   tables: {per_level}"
        self.view.show(draw_mm_tree(self.mm))

    def touch(self) -> None:
        """Touch every page of the chosen range (the "touch" button)."""
        with self.error.guard():
            start, end = self._range()
            before = self.mm.vm_pte_kib
            new: dict[str, int] = {}
            for a in range(start & ~(PAGE_SIZE - 1), end, PAGE_SIZE):
                cost = exercises.touch_and_measure(self.mm, a)
                for level, _pfn in cost.new_tables:
                    new[level] = new.get(level, 0) + 1
            what = (" + ".join(f"{n} {exercises.level_name(lv)}" for lv, n in new.items())
                    + " table(s)"
                    if new else "no new table")
            self._say(f"touch {start:#x} x{(end - start) // PAGE_SIZE} page(s): {what}; "
                      f"VmPTE {self.mm.vm_pte_kib - before:+d} KiB")
            self._refresh()

    def zap(self) -> None:
        """Zap the chosen range (the "zap" button), reclaiming empty PTE tables if ticked."""
        with self.error.guard():
            start, end = self._range()
            start &= ~(PAGE_SIZE - 1)
            before = self.mm.vm_pte_kib
            freed = self.mm.zap_range(start, end, reclaim_pt=bool(self.reclaim.value))
            self._say(f"zap [{start:#x}, {end:#x}): {freed} PTE table(s) freed; "
                      f"VmPTE {self.mm.vm_pte_kib - before:+d} KiB")
            self._refresh()

    def step_address(self, delta: int) -> None:
        """Move the address field by ``delta`` bytes (the "+2 MiB" button)."""
        with self.error.guard():
            addr = paging.parse_address(self.address.value) + delta
            paging.check_canonical(addr, self.mm.levels)
            self.address.value = f"{addr:#x}"


class PtdescView(_App):
    """``struct ptdesc`` of one table, drawn as a byte map, before/after ``call_rcu()``."""

    def __init__(self, kernel: str = "v6.14", table: str = "pmd") -> None:
        self.error = ErrorBox()
        self.kernel = widgets.Dropdown(options=list(ptdesc_mod.KERNELS), value=kernel,
                                       description="kernel")
        self.table = widgets.Dropdown(
            options=[("PMD table with a THP deposit", "pmd"), ("PGD on pgd_list", "pgd")],
            value=table, description="table",
        )
        self.stage = widgets.ToggleButtons(
            options=[("before", 0), ("after call_rcu()", 1)], value=0, description="moment",
        )
        self.changed = widgets.HTML()
        self.view = FigureView()
        for w in (self.kernel, self.table, self.stage):
            w.observe(lambda _c: self._update(), names="value")
        self.snapshots: tuple[exercises.PtdescSnapshot, exercises.PtdescSnapshot] | None = None
        self.widget = widgets.VBox([
            widgets.HBox([self.kernel, self.table]), self.stage, self.error.widget,
            self.changed, self.view.widget,
        ])
        self._update()

    @property
    def shown(self) -> exercises.PtdescSnapshot:
        """The snapshot currently drawn."""
        assert self.snapshots is not None
        return self.snapshots[int(self.stage.value)]

    def _update(self) -> None:
        with self.error.guard():
            kernel, table = str(self.kernel.value), str(self.table.value)
            self.snapshots = exercises.rcu_head_clobber_demo(kernel, table)
            snap = self.shown
            changed = exercises.changed_fields(*self.snapshots)
            lay = ptdesc_mod.layout("ptdesc", kernel)
            self.changed.value = (
                "call_rcu() changes: " + ", ".join(f"<code>{html.escape(n)}</code>"
                                                    for n in changed)
            )
            self.view.show(draw_struct_layout(
                lay, live=snap.live, values=snap.values,
                title=f"struct ptdesc ({kernel}) of a {table.upper()} table, {snap.stage}",
            ))


class VmPteQuiz(_App):
    """"By how many KiB does VmPTE grow when these addresses are touched?" - checked by
    running the model (:func:`ptlab.exercises.check_vmpte_answer`)."""

    def __init__(self, addresses: Sequence[int], *, levels: int = 4) -> None:
        exercises.lesson_mm(addresses, levels=levels)  # validates the addresses now
        self.addresses = list(addresses)
        self.levels = levels
        self.error = ErrorBox()
        self.answer = widgets.Text(value="", description="KiB:", placeholder="e.g. 16")
        self.check = widgets.Button(description="check", button_style="info")
        self.result = widgets.HTML()
        self.last: exercises.ExerciseResult | None = None
        self.check.on_click(lambda _b: self.judge())
        self.widget = widgets.VBox([widgets.HBox([self.answer, self.check]),
                                    self.error.widget, self.result])

    def judge(self) -> None:
        with self.error.guard():
            text = str(self.answer.value).strip()
            res = exercises.check_vmpte_answer(self.addresses, text or None,
                                               levels=self.levels)
            self.last = res
            color = {True: "#2e7d32", False: "#b00020", None: "#555555"}[res.correct]
            body = html.escape(str(res)).replace("\n", "<br>")
            self.result.value = f"<div style='color:{color}'>{body}</div>"
