"""The live-lab widget without a browser: set values, click Run, look at the widgets.

Expected deltas (see tests/test_live_experiment.py for the rules): 16 MiB touched page by
page = 1 PMD table + 8 PTE tables = +36 KiB; MADV_DONTNEED of [2 MiB, 6 MiB) frees the
two tables of those spans (-8 KiB); the final munmap frees the other 6 and the PMD table.
"""

from __future__ import annotations

import pytest

from ptlab.live.experiment import MmapOp
from ptlab.live.kernel import detect_kernel
from ptlab.widgets.live import VmpteLab

LIVE = detect_kernel(probe=False).live


def configure(lab: VmpteLab, *, advice: str = "dontneed", offset_kib: int = 2048,
              length_kib: int = 4096) -> None:
    lab.size.value = 16
    lab.thp.value = False
    lab.stride.value = 4096
    lab.advice.value = advice
    lab.offset_kib.value = offset_kib
    lab.length_kib.value = length_kib


def test_predictions_only_run_fills_table_and_chart() -> None:
    lab = VmpteLab(live=False)
    configure(lab)
    lab.run_button.click()
    assert lab.result is not None and not lab.result.live
    assert [s.predicted_kib for s in lab.result.steps] == [0, 36, -8, -28]
    assert lab.status.value.startswith("predictions only")
    assert "MADV_DONTNEED" in lab.table.value and "<table>" in lab.table.value
    assert lab.chart.widget.value[:8] == b"\x89PNG\r\n\x1a\n"
    assert lab.chart.figure is not None and lab.errors.message == ""


@pytest.mark.skipif(not LIVE, reason="needs a live Linux kernel with VmPTE")
def test_live_run_matches_and_free_keeps_tables() -> None:
    lab = VmpteLab()
    configure(lab)
    lab.run_button.click()
    assert lab.result is not None and lab.result.live and lab.result.all_match
    assert "predicted = measured" in lab.status.value
    configure(lab, advice="free")
    lab.run_button.click()
    assert lab.result is not None
    # MADV_FREE frees no tables: the munmap step then frees all 8 PTE tables + the PMD
    assert [s.measured_kib for s in lab.result.steps] == [0, 36, 0, -36]


@pytest.mark.parametrize(
    ("offset_kib", "length_kib", "message"),
    [
        (15 * 1024, 4096, "outside the mapping"),
        (2, 4096, "field 'offset' is 2048; madvise needs a multiple of 4096"),
    ],
)
def test_errors_are_shown_not_raised(offset_kib: int, length_kib: int, message: str) -> None:
    lab = VmpteLab(live=False)
    configure(lab, offset_kib=offset_kib, length_kib=length_kib)
    lab.run_button.click()
    assert lab.result is None
    assert message in lab.errors.message
    assert "Error" in lab.errors.widget.value and lab.status.value.startswith("error")
    # fixing the input clears the error
    configure(lab)
    lab.run_button.click()
    assert lab.errors.message == "" and lab.result is not None


def test_thp_toggle_reaches_the_model() -> None:
    lab = VmpteLab(live=False)
    configure(lab)
    lab.thp.value = True
    first = lab.ops()[0]
    assert isinstance(first, MmapOp) and first.thp is True
    lab.run_button.click()
    assert lab.result is not None
    # huge or not, each touched 2 MiB accounts one PTE table (a deposited one for a THP)
    assert [s.predicted_kib for s in lab.result.steps] == [0, 36, -8, -28]


def test_chart_marks_mismatches_and_layout_pair_marks_differences() -> None:
    from ptlab.live.experiment import Step, demo_ops, run_experiment
    from ptlab.mm.layout import Field, StructLayout
    from ptlab.viz.live import layout_pair_figure, vmpte_chart

    result = run_experiment(demo_ops(), live=False)
    # Pretend the kernel disagreed at step 3: the chart must flag exactly that step.
    steps = tuple(
        Step(s.index, s.op, s.predicted_kib, s.predicted_kib + (4 if s.index == 3 else 0))
        for s in result.steps
    )
    fake = type(result)(steps, result.kernel, result.address, True)
    ax = vmpte_chart(fake).axes[0]
    marks = [t for t in ax.texts if t.get_gid() == "mismatch"]
    assert len(marks) == 1 and marks[0].get_position()[0] == 3
    left = StructLayout("s", 16, (Field("a", 0, 8, "long"), Field("b", 8, 8, "long")))
    right = StructLayout("s", 16, (Field("a", 0, 8, "long"), Field("b", 4, 8, "long")))
    fig = layout_pair_figure(left, right)
    texts = [t.get_text() for t in fig.texts if t.get_gid() == "differences"]
    assert texts and "b: offset (8 vs 4)" in texts[0]
