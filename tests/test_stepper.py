"""The stepper widget, driven without a browser (``.click()``, ``.value = ...``).

Assertions are on the model behind the widget (``.machine``, ``.schedule``) and on what
the learner sees (the red error line, button states, the text panel, the picture's
artists).  Expected behaviour comes from the semantics in kernel-facts §5:
GUP-fast runs with interrupts off, so an IPI to its CPU stays pending and the sender
waits (§5.1, §4.3); nothing is pending at the start, so "takes IPI" and the RCU lanes
cannot step; the v6.13 slow path races with a ``pte_offset_map_lock()`` reader (§7).
"""

from __future__ import annotations

import doctest

import pytest
from matplotlib.figure import Figure

import ptlab.widgets.stepper
from ptlab.config import Config
from ptlab.sim.explore import replay
from ptlab.sim.ops import IrqSave
from ptlab.widgets.stepper import PICTURES, Stepper, lane_label

SEMI_RCU = Config(kernel="v6.13", paravirt="native", batch="fails")


def fig_gids(fig: Figure | None) -> set[str]:
    assert fig is not None
    out: set[str] = set()
    for ax in fig.axes:
        for a in [*ax.patches, *ax.lines, *ax.texts, *ax.collections]:
            out.add(a.get_gid() or "")
    return out


def test_initial_state_buttons_and_status() -> None:
    s = Stepper()
    lanes = s.machine.lanes()
    assert list(s.lane_buttons) == lanes
    assert [b.description for b in s.lane_buttons.values()] == [lane_label(x) for x in lanes]
    # nothing is pending yet: only the two CPUs can step
    enabled = [ln for ln, b in s.lane_buttons.items() if not b.disabled]
    assert enabled == ["CPU0", "CPU1"]
    assert s.lane_buttons["RCU:gp"].tooltip == "no callbacks are waiting for a grace period"
    assert s.back_button.disabled
    assert s.status_lines() == [s.machine.lane_status(x) for x in lanes]
    assert "CPU0:irq: no IPI is pending for CPU0" in s.status.value
    assert s.schedule == [] and s.view.figure is not None
    assert "points:report" not in fig_gids(s.view.figure)


def test_clicking_a_disabled_lane_shows_the_reason() -> None:
    s = Stepper()
    s.lane_buttons["CPU1:irq"].click()
    assert s.error.message == "cannot step CPU1:irq: no IPI is pending for CPU1"
    assert "no IPI is pending" in s.error.widget.value
    assert s.schedule == []
    s.lane_buttons["CPU0"].click()  # a good step clears the red line
    assert s.error.message == "" and s.schedule == ["CPU0"]
    assert not s.back_button.disabled


def test_gup_fast_blocks_the_ipi_and_the_sender_waits() -> None:
    s = Stepper("reclaim-vs-gup-fast", SEMI_RCU)
    m = s.machine
    for _ in range(50):  # CPU0 runs until GUP-fast has disabled interrupts
        if not m.cpus[0].irqs_on:
            break
        pending = m.threads["CPU0"].pending
        s.lane_buttons["CPU0"].click()
        if isinstance(pending, IrqSave):
            break
    assert not s.machine.cpus[0].irqs_on
    for _ in range(100):  # CPU1 reclaims until it has to wait for CPU0
        if s.lane_buttons["CPU1"].disabled:
            break
        s.lane_buttons["CPU1"].click()
    assert s.lane_buttons["CPU1"].disabled
    assert "waits for CPU0 to take the IPI" in s.lane_buttons["CPU1"].tooltip
    assert s.lane_buttons["CPU0:irq"].disabled  # pending, but interrupts are off
    n = len(s.schedule)
    s.lane_buttons["CPU0:irq"].click()
    assert "CPU0 has interrupts disabled" in s.error.message and len(s.schedule) == n
    s.lane_buttons["CPU1"].click()
    assert "waits for CPU0 to take the IPI" in s.error.message and len(s.schedule) == n
    assert any("waits for CPU0" in line for line in s.status_lines())
    # the timeline shows the IPI still pending
    assert "link:ipi-pending" in fig_gids(s.view.figure)


def test_step_back_and_reset() -> None:
    s = Stepper()
    s.back_button.click()
    assert "nothing to step back" in s.error.message
    for lane in ["CPU0", "CPU0", "CPU1", "CPU0"]:
        s.lane_buttons[lane].click()
    s.back_button.click()
    assert s.schedule == ["CPU0", "CPU0", "CPU1"] and s.error.message == ""
    fresh = replay(s.scenario, s.config, ["CPU0", "CPU0", "CPU1"])
    assert s.machine.state_key() == fresh.state_key()
    assert [str(e) for e in s.machine.events] == [str(e) for e in fresh.events]
    s.reset_button.click()
    assert s.schedule == [] and s.back_button.disabled


def test_config_dropdowns_rebuild_the_machine() -> None:
    s = Stepper()
    s.lane_buttons["CPU0"].click()
    s.kernel_dd.value = "v6.13"
    s.batch_dd.value = "fails"
    s.paravirt_dd.value = "xen-pv"
    s.reclaim_dd.value = False
    assert s.config == Config(kernel="v6.13", paravirt="xen-pv", batch="fails",
                              pt_reclaim=False)
    assert s.machine.config == s.config and s.schedule == []
    s.scenario_dd.value = "reclaim-vs-both"  # three CPUs
    assert s.machine.config.ncpus == 3
    assert list(s.lane_buttons) == ["CPU0", "CPU0:irq", "CPU1", "CPU1:irq", "CPU2",
                                    "CPU2:irq", "RCU:gp", "RCU:cb"]
    assert s.lane_box.children == tuple(s.lane_buttons.values())


def test_impossible_config_is_refused_in_the_error_line() -> None:
    s = Stepper("munmap", Config(ncpus=1, paravirt="kvm"))
    before = s.machine
    s.paravirt_dd.value = "kvm-pv-flush"  # KVM needs more than one CPU for PV flush
    assert "ncpus > 1" in s.error.message
    assert s.machine is before and s.config.paravirt == "kvm"


def test_load_witness_and_play_it() -> None:
    s = Stepper(config=SEMI_RCU)
    s.witness_button.click()
    assert s.exploration is not None and s.plan_name == "witness for use-after-free"
    assert s.plan == s.exploration.witnesses["use-after-free"].schedule
    assert "use-after-free: sometimes" in s.outcome.value
    s.play.playing = True
    for _ in range(len(s.plan) + 5):  # the browser's ticks
        if not s.play.playing:
            break
        s.play.value += 1
    assert not s.play.playing  # paused at the end of the witness
    assert s.schedule == s.plan
    assert "use-after-free" in {r.kind for r in s.machine.reports()}
    assert "BUG: KASAN: use-after-free" in s.status.value
    assert "points:report" in fig_gids(s.view.figure)


def test_load_witness_when_everything_is_safe_plays_the_default_run() -> None:
    s = Stepper("reclaim-vs-gup-fast", Config(kernel="v6.14"))
    s.witness_button.click()
    assert s.plan == [] and s.plan_name == "default run"
    assert s.exploration is not None and not s.exploration.kinds
    s.play.playing = True
    for _ in range(200):
        if not s.play.playing:
            break
        s.play.value += 1
    assert s.machine.finished() and not s.machine.reports()
    assert "nothing bad happened" in s.outcome.value


def test_rapid_clicking_keeps_the_model_consistent() -> None:
    s = Stepper("reclaim-vs-pte-offset-map-lock", Config(kernel="v6.14", batch="fails"))
    order = ["CPU1", "CPU0:irq", "RCU:gp", "CPU0", "RCU:cb", "CPU1:irq"]
    refused = 0
    for i in range(50):
        lane = order[i % len(order)]
        n = len(s.schedule)
        s.lane_buttons[lane].click()
        if s.error.failed:
            refused += 1
            assert len(s.schedule) == n and lane in s.error.message
    assert refused > 0 and len(s.schedule) == 50 - refused
    assert s.view.updates >= 1 + len(s.schedule)
    # the machine behind the widget is exactly the replay of its schedule
    assert s.machine.state_key() == replay(s.scenario, s.config, s.schedule).state_key()
    assert not s.machine.reports()  # v6.14: nothing bad whatever the order (§7)


@pytest.mark.parametrize("picture", PICTURES)
def test_every_picture_is_drawn(picture: str) -> None:
    s = Stepper(config=Config(kernel="v6.14", batch="fails"))
    for _ in range(8):
        s.lane_buttons["CPU1"].click()
    s.picture_tb.value = picture
    before = s.view.updates
    s.lane_buttons["CPU1"].click()
    assert s.view.updates == before + 1  # only the visible picture is redrawn
    png = s.view.widget.value
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    expect = {"timeline": "spans:lock", "tables": "table:pte:",
              "ptdesc": "field:ptl", "pending memory": "pending:single"}[picture]
    assert any(g.startswith(expect) for g in fig_gids(s.view.figure))
    assert (s.frame_dd.layout.display == "none") == (picture != "ptdesc")
    assert (s.legend.layout.display == "none") == (picture != "timeline")


def test_ptdesc_picture_follows_the_chosen_frame() -> None:
    s = Stepper(picture="ptdesc")
    walk = s.machine.roots["mm"].walk(0x7F00_0000_0000)
    pte = next(st.table_pfn for st in walk.steps if st.level == "pte")
    assert s.frame_dd.value == pte  # the table the scenario is about
    pmd = next(st.table_pfn for st in walk.steps if st.level == "pmd")
    s.frame_dd.value = pmd
    assert f"{pmd:#x}" in s.view.figure.axes[0].get_title()  # type: ignore[union-attr]


def test_constructor_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="'nope'"):
        Stepper("nope")
    with pytest.raises(ValueError, match="'movie'"):
        Stepper(picture="movie")
    with pytest.raises(ValueError, match="window"):
        Stepper(window=0)


def test_docstring_examples() -> None:
    result = doctest.testmod(ptlab.widgets.stepper)
    assert result.attempted > 0 and result.failed == 0
