"""ipywidgets app for the live-kernel lab: pick an experiment, run it, see the chart.

The experiment the controls describe is always: mmap SIZE (THP on/off), touch every page
(or one page per 2 MiB), madvise ADVICE over [OFFSET, OFFSET+LENGTH), munmap everything.
Errors (a range outside the mapping, an unaligned offset, a failing system call) are shown
in the status line, never as a traceback.

>>> lab = VmpteLab(live=False)
>>> lab.run_button.click()
>>> lab.status.value.startswith("predictions only")
True
"""

from __future__ import annotations

import html

import ipywidgets as widgets

from ptlab.live.experiment import ExperimentResult, Op, parse_ops, run_experiment
from ptlab.live.kernel import KernelInfo, detect_kernel, running_kernel
from ptlab.viz.live import vmpte_chart
from ptlab.widgets.common import ErrorBox, FigureView

SIZES_MIB = (4, 8, 16, 32, 64, 128, 256)
STRIDES = (("every 4 KiB page", 4096), ("one page per 2 MiB", 2 << 20))


class VmpteLab:
    """Controls → experiment → predicted vs measured table and chart."""

    def __init__(self, *, live: bool | None = None, kernel: KernelInfo | None = None) -> None:
        self.live = live
        self._kernel = kernel
        style = {"description_width": "120px"}
        self.size = widgets.Dropdown(options=[(f"{m} MiB", m) for m in SIZES_MIB], value=64,
                                     description="mapping size", style=style)
        self.thp = widgets.Checkbox(value=False, description="THP (MADV_HUGEPAGE)",
                                    indent=False)
        self.stride = widgets.Dropdown(options=list(STRIDES), value=4096,
                                       description="touch", style=style)
        self.advice = widgets.ToggleButtons(options=[("MADV_DONTNEED", "dontneed"),
                                                     ("MADV_FREE", "free")],
                                            value="dontneed", description="advice",
                                            style=style)
        self.offset_kib = widgets.IntText(value=3072, description="range offset KiB",
                                          style=style)
        self.length_kib = widgets.IntText(value=6144, description="range length KiB",
                                          style=style)
        self.run_button = widgets.Button(description="Run", button_style="primary",
                                         icon="play")
        self.status = widgets.Label(value="Choose an experiment and press Run.")
        self.errors = ErrorBox()
        self.table = widgets.HTML(value="")
        self.chart = FigureView()
        self.result: ExperimentResult | None = None
        self.run_button.on_click(lambda _b: self.run())
        controls = widgets.VBox([
            widgets.HBox([self.size, self.thp]),
            self.stride,
            self.advice,
            widgets.HBox([self.offset_kib, self.length_kib]),
            self.run_button,
        ])
        self.widget = widgets.VBox([controls, self.status, self.errors.widget, self.table,
                                    self.chart.widget])

    def kernel(self) -> KernelInfo:
        if self._kernel is None:
            self._kernel = (detect_kernel(probe=False, live=False) if self.live is False
                            else running_kernel())
        return self._kernel

    def ops(self) -> list[Op]:
        """The experiment the controls describe (validated; may raise ValueError)."""
        size = self.size.value * (1 << 20)
        return parse_ops([
            {"op": "mmap", "size": size, "thp": bool(self.thp.value)},
            {"op": "touch", "offset": 0, "length": size, "stride": int(self.stride.value)},
            {"op": "madvise", "advice": self.advice.value,
             "offset": int(self.offset_kib.value) * 1024,
             "length": int(self.length_kib.value) * 1024},
            {"op": "munmap", "offset": 0, "length": size},
        ])

    def run(self) -> None:
        """Run the experiment; show the result or one line of error."""
        result: ExperimentResult | None = None
        with self.errors.guard():
            try:
                result = run_experiment(self.ops(), kernel=self.kernel(), live=self.live)
            except OSError as exc:  # a failing system call: shown like bad input
                raise ValueError(str(exc)) from None
        self.result = result
        if result is None:
            self.status.value = "error: see below"
            self.table.value = ""
            return
        self.table.value = result_html(result)
        self.chart.show(vmpte_chart(result))
        if not result.live:
            self.status.value = f"predictions only — {result.kernel.summary()}"
        elif result.all_match:
            self.status.value = f"all {len(result.steps)} steps: predicted = measured " \
                                f"({result.kernel.summary()})"
        else:
            bad = ", ".join(str(s.index) for s in result.mismatches())
            self.status.value = f"prediction differs from the kernel at step(s) {bad}"

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.widget)  # type: ignore[no-untyped-call]


def result_html(result: ExperimentResult) -> str:
    """An HTML table of the steps (predicted, measured, match)."""
    rows = []
    for s in result.steps:
        measured = "–" if s.measured_kib is None else f"{s.measured_kib:+d}"
        mark = {True: "✔", False: "✘", None: ""}[s.match]
        rows.append(
            f"<tr><td>{s.index}</td><td>{html.escape(s.op.describe())}</td>"
            f"<td style='text-align:right'>{s.predicted_kib:+d}</td>"
            f"<td style='text-align:right'>{measured}</td><td>{mark}</td></tr>"
        )
    return (
        "<table><tr><th>#</th><th>operation</th><th>predicted KiB</th>"
        "<th>measured KiB</th><th>match</th></tr>" + "".join(rows) + "</table>"
    )
