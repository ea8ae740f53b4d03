"""Struct layouts drawn as byte maps: rows of 8 bytes, fields as boxes, unions stacked.

Any :class:`ptlab.mm.layout.StructLayout` (ptlab's models of ``struct ptdesc`` /
``struct page`` or a layout read from the running kernel's BTF) is drawn the same way:
one row per 8 bytes, each field a box over the bytes it occupies.  Members of one union
share bytes, so they are drawn in *lanes* stacked inside the same row: the picture shows
at a glance that ``pt_rcu_head.func`` and ``pmd_huge_pte`` are the same 8 bytes.

>>> from ptlab.mm.layout import Field, StructLayout
>>> s = StructLayout("demo", 16, (Field("a", 0, 8, "long", union="union@0"),
...                                Field("b", 0, 8, "void *", union="union@0"),
...                                Field("c", 8, 8, "long")))
>>> [(b.name, b.row, b.lane, b.lanes) for b in byte_map_boxes(s)]
[('a', 0, 0, 2), ('b', 0, 1, 2), ('c', 1, 0, 1)]
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Mapping
from dataclasses import dataclass

from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import Patch, Rectangle

from ptlab.mm.layout import Field, StructLayout, compare_layouts
from ptlab.viz import style

ROW_BYTES = 8
_LANE_HEIGHT = 0.42  # row units per lane when a row holds more than two lanes
_INCH_PER_ROW_UNIT = 0.45


@dataclass(frozen=True)
class ByteBox:
    """One drawn box: the part of field ``name`` that lies in byte row ``row``.

    ``col`` and ``end_col`` are byte columns 0..8 within the row; ``lane`` of ``lanes``
    says which horizontal strip of the row the box occupies (union members are stacked).
    ``first`` is True for the row where the field starts.
    """

    name: str
    row: int
    col: int
    end_col: int
    lane: int
    lanes: int
    group: str
    first: bool


def leaf_fields(layout: StructLayout) -> list[Field]:
    """The fields that are drawn: every field that does not merely contain other fields.

    ``pt_rcu_head`` is left out when ``pt_rcu_head.next`` and ``pt_rcu_head.func`` are
    listed; a field without sub-fields (``ptl``) is kept.
    """
    names = [f.name for f in layout.fields]
    return [
        f
        for f in layout.fields
        if not any(other.startswith(f.name + ".") for other in names)
    ]


def _group_of(f: Field) -> str:
    if f.union is not None:
        return f.union
    if f.bit_size is not None:
        return f"bits@{f.offset}"
    return f"plain:{f.name}"


def _alternative_of(f: Field) -> str:
    """Which union alternative a leaf belongs to: its enclosing anonymous struct
    (``path``) and the top-level member its dotted name starts with."""
    return f"{f.path}/{f.name.split('.', 1)[0]}"


def byte_map_boxes(layout: StructLayout, row_bytes: int = ROW_BYTES) -> list[ByteBox]:
    """Place every leaf field of ``layout`` into byte rows and union lanes.

    Leaves get lanes by first-fit interval colouring in declaration order (a leaf keeps
    the lane of its member's first leaf when it can), so two fields that share a byte
    never share a lane; ``lanes`` is the number of strips of the box's overlap cluster in
    its row.  The result is sorted by (row, lane, col).
    """
    if layout.size <= 0:
        raise ValueError(f"struct {layout.name} has size {layout.size}; need a positive size")
    leaves = leaf_fields(layout)
    for f in leaves:
        if f.offset < 0 or f.end > layout.size or f.size <= 0:
            raise ValueError(
                f"field {f.name!r} at offset {f.offset} size {f.size} does not fit in "
                f"struct {layout.name} of {layout.size} bytes"
            )

    # Leaf-level first-fit interval colouring over the whole struct (unions nested in
    # unions may carry different labels yet share bytes, so lanes are not per group); a
    # leaf prefers the lane of its member's first leaf so pt_list.next/.prev line up.
    lanes: list[list[tuple[int, int]]] = []
    alt_lane: dict[tuple[str, str], int] = {}
    lane_of_leaf: list[int] = []
    for f in leaves:
        key = (_group_of(f), _alternative_of(f))

        def fits(lane: int, f: Field = f) -> bool:
            return all(not (a < f.end and f.offset < b) for a, b in lanes[lane])

        preferred = alt_lane.get(key)
        if preferred is not None and fits(preferred):
            lane = preferred
        else:
            lane = next((i for i in range(len(lanes)) if fits(i)), len(lanes))
            if lane == len(lanes):
                lanes.append([])
            alt_lane.setdefault(key, lane)
        lanes[lane].append((f.offset, f.end))
        lane_of_leaf.append(lane)

    boxes: list[ByteBox] = []
    for f, lane in zip(leaves, lane_of_leaf, strict=True):
        start = f.offset
        while start < f.end:
            row = start // row_bytes
            row_end = min(f.end, (row + 1) * row_bytes)
            boxes.append(
                ByteBox(
                    name=f.name,
                    row=row,
                    col=start - row * row_bytes,
                    end_col=row_end - row * row_bytes,
                    lane=lane,
                    lanes=1,
                    group=_group_of(f),
                    first=start == f.offset,
                )
            )
            start = row_end

    # Within a row, boxes that overlap (transitively) form a cluster; a cluster is split
    # into as many strips as it has distinct lanes, so a plain field beside a union keeps
    # the full row height and a big union uses only the lanes it needs in that row.
    compact: list[ByteBox] = []
    for row in sorted({b.row for b in boxes}):
        in_row = sorted((b for b in boxes if b.row == row), key=lambda b: (b.col, b.lane))
        cluster: list[ByteBox] = []
        cluster_end = -1
        for b in [*in_row, None]:
            if b is None or b.col >= cluster_end:
                order = sorted({c.lane for c in cluster})
                compact.extend(
                    dataclasses.replace(c, lane=order.index(c.lane), lanes=len(order))
                    for c in cluster
                )
                cluster, cluster_end = [], -1
            if b is not None:
                cluster.append(b)
                cluster_end = max(cluster_end, b.end_col)
    compact.sort(key=lambda b: (b.row, b.lane, b.col, b.name))
    return compact


def _row_heights(boxes: list[ByteBox], nrows: int) -> list[float]:
    heights = [1.0] * nrows
    for b in boxes:
        heights[b.row] = max(heights[b.row], _LANE_HEIGHT * b.lanes)
    return heights


def _union_colors(boxes: list[ByteBox]) -> dict[str, str]:
    colors: dict[str, str] = {}
    n = 0
    for b in sorted(boxes, key=lambda b: (b.row, b.col)):
        if b.group in colors:
            continue
        if b.group.startswith("plain:"):
            colors[b.group] = style.PLAIN_FIELD_COLOR
        else:
            colors[b.group] = style.union_color(n)
            n += 1
    return colors


def _is_live(name: str, live: Collection[str]) -> bool:
    parts = name.split(".")
    return any(".".join(parts[:i]) in live for i in range(1, len(parts) + 1))


def _fit_font(text: str, width_in: float, height_in: float, base: float) -> float:
    by_width = width_in * 72 / (max(len(text), 1) * 0.62)
    by_height = height_in * 72 * 0.8
    return max(4.0, min(base, by_width, by_height))


def draw_byte_map(
    ax: Axes,
    layout: StructLayout,
    *,
    live: Collection[str] | None = None,
    values: Mapping[str, int] | None = None,
    marked: Collection[str] = (),
    title: str | None = None,
    row_bytes: int = ROW_BYTES,
) -> dict[str, str]:
    """Draw ``layout`` as a byte map on ``ax``; returns the union-group → colour map used.

    ``live``: member names in use (a container name such as ``"pt_list"`` marks all its
    sub-fields); live boxes get a thick red edge and the others are faded.  ``values``:
    field name → value, printed in hex inside the box.  ``marked``: field names drawn
    hatched (used for differences between two layouts).

    Every field box is a ``Rectangle`` whose gid is ``"field:<name>"``; value texts have
    gid ``"value:<name>"`` (they include the name when it fits on one line), other
    labels ``"label:<name>"``.
    """
    boxes = byte_map_boxes(layout, row_bytes)
    nrows = (layout.size + row_bytes - 1) // row_bytes
    heights = _row_heights(boxes, nrows)
    tops = [sum(heights[:i]) for i in range(nrows)]
    colors = _union_colors(boxes)
    values = dict(values or {})
    unknown = [n for n in values if n not in layout.names()]
    if unknown:
        raise ValueError(
            f"values given for {', '.join(sorted(unknown))}, which struct {layout.name} "
            f"does not have; fields are: {', '.join(layout.names())}"
        )
    marked_set = set(marked)
    root = ax.figure
    fig_inches = root.get_figwidth() if isinstance(root, Figure) else style.FIGURE_WIDTH
    fig_width = ax.get_position().width * fig_inches
    inch_per_byte = fig_width / row_bytes

    # byte grid
    for r in range(nrows):
        for c in range(row_bytes):
            if r * row_bytes + c >= layout.size:
                continue
            ax.add_patch(
                Rectangle(
                    (c, tops[r]), 1, heights[r], fill=False, edgecolor=style.GRID_COLOR,
                    linewidth=0.4, linestyle=":", gid="grid",
                )
            )

    for b in boxes:
        lane_h = heights[b.row] / b.lanes
        y = tops[b.row] + b.lane * lane_h
        is_live = live is not None and _is_live(b.name, live)
        faded = live is not None and not is_live
        is_marked = any(b.name == m or b.name.startswith(m + ".") for m in marked_set)
        rect = Rectangle(
            (b.col + 0.04, y + 0.03),
            b.end_col - b.col - 0.08,
            lane_h - 0.06,
            facecolor=colors[b.group],
            edgecolor=style.HIGHLIGHT_EDGE if (is_live or is_marked) else "#555555",
            linewidth=2.4 if is_live else (1.6 if is_marked else 0.7),
            alpha=0.35 if faded else 1.0,
            hatch="////" if is_marked else None,
            gid=f"field:{b.name}",
        )
        ax.add_patch(rect)
        width_in = (b.end_col - b.col) * inch_per_byte
        height_in = lane_h * _INCH_PER_ROW_UNIT
        label = b.name if b.first else f"…{b.name}"
        cx, cy = (b.col + b.end_col) / 2, y + lane_h / 2
        text_alpha = 0.45 if faded else 1.0
        if b.first and b.name in values:
            vtext = f"0x{values[b.name]:x}"
            one_line = f"{label} = {vtext}"
            fs = _fit_font(one_line, width_in, height_in, style.FONT_SMALL)
            if fs >= 6.0:
                ax.text(cx, cy, one_line, ha="center", va="center", fontsize=fs,
                        family=style.FONT_FAMILY_MONO, color=style.TEXT_COLOR,
                        alpha=text_alpha, gid=f"value:{b.name}", clip_on=True)
                continue
            ax.text(cx, cy - lane_h * 0.2, label, ha="center", va="center",
                    fontsize=_fit_font(label, width_in, height_in / 2, style.FONT_SMALL),
                    color=style.TEXT_COLOR, alpha=text_alpha, gid=f"label:{b.name}",
                    clip_on=True)
            ax.text(cx, cy + lane_h * 0.22, vtext, ha="center", va="center",
                    fontsize=_fit_font(vtext, width_in, height_in / 2, style.FONT_SMALL),
                    family=style.FONT_FAMILY_MONO, color=style.TEXT_COLOR,
                    alpha=text_alpha, gid=f"value:{b.name}", clip_on=True)
            continue
        ax.text(cx, cy, label, ha="center", va="center",
                fontsize=_fit_font(label, width_in, height_in, style.FONT_SMALL),
                color=style.TEXT_COLOR, alpha=text_alpha, gid=f"label:{b.name}", clip_on=True)

    total = sum(heights)
    ax.set_xlim(0, row_bytes)
    ax.set_ylim(total, 0)
    ax.set_xticks([c + 0.5 for c in range(row_bytes)])
    ax.set_xticklabels([f"+{c}" for c in range(row_bytes)], fontsize=style.FONT_TINY)
    ax.xaxis.tick_top()
    ax.set_yticks([tops[r] + heights[r] / 2 for r in range(nrows)])
    ax.set_yticklabels([f"0x{r * row_bytes:02x}" for r in range(nrows)],
                       fontsize=style.FONT_TINY, family=style.FONT_FAMILY_MONO)
    ax.tick_params(length=0)
    for spine in ax.spines.values():
        spine.set_visible(False)
    if title:
        ax.set_title(title, fontsize=style.FONT_TITLE, pad=14)
    return colors


def _legend(fig: Figure, colors: dict[str, str]) -> None:
    handles = [
        Patch(facecolor=c, edgecolor="#555555", label=g)
        for g, c in colors.items()
        if not g.startswith("plain:")
    ]
    if handles:
        fig.legend(handles=handles, loc="lower center", ncol=min(len(handles), 6),
                   fontsize=style.FONT_SMALL, frameon=False, title="union groups (shared bytes)",
                   title_fontsize=style.FONT_SMALL)


def draw_struct_layout(
    layout: StructLayout,
    *,
    live: Collection[str] | None = None,
    values: Mapping[str, int] | None = None,
    title: str | None = None,
) -> Figure:
    """A figure with ``layout`` as a byte map (see :func:`draw_byte_map`).

    >>> from ptlab.mm.layout import Field, StructLayout
    >>> fig = draw_struct_layout(StructLayout("s", 8, (Field("x", 0, 8, "long"),)))
    >>> [p.get_gid() for p in fig.axes[0].patches if p.get_gid().startswith("field:")]
    ['field:x']
    """
    boxes = byte_map_boxes(layout)
    nrows = (layout.size + ROW_BYTES - 1) // ROW_BYTES
    map_h = sum(_row_heights(boxes, nrows)) * _INCH_PER_ROW_UNIT
    height = map_h + 1.25
    fig = style.new_figure(height)
    ax = fig.add_axes((0.09, 0.6 / height, 0.88, map_h / height))
    colors = draw_byte_map(
        ax, layout, live=live, values=values,
        title=title or f"struct {layout.name} ({layout.size} bytes)",
    )
    _legend(fig, colors)
    return fig


def draw_layout_comparison(
    left: StructLayout,
    right: StructLayout,
    *,
    left_title: str = "ptlab model",
    right_title: str = "running kernel (BTF)",
) -> Figure:
    """Two byte maps side by side; fields that differ (offset, size, or missing on one
    side, per :func:`ptlab.mm.layout.compare_layouts`) are hatched with a red edge in the
    panel(s) that have them, and the differences are listed under the maps.
    """
    diffs = compare_layouts(left, right)
    marked = {d.name for d in diffs if d.name != "<size>"}
    lb, rb = byte_map_boxes(left), byte_map_boxes(right)
    nl = (left.size + ROW_BYTES - 1) // ROW_BYTES
    nr = (right.size + ROW_BYTES - 1) // ROW_BYTES
    map_h = max(sum(_row_heights(lb, nl)), sum(_row_heights(rb, nr))) * _INCH_PER_ROW_UNIT
    shown = [str(d) for d in diffs[:10]]
    if len(diffs) > 10:
        shown.append(f"... and {len(diffs) - 10} more")
    text_h = 0.25 + 0.17 * max(len(shown), 1)
    height = map_h + 0.9 + text_h
    fig = style.new_figure(height, width=style.FIGURE_WIDTH * 1.3)
    bottom = (text_h + 0.1) / height
    axh = map_h / height
    ax_l = fig.add_axes((0.06, bottom, 0.42, axh))
    ax_r = fig.add_axes((0.56, bottom, 0.42, axh))
    draw_byte_map(ax_l, left, marked=marked, title=f"{left_title}: struct {left.name}")
    draw_byte_map(ax_r, right, marked=marked, title=f"{right_title}: struct {right.name}")
    if diffs:
        header = f"{len(diffs)} difference(s) (hatched):"
    else:
        header = "No differences: every field has the same offset and size."
    fig.text(0.06, (text_h - 0.05) / height, "\n".join([header, *shown]), va="top",
             fontsize=style.FONT_SMALL, family=style.FONT_FAMILY_MONO,
             color=style.ERROR_COLOR if diffs else style.TEXT_COLOR, gid="differences")
    return fig
