"""Pictures of a simulated run over time: the CPU timeline and the memory waiting for RCU.

Both are derived from the machine's recorded events (``Machine.events``) only: the
texts of ``Event.op`` start with stable prefixes ("local_irq_save", "rcu_read_lock",
"acquire ", "send IPI", "call_rcu(", ...), ``Event.kind`` tells grace-period and
callback steps apart, ``Event.effects`` name the frames freed, ``Event.reports`` the
KASAN findings.  Nothing is added to the model for the pictures, and nothing is read
from it but those records and the current CPU state.

* :func:`timeline` - the data: spans (IRQs off, RCU read side, locks held, waiting for
  an IPI, grace periods), IPI arrows, call_rcu → callback links, point events.
* :func:`draw_timeline` - one lane per CPU plus one for the RCU machinery, x = step.
* :func:`pending_memory` / :func:`draw_pending_memory` - bytes queued by ``call_rcu``
  and not yet freed, step by step, split into table batches and single tables.

>>> from ptlab.config import Config
>>> from ptlab.sim.machine import run_to_end
>>> from ptlab.sim.scenarios import build
>>> m = run_to_end(build("reclaim-vs-gup-fast", Config(kernel="v6.14")))
>>> sorted({s.kind for s in timeline(m).spans})
['gp', 'ipi-wait', 'irq-off', 'lock', 'rcu-read']
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from matplotlib.axes import Axes
from matplotlib.collections import PolyCollection
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import FancyArrowPatch, Patch
from matplotlib.ticker import MaxNLocator

from ptlab.sim.machine import Event, Machine
from ptlab.viz import style

PAGE_BYTES = 4096

_SEND_IPI = re.compile(r"^send IPI \((?P<handler>[^)]*)\) to (?P<targets>.*)$")
_TAKE_IPI = re.compile(r"^takes IPI from CPU(?P<sender>\d+|\?): runs (?P<handler>.*)$")
_CALL_RCU = re.compile(r"^call_rcu\((?P<kind>\w+) (?P<pfn>0x[0-9a-f]+), (?P<func>\w+)\)")
_INVOKE = re.compile(r"^invoke (?P<func>\w+)\((?P<kind>\w+) (?P<pfn>0x[0-9a-f]+)\)")
_FREED = re.compile(r"^frame (?P<pfn>0x[0-9a-f]+) freed$")
_TRYLOCK_OK = re.compile(r"^trylock (?P<lock>.*): acquired$")

#: Span kinds, drawn in this order (later ones on top) with these colours.
SPAN_STYLE: dict[str, tuple[str, str]] = {
    "gp": ("#76b7b2", "grace period in progress"),
    "rcu-read": ("#a0cbe8", "rcu_read_lock held"),
    "irq-off": ("#ff9d9a", "interrupts off"),
    "lock": ("#f1ce63", "spinlock held"),
    "ipi-wait": ("#bab0ac", "waits for IPI targets"),
}
#: Vertical placement of each span kind inside a lane (bottom, height), lane height 1.
_SPAN_BAND: dict[str, tuple[float, float]] = {
    "gp": (-0.30, 0.60),
    "rcu-read": (-0.34, 0.22),
    "irq-off": (-0.10, 0.22),
    "lock": (0.14, 0.20),
    "ipi-wait": (-0.34, 0.68),
}
#: Point events: marker, colour, legend text.
POINT_STYLE: dict[str, tuple[str, str, str]] = {
    "ipi-send": (">", "#4e79a7", "IPI sent"),
    "ipi-take": ("o", "#4e79a7", "IPI taken"),
    "hv-flush": ("d", "#9c755f", "hypervisor TLB flush (no IPI)"),
    "call_rcu": ("s", "#59a14f", "call_rcu"),
    "gp-start": ("|", "#2f6f6a", "grace period start"),
    "gp-end": ("|", "#2f6f6a", "grace period end"),
    "callback": ("^", "#59a14f", "RCU callback invoked"),
    "free": ("v", "#222222", "frame freed"),
    "report": ("X", "#d62728", "freed frame touched (report)"),
}


@dataclass(frozen=True)
class Span:
    """Something that lasts: ``kind`` on lane ``row`` from step ``start`` to ``end``.

    Steps are cells: step ``s`` covers ``[s, s+1)`` on the x axis and a span opened at
    step ``s`` and closed at step ``t`` covers ``[s + 0.5, t + 0.5)``.  ``end`` is
    ``None`` while the span is still open (the picture draws it to the current step).
    """

    row: str
    kind: str
    start: int
    end: int | None
    label: str = ""


@dataclass(frozen=True)
class Point:
    """An instantaneous event of ``kind`` on lane ``row`` at step ``seq``."""

    row: str
    kind: str
    seq: int
    label: str = ""


@dataclass(frozen=True)
class Link:
    """An arrow from (``src_row``, ``src_seq``) to (``dst_row``, ``dst_seq``).

    ``kind`` is ``"ipi"`` (sender → CPU that took it), ``"ipi-pending"`` (``dst_seq`` is
    ``None``: the target has not taken it yet) or ``"rcu"`` (``call_rcu`` → its callback).
    """

    kind: str
    src_row: str
    src_seq: int
    dst_row: str
    dst_seq: int | None
    label: str = ""


@dataclass
class Timeline:
    """Everything :func:`draw_timeline` draws, derived from a machine's events."""

    rows: list[str]
    steps: int
    spans: list[Span] = field(default_factory=list)
    points: list[Point] = field(default_factory=list)
    links: list[Link] = field(default_factory=list)
    stepped: dict[str, list[int]] = field(default_factory=dict)  # row → seqs of its steps


def row_of(lane: str) -> str:
    """The timeline row of a machine lane: ``"CPU1:irq"`` → ``"CPU1"``, ``"RCU:gp"`` → ``"RCU"``.

    >>> [row_of(x) for x in ("CPU0", "CPU0:irq", "RCU:gp", "RCU:cb")]
    ['CPU0', 'CPU0', 'RCU', 'RCU']
    """
    if lane.startswith("RCU"):
        return "RCU"
    return lane.split(":", 1)[0]


def _cpus(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip().startswith("CPU")]


def freed_frames(ev: Event) -> list[int]:
    """Frames an event freed, from its effects (``"frame 0x104 freed"``)."""
    out: list[int] = []
    for e in ev.effects:
        mt = _FREED.match(e)
        if mt:
            out.append(int(mt["pfn"], 16))
    return out


def timeline(m: Machine) -> Timeline:
    """Derive spans, arrows and point events from ``m.events`` (see the module doc)."""
    rows = [f"CPU{c}" for c in range(m.config.ncpus)] + ["RCU"]
    tl = Timeline(rows, len(m.schedule), stepped={r: [] for r in rows})
    open_irq: dict[str, int] = {}
    rcu_depth: dict[str, tuple[int, int]] = {}  # row → (depth, start)
    locks: dict[tuple[str, str], int] = {}
    ipi_wait: dict[str, int] = {}
    sends: list[tuple[int, str, str, list[str], set[str]]] = []  # seq, row, handler, targets, left
    calls: list[tuple[int, str, str, str, str]] = []  # seq, row, kind, pfn, func
    gp_start: int | None = None
    for ev in m.events:
        if ev.kind == "mark":
            continue
        row = row_of(ev.lane)
        if row not in tl.stepped:
            continue
        tl.stepped[row].append(ev.seq)
        op = ev.op
        if ev.kind == "gp-start":
            gp_start = ev.seq
            tl.points.append(Point(row, "gp-start", ev.seq, op))
        elif ev.kind == "gp-end":
            tl.spans.append(Span(row, "gp", gp_start if gp_start is not None else ev.seq,
                                 ev.seq, op))
            gp_start = None
            tl.points.append(Point(row, "gp-end", ev.seq, op))
        elif ev.kind == "cb-invoke":
            tl.points.append(Point(row, "callback", ev.seq, op))
            mt = _INVOKE.match(op)
            if mt:
                for i, (cseq, crow, kind, pfn, func) in enumerate(calls):
                    if (kind, pfn, func) == (mt["kind"], mt["pfn"], mt["func"]):
                        tl.links.append(Link("rcu", crow, cseq, row, ev.seq, func))
                        del calls[i]
                        break
        elif ev.kind == "irq":
            tl.points.append(Point(row, "ipi-take", ev.seq, op))
            mt = _TAKE_IPI.match(op)
            if mt:
                for _seq, srow, handler, _targets, left in sends:
                    if srow == f"CPU{mt['sender']}" and handler == mt["handler"] and row in left:
                        left.discard(row)
                        tl.links.append(Link("ipi", srow, _seq, row, ev.seq, handler))
                        break
        elif op.startswith("local_irq_save"):
            open_irq.setdefault(row, ev.seq)
        elif op.startswith("local_irq_restore"):
            if op.endswith("interrupts on") and row in open_irq:
                tl.spans.append(Span(row, "irq-off", open_irq.pop(row), ev.seq))
        elif op == "rcu_read_lock":
            depth, start = rcu_depth.get(row, (0, ev.seq))
            rcu_depth[row] = (depth + 1, start if depth else ev.seq)
        elif op == "rcu_read_unlock":
            depth, start = rcu_depth.get(row, (0, ev.seq))
            if depth <= 1:
                tl.spans.append(Span(row, "rcu-read", start, ev.seq))
                rcu_depth.pop(row, None)
            else:
                rcu_depth[row] = (depth - 1, start)
        elif op.startswith("acquire "):
            locks[(row, op[len("acquire "):])] = ev.seq
        elif op.startswith("trylock "):
            mt = _TRYLOCK_OK.match(op)
            if mt:
                locks[(row, mt["lock"])] = ev.seq
        elif op.startswith("release "):
            name = op[len("release "):]
            if (row, name) in locks:
                tl.spans.append(Span(row, "lock", locks.pop((row, name)), ev.seq, name))
        elif op.startswith("send IPI"):
            mt = _SEND_IPI.match(op)
            targets = _cpus(mt["targets"]) if mt else []
            sends.append((ev.seq, row, mt["handler"] if mt else "?", targets, set(targets)))
            ipi_wait[row] = ev.seq
            tl.points.append(Point(row, "ipi-send", ev.seq, op))
        elif op.startswith("all targets took the IPI"):
            if row in ipi_wait:
                tl.spans.append(Span(row, "ipi-wait", ipi_wait.pop(row), ev.seq))
        elif "hypervisor flushes" in op:
            tl.points.append(Point(row, "hv-flush", ev.seq, op))
        elif op.startswith("call_rcu("):
            tl.points.append(Point(row, "call_rcu", ev.seq, op))
            mt = _CALL_RCU.match(op)
            if mt:
                calls.append((ev.seq, row, mt["kind"], mt["pfn"], mt["func"]))
        freed = freed_frames(ev)
        if freed:
            more = f" +{len(freed) - 3}" if len(freed) > 3 else ""
            label = "free " + ", ".join(f"{p:#x}" for p in freed[:3]) + more
            tl.points.append(Point(row, "free", ev.seq, label))
        for r in ev.reports:
            tl.points.append(Point(row, "report", ev.seq, f"{r.kind} {r.pfn:#x}"))
    # still open at the current step
    for row, start in open_irq.items():
        tl.spans.append(Span(row, "irq-off", start, None))
    for row, (_depth, start) in rcu_depth.items():
        tl.spans.append(Span(row, "rcu-read", start, None))
    for (row, name), start in locks.items():
        tl.spans.append(Span(row, "lock", start, None, name))
    for row, start in ipi_wait.items():
        tl.spans.append(Span(row, "ipi-wait", start, None))
    if gp_start is not None:
        tl.spans.append(Span("RCU", "gp", gp_start, None))
    for seq, srow, handler, _targets, left in sends:
        for target in sorted(left):
            cpu = int(target[3:])
            if cpu < len(m.cpus) and m.cpus[cpu].ipis:
                tl.links.append(Link("ipi-pending", srow, seq, target, None, handler))
    tl.spans.sort(key=lambda s: (list(SPAN_STYLE).index(s.kind), s.row, s.start))
    return tl


def _x(seq: int) -> float:
    return seq + 0.5


def draw_timeline_on(ax: Axes, m: Machine, *, window: int | None = None) -> Timeline:
    """Draw the timeline of ``m`` on ``ax``; returns the :class:`Timeline` drawn.

    Artists (gids): ``"spans:<kind>"`` (one ``PolyCollection`` per span kind, one
    rectangle per span in the window), ``"points:<kind>"`` (one ``Line2D`` per point
    kind, one marker per event), ``"link:ipi"``/``"link:ipi-pending"``/``"link:rcu"``
    arrows, ``"steps:<row>"`` dots for every step a row took, ``"now"`` the line at
    the current step, ``"report-text"`` the name of each report.
    """
    tl = timeline(m)
    n = tl.steps
    lo = max(0, n - window) if window else 0
    hi = max(n, lo + 12)
    ypos = {r: len(tl.rows) - 1 - i for i, r in enumerate(tl.rows)}

    def visible(a: float, b: float) -> bool:
        return b >= lo and a <= hi

    for kind, (color, _label) in SPAN_STYLE.items():
        bottom, height = _SPAN_BAND[kind]
        verts = []
        for s in tl.spans:
            if s.kind != kind:
                continue
            x0 = _x(s.start)
            x1 = _x(s.end) if s.end is not None else float(n)
            if not visible(x0, x1):
                continue
            x0, x1 = max(x0, lo), min(max(x1, x0 + 0.15), hi)
            y0 = ypos[s.row] + bottom
            verts.append([(x0, y0), (x1, y0), (x1, y0 + height), (x0, y0 + height)])
        if verts:
            coll = PolyCollection(verts, facecolors=color, edgecolors="#555555",
                                  linewidths=0.4, alpha=0.85 if kind != "gp" else 0.45,
                                  hatch="///" if kind == "ipi-wait" else None)
            coll.set_gid(f"spans:{kind}")
            ax.add_collection(coll, autolim=False)
    for s in tl.spans:
        near_end = _x(s.start) > hi - 0.1 * (hi - lo)  # no room for the text: skip it
        if s.kind == "lock" and s.label and visible(_x(s.start), hi) and not near_end:
            ax.text(max(_x(s.start), lo) + 0.1, ypos[s.row] + 0.24, s.label,
                    fontsize=style.FONT_TINY, va="bottom", ha="left", color="#7a5c00",
                    clip_on=True, gid="lock-text")

    for row in tl.rows:
        xs = [_x(q) for q in tl.stepped[row] if lo <= q < hi]
        if xs:
            ax.plot(xs, [ypos[row] - 0.42] * len(xs), linestyle="none", marker=".",
                    markersize=2.5, color="#888888", gid=f"steps:{row}")

    last_x: dict[tuple[str, float], float] = {}  # (row, label height) → last label's x
    for kind in sorted(POINT_STYLE, key=lambda k: k != "report"):  # reports labelled first
        marker, color, _label = POINT_STYLE[kind]
        pts = [p for p in tl.points if p.kind == kind and lo <= p.seq < hi]
        if not pts:
            continue
        size = 11 if kind == "report" else (10 if kind.startswith("gp") else 6)
        ax.plot([_x(p.seq) for p in pts], [ypos[p.row] for p in pts], linestyle="none",
                marker=marker, markersize=size, color=color, markeredgewidth=1.5,
                gid=f"points:{kind}", zorder=4)
        if kind in ("report", "free", "call_rcu", "gp-start", "gp-end"):
            dy = {"report": 0.30, "free": -0.50, "call_rcu": 0.30}.get(kind, 0.36)
            for p in pts[-6:]:
                text = p.label.split(";")[0]
                if kind.startswith("gp"):
                    text = "GP start" if kind == "gp-start" else "GP end"
                elif kind == "call_rcu":
                    text = "call_rcu"
                x = _x(p.seq)
                if x - last_x.get((p.row, dy), -99.0) < 3.0:
                    continue  # keep neighbouring labels apart; the marker is still drawn
                last_x[(p.row, dy)] = x
                near_end = x > hi - 0.06 * (hi - lo)
                ax.text(x, ypos[p.row] + dy, text, fontsize=style.FONT_TINY,
                        ha="right" if near_end else "center",
                        va="bottom" if dy > 0 else "top", color=color,
                        fontweight="bold" if kind == "report" else "normal", clip_on=True,
                        gid="report-text" if kind == "report" else f"{kind}-text")

    for link in tl.links:
        src = (_x(link.src_seq), ypos[link.src_row])
        if link.dst_seq is None:
            dst = (float(n), ypos[link.dst_row] + 0.25)
        else:
            dst = (_x(link.dst_seq), ypos[link.dst_row])
        if not visible(min(src[0], dst[0]), max(src[0], dst[0])):
            continue
        ls: str | tuple[int, tuple[int, int]]
        if link.kind == "rcu":
            color, ls, rad = "#59a14f", (0, (3, 2)), -0.15
        elif link.kind == "ipi-pending":
            color, ls, rad = style.ERROR_COLOR, (0, (2, 2)), 0.0
        else:
            color, ls, rad = "#4e79a7", "-", 0.0
        ax.add_patch(FancyArrowPatch(src, dst, arrowstyle="-|>", mutation_scale=9,
                                     color=color, linewidth=1.1, linestyle=ls,
                                     connectionstyle=f"arc3,rad={rad}", shrinkA=3, shrinkB=3,
                                     gid=f"link:{link.kind}", zorder=3))

    ax.axvline(n, color="#333333", linewidth=0.8, linestyle=":", gid="now")
    ax.set_xlim(lo, hi + 0.5)
    ax.set_ylim(-0.6, len(tl.rows) - 0.4)
    # Axis ticks are drawn by hand: matplotlib's tick machinery costs more than all the
    # rest of this picture, and the stepper redraws it at every click.
    ax.set_axis_off()
    for r in tl.rows:
        ax.axhline(ypos[r] - 0.5, color=style.GRID_COLOR, linewidth=0.4)
        ax.text(lo - 0.008 * (hi - lo), ypos[r], r, ha="right", va="center",
                fontsize=style.FONT_LABEL, clip_on=False, gid=f"row:{r}")
    ticks = [t for t in MaxNLocator(nbins=10, integer=True).tick_values(lo, hi) if lo <= t <= hi]
    ax.plot(ticks, [-0.6] * len(ticks), linestyle="none", marker="|", markersize=4,
            color="#333333", clip_on=False, gid="ticks")
    for t in ticks:
        ax.text(t, -0.68, f"{int(t)}", ha="center", va="top", fontsize=style.FONT_TINY,
                clip_on=False, gid="tick")
    ax.text(lo - 0.008 * (hi - lo), -0.68, "step", ha="right", va="top",
            fontsize=style.FONT_SMALL, clip_on=False)
    return tl


def _legend_handles(span_kinds: set[str], point_kinds: set[str]) -> list[Patch | Line2D]:
    handles: list[Patch | Line2D] = [
        Patch(facecolor=c, edgecolor="#555555", label=lab)
        for k, (c, lab) in SPAN_STYLE.items() if k in span_kinds
    ]
    handles += [
        Line2D([], [], linestyle="none", marker=mk, color=c, label=lab)
        for k, (mk, c, lab) in POINT_STYLE.items() if k in point_kinds and k != "gp-end"
    ]
    return handles


def _legend(fig: Figure, tl: Timeline) -> None:
    handles = _legend_handles({s.kind for s in tl.spans}, {p.kind for p in tl.points})
    if handles:
        fig.legend(handles=handles, loc="lower center", ncol=min(len(handles), 4),
                   fontsize=style.FONT_TINY, frameon=False)


def draw_timeline_legend() -> Figure:
    """Every span and marker of the timeline in one small legend figure (the stepper
    shows it once, under timelines drawn with ``legend=False``)."""
    fig = style.new_figure(0.8)
    fig.legend(handles=_legend_handles(set(SPAN_STYLE), set(POINT_STYLE)), loc="center",
               ncol=5, fontsize=style.FONT_TINY, frameon=False)
    return fig


def draw_timeline(m: Machine, *, window: int | None = None, legend: bool = True) -> Figure:
    """The CPU timeline of ``m`` so far: one lane per CPU and one for RCU, x = step.

    ``window``: show only the last ``window`` steps (the stepper uses this so that long
    runs such as ``munmap-batching`` stay quick to draw).  See :func:`draw_timeline_on`
    for the artists.
    """
    if window is not None and (isinstance(window, bool) or window < 1):
        raise ValueError(f"window must be a positive number of steps or None, not {window!r}")
    nrows = m.config.ncpus + 1
    height = 0.55 * nrows + (1.35 if legend else 0.75)
    fig = style.new_figure(height)
    bottom = (0.95 if legend else 0.45) / height
    ax = fig.add_axes((0.07, bottom, 0.91, 1 - bottom - 0.35 / height))
    tl = draw_timeline_on(ax, m, window=window)
    title = f"{m.scenario or 'run'} — {m.config.label()} — step {tl.steps}"
    nrep = sum(1 for p in tl.points if p.kind == "report")
    if nrep:
        title += f" — {nrep} report(s)"
    ax.set_title(title, fontsize=style.FONT_LABEL, color=style.ERROR_COLOR if nrep else
                 style.TEXT_COLOR)
    if legend:
        _legend(fig, tl)
    return fig


# --------------------------------------------------------------------------- pending memory


@dataclass(frozen=True)
class PendingSeries:
    """Bytes handed to ``call_rcu`` and not yet freed, after each step.

    ``batch[i]``/``single[i]``: bytes waiting after step ``i`` through a table batch
    (``tlb_remove_table_rcu``: the tables plus the batch page itself) and through a
    single table's ``pt_rcu_head`` (``__tlb_remove_table_one_rcu``, ``pte_free_defer``).
    """

    steps: int
    batch: list[int]
    single: list[int]
    gp_starts: list[int]
    gp_ends: list[int]

    @property
    def peak(self) -> int:
        return max((b + s for b, s in zip(self.batch, self.single, strict=True)), default=0)


def pending_memory(m: Machine) -> PendingSeries:
    """Follow ``call_rcu`` events (the frames they queue) until those frames are freed.

    >>> from ptlab.config import Config
    >>> from ptlab.sim.machine import run_to_end
    >>> from ptlab.sim.scenarios import build
    >>> p = pending_memory(run_to_end(build("reclaim-vs-gup-fast", Config(batch="fails"))))
    >>> max(p.single), max(p.batch), p.single[-1]
    (4096, 0, 0)
    """
    waiting: dict[int, str] = {}  # pfn → "batch" | "single"
    batch: list[int] = []
    single: list[int] = []
    starts: list[int] = []
    ends: list[int] = []
    by_seq: dict[int, list[Event]] = {}
    for ev in m.events:
        by_seq.setdefault(ev.seq, []).append(ev)
    for seq in range(len(m.schedule)):
        for ev in by_seq.get(seq, []):
            if ev.kind == "gp-start":
                starts.append(seq)
            elif ev.kind == "gp-end":
                ends.append(seq)
            mt = _CALL_RCU.match(ev.op) if ev.kind == "op" else None
            if mt:
                how = "batch" if mt["kind"] == "batch" else "single"
                frames = ev.frames or (int(mt["pfn"], 16),)
                for p in frames:
                    waiting[p] = how
            for p in freed_frames(ev):
                waiting.pop(p, None)
        batch.append(PAGE_BYTES * sum(1 for h in waiting.values() if h == "batch"))
        single.append(PAGE_BYTES * sum(1 for h in waiting.values() if h == "single"))
    return PendingSeries(len(m.schedule), batch, single, starts, ends)


def draw_pending_memory(m: Machine | Sequence[Machine]) -> Figure:
    """Memory waiting for a grace period over time, one panel per machine.

    Give two runs (e.g. the same scenario with ``batch="ok"`` and ``batch="fails"``) to
    compare the batch and single-table paths.  In each panel the two paths are stacked
    areas (gids ``"pending:batch"``, ``"pending:single"``), grace-period starts and ends
    are vertical lines (``"gp-start"``, ``"gp-end"``); the y axis is KiB.
    """
    machines = [m] if isinstance(m, Machine) else list(m)
    if not machines:
        raise ValueError("draw_pending_memory needs at least one machine")
    series = [pending_memory(x) for x in machines]
    top = max(max((s.peak for s in series), default=0) / 1024, 4.0) * 1.15
    height = 0.4 + 1.7 * len(machines)
    fig = style.new_figure(height)
    axes = fig.subplots(len(machines), 1, squeeze=False)[:, 0]
    for ax, mach, s in zip(axes, machines, series, strict=True):
        xs = list(range(1, s.steps + 1))
        b = [v / 1024 for v in s.batch]
        one = [v / 1024 for v in s.single]
        if xs:
            ax.fill_between(xs, 0, b, step="post", color="#4e79a7", alpha=0.6,
                            label="table batch (tlb_remove_table_rcu)", gid="pending:batch")
            ax.fill_between(xs, b, [x + y for x, y in zip(b, one, strict=True)], step="post",
                            color="#f28e2b", alpha=0.6,
                            label="single table (pt_rcu_head)", gid="pending:single")
        for q in s.gp_starts:
            ax.axvline(q + 0.5, color="#2f6f6a", linewidth=0.8, linestyle="--", gid="gp-start")
        for q in s.gp_ends:
            ax.axvline(q + 0.5, color="#2f6f6a", linewidth=0.8, linestyle="-", gid="gp-end")
        ax.set_xlim(0, max(s.steps, 1) + 0.5)
        ax.set_ylim(0, top)
        ax.set_ylabel("KiB waiting", fontsize=style.FONT_SMALL)
        ax.tick_params(labelsize=style.FONT_TINY)
        ax.set_title(f"{mach.scenario or 'run'} — {mach.config.label()} — peak "
                     f"{s.peak // 1024} KiB", fontsize=style.FONT_SMALL)
        if xs:
            ax.legend(fontsize=style.FONT_TINY, loc="upper left", frameon=False)
    axes[-1].set_xlabel("step (dashed: grace period starts, solid: ends)",
                        fontsize=style.FONT_SMALL)
    fig.subplots_adjust(left=0.08, right=0.98, top=1 - 0.3 / height, bottom=0.5 / height,
                        hspace=0.55)
    return fig
