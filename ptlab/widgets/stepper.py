"""The stepper: run a scenario one step at a time, choosing who moves next.

Pick a scenario and a configuration (kernel, PT_RECLAIM, paravirt environment, batch
page available or not); then press a lane's button to let that CPU execute its next
step, let a CPU take a pending IPI, or let the RCU machinery start/end a grace period
or run a callback.  A step the machine refuses (the CPU spins on a lock, waits for an
IPI, has interrupts off, ...) is not taken and the reason is shown in the red line;
buttons of lanes that cannot step are disabled.  "step back" replays the schedule one
step shorter, "reset" starts over, the play control steps along the loaded plan
(the explorer's witness after "load witness", else the default run: always the first
lane that can step).  Every step redraws the chosen picture and the text panel.

>>> s = Stepper("reclaim-vs-gup-fast")
>>> s.lane_buttons["CPU0"].click(); s.schedule
['CPU0']
>>> s.lane_buttons["RCU:gp"].click(); s.error.message
'cannot step RCU:gp: no callbacks are waiting for a grace period'
"""

from __future__ import annotations

import html
import io
import time
from collections.abc import Callable
from typing import Any

import ipywidgets as widgets
from matplotlib.figure import Figure

from ptlab.config import KERNELS, PARAVIRT_ENVS, Config
from ptlab.sim import scenarios
from ptlab.sim.explore import DEFAULT_MAX_STATES, Exploration, compact_schedule, explore, replay
from ptlab.sim.machine import Machine
from ptlab.viz.machine import (
    draw_machine_tables,
    draw_ptdesc_at,
    live_ptdesc_members,
    machine_tables,
    ptdesc_values,
    table_status,
)
from ptlab.viz.timeline import draw_pending_memory, draw_timeline, draw_timeline_legend
from ptlab.widgets.common import ErrorBox, FigureView, figure_png

__all__ = ["PICTURES", "Stepper", "lane_label"]

PICTURES: tuple[str, ...] = ("timeline", "tables", "ptdesc", "pending memory")
#: Bad kinds in the order "load witness" looks for them.
BAD_KIND_ORDER: tuple[str, ...] = (
    "use-after-free", "double-free", "union-clobber", "list-corruption", "leak", "deadlock",
)
#: States the explorer may visit for a scenario outside the safety matrix (the long
#: munmap-batching run, whose 1104 tables make each state slow to copy: about 15 ms);
#: matrix scenarios get the explorer's default.  The outcome table says when the search
#: stopped at this limit.
STEPPER_MAX_STATES = 200
_LAST_EVENTS = 6


def lane_label(lane: str) -> str:
    """The button text for a machine lane.

    >>> [lane_label(x) for x in ("CPU0", "CPU1:irq", "RCU:gp", "RCU:cb")]
    ['step CPU0', 'CPU1 takes IPI', 'RCU: grace period', 'RCU: callback']
    """
    if lane == "RCU:gp":
        return "RCU: grace period"
    if lane == "RCU:cb":
        return "RCU: callback"
    if lane.endswith(":irq"):
        return f"{lane[:-4]} takes IPI"
    return f"step {lane}"


def _bad_kind(r: Exploration) -> str | None:
    kinds = [k for k in BAD_KIND_ORDER if k in r.kinds and k in r.witnesses]
    kinds += sorted(k for k in r.kinds if k not in BAD_KIND_ORDER and k in r.witnesses)
    return kinds[0] if kinds else None


_legend_png: bytes | None = None


def _timeline_legend_png() -> bytes:
    global _legend_png
    if _legend_png is None:
        _legend_png = figure_png(draw_timeline_legend())
    return _legend_png


class QuickFigureView(FigureView):
    """A :class:`FigureView` for a picture redrawn at every click.

    PNG compression level 1 (about 6 ms less per frame than the default), and the
    previous figure is dropped rather than cleared (clearing costs about 10 ms; nothing
    else refers to it, so the garbage collector frees it).
    """

    def show(self, fig: Figure) -> None:
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=fig.dpi, metadata={"Software": None},
                    pil_kwargs={"compress_level": 1})
        self.figure = fig
        self.widget.value = buf.getvalue()
        self.updates += 1


class Stepper:
    """Step a scenario by hand; see the module doc.  ``.widget`` is the box to display.

    Model-level state for tests and lessons: ``.machine`` (the ``Machine``),
    ``.schedule`` (lanes stepped so far), ``.status_lines()`` (one line per lane),
    ``.plan`` (what play follows), ``.exploration`` (after "load witness"),
    ``.last_seconds`` (how long the last step and redraw took).
    """

    def __init__(
        self,
        scenario: str = "reclaim-vs-pte-offset-map-lock",
        config: Config | None = None,
        *,
        picture: str = "timeline",
        window: int = 60,
    ) -> None:
        scenarios.get(scenario)  # ValueError naming the known scenarios
        if picture not in PICTURES:
            raise ValueError(f"unknown picture {picture!r}; allowed: {', '.join(PICTURES)}")
        if isinstance(window, bool) or not isinstance(window, int) or window < 1:
            raise ValueError(f"window must be a positive number of steps, not {window!r}")
        self.scenario = scenario
        self.config = config or Config()
        self.window = window
        self.plan: list[str] = []
        self.plan_name = "default run"
        self.exploration: Exploration | None = None
        self.last_seconds = 0.0
        self._explorations: dict[tuple[str, Config], Exploration] = {}
        self._ptdesc_png: dict[Any, bytes] = {}
        self._syncing = False
        self._paused_at = -1  # plan length at which play last paused at the plan's end

        c = self.config
        self.scenario_dd = widgets.Dropdown(options=scenarios.names(), value=scenario,
                                            description="scenario",
                                            layout=widgets.Layout(width="420px"))
        self.kernel_dd = widgets.Dropdown(options=list(KERNELS), value=c.kernel,
                                          description="kernel",
                                          layout=widgets.Layout(width="170px"))
        self.reclaim_dd = widgets.Dropdown(options=[("on", True), ("off", False)],
                                           value=c.pt_reclaim, description="PT_RECLAIM",
                                           style={"description_width": "initial"},
                                           layout=widgets.Layout(width="190px"))
        self.paravirt_dd = widgets.Dropdown(options=list(PARAVIRT_ENVS), value=c.paravirt,
                                            description="paravirt",
                                            layout=widgets.Layout(width="220px"))
        self.batch_dd = widgets.Dropdown(options=[("batch page ok", "ok"),
                                                  ("batch page fails", "fails")],
                                         value=c.batch, description="GFP_NOWAIT",
                                         style={"description_width": "initial"},
                                         layout=widgets.Layout(width="270px"))
        self.lane_buttons: dict[str, widgets.Button] = {}
        self.lane_box = widgets.HBox([])
        self.back_button = widgets.Button(description="step back", icon="step-backward")
        self.reset_button = widgets.Button(description="reset", icon="undo")
        self.witness_button = widgets.Button(description="load witness", icon="search",
                                             tooltip="explore every interleaving, then load "
                                             "the shortest schedule to the first bad outcome")
        self.play = widgets.Play(value=0, min=0, max=1_000_000, step=1, interval=400,
                                 description="play", show_repeat=False)
        self.picture_tb = widgets.ToggleButtons(options=list(PICTURES), value=picture)
        self.frame_dd = widgets.Dropdown(options=[], description="ptdesc of",
                                         layout=widgets.Layout(width="220px"))
        self.error = ErrorBox()
        self.view = QuickFigureView()
        self.legend = widgets.Image(format="png", layout=widgets.Layout(width="100%"))
        self.status = widgets.HTML()
        self.outcome = widgets.HTML()

        for dd in (self.kernel_dd, self.reclaim_dd, self.paravirt_dd, self.batch_dd):
            dd.observe(self._on_config, names="value")
        self.scenario_dd.observe(self._on_scenario, names="value")
        self.back_button.on_click(lambda _b: self.step_back())
        self.reset_button.on_click(lambda _b: self.reset())
        self.witness_button.on_click(lambda _b: self.load_witness())
        self.play.observe(self._on_play, names="value")
        self.picture_tb.observe(self._on_picture, names="value")
        self.frame_dd.observe(self._on_picture, names="value")

        self.machine: Machine = scenarios.build(scenario, self.config)
        self._start()
        self.widget = widgets.VBox([
            widgets.HBox([self.scenario_dd, self.kernel_dd, self.reclaim_dd]),
            widgets.HBox([self.paravirt_dd, self.batch_dd]),
            self.lane_box,
            widgets.HBox([self.back_button, self.reset_button, self.play,
                          self.witness_button]),
            widgets.HBox([self.picture_tb, self.frame_dd]),
            self.error.widget,
            self.view.widget,
            self.legend,
            self.status,
            self.outcome,
        ])

    # ------------------------------------------------------------------ display
    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        return self.widget._repr_mimebundle_(**kwargs)

    # ------------------------------------------------------------------ state
    @property
    def schedule(self) -> list[str]:
        """The lanes stepped so far (a copy)."""
        return list(self.machine.schedule)

    def status_lines(self) -> list[str]:
        """``Machine.lane_status`` for every lane, in lane order."""
        return [self.machine.lane_status(lane) for lane in self.machine.lanes()]

    def _start(self) -> None:
        """After a new machine for a new scenario/config: lanes, frames, play, redraw."""
        lanes = self.machine.lanes()
        if list(self.lane_buttons) != lanes:
            self.lane_buttons = {}
            for lane in lanes:
                b = widgets.Button(description=lane_label(lane),
                                   layout=widgets.Layout(width="auto"))
                b.on_click(self._lane_handler(lane))
                self.lane_buttons[lane] = b
            self.lane_box.children = tuple(self.lane_buttons.values())
        tables = machine_tables(self.machine).tables
        options = [(f"{t.level.upper()} {t.pfn:#x}", t.pfn) for t in tables]
        default = self._default_frame([t.pfn for t in tables])
        self._syncing = True
        try:
            self.frame_dd.options = options
            self.frame_dd.value = default
            self.play.playing = False
            self.play.value = 0
            self._paused_at = -1
        finally:
            self._syncing = False
        self._refresh()

    def _default_frame(self, pfns: list[int]) -> int | None:
        """The deepest table on the walk of the scenario's base address (the table the
        scenario is about), else the last table."""
        mm = self.machine.roots.get("mm")
        if mm is not None:
            steps = mm.walk(scenarios.BASE).steps
            for st in reversed(steps):
                if st.table_pfn in pfns:
                    return int(st.table_pfn)
        return pfns[-1] if pfns else None

    def _lane_handler(self, lane: str) -> Callable[[widgets.Button], None]:
        def click(_b: widgets.Button) -> None:
            self.step(lane)

        return click

    # ------------------------------------------------------------------ actions
    def _timed(self, action: Callable[[], None]) -> bool:
        t0 = time.perf_counter()
        with self.error.guard():
            action()
        ok = not self.error.failed
        if ok:
            self._refresh()
        self.last_seconds = time.perf_counter() - t0
        return ok

    def step(self, lane: str) -> bool:
        """Step ``lane`` (a refused step shows its reason and changes nothing)."""
        return self._timed(lambda: self._do_step(lane))

    def _do_step(self, lane: str) -> None:
        self.machine.step(lane)

    def step_back(self) -> bool:
        """Undo the last step (replay the schedule one step shorter)."""
        def back() -> None:
            sched = self.machine.schedule
            if not sched:
                raise ValueError("nothing to step back: the run is at step 0")
            self.machine = replay(self.scenario, self.config, sched[:-1])
        return self._timed(back)

    def reset(self) -> None:
        """Start the scenario again (the loaded plan stays)."""
        with self.error.guard():
            self.machine = scenarios.build(self.scenario, self.config)
        self._start()

    def _next_planned(self) -> str | None:
        m = self.machine
        n = len(m.schedule)
        if n < len(self.plan) and m.schedule == self.plan[:n]:
            return self.plan[n]
        lanes = m.enabled_lanes()
        return lanes[0] if lanes else None

    def _pause(self) -> None:
        self._syncing = True
        try:
            self.play.playing = False
        finally:
            self._syncing = False

    def play_step(self) -> bool:
        """One step along the plan.  Play pauses (and this returns False) when the loaded
        plan has been played to its end, and when nothing can step any more; playing on
        after the end of a plan continues with the first lane that can step."""
        m = self.machine
        if self.plan and m.schedule == self.plan and self._paused_at != len(self.plan):
            self._paused_at = len(self.plan)
            self._pause()
            self.error.clear()
            return False
        lane = self._next_planned()
        if lane is None:
            self._pause()
            self.error.clear()
            self.outcome.value = self._outcome_html(finished=True)
            return False
        return self.step(lane)

    def _on_play(self, change: dict[str, Any]) -> None:
        if self._syncing or change["new"] == change["old"]:
            return
        self.play_step()

    def load_witness(self) -> None:
        """Explore every interleaving of this scenario and config, then load the shortest
        schedule reaching the first bad kind (or the default run if all are safe)."""
        with self.error.guard():
            key = (self.scenario, self.config)
            r = self._explorations.get(key)
            if r is None:
                limit = (DEFAULT_MAX_STATES if scenarios.get(self.scenario).in_matrix
                         else STEPPER_MAX_STATES)
                r = explore(self.scenario, self.config, max_states=limit)
                self._explorations[key] = r
            self.exploration = r
            kind = _bad_kind(r)
            if kind is None:
                self.plan, self.plan_name = [], "default run"
            else:
                self.plan = list(r.witnesses[kind].schedule)
                self.plan_name = f"witness for {kind}"
            self.machine = scenarios.build(self.scenario, self.config)
        self._start()

    # ------------------------------------------------------------------ config changes
    def _on_scenario(self, change: dict[str, Any]) -> None:
        if self._syncing:
            return
        self.scenario = str(change["new"])
        self._new_setup()

    def _on_config(self, _change: dict[str, Any]) -> None:
        if self._syncing:
            return
        with self.error.guard():
            self.config = self.config.replace(
                kernel=self.kernel_dd.value, pt_reclaim=bool(self.reclaim_dd.value),
                paravirt=self.paravirt_dd.value, batch=self.batch_dd.value,
            )
        if not self.error.failed:
            self._new_setup()

    def _new_setup(self) -> None:
        self.plan, self.plan_name, self.exploration = [], "default run", None
        with self.error.guard():
            self.machine = scenarios.build(self.scenario, self.config)
        self._start()

    # ------------------------------------------------------------------ drawing
    def _on_picture(self, _change: dict[str, Any]) -> None:
        if not self._syncing:
            self._redraw()

    def _refresh(self) -> None:
        m = self.machine
        for lane, b in self.lane_buttons.items():
            reason = m.why_not(lane)
            b.disabled = reason is not None
            b.tooltip = reason or f"let {lane} take its next step"
        self.back_button.disabled = not m.schedule
        self.status.value = self._status_html()
        self.outcome.value = self._outcome_html(finished=m.finished())
        self._redraw()

    def _status_html(self) -> str:
        m = self.machine
        lines = [html.escape(s) for s in self.status_lines()]
        events = [e for e in m.events if e.kind != "mark"][-_LAST_EVENTS:]
        ev_lines = [html.escape(str(e).split("\n")[0]) for e in events]
        reports = [f'<span style="color:#b00020">{html.escape(r.message())}</span>'
                   for r in m.reports()]
        plan = ""
        if self.plan:
            plan = (f"<b>plan</b> ({html.escape(self.plan_name)}, {len(self.plan)} steps): "
                    f"<code>{html.escape(compact_schedule(self.plan))}</code><br>")
        return (
            f"<b>step {len(m.schedule)}</b> — {html.escape(m.config.label())}<br>{plan}"
            "<pre style='margin:2px 0;font-size:90%'>" + "\n".join(lines) + "</pre>"
            "<b>last steps</b><pre style='margin:2px 0;font-size:85%'>"
            + ("\n".join(ev_lines) or "(none yet)") + "</pre>"
            + "<br>".join(reports)
        )

    def _outcome_html(self, finished: bool) -> str:
        parts = []
        if finished:
            kinds = sorted({r.kind for r in self.machine.reports()})
            parts.append("<b>run finished</b>: " + (
                ", ".join(kinds) if kinds else "nothing bad happened in this schedule"))
        if self.exploration is not None:
            parts.append("<b>every interleaving</b> (the explorer):<pre style='font-size:85%'>"
                         + html.escape(self.exploration.table()) + "</pre>")
        return "<br>".join(parts)

    def _redraw(self) -> None:
        pic = self.picture_tb.value
        m = self.machine
        self.frame_dd.layout.display = "" if pic == "ptdesc" else "none"
        self.legend.layout.display = "" if pic == "timeline" else "none"
        if pic == "timeline":
            if not self.legend.value:
                self.legend.value = _timeline_legend_png()
            self.view.show(draw_timeline(m, window=self.window, legend=False))
        elif pic == "tables":
            self.view.show(draw_machine_tables(m))
        elif pic == "pending memory":
            self.view.show(draw_pending_memory(m))
        else:
            pfn = self.frame_dd.value
            if pfn is None:
                return
            tables = machine_tables(m)
            key = (pfn, tuple(sorted(ptdesc_values(m, pfn).items())),
                   tuple(live_ptdesc_members(m, pfn, tables)), table_status(m, pfn, tables))
            png = self._ptdesc_png.get(key)
            if png is None:
                fig = draw_ptdesc_at(m, pfn, tables)
                self.view.show(fig)
                self._ptdesc_png[key] = bytes(self.view.widget.value)
            else:
                self.view.widget.value = png
                self.view.updates += 1
