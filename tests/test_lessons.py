"""Lesson helpers (ptlab.lessons) and the shape of lessons 00 and 02–06.

Expected values come from kernel-facts: §7.2 (the v6.13 use-after-free needs an RCU
reader that takes the IPI inside its read-side section), §7.3 (v6.14 defers the free by
a grace period), §5.1 (IRQ-off GUP-fast blocks IPIs, so it was always safe), §3.2/§4.5/
§4.6 (which hook each environment installs and how the table is then freed), §3.4
(v6.15: RCU everywhere).  The interleavings in these tests are built from those
descriptions with ``step_until`` (run a CPU until it is inside a named kernel function
or blocked), not pasted from an explorer run.
"""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import pytest

from ptlab import lessons as L
from ptlab.config import KERNELS, PARAVIRT_ENVS, Config
from ptlab.sim.explore import explore
from ptlab.sim.machine import Machine, run_to_end
from ptlab.sim.matrix import safety_matrix
from ptlab.sim.scenarios import build

RACE = "reclaim-vs-pte-offset-map-lock"
V613_FAILS = Config(kernel="v6.13", batch="fails")
V614_FAILS = Config(kernel="v6.14", batch="fails")
NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
LESSONS = ("00_start_here", "02_ptdesc", "03_readers", "04_freeing_paths", "05_the_race",
           "06_explore")
PV_ENVS = ("xen-pv", "hyperv", "kvm-pv-flush")
IPI_FLUSH_ENVS = ("none", "native", "kvm")


def race_schedule(config: Config) -> list[str]:
    """§7.2 step by step: the reader enters rcu_read_lock and reads the PMD (it is about
    to lock T's ptl), the reclaimer runs until it must wait for the reader's IPI, the
    reader takes the IPI (interrupts are on), the reclaimer runs as far as it can, then
    the reader carries on (spin_lock on T's ptl, read the PTE, unlock)."""
    m = build(RACE, config)
    L.step_until(m, "CPU0", "spin_lock")
    L.step_until(m, "CPU1")
    m.step("CPU0:irq")
    L.step_until(m, "CPU1")
    L.step_until(m, "CPU0")
    return list(m.schedule)


# ----------------------------------------------------------------------------- predictions


def test_prediction_of_the_v613_race_is_checked_by_exploring() -> None:
    right = L.check_prediction(RACE, V613_FAILS, "sometimes")
    assert right.correct is True
    assert "use-after-free" in str(right) and "witness" in str(right)
    wrong = L.check_prediction(RACE, V613_FAILS, "never")
    assert wrong.correct is False
    assert "sometimes" in wrong.message  # the model's answer is explained


def test_prediction_v614_never() -> None:
    assert L.check_prediction(RACE, V614_FAILS, "never").correct is True
    assert L.check_prediction(RACE, V614_FAILS, " Sometimes ").correct is False


def test_prediction_gup_fast_was_always_safe() -> None:
    # §5.1: every v6.13 free waits for an IPI that an IRQ-off walker cannot take.
    cfg = Config(kernel="v6.13", paravirt="xen-pv", batch="fails")
    assert L.check_prediction("reclaim-vs-gup-fast", cfg, "never").correct is True


def test_prediction_without_answer_reveals_nothing() -> None:
    r = L.check_prediction(RACE, V613_FAILS, None)
    assert r.correct is None
    assert "No answer yet" in r.message and "interleavings" not in r.message


@pytest.mark.parametrize("bad", ["maybe", "", "yes"])
def test_prediction_rejects_unknown_verdicts(bad: str) -> None:
    with pytest.raises(ValueError, match="never, sometimes, always"):
        L.check_prediction(RACE, V613_FAILS, bad)


def test_prediction_rejects_unknown_kind() -> None:
    with pytest.raises(ValueError, match=r"'oops'.*use-after-free"):
        L.check_prediction(RACE, V613_FAILS, "never", kind="oops")


def test_prediction_of_a_counterfactual_clobber() -> None:
    # §2.3: call_rcu on pt_rcu_head overwrites pmd_huge_pte.  v6.14 with no batch page
    # queues the PMD table alone on its pt_rcu_head: always a clobber.
    r = L.check_prediction("rcu-free-pmd-with-deposit", V614_FAILS, "always",
                           kind="union-clobber")
    assert r.correct is True


# ----------------------------------------------------------------------------- free ways


@pytest.mark.parametrize(
    ("config", "way"),
    [
        # §4.5: native hook on v6.13 = tlb_remove_page after the flush IPIs.
        (Config(kernel="v6.13", paravirt="native"), "tlb-flush"),
        # §4.6: PV hook, batch page lost: IPI + immediate free ("semi RCU").
        (Config(kernel="v6.13", paravirt="xen-pv", batch="fails"), "ipi"),
        # §4.6: PV hook, batch page: call_rcu on the batch.
        (Config(kernel="v6.13", paravirt="hyperv"), "rcu-batch"),
        # §4.3 (v6.14 + PT_RECLAIM): the single-table path uses pt_rcu_head.
        (Config(kernel="v6.14", paravirt="native", batch="fails"), "rcu-single"),
        # §3.1 step 7: without PT_RECLAIM v6.14's native hook still uses tlb_remove_page.
        (Config(kernel="v6.14", paravirt="native", pt_reclaim=False), "tlb-flush"),
        # §3.4: v6.15 calls tlb_remove_table directly, even without PARAVIRT.
        (Config(kernel="v6.15", paravirt="none", pt_reclaim=False), "rcu-batch"),
    ],
)
def test_check_free_way(config: Config, way: str) -> None:
    assert L.check_free_way(config, way).correct is True
    other = next(w for w in L.FREE_WAYS if w != way)
    r = L.check_free_way(config, other)
    assert r.correct is False and way in r.message


def test_check_free_way_bad_input() -> None:
    with pytest.raises(ValueError, match=r"'rcu'.*tlb-flush"):
        L.check_free_way(Config(), "rcu")
    with pytest.raises(ValueError, match="'pgd'"):
        L.check_free_way(Config(), "rcu-batch", level="pgd")
    assert L.check_free_way(Config(), None).correct is None


def _table_cells(text: str) -> dict[str, list[str]]:
    rows = {}
    for line in text.splitlines()[2:]:
        env, rest = line.split(maxsplit=1)
        rows[env] = re.split(r"\s{2,}", rest.strip())
    return rows


def test_free_way_table_matches_the_hook_table() -> None:
    # §3.2: v6.13 PV environments install tlb_remove_table (RCU batch); bare metal and
    # KVM without PV flush free like data pages.  §3.4: v6.15 is RCU everywhere.
    rows = _table_cells(L.free_way_table())
    assert set(rows) == set(PARAVIRT_ENVS)
    for env in PV_ENVS:
        assert rows[env] == ["RCU batch"] * len(KERNELS)
    for env in IPI_FLUSH_ENVS:
        assert rows[env] == ["flush+free", "RCU batch", "RCU batch"]
    fails = _table_cells(L.free_way_table(batch="fails"))
    for env in PV_ENVS:
        assert fails[env] == ["IPI+free", "RCU single", "RCU single"]


# ----------------------------------------------------------------------------- stepping


def test_ipi_waits_for_an_irq_off_walker() -> None:
    # §5.1: GUP-fast runs with interrupts off, so the flush IPI cannot be taken.
    m = build("reclaim-vs-gup-fast", Config(kernel="v6.13"))
    L.step_until(m, "CPU0", "gup_fast_pte_range")
    assert not m.cpus[0].irqs_on
    L.step_until(m, "CPU1")
    reason = m.why_not("CPU1")
    assert reason is not None and "CPU0 to take the IPI" in reason
    assert "interrupts disabled" in (m.why_not("CPU0:irq") or "")
    status = L.machine_status(m)
    assert "CPU0 state: interrupts OFF" in status and "reports: none" in status


def test_grace_period_waits_for_an_rcu_reader() -> None:
    # §5.3/§7.3: the reader takes the IPI, but the grace period waits for it.
    m = build(RACE, V614_FAILS)
    L.step_until(m, "CPU0", "spin_lock")
    assert m.cpus[0].rcu_nesting == 1 and m.cpus[0].irqs_on
    L.step_until(m, "CPU1")
    m.step("CPU0:irq")
    L.step_until(m, "CPU1")
    assert m.threads["CPU1"].done and m.queued  # the table waits for a grace period
    m.step("RCU:gp")  # starts
    assert "CPU0" in (m.why_not("RCU:gp") or "")
    assert "still waiting for: CPU0" in L.machine_status(m)
    run_to_end(m, prefer=["CPU0"])
    assert not m.reports()


def test_step_until_errors() -> None:
    m = build(RACE, Config())
    with pytest.raises(ValueError, match="no kernel thread"):
        L.step_until(m, "RCU:gp", "anything")
    with pytest.raises(ValueError, match="before reaching no_such_function"):
        L.step_until(m, "CPU0", "no_such_function")


def test_replay_as_far_as_stops_at_a_refused_step() -> None:
    part = L.replay_as_far_as(RACE, Config(), ["CPU0", "CPU1:irq", "CPU0"])
    assert part.done == 1 and part.lane == "CPU1:irq"
    assert part.refused is not None and "no IPI is pending" in part.refused
    assert "refused" in part.describe()
    full = L.replay_as_far_as(RACE, Config(), "CPU0*2")
    assert full.refused is None and full.describe() == "all 2 steps ran"


# ----------------------------------------------------------------------------- schedules


def test_check_schedule_finds_the_v613_use_after_free() -> None:
    sched = race_schedule(V613_FAILS)
    r = L.check_schedule(RACE, V613_FAILS, sched, "use-after-free")
    assert r.correct is True
    assert "KASAN: use-after-free" in r.message and "ptl" in r.message
    assert isinstance(r.machine, Machine)


def test_same_idea_on_v614_is_no_use_after_free() -> None:
    sched = race_schedule(V614_FAILS)
    r = L.check_schedule(RACE, V614_FAILS, sched, "use-after-free")
    assert r.correct is False
    # and the v6.13 schedule on v6.14 does not produce one either
    r2 = L.check_schedule(RACE, V614_FAILS, race_schedule(V613_FAILS), "use-after-free")
    assert r2.correct is False


def test_check_schedule_safe_and_refusals() -> None:
    m = run_to_end(build(RACE, V614_FAILS))
    assert L.check_schedule(RACE, V614_FAILS, m.schedule, "safe").correct is True
    short = L.check_schedule(RACE, V614_FAILS, m.schedule[:3], "safe")
    assert short.correct is False and "not finished" in short.message
    refused = L.check_schedule(RACE, V614_FAILS, "CPU0:irq", "use-after-free")
    assert refused.correct is False and "no IPI is pending" in refused.message
    assert L.check_schedule(RACE, V614_FAILS, None, "safe").correct is None


def test_check_schedule_bad_input() -> None:
    with pytest.raises(ValueError, match="CPU9"):
        L.check_schedule(RACE, V614_FAILS, "CPU9", "safe")
    with pytest.raises(ValueError, match="'boom'"):
        L.check_schedule(RACE, V614_FAILS, "CPU0", "boom")
    with pytest.raises(ValueError, match="schedule is empty"):
        L.check_schedule(RACE, V614_FAILS, "  ", "safe")


# ----------------------------------------------------------------------------- own scenarios


def test_custom_scenario_that_the_patch_fixes() -> None:
    sc = L.custom_scenario({0: "mincore 0x1000", 1: "madvise_dontneed 0 2M"}, name="mine")
    assert "CPU0: mincore 0x1000" in sc.describe()
    assert L.check_contrast(sc, V613_FAILS, V614_FAILS).correct is True
    assert L.check_contrast(sc, V614_FAILS, V613_FAILS).correct is False
    r = sc.explore(V613_FAILS)
    assert r.scenario == "mine" and r.verdict("use-after-free") == "sometimes"
    w = r.witnesses["use-after-free"]
    m = sc.replay(V613_FAILS, w.schedule)
    assert any(rep.kind == "use-after-free" for rep in m.reports())


def test_custom_gup_fast_scenario_is_not_a_contrast() -> None:
    # §5.1: GUP-fast was never run over, so there is nothing for the patch to fix.
    sc = L.custom_scenario({0: "gup_fast 0x1000", 1: "madvise_dontneed 0 2M"})
    r = L.check_contrast(sc, V613_FAILS, V614_FAILS)
    assert r.correct is False and "no interleaving" in r.message


def test_custom_scenario_bad_input() -> None:
    with pytest.raises(ValueError, match="built-in"):
        L.custom_scenario({0: "mincore 0"}, name=RACE)
    with pytest.raises(ValueError, match="unknown kernel path 'frobnicate'"):
        L.custom_scenario({0: "frobnicate 0"})
    with pytest.raises(ValueError, match="CPU 7"):
        L.custom_scenario({7: "mincore 0"})
    with pytest.raises(ValueError, match="dict"):
        L.custom_scenario(["mincore 0"])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="touched offset"):
        L.custom_scenario({0: "mincore 0"}, touched=(0x123,))
    assert "madvise_dontneed offset length" in L.kernel_paths()


# ----------------------------------------------------------------------------- text views


def test_outcome_view_is_deterministic_and_timing_free() -> None:
    a = L.outcome_view(explore(RACE, V613_FAILS))
    b = L.outcome_view(explore(RACE, V613_FAILS))
    assert a == b
    assert "use-after-free: sometimes" in a and "shortest witness" in a
    assert not re.search(r"\d+\.\d+ ?s\b", a)
    assert L.outcome_view(explore(RACE, V614_FAILS)).endswith("safe in every interleaving")


def test_lesson_matrix_subset() -> None:
    # §7.4: before the patch the rcu reader is run over unless the PV batch path (already
    # RCU) is taken; the real v6.13 (no PT_RECLAIM) frees nothing early; v6.14/v6.15 are
    # safe everywhere; GUP-fast and khugepaged (pte_free_defer) were always safe.
    progress = L.TextProgress(out=io.StringIO())
    mat = safety_matrix(L.lesson_configs(), L.lesson_scenarios(), progress=progress)
    assert progress.calls == len(mat.cells) == 13 * 3
    for (cfg, sc), r in mat.cells.items():
        assert r.exhaustive
        racy = (sc == RACE and cfg.kernel == "v6.13" and cfg.pt_reclaim
                and not (cfg.paravirt == "xen-pv" and cfg.batch == "ok"))
        assert (r.verdict("use-after-free") == "sometimes") == racy, (cfg.label(), sc)
    view = L.matrix_view(mat)
    assert "UAF:s" in view and view.endswith("(39 explorations)")
    assert not re.search(r"\d+\.\d+ ?s\b", view)


def test_text_progress_rewrites_one_line() -> None:
    out = io.StringIO()
    p = L.TextProgress(out=out)
    p(1, 2)
    p(2, 2)
    assert out.getvalue() == "\rexplored 1/2\rexplored 2/2\n"


# ----------------------------------------------------------------------------- notebooks


def _cells(name: str) -> list[dict[str, object]]:
    nb = json.loads((NOTEBOOKS / f"{name}.ipynb").read_text())
    cells: list[dict[str, object]] = nb["cells"]
    return cells


def _src(cell: dict[str, object]) -> str:
    s = cell["source"]
    return "".join(s) if isinstance(s, list) else str(s)


@pytest.mark.parametrize("name", LESSONS)
def test_lesson_shape(name: str) -> None:
    cells = _cells(name)
    assert cells[0]["cell_type"] == "markdown" and "Learning goal" in _src(cells[0])
    code = [c for c in cells if c["cell_type"] == "code"]
    checked = [c for c in code if _src(c).startswith("# NBVAL_CHECK_OUTPUT")]
    assert checked, "no cell's output is compared"
    for c in code:
        src = _src(c)
        # no model logic in lessons: no function or class definitions
        assert not re.search(r"^\s*(def|class) ", src, re.M), src
        if c in checked:
            assert c["outputs"], f"stored output missing: {src[:60]}"
        else:
            assert not c["outputs"], f"output should be stripped: {src[:60]}"
    if name != "00_start_here":
        text = "".join(_src(c) for c in cells)
        assert "Exercise" in text and "check_" in text
