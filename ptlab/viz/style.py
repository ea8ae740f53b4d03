"""Shared look of every ptlab picture: one palette per concept, one font scale, one figure factory.

Colours are chosen once here so that the same page-table level, union group or CPU has
the same colour in every lesson: the PGD is always blue, a PTE table always green, CPU1
always orange.

>>> level_color("pte") == LEVEL_COLORS["pte"]
True
>>> union_color(0) != union_color(1)
True
"""

from __future__ import annotations

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

# Page-table levels, top to bottom, plus the register and the byte offset.
LEVEL_COLORS: dict[str, str] = {
    "cr3": "#6b6b6b",
    "pgd": "#4e79a7",
    "p4d": "#9c755f",
    "pud": "#b07aa1",
    "pmd": "#f28e2b",
    "pte": "#59a14f",
    "page": "#bab0ac",
    "offset": "#8c8c8c",
}

# Union groups (by order of first appearance in a struct) and plain fields.
UNION_COLORS: tuple[str, ...] = (
    "#a0cbe8",
    "#ffbe7d",
    "#8cd17d",
    "#d4a6c8",
    "#f1ce63",
    "#86bcb6",
    "#ff9d9a",
    "#d7b5a6",
)
PLAIN_FIELD_COLOR = "#e6e6e6"

# CPUs in multi-CPU pictures (CPU0, CPU1, ...), and the RCU machinery.
CPU_COLORS: tuple[str, ...] = ("#4e79a7", "#f28e2b", "#59a14f", "#e15759")
RCU_COLOR = "#76b7b2"

# Emphasis.
HIGHLIGHT_EDGE = "#d62728"  # the used entry, the live member, a difference
EMPTY_FILL = "#ffffff"
GRID_COLOR = "#bbbbbb"
TEXT_COLOR = "#222222"
ERROR_COLOR = "#b00020"

# Fonts (points).  Sized for a figure about 9.5 inches wide shown at notebook width.
FONT_TITLE = 11
FONT_LABEL = 9
FONT_SMALL = 7.5
FONT_TINY = 6.5
FONT_FAMILY_MONO = "DejaVu Sans Mono"

# Figure geometry.
FIGURE_WIDTH = 9.5  # inches; fits a JupyterLab notebook column at the default zoom
DPI = 90


def level_color(level: str) -> str:
    """Colour for a page-table level name (``"pgd"``, ``"p4d"``, ``"pud"``, ``"pmd"``, ``"pte"``).

    ``ValueError`` names the bad level and the allowed ones.
    """
    try:
        return LEVEL_COLORS[level]
    except KeyError:
        allowed = ", ".join(LEVEL_COLORS)
        raise ValueError(f"unknown page-table level {level!r}; allowed: {allowed}") from None


def union_color(group_number: int) -> str:
    """Colour of the ``group_number``-th union group of a struct (cycles after 8)."""
    return UNION_COLORS[group_number % len(UNION_COLORS)]


def cpu_color(cpu: int) -> str:
    """Colour for CPU number ``cpu`` (cycles after 4)."""
    if cpu < 0:
        raise ValueError(f"CPU number must be >= 0, got {cpu}")
    return CPU_COLORS[cpu % len(CPU_COLORS)]


def new_figure(height: float, width: float = FIGURE_WIDTH) -> Figure:
    """A fresh ``Figure`` with its own Agg canvas (no pyplot, no global figure registry).

    Nothing keeps a reference to it, so it is garbage-collected like any other object.
    """
    if not (0 < height <= 40 and 0 < width <= 40):
        raise ValueError(f"figure size {width}x{height} inches is outside 0..40")
    fig = Figure(figsize=(width, height), dpi=DPI)
    FigureCanvasAgg(fig)
    return fig
