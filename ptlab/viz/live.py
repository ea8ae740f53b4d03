"""Pictures for the live-kernel lab: VmPTE predicted vs measured, struct byte maps.

Pure functions from ptlab data to a :class:`matplotlib.figure.Figure` (no pyplot state).

>>> from ptlab.live.experiment import parse_ops, run_experiment
>>> result = run_experiment(parse_ops([{"op": "mmap", "size": "4M"},
...                                    {"op": "touch", "offset": 0, "length": "4M"}]),
...                         live=False)
>>> fig = vmpte_chart(result)
>>> len(fig.axes)
1
"""

from __future__ import annotations

from matplotlib.figure import Figure

from ptlab.live.experiment import ExperimentResult
from ptlab.mm.layout import StructLayout
from ptlab.viz import style
from ptlab.viz.layout import draw_layout_comparison
from ptlab.widgets.common import figure_png

__all__ = ["figure_png", "layout_pair_figure", "vmpte_chart"]

PREDICTED_COLOR = style.LEVEL_COLORS["pgd"]  # ptlab's model
MEASURED_COLOR = style.LEVEL_COLORS["pmd"]  # the running kernel
MISMATCH_COLOR = style.HIGHLIGHT_EDGE


def vmpte_chart(result: ExperimentResult, *, title: str | None = None) -> Figure:
    """Grouped bars per step: predicted and measured VmPTE change in KiB.

    Steps where they differ get a red "≠" above them; in predictions-only mode only
    the predicted bars are drawn.
    """
    steps = result.steps
    fig = style.new_figure(4.6)
    ax = fig.add_axes((0.09, 0.42, 0.88, 0.48))
    xs = list(range(len(steps)))
    width = 0.38 if result.live else 0.6
    pred = [s.predicted_kib for s in steps]
    offset = -width / 2 if result.live else 0.0
    ax.bar([x + offset for x in xs], pred, width, label="ptlab predicts",
           color=PREDICTED_COLOR)
    top = max([abs(v) for v in pred] + [1])
    if result.live:
        meas = [s.measured_kib or 0 for s in steps]
        ax.bar([x + width / 2 for x in xs], meas, width, label="kernel measured",
               color=MEASURED_COLOR)
        top = max([abs(v) for v in meas] + [top])
        for s in steps:
            if s.match is False:
                ax.text(s.index, top * 1.2, "≠", ha="center", va="bottom",
                        color=MISMATCH_COLOR, fontsize=style.FONT_TITLE + 4, gid="mismatch")
    for x, v in zip(xs, pred, strict=True):
        if v:
            ax.text(x + offset, v, f"{v:+d}", ha="center", va="bottom" if v > 0 else "top",
                    fontsize=style.FONT_TINY, color=style.TEXT_COLOR)
    ax.axhline(0, color=style.TEXT_COLOR, linewidth=0.8)
    ax.set_xticks(xs)
    ax.set_xticklabels([f"{s.index}: {s.op.describe()}" for s in steps], rotation=25,
                       ha="right", fontsize=style.FONT_SMALL)
    # symlog: a -8 KiB step stays visible next to a +516 KiB one
    ax.set_yscale("symlog", linthresh=8)
    ax.set_ylim(-top * 2.5, top * 2.5)
    ticks = [t for t in (4 ** k for k in range(1, 12)) if t <= top * 1.5]
    ticks = [-t for t in reversed(ticks)] + [0] + ticks
    ax.set_yticks(ticks)
    ax.set_yticklabels([f"{t:+d}" if t else "0" for t in ticks], fontsize=style.FONT_SMALL)
    ax.minorticks_off()
    ax.set_ylabel("VmPTE change (KiB, symlog)", fontsize=style.FONT_LABEL)
    mode = "live" if result.live else "predictions only"
    ax.set_title(title or f"VmPTE per step ({mode}, rule set {result.kernel.rule_set})",
                 fontsize=style.FONT_TITLE)
    ax.legend(loc="lower left", fontsize=style.FONT_SMALL)
    return fig


def layout_pair_figure(model: StructLayout, kernel: StructLayout) -> Figure:
    """ptlab's model of a struct beside the running kernel's BTF layout, as byte maps;
    fields that differ are hatched in red (:func:`ptlab.viz.layout.draw_layout_comparison`).
    """
    return draw_layout_comparison(model, kernel, left_title="ptlab model",
                                  right_title="running kernel (BTF)")
