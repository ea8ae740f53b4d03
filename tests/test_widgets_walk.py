"""Lesson-01 widgets and exercise checker, driven without a browser.

Widgets are driven as a learner would (``.value = ...``, ``.click()``); assertions are on
the model behind them and on the text the learner sees.  Expected VmPTE values follow
from kernel-facts §1: every page-table page is 4 KiB, the first fault in an empty
address space allocates a PUD, a PMD and a PTE table (the PGD exists already and is not
counted), a PTE table covers 2 MiB and a PMD table 1 GiB.
"""

from __future__ import annotations

import pytest
from matplotlib.figure import Figure

from ptlab import exercises
from ptlab.arch.x86.paging import PAGE_SIZE, PMD_SIZE, PUD_SIZE, VMEMMAP_START, split_vaddr
from ptlab.viz.paging import draw_address_split
from ptlab.widgets.common import ErrorBox, FigureView, figure_png
from ptlab.widgets.walk import LESSON_ADDRESS, PtdescView, TouchLab, VmPteQuiz, WalkExplorer

KIB_PER_TABLE = 4  # one 4 KiB page-table page


# ---------------------------------------------------------------- common
def test_error_box_shows_value_errors_and_clears() -> None:
    box = ErrorBox()
    with box.guard():
        raise ValueError("address 'zz' is bad\nsecond line")
    assert box.failed and box.message == "address 'zz' is bad"
    assert "address &#x27;zz&#x27; is bad" in box.widget.value and "second" not in box.widget.value
    with box.guard():
        raise PermissionError("cannot read /sys/kernel/btf/vmlinux")
    assert "vmlinux" in box.message
    with box.guard():
        pass
    assert not box.failed and box.widget.value == ""


def test_error_box_lets_real_bugs_through() -> None:
    box = ErrorBox()
    with pytest.raises(KeyError), box.guard():
        raise KeyError("bug")


def test_figure_view_clears_the_previous_figure() -> None:
    view = FigureView()
    first, second = draw_address_split(0x1000), draw_address_split(0x2000)
    view.show(first)
    png1 = view.widget.value
    assert png1[:8] == b"\x89PNG\r\n\x1a\n"
    view.show(second)
    assert view.figure is second and view.updates == 2
    assert first.axes == [] and second.axes  # the old one released its artists
    assert view.widget.value != png1


def test_figure_png_is_deterministic() -> None:
    assert figure_png(draw_address_split(0x1000)) == figure_png(draw_address_split(0x1000))


# ---------------------------------------------------------------- WalkExplorer
def test_walk_explorer_starts_with_the_lesson_address() -> None:
    w = WalkExplorer()
    s = split_vaddr(LESSON_ADDRESS)
    assert w.addr == LESSON_ADDRESS and w.error.message == ""
    assert w.mm.translate(LESSON_ADDRESS) is not None  # the explorer faulted it in
    assert [st.index for st in w.walk.steps] == [s.pgd, s.pud, s.pmd, s.pte]
    for idx in (s.pgd, s.pud, s.pmd, s.pte):
        assert f"<code>{idx}</code>" in w.table.value
    assert isinstance(w.view.figure, Figure)
    idx_texts = {t.get_text() for ax in w.view.figure.axes for t in ax.texts
                 if (t.get_gid() or "").startswith("index:")}
    assert idx_texts == {f"[{s.pgd}]", f"[{s.pud}]", f"[{s.pmd}]", f"[{s.pte}]"}


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("zz", "'zz'"),
        ("0x800000000000", "0x800000000000"),  # not canonical with 48-bit addresses
        ("0xffff888000000000", "0xffff888000000000"),  # canonical, but kernel half
    ],
)
def test_walk_explorer_bad_address_shows_error_and_keeps_last_walk(text: str, named: str) -> None:
    w = WalkExplorer()
    before = w.walk
    w.address.value = text
    assert named in w.error.message and named.strip("'") in w.error.widget.value
    assert w.walk is before and w.addr == LESSON_ADDRESS
    w.address.value = "0x7ffc12346000"
    assert w.error.message == "" and w.addr == 0x7FFC_1234_6000


def test_walk_explorer_slider_moves_page_by_page() -> None:
    start = 0x7FFC_1220_0000
    w = WalkExplorer(start=start, end=start + 4 * PMD_SIZE)
    w.slider.value = 512 + 7  # 512 pages = 2 MiB further: next PMD entry, PTE index 7
    addr = start + (512 + 7) * PAGE_SIZE + (LESSON_ADDRESS & (PAGE_SIZE - 1))
    assert w.address.value == f"{addr:#x}" and w.addr == addr
    assert w.walk.steps[-1].index == 7
    assert w.walk.steps[2].index == split_vaddr(start).pmd + 1
    # typing an address inside the range moves the slider back
    w.address.value = f"{start + 3 * PAGE_SIZE:#x}"
    assert w.slider.value == 3


def test_walk_explorer_rapid_slider_changes() -> None:
    w = WalkExplorer()
    for v in range(0, 40, 5):
        w.slider.value = v
    assert w.view.updates >= 8 and w.error.message == ""
    # only the last figure still holds artists
    assert w.view.figure is not None and w.view.figure.axes


def test_walk_explorer_levels_toggle() -> None:
    w = WalkExplorer()
    w.levels.value = 5
    assert w.mm.levels == 5 and w.walk.levels == 5
    assert [st.level for st in w.walk.steps] == ["pgd", "p4d", "pud", "pmd", "pte"]
    # with 5 levels, 57-bit user addresses become valid
    w.address.value = "0x00ff000000001000"
    assert w.error.message == "" and w.walk.steps[0].index == 0xFF
    w.levels.value = 4
    assert "not canonical" in w.error.message


# ---------------------------------------------------------------- TouchLab
def test_touch_lab_first_touch_costs_three_tables_then_nothing() -> None:
    lab = TouchLab()
    assert lab.mm.vm_pte_kib == 0 and lab.status.value.startswith("VmPTE: 0 KiB")
    lab.touch_button.click()
    assert lab.mm.vm_pte_kib == 3 * KIB_PER_TABLE  # PUD + PMD + PTE
    assert lab.status.value.startswith("VmPTE: 12 KiB")
    assert "1 PUD + 1 PMD + 1 PTE" in lab.log_lines[-1]
    for _ in range(10):  # rapid repeated clicks: same page, nothing new
        lab.touch_button.click()
    assert lab.mm.vm_pte_kib == 12 and "no new table" in lab.log_lines[-1]
    assert len(lab.log_lines) == 6  # the log keeps the last six lines


def test_touch_lab_next_2mib_costs_one_pte_table() -> None:
    lab = TouchLab()
    lab.touch_button.click()
    lab.next_2m.click()
    assert lab.address.value == f"{lab.vma.start + PMD_SIZE:#x}"
    lab.touch_button.click()
    assert lab.mm.vm_pte_kib == 4 * KIB_PER_TABLE
    assert "PTE 2" in lab.status.value


def test_touch_lab_range_and_zap_with_reclaim() -> None:
    lab = TouchLab()
    lab.pages.value = 2 * 512  # 4 MiB from a 2 MiB-aligned start: two PTE tables
    lab.touch_button.click()
    assert lab.mm.vm_pte_kib == (2 + 2) * KIB_PER_TABLE
    lab.pages.value = 512
    lab.reclaim.value = False
    lab.zap_button.click()  # without PT_RECLAIM the empty PTE table stays
    assert lab.mm.vm_pte_kib == 16 and "0 PTE table(s) freed" in lab.log_lines[-1]
    lab.reclaim.value = True
    lab.zap_button.click()  # the whole 2 MiB span is empty: its PTE table is freed
    assert lab.mm.vm_pte_kib == 12 and "1 PTE table(s) freed" in lab.log_lines[-1]
    assert lab.mm.translate(lab.vma.start) is None
    assert lab.mm.translate(lab.vma.start + PMD_SIZE) is not None


def test_touch_lab_errors() -> None:
    lab = TouchLab()
    lab.address.value = "0x1000"  # outside the VMA
    lab.touch_button.click()
    assert "0x1000" in lab.error.message and lab.mm.vm_pte_kib == 0
    lab.address.value = "nonsense"
    lab.zap_button.click()
    assert "'nonsense'" in lab.error.message
    lab.address.value = f"{lab.vma.start:#x}"
    lab.touch_button.click()
    assert lab.error.message == "" and lab.mm.vm_pte_kib == 12


def test_touch_lab_figure_follows_the_model() -> None:
    lab = TouchLab()
    lab.touch_button.click()
    lab.next_2m.click()
    lab.touch_button.click()
    fig = lab.view.figure
    assert fig is not None
    ptes = [p for ax in fig.axes for p in ax.patches if (p.get_gid() or "").startswith("node:pte:")]
    assert len(ptes) == len(lab.mm.table_pfns()["pte"]) == 2


# ---------------------------------------------------------------- PtdescView
def _thick(fig: Figure | None) -> set[str]:
    assert fig is not None
    return {p.get_gid() or "" for ax in fig.axes for p in ax.patches
            if (p.get_gid() or "").startswith("field:") and p.get_linewidth() > 2}


def test_ptdesc_view_kernels_and_call_rcu() -> None:
    v = PtdescView()
    assert v.shown.stage == "before call_rcu"
    assert _thick(v.view.figure) == {"field:pmd_huge_pte", "field:ptl"}
    assert "pmd_huge_pte" in v.changed.value
    v.stage.value = 1
    assert v.shown.stage == "after call_rcu"
    assert _thick(v.view.figure) == {"field:pt_rcu_head.next", "field:pt_rcu_head.func"}
    assert v.shown.values["pmd_huge_pte"] == exercises.TLB_REMOVE_TABLE_RCU

    def field_names(fig: Figure | None) -> set[str]:
        assert fig is not None
        return {p.get_gid() or "" for ax in fig.axes for p in ax.patches
                if (p.get_gid() or "").startswith("field:")}

    assert "field:__page_flags" in field_names(v.view.figure)
    v.kernel.value = "v6.18"  # 6.18 renamed the first member (kernel-facts §2.1)
    assert "field:pt_flags" in field_names(v.view.figure)
    assert "field:__page_flags" not in field_names(v.view.figure)
    v.table.value = "pgd"
    assert "pt_list.next" in v.changed.value and v.error.message == ""


# ---------------------------------------------------------------- exercise checker
def test_check_vmpte_answer_from_first_principles() -> None:
    a = 0x7FFC_1234_5678
    addrs = [a, a + PAGE_SIZE, a + PMD_SIZE, a + PUD_SIZE]
    # a: PUD+PMD+PTE (12); next page: same PTE table (0); +2 MiB: new PTE table (4);
    # +1 GiB: same PUD table, new PMD and PTE tables (8)  -> 24 KiB
    right = exercises.check_vmpte_answer(addrs, 24)
    assert right.correct is True and right.expected == 24
    assert [s.kib for s in right.steps] == [12, 0, 4, 8]
    assert [s.levels_allocated() for s in right.steps] == [
        ("pud", "pmd", "pte"), (), ("pte",), ("pmd", "pte")]
    assert str(right).startswith("Right: 24 KiB")
    wrong = exercises.check_vmpte_answer(addrs, "20 KiB")
    assert wrong.correct is False and "you said 20 KiB" in str(wrong)
    assert "+8 KiB" in wrong.explanation
    pending = exercises.check_vmpte_answer(addrs, None)
    assert pending.correct is None and "No answer yet" in str(pending)


def test_check_vmpte_answer_5_level() -> None:
    # with 5 levels a P4D table is allocated as well, but the model's VmPTE (like
    # mm_pgtables_bytes) only counts what the kernel counts; the checker reports
    # whatever the model measured, so the answer must equal the model's growth
    r = exercises.check_vmpte_answer([0x7FFC_1234_5678], None, levels=5)
    assert r.steps[0].levels_allocated()[0] == "p4d"
    assert r.expected == r.steps[0].kib


@pytest.mark.parametrize("bad", ["twelve", -4, True, 3.5])
def test_check_vmpte_answer_rejects_bad_answers(bad: object) -> None:
    with pytest.raises(ValueError, match="answer"):
        exercises.check_vmpte_answer([LESSON_ADDRESS], bad)  # type: ignore[arg-type]


def test_lesson_mm_rejects_bad_addresses() -> None:
    with pytest.raises(ValueError, match="no addresses"):
        exercises.lesson_mm([])
    with pytest.raises(ValueError, match="0xffff888000000000"):
        exercises.lesson_mm([0xFFFF_8880_0000_0000])
    with pytest.raises(ValueError, match="'0x1000'"):
        exercises.lesson_mm(["0x1000"])  # type: ignore[list-item]


def test_quiz_widget() -> None:
    a = LESSON_ADDRESS
    q = VmPteQuiz([a, a + PMD_SIZE])
    q.check.click()
    assert q.last is not None and q.last.correct is None
    q.answer.value = "16"  # 12 for the first touch, 4 for the PTE table 2 MiB away
    q.check.click()
    assert q.last.correct is True and "Right" in q.result.value
    q.answer.value = "12"
    q.check.click()
    assert q.last.correct is False and "Not quite" in q.result.value
    q.answer.value = "lots"
    q.check.click()
    assert "'lots'" in q.error.message


def test_rcu_head_clobber_demo() -> None:
    before, after = exercises.rcu_head_clobber_demo("v6.14", "pmd")
    # before: pmd_huge_pte points at the deposited table's ptdesc (in the vmemmap)
    assert before.values["pmd_huge_pte"] >= VMEMMAP_START
    # call_rcu stores func at +16 and next=NULL at +8: every alias of those bytes changes
    assert after.values["pmd_huge_pte"] == after.values["pt_rcu_head.func"] == \
        exercises.TLB_REMOVE_TABLE_RCU
    assert after.values["pt_list.prev"] == exercises.TLB_REMOVE_TABLE_RCU
    assert after.values["pt_list.next"] == after.values["_pt_pad_1"] == 0
    # bytes outside the union are untouched
    assert before.values["__page_type"] == after.values["__page_type"]
    assert "pmd_huge_pte" in exercises.changed_fields(before, after)

    pb, pa = exercises.rcu_head_clobber_demo("v6.18", "pgd")
    assert pb.values["pt_list.next"] != 0 and pb.values["pt_mm"] != 0
    assert pa.values["pt_list.next"] == 0
    assert pa.values["pt_list.prev"] == exercises.TLB_REMOVE_TABLE_RCU
    assert pa.values["pt_mm"] == pb.values["pt_mm"]
    with pytest.raises(ValueError, match="'pte'"):
        exercises.rcu_head_clobber_demo("v6.14", "pte")
    with pytest.raises(ValueError, match=r"v6\.99"):
        exercises.rcu_head_clobber_demo("v6.99", "pmd")
