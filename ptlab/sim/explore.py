"""Exhaustive exploration of a scenario's interleavings (a small model checker).

``explore(scenario, config)`` runs every interleaving of the scenario's lanes at step
granularity.  States are cached: two schedules that reach the same machine state (same
memory, CPU, lock, RCU and IPI state, and every thread having seen the same results)
share their future, so each state is expanded once.  Because every step adds to the
step count, the state graph is layered by depth, which gives

- the number of complete schedules per outcome (counted through the layers, not
  enumerated),
- the shortest schedule (witness) reaching each kind of bad report, found first by the
  breadth-first order.

The outcome of a complete run is the set of report kinds it produced (use-after-free,
double-free, union-clobber, list-corruption, …), plus ``leak`` when frames remain
allocated that nothing reaches, and ``deadlock`` when threads can no longer move.

>>> from ptlab.config import Config
>>> r = explore("reclaim-vs-gup-fast", Config(kernel="v6.13", batch="fails"))
>>> r.verdict("use-after-free")
'never'
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ptlab.config import Config
from ptlab.sim.machine import Machine
from ptlab.sim.scenarios import build, get

DEFAULT_MAX_STATES = 200_000


@dataclass
class Witness:
    """The shortest schedule that produces a report of ``kind``."""

    kind: str
    schedule: list[str]
    message: str

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "schedule": self.schedule, "message": self.message}


@dataclass
class Exploration:
    scenario: str
    config: Config
    states: int = 0
    terminal_states: int = 0
    schedules: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)  # outcome label → schedules
    kinds: dict[str, int] = field(default_factory=dict)  # report kind → schedules with it
    witnesses: dict[str, Witness] = field(default_factory=dict)
    seconds: float = 0.0
    exhaustive: bool = True

    def verdict(self, kind: str) -> str:
        """Litmus style: ``never``, ``sometimes`` or ``always`` over complete schedules."""
        n = self.kinds.get(kind, 0)
        if n == 0:
            return "never"
        return "always" if n == self.schedules else "sometimes"

    @property
    def bad(self) -> bool:
        return any(k for k in self.kinds)

    def summary(self) -> str:
        """One word for a matrix cell: ``safe`` or the bad kinds (with how often)."""
        if not self.kinds:
            return "safe" if self.exhaustive else "safe?"
        parts = [f"{k} ({self.verdict(k)})" for k in sorted(self.kinds)]
        return ", ".join(parts)

    def table(self) -> str:
        lines = [
            f"scenario {self.scenario} — {self.config.label()}",
            f"{self.states} states, {self.terminal_states} final states, "
            f"{self.schedules} complete schedules, {self.seconds:.2f} s"
            + ("" if self.exhaustive else " (NOT exhaustive: state limit reached)"),
            f"{'outcome':<40} {'schedules':>14}",
        ]
        for label, n in sorted(self.outcomes.items(), key=lambda kv: (-kv[1], kv[0])):
            lines.append(f"{label:<40} {n:>14}")
        for kind in sorted(self.kinds):
            lines.append(f"{kind}: {self.verdict(kind)}")
        for kind, w in sorted(self.witnesses.items()):
            lines.append(
                f"witness for {kind} ({len(w.schedule)} steps): {compact_schedule(w.schedule)}"
            )
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {
            "scenario": self.scenario,
            "config": self.config.to_dict(),
            "states": self.states,
            "terminal_states": self.terminal_states,
            "schedules": self.schedules,
            "outcomes": dict(sorted(self.outcomes.items())),
            "verdicts": {k: self.verdict(k) for k in sorted(self.kinds)},
            "witnesses": {k: w.to_dict() for k, w in sorted(self.witnesses.items())},
            "seconds": round(self.seconds, 4),
            "exhaustive": self.exhaustive,
        }


def compact_schedule(schedule: list[str]) -> str:
    """``['CPU0', 'CPU0', 'CPU1']`` → ``'CPU0*2 CPU1'`` (``parse_schedule`` reads it back)."""
    out: list[str] = []
    i = 0
    while i < len(schedule):
        j = i
        while j < len(schedule) and schedule[j] == schedule[i]:
            j += 1
        out.append(schedule[i] if j - i == 1 else f"{schedule[i]}*{j - i}")
        i = j
    return " ".join(out)


def parse_schedule(text: str) -> list[str]:
    """``'CPU0*2 CPU1, RCU:gp'`` → ``['CPU0', 'CPU0', 'CPU1', 'RCU:gp']``.

    Lane names are checked when the schedule is replayed; a bad repeat count is a
    ValueError naming the token.
    """
    lanes: list[str] = []
    for tok in text.replace(",", " ").split():
        name, star, count = tok.partition("*")
        if star:
            if not count.isdigit() or int(count) < 1:
                raise ValueError(f"bad repeat count in {tok!r}; write LANE*N with N ≥ 1")
            lanes += [name] * int(count)
        else:
            lanes.append(name)
    if not lanes:
        raise ValueError("the schedule is empty; give lanes such as 'CPU0*3 CPU1 RCU:gp'")
    return lanes


def outcome_kinds(m: Machine) -> frozenset[str]:
    """What went wrong in a finished run (empty: nothing)."""
    kinds = {r.kind for r in m.reports()}
    if any(not t.done for t in m.threads.values()):
        kinds.add("deadlock")
    elif m.leaks():
        kinds.add("leak")
    return frozenset(kinds)


def label(kinds: frozenset[str]) -> str:
    return "+".join(sorted(kinds)) if kinds else "safe"


def explore(
    scenario: str | Callable[[], Machine],
    config: Config | None = None,
    *,
    max_states: int = DEFAULT_MAX_STATES,
    progress: Callable[[int], None] | None = None,
) -> Exploration:
    """Visit every interleaving of ``scenario`` under ``config``.

    ``scenario`` is a scenario name, or a function returning a fresh machine (for
    scenarios built with ``ptlab.sim.scenarios.custom``; ``config`` is then unused).
    """
    t0 = time.perf_counter()
    if callable(scenario):
        root = scenario()
        name = root.scenario or "custom"
    else:
        get(scenario)  # validates the name
        root = build(scenario, config or Config())
        name = scenario
    root.record = False
    res = Exploration(name, root.config)
    # depth → key → [machine, schedule count]
    layers: dict[int, dict[Any, list[Any]]] = {0: {root.state_key(): [root, 1]}}
    depth = 0
    seen = 0
    while layers:
        depth = min(layers)
        layer = layers.pop(depth)
        for m, count in layer.values():
            seen += 1
            if progress is not None and seen % 1000 == 0:
                progress(seen)
            lanes = m.enabled_lanes()
            if not lanes:
                kinds = outcome_kinds(m)
                res.terminal_states += 1
                res.schedules += count
                lab = label(kinds)
                res.outcomes[lab] = res.outcomes.get(lab, 0) + count
                for k in kinds:
                    res.kinds[k] = res.kinds.get(k, 0) + count
                    if k not in res.witnesses and k in ("leak", "deadlock"):
                        res.witnesses[k] = Witness(
                            k, list(m.schedule), f"{k} at the end of the run"
                        )
                continue
            if seen >= max_states:
                res.exhaustive = False
                continue
            for i, lane in enumerate(lanes):
                child = m if i == len(lanes) - 1 else m.clone()
                before = len(child.reports())
                child.step_enabled(lane)
                before = _note_witnesses(res, child, before)
                # Where only one lane can move there is nothing to choose: follow the
                # chain without hashing the intermediate states.
                nxt = child.enabled_lanes()
                while len(nxt) == 1:
                    child.step_enabled(nxt[0])
                    before = _note_witnesses(res, child, before)
                    nxt = child.enabled_lanes()
                ck = child.state_key()
                bucket = layers.setdefault(len(child.schedule), {})
                slot = bucket.get(ck)
                if slot is None:
                    bucket[ck] = [child, count]
                else:
                    slot[1] += count
    res.states = seen
    res.seconds = time.perf_counter() - t0
    return res


def _note_witnesses(res: Exploration, m: Machine, before: int) -> int:
    """Record the schedule so far as the witness of any report kind seen first now."""
    reports = m.reports()
    for r in reports[before:]:
        if r.kind not in res.witnesses:
            res.witnesses[r.kind] = Witness(r.kind, list(m.schedule), r.message())
    return len(reports)


def replay(scenario: str, config: Config, schedule: list[str]) -> Machine:
    """Build the scenario and run ``schedule``; events are recorded for display."""
    m = build(scenario, config)
    m.run(schedule)
    return m
