"""Helpers for lessons 00 and 02–06: text views and exercise checks that *run the model*.

Model-only (no matplotlib, no ipywidgets): the notebooks print what these return and
hand the machines to ``ptlab.viz`` / ``ptlab.widgets`` for pictures.  Nothing here holds
an answer key: every check explores, replays or runs the kernel paths of ``ptlab.sim``
and compares the learner's answer with what the model did.

Text views (deterministic, so the lessons can compare them with nbval):

* :func:`outcome_view` - an :class:`~ptlab.sim.explore.Exploration` without timings;
* :func:`matrix_view` - a safety matrix without timings;
* :func:`machine_status` - every CPU, IPI and RCU lane of a machine, in words;
* :func:`event_log` - the steps a machine took, with their kernel call stacks;
* :func:`free_way_table` - how a PTE table is freed, environment × kernel;
* :func:`hook_table` - the table-freeing hook each environment installs.

Stepping: :func:`step_until` (run one lane until it is inside a kernel function or
blocked) and :func:`replay_as_far_as` (replay a schedule until a step is refused).

Exercises: :func:`check_prediction` (never / sometimes / always),
:func:`check_free_way` (how will this config free the table?), :func:`check_schedule`
(build an interleaving that produces a report), :func:`check_contrast` (your own
scenario must go wrong on one config and not on another).

Your own scenario: :func:`custom_scenario` wraps ``ptlab.sim.scenarios.custom`` (kernel
paths per CPU, e.g. ``{0: "mincore 0x1000", 1: "madvise_dontneed 0 2M"}``) in a
:class:`CustomScenario` that can be built, explored and replayed like a named one.

>>> r = check_prediction("reclaim-vs-gup-fast", Config(kernel="v6.13"), "never")
>>> r.correct
True
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TextIO

from ptlab.arch.x86.paging import PAGE_SIZE
from ptlab.config import KERNELS, PARAVIRT_ENVS, Config
from ptlab.sim import scenarios
from ptlab.sim.explore import (
    DEFAULT_MAX_STATES,
    Exploration,
    compact_schedule,
    explore,
    outcome_kinds,
    parse_schedule,
)
from ptlab.sim.machine import Machine, StepRefused
from ptlab.sim.matrix import Matrix
from ptlab.sim.paths import LEVELS, FreePath, free_path

#: What a learner may predict about one kind of report over all interleavings.
VERDICTS: tuple[str, ...] = ("never", "sometimes", "always")
#: Outcome kinds the explorer can report (KASAN-like reports plus end-of-run checks).
REPORT_KINDS: tuple[str, ...] = (
    "use-after-free",
    "double-free",
    "union-clobber",
    "list-corruption",
    "double-call_rcu",
    "leak",
    "deadlock",
)
#: The ways a page-table page can be freed (kernel-facts §4.5, §4.6, §4.3).
FREE_WAYS: dict[str, str] = {
    "tlb-flush": "like a data page: tlb_remove_page(), freed right after the TLB-flush IPIs",
    "ipi": "alone: tlb_remove_table_sync_one() IPIs every CPU, then the table is freed at once",
    "rcu-batch": "in a table batch: call_rcu() on the batch, freed after a grace period",
    "rcu-single": "alone: call_rcu() on its own pt_rcu_head, freed after a grace period",
}
#: Short column texts for :func:`free_way_table`.
FREE_WAY_SHORT: dict[str, str] = {
    "tlb-flush": "flush+free",
    "ipi": "IPI+free",
    "rcu-batch": "RCU batch",
    "rcu-single": "RCU single",
}

# ----------------------------------------------------------------------------- scenarios


@dataclass(frozen=True)
class CustomScenario:
    """A scenario you write from ptlab's kernel paths (``ptlab.sim.scenarios.BLOCKS``).

    ``threads`` maps a CPU number to the paths it runs one after the other, each written
    as ``"name arg..."`` with offsets into the scenario's 8 MiB mapping, e.g.
    ``"madvise_dontneed 0 2M"`` or ``"gup_fast 0x1000"``; ``touched`` are the offsets
    faulted in before the CPUs start.  Build it with :func:`custom_scenario`, which
    checks every path once.
    """

    name: str
    threads: tuple[tuple[int, tuple[str, ...]], ...]
    touched: tuple[int, ...] = (0, PAGE_SIZE)

    def build(self, config: Config | None = None) -> Machine:
        """A fresh machine running this scenario under ``config`` (default v6.14 native)."""
        m = scenarios.custom(
            {cpu: list(paths) for cpu, paths in self.threads},
            config or Config(),
            touched=self.touched,
        )
        m.scenario = self.name
        return m

    def explore(
        self, config: Config | None = None, *, max_states: int = DEFAULT_MAX_STATES
    ) -> Exploration:
        """Every interleaving of this scenario under ``config`` (``ptlab.sim.explore``)."""
        cfg = config or Config()
        return explore(lambda: self.build(cfg), max_states=max_states)

    def replay(self, config: Config, schedule: Sequence[str] | str) -> Machine:
        """Build under ``config`` and step ``schedule`` (a list or ``"CPU0*3 CPU1"``)."""
        m = self.build(config)
        m.run(_lanes(schedule))
        return m

    def describe(self) -> str:
        lines = [f"scenario {self.name}: an 8 MiB anonymous mapping at {scenarios.BASE:#x}, "
                 f"pages faulted in at offsets {', '.join(hex(t) for t in self.touched) or 'none'}"]
        for cpu, paths in self.threads:
            lines.append(f"  CPU{cpu}: " + "; then ".join(paths))
        return "\n".join(lines)


def kernel_paths() -> str:
    """The kernel paths a custom scenario can put on a CPU, with their arguments."""
    lines = []
    for name, (args, text) in scenarios.BLOCKS.items():
        lines.append(f"{(name + ' ' + ' '.join(args)).strip():<30} {text}")
    return "\n".join(lines)


def custom_scenario(
    threads: Mapping[int, Sequence[str] | str],
    *,
    touched: Sequence[int] = (0, PAGE_SIZE),
    name: str = "my-scenario",
) -> CustomScenario:
    """Check ``threads`` (CPU → kernel path(s)) and return a :class:`CustomScenario`.

    Bad input (an unknown path, a bad offset, a CPU outside 0–3, a name that is already
    a built-in scenario) raises one ``ValueError`` saying what is allowed.

    >>> sc = custom_scenario({0: "mincore 0x1000", 1: "madvise_dontneed 0 2M"})
    >>> sc.explore(Config(kernel="v6.13", batch="fails")).verdict("use-after-free")
    'sometimes'
    """
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"scenario name {name!r} must be a non-empty string")
    if name in scenarios.SCENARIOS:
        raise ValueError(
            f"scenario name {name!r} is a built-in scenario; choose another name "
            f"(built-ins: {', '.join(scenarios.names())})"
        )
    if not isinstance(threads, Mapping):
        raise ValueError(
            f"threads must be a dict CPU → kernel path(s), e.g. {{0: 'mincore 0x1000'}}, "
            f"not {type(threads).__name__}"
        )
    norm: list[tuple[int, tuple[str, ...]]] = []
    for cpu, spec in sorted(threads.items(), key=lambda kv: str(kv[0])):
        paths = (spec,) if isinstance(spec, str) else tuple(spec)
        if not paths or not all(isinstance(p, str) for p in paths):
            raise ValueError(
                f"CPU {cpu!r}: give a kernel path or a list of them as text, not {spec!r}"
            )
        norm.append((cpu, paths))
    for off in touched:
        if isinstance(off, bool) or not isinstance(off, int):
            raise ValueError(f"touched offset {off!r} must be an int such as 0x1000")
    sc = CustomScenario(name, tuple(norm), tuple(touched))
    sc.build(Config())  # validates CPUs, paths and offsets now, with one clear error
    return sc


def _lanes(schedule: Sequence[str] | str) -> list[str]:
    if isinstance(schedule, str):
        return parse_schedule(schedule)
    lanes = list(schedule)
    if not lanes or not all(isinstance(lane, str) for lane in lanes):
        raise ValueError(
            f"a schedule is a non-empty list of lane names or text like 'CPU0*3 CPU1', "
            f"not {schedule!r}"
        )
    return lanes


def _build(scenario: str | CustomScenario, config: Config) -> Machine:
    if isinstance(scenario, CustomScenario):
        return scenario.build(config)
    return scenarios.build(scenario, config)


def _explore(scenario: str | CustomScenario, config: Config) -> Exploration:
    if isinstance(scenario, CustomScenario):
        return scenario.explore(config)
    return explore(scenario, config)


def _check_kind(kind: str, extra: tuple[str, ...] = ()) -> None:
    if kind not in REPORT_KINDS + extra:
        allowed = ", ".join(REPORT_KINDS + extra)
        raise ValueError(f"unknown outcome kind {kind!r}; allowed: {allowed}")


# ----------------------------------------------------------------------------- text views


def outcome_view(r: Exploration) -> str:
    """An exploration as text without its timing: outcomes, verdicts, shortest witnesses.

    >>> r = explore("reclaim-vs-gup-fast", Config(kernel="v6.14"))
    >>> print(outcome_view(r).splitlines()[-1])
    safe in every interleaving
    """
    lines = [f"scenario {r.scenario} — {r.config.label()}"]
    if not r.exhaustive:
        lines.append("(NOT exhaustive: the state limit was reached; counts are a lower bound)")
    lines.append(f"{'outcome':<36} {'interleavings':>16}")
    for lab, n in sorted(r.outcomes.items(), key=lambda kv: (-kv[1], kv[0])):
        lines.append(f"{lab:<36} {n:>16}")
    lines.append(f"{'all complete interleavings':<36} {r.schedules:>16}")
    for kind in sorted(r.kinds):
        w = r.witnesses.get(kind)
        lines.append(f"{kind}: {r.verdict(kind)}")
        if w is not None:
            lines.append(f"  shortest witness ({len(w.schedule)} steps): "
                         f"{compact_schedule(w.schedule)}")
    if not r.kinds:
        lines.append("safe in every interleaving")
    return "\n".join(lines)


def matrix_view(mat: Matrix) -> str:
    """``Matrix.table()`` without the timing line (cells: ``UAF:s`` = use-after-free
    sometimes, ``:a`` always)."""
    body = mat.table().splitlines()
    if body and body[-1].startswith("("):
        body = body[:-1]
    return "\n".join([*body, f"({len(mat.cells)} explorations)"])


def machine_status(m: Machine) -> str:
    """Where every lane of ``m`` is and why it can or cannot step, in words."""
    lines = [f"after {len(m.schedule)} steps — {m.config.label()}"]
    for cpu, st in enumerate(m.cpus):
        state = (f"interrupts {'on' if st.irqs_on else 'OFF'}, "
                 f"rcu_read_lock depth {st.rcu_nesting}, preempt count {st.preempt}")
        lines.append(f"CPU{cpu} state: {state}")
    for lane in m.lanes():
        lines.append(m.lane_status(lane))
    if m.rcu.gp_active:
        busy = ", ".join(f"CPU{c}" for c in sorted(m.rcu.qs_needed)) or "nobody any more"
        lines.append(f"grace period in progress; still waiting for: {busy}")
    queued = ", ".join(f"{pfn:#x}" for pfn in sorted(m.queued))
    lines.append(f"frames waiting for a grace period: {queued or 'none'}")
    reports = m.reports()
    if reports:
        lines += [f"REPORT {r.message()}" for r in reports]
    else:
        lines.append("reports: none")
    return "\n".join(lines)


def event_log(m: Machine, *, start: int = 0, lanes: Sequence[str] | None = None) -> str:
    """The recorded steps of ``m`` from step ``start`` (optionally only some lanes)."""
    evs = [e for e in m.events if e.seq >= start and (lanes is None or e.lane in lanes)]
    return "\n".join(str(e) for e in evs) if evs else "(no steps recorded)"


def free_way(path: FreePath) -> str:
    """Which of :data:`FREE_WAYS` the run behind ``path`` took (read off its steps)."""
    rcu_steps = [s for s in path.steps if s.lane == "RCU:cb"]
    if rcu_steps:
        if any("tlb_remove_table_rcu" in s.stack for s in rcu_steps):
            return "rcu-batch"
        return "rcu-single"
    if any("tlb_remove_table_smp_sync" in s.text for s in path.steps):
        return "ipi"
    return "tlb-flush"


def free_way_table(
    *,
    pt_reclaim: bool = True,
    batch: str = "ok",
    kernels: Sequence[str] = KERNELS,
    envs: Sequence[str] = PARAVIRT_ENVS,
    level: str = "pte",
) -> str:
    """Environment × kernel: how one ``level`` table is freed (each cell runs
    :func:`ptlab.sim.paths.free_path`)."""
    lines = [f"{level.upper()} table, PT_RECLAIM={'on' if pt_reclaim else 'off'}, "
             f"batch page {'available' if batch == 'ok' else 'NOT available'}"]
    lines.append(f"{'environment':<14}" + "".join(f"{k:>13}" for k in kernels))
    for env in envs:
        cells = []
        for k in kernels:
            cfg = Config(kernel=k, paravirt=env, pt_reclaim=pt_reclaim, batch=batch)
            cells.append(f"{FREE_WAY_SHORT[free_way(free_path(cfg, level))]:>13}")
        lines.append(f"{env:<14}" + "".join(cells))
    return "\n".join(lines)


def hook_table(
    *, kernels: Sequence[str] = KERNELS, envs: Sequence[str] = PARAVIRT_ENVS
) -> str:
    """What ``___pte_free_tlb`` hands a table to, per environment and kernel (read off
    :func:`ptlab.sim.paths.free_path` runs with PT_RECLAIM on)."""
    lines = []
    for env in envs:
        for k in kernels:
            hook = free_path(Config(kernel=k, paravirt=env), "pte").hook
            lines.append(f"{env:<13} {k}: {hook}")
    return "\n".join(lines)


# ----------------------------------------------------------------------------- stepping


def step_until(m: Machine, lane: str, function: str | None = None, *, max_steps: int = 500) -> int:
    """Step ``lane`` until its next operation is inside kernel function ``function``
    (or, with no function, until the lane cannot step).  Returns the steps taken.

    ``ValueError`` if the lane blocks or finishes before reaching ``function``.
    """
    if function is not None and lane not in m.threads:
        raise ValueError(
            f"{lane!r} runs no kernel thread in this scenario; lanes with threads: "
            f"{', '.join(sorted(m.threads))}"
        )
    n = 0
    while True:
        if function is not None:
            t = m.threads[lane]
            if not t.done and function in t.stack():
                return n
        reason = m.why_not(lane)
        if reason is not None:
            if function is None:
                return n
            raise ValueError(f"{lane} stopped before reaching {function}: {reason}")
        if n >= max_steps:
            raise ValueError(f"{lane} did not reach {function} within {max_steps} steps")
        m.step(lane)
        n += 1


@dataclass
class PartialReplay:
    """A schedule replayed as far as the machine allowed."""

    machine: Machine
    done: int  # steps that ran
    total: int  # steps in the schedule
    refused: str | None = None  # why step ``done`` could not run; None if all ran
    lane: str = ""  # the lane of the refused step

    def describe(self) -> str:
        if self.refused is None:
            return f"all {self.total} steps ran"
        return (f"{self.done} of {self.total} steps ran; step {self.done} ({self.lane}) "
                f"was refused: {self.refused}")


def replay_as_far_as(
    scenario: str | CustomScenario, config: Config, schedule: Sequence[str] | str
) -> PartialReplay:
    """Replay ``schedule`` under ``config`` until a step is refused (no exception)."""
    lanes = _lanes(schedule)
    m = _build(scenario, config)
    for i, lane in enumerate(lanes):
        try:
            m.step(lane)
        except StepRefused as e:
            reason = str(e).split(": ", 1)[-1]
            return PartialReplay(m, i, len(lanes), reason, lane)
    return PartialReplay(m, len(lanes), len(lanes), None)


# ----------------------------------------------------------------------------- exercises


@dataclass(frozen=True)
class Check:
    """The model's verdict on a learner's answer; ``str()`` is the explanation."""

    correct: bool | None  # None: no answer given yet
    message: str

    def __str__(self) -> str:
        return self.message


@dataclass(frozen=True)
class ScheduleCheck(Check):
    """A :class:`Check` that also keeps the machine after the learner's schedule."""

    machine: Machine | None = field(default=None, repr=False, compare=False)


def _no_answer(what: str) -> Check:
    return Check(None, f"No answer yet: set {what} and run the check again.")


def check_prediction(
    scenario: str | CustomScenario,
    config: Config,
    predicted: str | None,
    kind: str = "use-after-free",
) -> Check:
    """Is ``kind`` (e.g. a use-after-free) ``never``, ``sometimes`` or ``always`` the
    outcome of ``scenario`` under ``config``?  The check explores every interleaving.

    >>> check_prediction("reclaim-vs-pte-offset-map-lock", Config(kernel="v6.14",
    ...                  batch="fails"), "sometimes").correct
    False
    """
    _check_kind(kind)
    if predicted is None:
        return _no_answer(f"your prediction ({' / '.join(VERDICTS)})")
    guess = predicted.strip().lower() if isinstance(predicted, str) else predicted
    if guess not in VERDICTS:
        raise ValueError(f"prediction {predicted!r} is not one of: {', '.join(VERDICTS)}")
    r = _explore(scenario, config)
    actual = r.verdict(kind)
    n = r.kinds.get(kind, 0)
    detail = (f"The model explored all {r.schedules} complete interleavings"
              + ("" if r.exhaustive else " it could reach (state limit hit)")
              + f" and found {kind} in {n}: {actual}.")
    w = r.witnesses.get(kind)
    if w is not None:
        detail += f"\nShortest witness: {compact_schedule(w.schedule)}\n{w.message}"
    if guess == actual:
        return Check(True, f"Right: {kind} — {actual}.\n{detail}")
    return Check(False, f"Not quite: you predicted {guess!r}.\n{detail}")


def check_free_way(config: Config, predicted: str | None, level: str = "pte") -> Check:
    """How does ``config`` free a ``level`` table?  ``predicted`` is one of
    :data:`FREE_WAYS`; the check runs the free (``free_path``) and reads off the way."""
    if level not in LEVELS:
        raise ValueError(f"unknown level {level!r}; allowed: {', '.join(LEVELS)}")
    if predicted is None:
        return _no_answer(f"your prediction ({' / '.join(FREE_WAYS)})")
    if predicted not in FREE_WAYS:
        raise ValueError(f"prediction {predicted!r} is not one of: {', '.join(FREE_WAYS)}")
    path = free_path(config, level)
    actual = free_way(path)
    detail = f"{actual}: {FREE_WAYS[actual]}\n{path.render()}"
    if predicted == actual:
        return Check(True, f"Right: {detail}")
    return Check(False, f"Not quite: you predicted {predicted!r}; the model freed it {detail}")


def check_schedule(
    scenario: str | CustomScenario,
    config: Config,
    schedule: Sequence[str] | str | None,
    expected_kind: str,
) -> ScheduleCheck:
    """Replay the learner's ``schedule``: does it produce ``expected_kind``?

    ``expected_kind`` is a report kind (see :data:`REPORT_KINDS`) or ``"safe"`` (the
    schedule must run the scenario to its end with nothing reported).  A step the machine
    refuses ends the replay; the message says which step and why.
    """
    _check_kind(expected_kind, ("safe",))
    if schedule is None:
        r = _no_answer("your schedule (e.g. 'CPU0*4 CPU1*20 CPU0:irq')")
        return ScheduleCheck(None, r.message)
    part = replay_as_far_as(scenario, config, schedule)
    m = part.machine
    kinds = {r.kind for r in m.reports()}
    if m.finished():
        kinds |= set(outcome_kinds(m))
    lines = [part.describe()]
    if expected_kind == "safe":
        ok = part.refused is None and m.finished() and not kinds
        if not m.finished() and part.refused is None:
            lines.append("The scenario has not finished yet; lanes that can still step: "
                         + ", ".join(m.enabled_lanes()))
    else:
        ok = expected_kind in kinds
    if kinds:
        lines.append("What happened: " + ", ".join(sorted(kinds)))
        lines += [r.message() for r in m.reports() if r.kind == expected_kind][:1]
    else:
        lines.append("What happened: nothing bad" + ("" if m.finished() else " (so far)"))
    head = "Right" if ok else "Not this time"
    lines.insert(0, f"{head}: you wanted {expected_kind}.")
    if not ok and not m.finished():
        lines.append("Where each lane stands:\n" + "\n".join(
            m.lane_status(lane) for lane in m.lanes()))
    return ScheduleCheck(ok, "\n".join(lines), m)


def check_contrast(
    scenario: str | CustomScenario,
    bad: Config,
    good: Config,
    kind: str = "use-after-free",
) -> Check:
    """Does ``kind`` happen in some interleaving under ``bad`` and in none under ``good``?

    The lesson-06 challenge: write a scenario that the patch fixes.
    """
    _check_kind(kind)
    rb = _explore(scenario, bad)
    rg = _explore(scenario, good)
    ok = rb.verdict(kind) != "never" and rg.verdict(kind) == "never" and rg.exhaustive
    text = f"{outcome_view(rb)}\n\n{outcome_view(rg)}"
    if ok:
        return Check(True, f"Yes: {kind} under {bad.label()}, never under {good.label()}.\n{text}")
    why = []
    if rb.verdict(kind) == "never":
        why.append(f"under {bad.label()} no interleaving gives {kind}")
    if rg.verdict(kind) != "never":
        why.append(f"under {good.label()} {kind} still happens ({rg.verdict(kind)})")
    if not rg.exhaustive:
        why.append("the exploration under the good config was cut short")
    return Check(False, "Not yet: " + "; ".join(why) + f".\n{text}")


# ----------------------------------------------------------------------------- the matrix


def lesson_configs() -> list[Config]:
    """A safety-matrix subset that runs in a few seconds: the real v6.13 (no PT_RECLAIM)
    and, with PT_RECLAIM, each kernel × {native, xen-pv} × batch page {ok, fails}."""
    out = [Config(kernel="v6.13", pt_reclaim=False, paravirt="native")]
    for kernel in KERNELS:
        for env in ("native", "xen-pv"):
            for batch in ("ok", "fails"):
                out.append(Config(kernel=kernel, paravirt=env, batch=batch))
    return out


def lesson_scenarios() -> list[str]:
    """The two-CPU races of the matrix (the three-CPU one and munmap take longer)."""
    return ["reclaim-vs-pte-offset-map-lock", "reclaim-vs-gup-fast",
            "khugepaged-vs-pte-offset-map"]


class TextProgress:
    """A ``progress(done, total)`` callback that rewrites one line: ``explored 7/39``."""

    def __init__(self, out: TextIO | None = None, label: str = "explored") -> None:
        self.out = out
        self.label = label
        self.calls = 0

    def __call__(self, done: int, total: int) -> None:
        self.calls += 1
        out = self.out if self.out is not None else sys.stdout
        end = "\n" if done >= total else ""
        out.write(f"\r{self.label} {done}/{total}{end}")
        out.flush()

