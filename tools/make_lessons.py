"""Build notebooks/00,02-06 from the cell texts below, run them with nbclient, keep
outputs only for '# NBVAL_CHECK_OUTPUT' cells.  Usage: .venv/bin/python tools/make_lessons.py [names]"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parent.parent
NB_DIR = ROOT / "notebooks"
CHECK = "# NBVAL_CHECK_OUTPUT\n"
ALLOW = False


def md(text: str) -> nbformat.NotebookNode:
    return nbformat.v4.new_markdown_cell(text.strip("\n"))


def code(text: str) -> nbformat.NotebookNode:
    return nbformat.v4.new_code_cell(text.strip("\n"))


def check(text: str) -> nbformat.NotebookNode:
    return nbformat.v4.new_code_cell(CHECK + text.strip("\n"))


LESSONS: dict[str, list[nbformat.NotebookNode]] = {}

# =====================================================================================
LESSONS["00_start_here"] = [
md("""
# 00 — Start here: the patch in one page

**Learning goal.** After this page you can say in two sentences what commit
"x86: mm: free page table pages by RCU instead of semi RCU" (Linux v6.14) changed and
why it was needed, you know which lesson answers which question, and you can drive the
*stepper*, the widget the lessons use to run kernel code one step at a time on
simulated CPUs.

Every number, table and picture in these lessons is computed by `ptlab`, a small model
of the kernel's code (same function names, in Python). Run the cells top to bottom.
"""),
md("""
## The patch in one page

**Who frees page tables, and who may still be reading them.** When a process unmaps
memory, the kernel clears the entry that points to a page-table page, flushes the TLBs,
and frees the page. Meanwhile other CPUs may be *walking* that table without taking any
lock:

* **GUP-fast** walks with **interrupts disabled**. A CPU with interrupts off cannot take
  an IPI (inter-processor interrupt), so a freeing CPU that sends an IPI and waits for
  every CPU to take it knows that no GUP-fast walk is still running.
* **`pte_offset_map()` / `pte_offset_map_lock()`** users (page faults, `mincore`,
  `/proc/PID/smaps`, khugepaged, ...) walk inside **`rcu_read_lock()`**, which leaves
  interrupts *on*. Only an **RCU grace period** waits for them; an IPI does not.

**"Semi RCU" (up to v6.13).** Page tables handed to `tlb_remove_table()` were collected
in a *batch* page that was freed after a grace period (RCU) — but when the batch page
could not be allocated (`GFP_NOWAIT` failed) the table was freed *alone*, right after an
IPI to every CPU. And on bare-metal x86 tables did not go through `tlb_remove_table()`
at all: they were freed like data pages, right after the TLB-flush IPIs.
That was fine while page tables were freed only by `munmap`/exit, when no other thread
can be walking them (khugepaged, which also frees tables of a live process, has used RCU
since 2023).

**v6.14 adds `CONFIG_PT_RECLAIM`**: `madvise(MADV_DONTNEED)` now frees PTE tables that
became empty, *while the process runs* — so another thread can be inside
`pte_offset_map_lock()` on exactly that table. An IPI does not wait for it: the table
could be freed and reused under the reader. The patch therefore makes every x86 path
go through `tlb_remove_table()` when PT_RECLAIM is on, and makes the single-table
fallback wait for a grace period too (`call_rcu()` on the table's own
`ptdesc->pt_rcu_head`). v6.15 then made RCU freeing unconditional on x86.

The model finds the race by trying every interleaving of a reader and a reclaimer:
"""),
code("""
from ptlab import lessons
from ptlab.config import Config
from ptlab.sim.explore import explore
from ptlab.widgets.common import show
"""),
check("""
RACE = "reclaim-vs-pte-offset-map-lock"   # CPU0: mincore (pte_offset_map_lock), CPU1: MADV_DONTNEED
for kernel in ["v6.13", "v6.14", "v6.15"]:
    r = explore(RACE, Config(kernel=kernel, paravirt="native", batch="fails"))
    print(f"{kernel}: use-after-free {r.verdict('use-after-free'):9}"
          f" ({r.kinds.get('use-after-free', 0)} of {r.schedules} interleavings)")
"""),
md("""
(v6.13 with PT_RECLAIM is a *what if*: PT_RECLAIM did not exist before v6.14. The model
lets you turn it on there to see what the patch had to fix.)

How a PTE table is freed, per (para)virtual environment and kernel, when the batch page
cannot be allocated — "IPI+free" and "flush+free" are the paths that do not wait for
`rcu_read_lock()` readers:
"""),
check("""
print(lessons.free_way_table(batch="fails"))
"""),
md("""
## The map of lessons

| Lesson | Question it answers |
| --- | --- |
| `01_page_tables` | How does an address become PGD/PUD/PMD/PTE indices, what does a page fault cost in page-table pages, what is `struct ptdesc`? |
| `02_ptdesc` | Which `struct ptdesc` members share bytes, and why may the patch reuse `pt_rcu_head`? What breaks if it could not (two counterfactuals)? |
| `03_readers` | What does an IPI wait for, what does a grace period wait for — and which walkers each one protects? |
| `04_freeing_paths` | Which call chain frees a table in each config: batch vs single table, the paravirt hook, v6.13 → v6.14 → v6.15. |
| `05_the_race` | The v6.13 use-after-free step by step, and the same steps on v6.14. |
| `06_explore` | The safety matrix (every config × every scenario), and your own scenario. |
| `07_real_kernel` | The same structures and counters on the Linux you are running. |

## How to use the stepper

The stepper runs one *scenario* (a kernel path per CPU over a small address space) under
one *configuration* (kernel version, PT_RECLAIM, paravirt environment, whether the
`GFP_NOWAIT` batch page can be allocated).

* **scenario**, **kernel**, **PT_RECLAIM**, **paravirt** and **batch** pickers at the top;
  changing one starts the machine over.
* **One button per *lane***: `step CPU0`, `step CPU1`, ... run that CPU's kernel code up
  to its next shared-memory access, lock, IPI or RCU operation; `CPU0 takes IPI` lets
  CPU0 take a pending IPI; `RCU: grace period` starts or ends a grace period;
  `RCU: callback` runs an RCU callback. A lane that cannot step right now is greyed out,
  and the text panel gives the reason (for instance "CPU1 waits for CPU0 to take the
  IPI"); a refused step is explained in a red line.
* **step back** replays everything but the last step; **reset** starts over;
  **load witness** asks the explorer for the shortest interleaving that goes wrong and
  loads it; the **play** control then steps along it (or along a default run).
* The **picture** toggles choose the CPU timeline, the page-table tree (the table being
  freed and each CPU's pointer into it), a table's `struct ptdesc`, or the memory
  waiting for a grace period; the text panel says where each CPU is.

Try it: press `step CPU0` four times (the reader enters `rcu_read_lock()` and reads the
PMD), then `step CPU1` until it is greyed out, then `CPU0 takes IPI`, then `step CPU1`
until it finishes, then `step CPU0`.
"""),
code("""
from ptlab.widgets.stepper import Stepper

Stepper(RACE, Config(kernel="v6.13", batch="fails")).widget
"""),
md("""
Next: lesson `01_page_tables` if page tables are new to you, otherwise `02_ptdesc`.
"""),
]

# =====================================================================================
LESSONS["02_ptdesc"] = [
md("""
# 02 — `struct ptdesc`: one page, several meanings

**Learning goal.** After this lesson you can

* read `struct ptdesc` (the kernel's descriptor of a page-table page, overlaying its
  `struct page`) and name which members share the same bytes;
* explain why the v6.14 patch may queue *any* table it frees on RCU through
  `ptdesc->pt_rcu_head`, although those bytes are also `pt_list` and `pmd_huge_pte`;
* see, in two *counterfactual* scenarios the kernel never runs, what would break if a
  table that still uses those bytes were queued — caught by the model, not asserted.
"""),
code("""
from ptlab import exercises, lessons
from ptlab.config import Config
from ptlab.mm.ptdesc import layout
from ptlab.sim.explore import explore, replay
from ptlab.viz.layout import draw_struct_layout
from ptlab.viz.machine import draw_machine_tables, draw_ptdesc_at
from ptlab.viz.timeline import draw_timeline
from ptlab.widgets.common import show
"""),
md("""
## 1. The layout

64 bytes, like every `struct page`. Members listed with the same offset are
alternatives of a union: only one of them is meaningful at a time, and writing one
overwrites the others.
"""),
check("""
PTDESC = layout("ptdesc", "v6.14")
for f in PTDESC:
    print(f"{f.offset:3}  {f.size:2}  {f.name:22} {f.ctype}")
"""),
code("""
show(draw_struct_layout(PTDESC, title="struct ptdesc (v6.14, x86-64)"))
"""),
md("""
`pt_rcu_head` (bytes 8–23) is what `call_rcu()` writes when a table waits for a grace
period. Its aliases:
"""),
check("""
for f in PTDESC.aliases("pt_rcu_head"):
    print(f"{f.name:20} bytes {f.offset}..{f.end - 1}")
"""),
md("""
Who uses those aliases:

* **`pt_list`** links a **PGD** on the global `pgd_list` (x86 keeps every PGD on it so
  that changes to kernel mappings can be copied into all of them). It stays linked for
  the PGD's whole life.
* **`pmd_huge_pte`** is used on a **PMD table** that maps a transparent huge page: a
  spare PTE table is *deposited* there, so that the huge mapping can later be split
  without allocating.

What `call_rcu()` does to them (lesson 01's demo, on a PGD this time):
"""),
check("""
before, after = exercises.rcu_head_clobber_demo("v6.14", "pgd")
for name in exercises.changed_fields(before, after):
    print(f"{name:18} {before.values[name]:#018x} -> {after.values[name]:#018x}")
"""),
md("""
## 2. Why the patch may use `pt_rcu_head` anyway

The patch queues a table on its own `pt_rcu_head` only when no batch page could be
allocated. That is safe if no table that reaches `tlb_remove_table()` still uses an
alias:

1. **PGDs never get there.** A PGD is freed by `pgd_free()` when the last reference to
   the mm goes away, after `pgd_dtor()` took it off `pgd_list` — never through the
   `mmu_gather` and `tlb_remove_table()`.
2. **Deposits are withdrawn first.** Zapping a huge PMD withdraws and frees its deposited
   PTE table, so by the time a PMD table is freed `pmd_huge_pte` is empty. And
   PT_RECLAIM only frees PTE tables, which have no deposit at all.
3. **It was done before.** Since 2023 khugepaged frees retracted PTE tables with
   `pte_free_defer()`, which also uses the `rcu_head` in the same bytes.

The model can check what would go wrong if (1) or (2) did not hold. Two scenarios do
exactly what the kernel never does.

## 3. Counterfactual 1: a PGD still on `pgd_list`, freed through `tlb_remove_table()`

CPU0 walks `pgd_list` under `pgd_lock` (as `sync_global_pgds()` does); CPU1 hands the
still-linked PGD to `tlb_remove_table()`. With no batch page (v6.14's single-table path)
`call_rcu()` writes into `pt_list`:
"""),
check("""
PGD_CF = "rcu-free-pgd-on-pgd-list"
V614_FAILS = Config(kernel="v6.14", paravirt="native", batch="fails")
r = explore(PGD_CF, V614_FAILS)
print(lessons.outcome_view(r))
"""),
check("""
for kind, w in sorted(r.witnesses.items()):
    print(f"{kind}:\\n  {w.message}\\n")
"""),
md("""
`union-clobber` is reported the moment `call_rcu()` writes over a live `pt_list`;
`list-corruption` when CPU0's walk then follows a `next` pointer that now points at
the RCU callback chain instead of a list node. Replay the witness and look at the PGD's
`struct ptdesc` at its end, after the `call_rcu()` (members in use have a red edge):
"""),
code("""
w = r.witnesses["list-corruption"]
m = replay(PGD_CF, V614_FAILS, w.schedule)
pgd = m.roots["pgd"]
print(lessons.event_log(m))
"""),
code("""
show(draw_ptdesc_at(m, pgd))
"""),
code("""
show(draw_timeline(m))
"""),
md("""
## 4. Counterfactual 2: a PMD table freed while it still holds a deposit

CPU1 tears down a huge PMD but skips `zap_deposited_table()`, then frees the PMD table
through the `mmu_gather`. Compare the batch path (the `rcu_head` lives in the batch page)
with the single-table path (it lives in the PMD table's own `ptdesc`):
"""),
check("""
DEP_CF = "rcu-free-pmd-with-deposit"
for cfg in [Config(kernel="v6.14", batch="ok"), Config(kernel="v6.14", batch="fails")]:
    print(lessons.outcome_view(explore(DEP_CF, cfg)), end="\\n\\n")
"""),
md("""
In both cases the deposited PTE table is **leaked** (nothing frees it any more). On the
single-table path `call_rcu()` additionally writes the callback address over
`pmd_huge_pte` — a later withdraw would treat a function address as a page table.
The page-table tree at the moment of the `call_rcu()`:
"""),
code("""
r2 = explore(DEP_CF, Config(kernel="v6.14", batch="fails"))
m2 = replay(DEP_CF, Config(kernel="v6.14", batch="fails"), r2.witnesses["union-clobber"].schedule)
print(r2.witnesses["union-clobber"].message)
show(draw_machine_tables(m2))
"""),
md("""
## 5. Exercises

**a)** On **v6.13** (the batch page *can* be allocated, Xen PV guest), is the deposit
counterfactual a `union-clobber` *never*, *sometimes* or *always*? Think about where the
`rcu_head` lives on the batch path. Write `"never"`, `"sometimes"` or `"always"`, run the
cell; the model explores every interleaving and explains.
"""),
code("""
my_prediction = None   # "never", "sometimes" or "always"
print(lessons.check_prediction("rcu-free-pmd-with-deposit",
                               Config(kernel="v6.13", paravirt="xen-pv"),
                               my_prediction, kind="union-clobber"))
"""),
md("""
**b)** The PGD counterfactual on **v6.14 with the batch page available**: can CPU0's
`pgd_list` walk still go wrong (`list-corruption`)? The table is not queued on its own
`pt_rcu_head` here — but is it still on the list when it is freed?
"""),
code("""
my_prediction = None   # "never", "sometimes" or "always"
print(lessons.check_prediction("rcu-free-pgd-on-pgd-list", Config(kernel="v6.14"),
                               my_prediction, kind="list-corruption"))
"""),
md("""
**What to remember.** `pt_rcu_head` overlays `pt_list` and `pmd_huge_pte`. The patch may
use it for every table it frees because PGDs are never freed through
`tlb_remove_table()` and deposits are always withdrawn before a PMD table goes. Next,
lesson 03: who is still reading a table when it is freed.
"""),
]

# =====================================================================================
LESSONS["03_readers"] = [
md("""
# 03 — Lockless readers: what an IPI waits for, what a grace period waits for

**Learning goal.** After this lesson you can

* tell the two kinds of lockless page-table walker apart: **GUP-fast** (interrupts
  off) and **`pte_offset_map_lock()`** users (inside `rcu_read_lock()`, interrupts on);
* say what an IPI sent with `wait=1` waits for (every target CPU *taking* the
  interrupt) and what an RCU grace period waits for (every CPU passing a *quiescent
  state*);
* predict which walker each kind of wait protects — and show it with the stepper.
"""),
code("""
from ptlab import lessons
from ptlab.config import Config
from ptlab.sim.machine import run_to_end
from ptlab.sim.scenarios import build
from ptlab.viz.timeline import draw_timeline
from ptlab.widgets.common import show
"""),
md("""
## 1. GUP-fast against an IPI (v6.13, bare metal)

CPU0 runs `gup_fast()`: `local_irq_save()`, then a walk down to the PTE. CPU1 runs
`madvise(MADV_DONTNEED)` with PT_RECLAIM and frees the now-empty PTE table. Let CPU0 get
into the PTE level, then let CPU1 run as far as it can:
"""),
check("""
m = build("reclaim-vs-gup-fast", Config(kernel="v6.13", paravirt="native"))
lessons.step_until(m, "CPU0", "gup_fast_pte_range")   # CPU0 is inside the walk
lessons.step_until(m, "CPU1")                         # CPU1 runs until it must wait
print(lessons.machine_status(m))
"""),
md("""
CPU1 flushes the TLBs with an IPI and waits (`wait=1`) until every CPU has run the
handler. CPU0 has interrupts off, so the IPI stays pending: **CPU1 cannot free the
table while CPU0 walks it.** Only when CPU0 leaves its walk (`local_irq_restore()`) is
the IPI taken:
"""),
check("""
run_to_end(m, prefer=["CPU0", "CPU0:irq"])
print(lessons.machine_status(m))
"""),
code("""
show(draw_timeline(m))
"""),
md("""
## 2. An RCU reader against the same IPI (v6.13)

Now CPU0 runs `mincore`: `pte_offset_map_lock()` enters `rcu_read_lock()`, reads the
PMD and is about to take the PTE table's lock. Interrupts stay on:
"""),
check("""
RACE = "reclaim-vs-pte-offset-map-lock"
m = build(RACE, Config(kernel="v6.13", paravirt="native", batch="fails"))
lessons.step_until(m, "CPU0", "spin_lock")
lessons.step_until(m, "CPU1")
print(lessons.machine_status(m))
"""),
md("""
`CPU0:irq` *can* step: the reader takes the IPI in the middle of its read-side section,
CPU1's wait is over, and it frees the table. CPU0 then locks the freed table's `ptl`:
"""),
check("""
m.step("CPU0:irq")
lessons.step_until(m, "CPU1")
lessons.step_until(m, "CPU0")
print(lessons.machine_status(m))
"""),
code("""
show(draw_timeline(m))
"""),
md("""
## 3. The same reader against a grace period (v6.14)

With the patch the table goes to `call_rcu()`. The grace period that starts now must
wait for every CPU that is not quiescent — CPU0 is inside `rcu_read_lock()`:
"""),
check("""
m = build(RACE, Config(kernel="v6.14", paravirt="native", batch="fails"))
lessons.step_until(m, "CPU0", "spin_lock")
lessons.step_until(m, "CPU1")
m.step("CPU0:irq")
lessons.step_until(m, "CPU1")
m.step("RCU:gp")                 # the grace period starts
print(lessons.machine_status(m))
"""),
md("""
`RCU:gp` is refused until CPU0 leaves its read-side section; the callback that frees
the table can only run after that:
"""),
check("""
run_to_end(m, prefer=["CPU0", "RCU:gp", "RCU:cb"])
print(lessons.machine_status(m))
"""),
code("""
show(draw_timeline(m))
"""),
md("""
## 4. A grace period also waits for interrupts-off code

Since the RCU flavour consolidation (v4.20), a region with interrupts or preemption
disabled counts as an RCU read-side section. So GUP-fast is protected by the grace
period too — which is why v6.14 could drop the IPI in the single-table path:
"""),
check("""
m = build("reclaim-vs-gup-fast", Config(kernel="v6.14", paravirt="xen-pv", batch="fails"))
lessons.step_until(m, "CPU0", "gup_fast_pte_range")
lessons.step_until(m, "CPU1")
m.step("RCU:gp")                 # a grace period starts for the queued table
print(lessons.machine_status(m))
"""),
md("""
(Xen PV flushes remote TLBs with a hypercall, not an IPI, so nothing made CPU1 wait for
CPU0 here — but its table is only queued, and the grace period waits for CPU0.)

## 5. Step it yourself

Pick a scenario and a config, press the lane buttons, and watch the text panel say who
waits for whom. Good things to try: GUP-fast on `v6.13` `native` vs `kvm-pv-flush`;
`pte_offset_map_lock` on `v6.13` vs `v6.14` with the batch page failing.
"""),
code("""
from ptlab.widgets.stepper import Stepper

Stepper("reclaim-vs-gup-fast", Config(kernel="v6.13")).widget
"""),
md("""
## 6. Exercises

**a)** Without preemptible RCU (`preempt_rcu=False`), `rcu_read_lock()` only disables
preemption; interrupts stay on. Is the `pte_offset_map_lock()` reader on **v6.14** run
over (`use-after-free`) *never*, *sometimes* or *always*?
"""),
code("""
my_prediction = None   # "never", "sometimes" or "always"
print(lessons.check_prediction(RACE, Config(kernel="v6.14", batch="fails", preempt_rcu=False),
                               my_prediction))
"""),
md("""
**b)** A **KVM guest with PV TLB flush** on **v6.13**, batch page available: the
hypervisor flushes other vCPUs without an IPI. Is GUP-fast run over?
"""),
code("""
my_prediction = None   # "never", "sometimes" or "always"
print(lessons.check_prediction("reclaim-vs-gup-fast", Config(kernel="v6.13", paravirt="kvm-pv-flush"),
                               my_prediction))
"""),
md("""
**c)** Build a schedule for **v6.14** in which the reader is run over anyway: write lanes
such as `"CPU0*4 CPU1*20 CPU0:irq RCU:gp"` (`*n` repeats a lane). The check replays your
schedule; a step the machine refuses ends the replay, with the reason.
"""),
code("""
my_schedule = None   # e.g. "CPU0*4 CPU1*20 CPU0:irq CPU1*5 RCU:gp RCU:gp"
print(lessons.check_schedule(RACE, Config(kernel="v6.14", batch="fails"), my_schedule,
                             "use-after-free"))
"""),
md("""
**What to remember.** An IPI proves only that every CPU had interrupts on at some moment
after it was sent; that protects interrupts-off walkers (GUP-fast) and nothing else. A
grace period waits for every reader that was inside `rcu_read_lock()` — or had
interrupts or preemption off — when it started. Next, lesson 04: which path each kernel
config takes to free a table.
"""),
]

# =====================================================================================
LESSONS["04_freeing_paths"] = [
md("""
# 04 — Freeing paths: the call chain in each configuration

**Learning goal.** After this lesson you can

* follow a PTE table from `free_pte()` to the moment its page is freed, in each kernel
  (v6.13, v6.14, v6.15) and (para)virtual environment;
* tell the **batch** path (tables collected in a `mmu_table_batch`, one `call_rcu()` per
  batch) from the **single-table** path (taken when the batch page cannot be allocated);
* name the hook each environment installs in `pv_ops.mmu.tlb_remove_table`, and say what
  the v6.14 patch and v6.15 changed about it.

Each chain below is read off the call stacks the model recorded while running the free,
not typed in.
"""),
code("""
from ptlab import lessons
from ptlab.config import Config
from ptlab.sim.machine import run_to_end
from ptlab.sim.paths import free_path
from ptlab.sim.scenarios import build
from ptlab.viz.callchain import draw_free_path
from ptlab.viz.timeline import draw_pending_memory
from ptlab.widgets.common import show
"""),
md("""
## 1. v6.13 on bare metal: a table is freed like a data page

PT_RECLAIM is switched on here as a *what if* (it arrived in v6.14), so that the same
`free_pte()` caller can be compared across kernels.
"""),
check("""
print(free_path(Config(kernel="v6.13", paravirt="native"), "pte").render())
"""),
code("""
show(draw_free_path(Config(kernel="v6.13", paravirt="native"), "pte"))
"""),
md("""
## 2. v6.13 in a Xen PV guest: "semi RCU"

Paravirtual guests install `tlb_remove_table` as the hook, so the table goes into a
batch that is freed after a grace period — unless the batch page cannot be allocated:
"""),
check("""
for batch in ["ok", "fails"]:
    p = free_path(Config(kernel="v6.13", paravirt="xen-pv", batch=batch), "pte")
    print(f"batch page {batch:5}: freed {p.freed_by}\\n{'':17}waited for {p.waited_for}")
"""),
code("""
show(draw_free_path(Config(kernel="v6.13", paravirt="xen-pv", batch="fails"), "pte"))
"""),
md("""
## 3. v6.14: every x86 path goes to `tlb_remove_table()` (with PT_RECLAIM)

The native hook now forwards to `tlb_remove_table()`, and the single-table path queues
the table on its own `pt_rcu_head` instead of sending an IPI and freeing it:
"""),
check("""
print(free_path(Config(kernel="v6.14", paravirt="native", batch="fails"), "pte").render())
"""),
code("""
show(draw_free_path(Config(kernel="v6.14", paravirt="native", batch="fails"), "pte"))
"""),
md("""
## 4. v6.15: no hook at all

`___pte_free_tlb()` calls `tlb_remove_table()` directly and RCU table freeing is always
on, even without PARAVIRT and without PT_RECLAIM:
"""),
check("""
print(free_path(Config(kernel="v6.15", paravirt="none", pt_reclaim=False), "pte").render())
"""),
md("""
## 5. The hook per environment, and what it leads to

The hook each environment installs (PT_RECLAIM on):
"""),
check("""
print(lessons.hook_table())
"""),
md("""
And how the table ends up freed — with the batch page, without it, and with PT_RECLAIM
off (v6.14 changes nothing then; v6.15 does):
"""),
check("""
print(lessons.free_way_table(batch="ok"), end="\\n\\n")
print(lessons.free_way_table(batch="fails"), end="\\n\\n")
print(lessons.free_way_table(pt_reclaim=False))
"""),
md("""
PMD and PUD tables share the same hook and batch as PTE tables; only the first
function differs:
"""),
check("""
print(free_path(Config(kernel="v6.14", paravirt="native"), "pmd").render())
"""),
md("""
## 6. Batch vs single table: how much memory waits, and for how long

`munmap` of a 6 MiB mapping frees three PTE tables, a PMD and a PUD table through one
`mmu_gather`. With the batch page they wait for one grace period together; without it
each table is queued on its own. The picture shows the bytes waiting for a grace period
at each step (the CPUs run first, the RCU machinery last):
"""),
code("""
runs = [run_to_end(build("munmap", Config(kernel="v6.14", batch=b)),
                   prefer=["CPU0", "CPU0:irq", "CPU1:irq", "RCU:gp", "RCU:cb"])
        for b in ["ok", "fails"]]
for run in runs:
    print(run.config.label(), "— call_rcu() calls:",
          sum(1 for e in run.events if e.op.startswith("call_rcu(")))
show(draw_pending_memory(runs))
"""),
md("""
## 7. Exercises

Predict how the table is freed; the check runs the free and shows the chain. The
choices are:
"""),
check("""
for way, text in lessons.FREE_WAYS.items():
    print(f"{way:11} {text}")
"""),
md("""
**a)** v6.14, KVM guest *without* PV TLB flush, PT_RECLAIM **off**, batch page not
available.
"""),
code("""
my_prediction = None   # one of the four names above
print(lessons.check_free_way(Config(kernel="v6.14", paravirt="kvm", pt_reclaim=False, batch="fails"),
                             my_prediction))
"""),
md("""
**b)** v6.13, Hyper-V guest (PV flush), batch page not available, freeing a **PMD**
table.
"""),
code("""
my_prediction = None
print(lessons.check_free_way(Config(kernel="v6.13", paravirt="hyperv", batch="fails"),
                             my_prediction, level="pmd"))
"""),
md("""
**What to remember.** Before v6.14 the way a table was freed depended on the
environment (bare metal: like a data page after the flush IPIs; PV: RCU batch) and on
luck (no batch page: IPI + immediate free). v6.14 with PT_RECLAIM routes everything to
`tlb_remove_table()` and waits for a grace period on both paths; v6.15 makes that
unconditional. Lesson 05 shows the race those older paths allowed.
"""),
]

# =====================================================================================
LESSONS["05_the_race"] = [
md("""
# 05 — The race: a use-after-free on v6.13, step by step, and the same steps on v6.14

**Learning goal.** After this lesson you can

* replay the interleaving in which PT_RECLAIM on the pre-patch freeing path frees a PTE
  table under a `pte_offset_map_lock()` reader, and point at the step where it goes
  wrong;
* explain why the same steps cannot end that way on v6.14;
* read the explorer's outcome table: how many interleavings, which outcomes, the
  shortest witness.
"""),
code("""
from ptlab import lessons
from ptlab.config import Config
from ptlab.sim.explore import explore, replay
from ptlab.viz.machine import draw_machine_tables, draw_ptdesc_at
from ptlab.viz.timeline import draw_timeline
from ptlab.widgets.common import show
"""),
md("""
## 1. The explorer's verdict

CPU0 runs `mincore` (`pte_offset_map_lock()` on the PTE table T); CPU1 runs
`madvise(MADV_DONTNEED)` over T's whole 2 MiB, so PT_RECLAIM frees T. The machine is
bare metal (`native`) and the batch page cannot be allocated (on bare metal v6.13 does
not even use the table batch: lesson 04). The explorer tries every interleaving:
"""),
check("""
RACE = "reclaim-vs-pte-offset-map-lock"
V613 = Config(kernel="v6.13", paravirt="native", batch="fails")
r13 = explore(RACE, V613)
print(lessons.outcome_view(r13))
"""),
md("""
Most interleavings are safe (the reader is done before the table goes, or starts after
the PMD was cleared); a few are not. The shortest one:
"""),
check("""
w = r13.witnesses["use-after-free"]
print(w.message)
"""),
md("""
## 2. The witness, step by step
"""),
check("""
m = replay(RACE, V613, w.schedule)
print(lessons.event_log(m))
"""),
md("""
Read it in four acts:

1. CPU0 enters `rcu_read_lock()`, reads the PMD entry pointing to T, and is about to
   `spin_lock()` T's page-table lock (it lives in T's `struct ptdesc`).
2. CPU1 zaps T's PTEs under that lock, clears the PMD entry (`try_get_and_clear_pmd`),
   and hands T to the freeing path.
3. CPU1 flushes the TLBs with an IPI and waits; CPU0 has interrupts on and takes it.
   Nothing waits for CPU0's read-side section. T is freed.
4. CPU0 takes its next step: `spin_lock()` on T's `ptl` — memory that was freed.
"""),
code("""
show(draw_timeline(m))
"""),
code("""
T = m.reports()[0].pfn   # the PTE table the reader touched after it was freed
show(draw_ptdesc_at(m, T))
show(draw_machine_tables(m))
"""),
md("""
Step through it yourself: the stepper below has this witness loaded (its **load
witness** button does the same); press play, or step the lanes by hand.
"""),
code("""
from ptlab.widgets.stepper import Stepper

stepper = Stepper(RACE, V613)
stepper.load_witness()
stepper.widget
"""),
md("""
## 3. The same steps on v6.14

Replay the very same list of lanes with the patched kernel. The paths differ (the table
goes to `call_rcu()`), so at some point the schedule asks for a step the machine does
not allow — and the reason says who waits for whom:
"""),
check("""
V614 = V613.replace(kernel="v6.14")
part = lessons.replay_as_far_as(RACE, V614, w.schedule)
print(part.describe())
print(lessons.machine_status(part.machine))
"""),
md("""
v6.14 sends the TLB-flush IPI earlier (before queueing the table), so CPU1 has to wait
for CPU0 sooner. Let the adversary continue anyway: CPU0 takes the IPI inside its
read-side section, CPU1 runs to its end, CPU0 carries on.
"""),
check("""
m14 = part.machine
m14.step("CPU0:irq")
lessons.step_until(m14, "CPU1")
lessons.step_until(m14, "CPU0")
print(lessons.machine_status(m14))
"""),
md("""
No report: CPU1 only *queued* T for a grace period, and the grace period could not have
ended while CPU0 was inside `rcu_read_lock()`. And over *all* interleavings:
"""),
check("""
print(lessons.outcome_view(explore(RACE, V614)))
"""),
md("""
## 4. Which pre-patch configurations had the bug?

On bare metal the table was freed after the flush IPIs even *with* a batch page; PV
guests were safe on the batch path and hit on the single-table path:
"""),
check("""
for env in ["none", "native", "xen-pv", "kvm-pv-flush"]:
    for batch in ["ok", "fails"]:
        r = explore(RACE, Config(kernel="v6.13", paravirt=env, batch=batch))
        print(f"v6.13 {env:13} batch {batch:5}: use-after-free {r.verdict('use-after-free')}")
"""),
md("""
## 5. Exercises

**a)** In a **Xen PV** guest on v6.13 the table is freed by `tlb_remove_table_sync_one()`
(an IPI, then `__tlb_remove_table()`) when there is no batch page. Build a schedule that
produces the use-after-free there. Hint: use `lessons.step_until(m, lane, function)` on a
machine from `ptlab.sim.scenarios.build` to find how many steps each act takes, or
start from the witness above and adjust.
"""),
code("""
my_schedule = None   # e.g. "CPU0*4 CPU1*25 CPU0:irq CPU1*4 CPU0"
print(lessons.check_schedule(RACE, Config(kernel="v6.13", paravirt="xen-pv", batch="fails"),
                             my_schedule, "use-after-free"))
"""),
md("""
**b)** v6.13 on bare metal **with** the batch page: is the reader run over *never*,
*sometimes* or *always*?
"""),
code("""
my_prediction = None   # "never", "sometimes" or "always"
print(lessons.check_prediction(RACE, Config(kernel="v6.13", paravirt="native", batch="ok"),
                               my_prediction))
"""),
md("""
**What to remember.** The bug needs three things: a table freed while the process runs
(PT_RECLAIM), a reader that relies on `rcu_read_lock()` only, and a freeing path that
waits for IPIs instead of a grace period. v6.14 removes the third. Lesson 06 checks
every combination at once and lets you write your own scenario.
"""),
]

# =====================================================================================
LESSONS["06_explore"] = [
md("""
# 06 — Explore: the safety matrix, and your own scenario

**Learning goal.** After this lesson you can

* read the safety matrix: every configuration × every scenario, each cell an exhaustive
  exploration of all interleavings;
* write your own scenario from ptlab's kernel paths (readers, `MADV_DONTNEED`,
  khugepaged, GUP-fast on chosen CPUs) and explore it under any configuration;
* find a scenario the patch fixes — checked by the model.
"""),
code("""
from ptlab import lessons
from ptlab.config import Config
from ptlab.sim.matrix import safety_matrix
from ptlab.viz.matrix import draw_safety_matrix
from ptlab.viz.timeline import draw_timeline
from ptlab.widgets.common import show
"""),
md("""
## 1. The matrix (a subset that runs in a few seconds)

Rows: the real v6.13 (no PT_RECLAIM), then each kernel with PT_RECLAIM on, bare metal
(`native`) and a Xen PV guest, with and without the batch page. Columns: the two-CPU
races. The counter below shows the progress:
"""),
code("""
mat = safety_matrix(lessons.lesson_configs(), lessons.lesson_scenarios(),
                    progress=lessons.TextProgress())
"""),
check("""
print(lessons.matrix_view(mat))
"""),
code("""
show(draw_safety_matrix(mat))
"""),
md("""
`UAF:s` means a use-after-free in *some* interleavings. Only the `pte_offset_map_lock()`
reader is ever hit, only before the patch, and only on paths that free without a grace
period. GUP-fast and khugepaged's `pte_free_defer()` were always safe.

**The whole matrix** (every environment, three-CPU and `munmap` scenarios, the
counterfactuals) takes much longer — minutes, not seconds. Set `RUN_FULL_MATRIX = True`
to compute it anyway:
"""),
code("""
RUN_FULL_MATRIX = False
if RUN_FULL_MATRIX:
    full = safety_matrix(progress=lessons.TextProgress())
    print(lessons.matrix_view(full))
    show(draw_safety_matrix(full))
"""),
md("""
## 2. Your own scenario

A scenario is a kernel path (or a list of them, run one after the other) per CPU, over
an 8 MiB anonymous mapping whose first two pages are faulted in. The paths you can use
(offsets and lengths are relative to the mapping; `2M` = 2 MiB):
"""),
check("""
print(lessons.kernel_paths())
"""),
md("""
An example: a lockless `pte_offset_map()` reader (no PTE lock at all) on CPU0 against
`MADV_DONTNEED` of the first 2 MiB on CPU1.
"""),
check("""
mine = lessons.custom_scenario({0: "pte_offset_map 0x1000", 1: "madvise_dontneed 0 2M"},
                               name="lockless-vs-dontneed")
print(mine.describe(), end="\\n\\n")
results = {k: mine.explore(Config(kernel=k, batch="fails")) for k in ["v6.13", "v6.14"]}
for r in results.values():
    print(lessons.outcome_view(r), end="\\n\\n")
"""),
code("""
w = results["v6.13"].witnesses["use-after-free"]
m = mine.replay(Config(kernel="v6.13", batch="fails"), w.schedule)
show(draw_timeline(m))
"""),
md("""
## 3. Exercises

**a)** Write a scenario **the patch fixes**: a use-after-free in some interleaving on
v6.13 with PT_RECLAIM (bare metal, no batch page), none on v6.14. Use at least one path
that is not in the example above (keep to two or three CPUs and a few paths: every
extra step multiplies the interleavings).
"""),
code("""
my_threads = {0: "gup_fast 0x1000", 1: "madvise_dontneed 0 2M"}   # change me
print(lessons.check_contrast(lessons.custom_scenario(my_threads),
                             bad=Config(kernel="v6.13", batch="fails"),
                             good=Config(kernel="v6.14", batch="fails")))
"""),
md("""
**b)** khugepaged retracts a PTE table with `pte_free_defer()` (RCU since 2023). In this
scenario CPU1 first empties the table (`MADV_DONTNEED` of its only page, too small for
PT_RECLAIM), then retracts it; CPU0 reads the table with `pte_offset_map()`. On
**v6.13** bare metal, is the reader run over *never*, *sometimes* or *always*?
"""),
code("""
my_prediction = None   # "never", "sometimes" or "always"
retract = lessons.custom_scenario({0: "pte_offset_map 0x1000",
                                   1: ["madvise_dontneed 0 4k", "retract 0"]},
                                  touched=(0,), name="retract-vs-reader")
print(lessons.check_prediction(retract, Config(kernel="v6.13", paravirt="native"), my_prediction))
"""),
md("""
**What to remember.** Every "safe" in these tables means: *all* interleavings of those
kernel paths were tried and no freed frame was touched. The v6.14 patch turns every
`UAF` cell of a `pte_offset_map*()` reader into `safe` by making the free wait for a
grace period instead of an IPI.
"""),
]


def build_notebook(name: str, cells: list[nbformat.NotebookNode]) -> None:
    nb = nbformat.v4.new_notebook()
    nb.metadata = {
        "kernelspec": {"display_name": "Python 3 (ipykernel)", "language": "python",
                       "name": "python3"},
        "language_info": {"name": "python"},
    }
    nb.cells = cells
    t0 = time.time()
    client = NotebookClient(nb, timeout=300, kernel_name="python3", allow_errors=ALLOW,
                            resources={"metadata": {"path": str(NB_DIR)}})
    client.execute()
    for c in nb.cells:
        for o in c.get("outputs", []):
            if o.get("output_type") == "error":
                print(f"  ERROR in {name}: {o['ename']}: {o['evalue'][:300]}")
    n_code = 0
    for i, c in enumerate(nb.cells):
        if c.cell_type == "code":
            n_code += 1
            if not c.source.startswith(CHECK.strip()):
                c.outputs = []
                c.execution_count = None
            else:
                c.execution_count = n_code
                for o in c.outputs:
                    if "execution_count" in o:
                        o["execution_count"] = n_code
            c.metadata = {}
        else:
            c.metadata = {}
        c["id"] = f"cell-{i:02d}"
    nb.nbformat, nb.nbformat_minor = 4, 5
    nbformat.write(nb, NB_DIR / f"{name}.ipynb")
    print(f"{name}: {time.time() - t0:.1f} s")


if __name__ == "__main__":
    wanted = sys.argv[1:] or list(LESSONS)
    for n in wanted:
        build_notebook(n, LESSONS[n])
