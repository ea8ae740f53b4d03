"""VmPTE experiments: ptlab predicts, the running kernel answers.

An experiment is a list of operations on ONE private anonymous mapping of the current
process (byte offsets are relative to the mapping's start)::

    {"op": "mmap", "size": N, "thp": false}             # first entry, exactly once
    {"op": "touch", "offset": o, "length": l, "stride": s}
    {"op": "madvise", "advice": "dontneed" | "free", "offset": o, "length": l}
    {"op": "munmap", "offset": o, "length": l}

``mmap`` may also say ``"placement": p`` — the mapping then starts p bytes (a page
multiple) after a 1 GiB boundary, so that, e.g., ``4096`` makes every 2 MiB span of
the mapping straddle two PTE tables.  Sizes and offsets are integers or strings such as
``"256M"``, ``"2M"``, ``"0x1000"``.

The runner (:func:`run_experiment`) performs the operations with real system calls
(ctypes on libc) and reads ``VmPTE`` from ``/proc/self/status`` around each one; the
prediction (:func:`predict`) runs the same operations through ptlab's address-space model
(:class:`ptlab.mm.memory.Mm`) at the *same* virtual addresses.

Where the mapping goes, and why the prediction can be exact: VmPTE counts the page
tables of the whole process, so the experiment is placed in a 1 GiB-aligned region that
no other VMA comes near, inside the 512 GiB span of the stack (see
:func:`ptlab.live.linux.find_free_region`).  The experiment then owns that region's PMD
table and all its PTE tables, while the PUD table above exists already (the stack has been
touched) and outlives it.  The model is given the same picture: the VMAs of that 512 GiB
span from ``/proc/self/maps`` with one page of the stack touched, then the experiment.

>>> ops = parse_ops([{"op": "mmap", "size": "4M"}, {"op": "touch", "offset": 0,
...                   "length": "4M"}])
>>> [step.predicted_kib for step in predict(ops, 0x7FC000000000)]
[0, 12]
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import resources
from typing import Literal, TypeAlias

from ptlab.live import linux
from ptlab.live.kernel import KernelInfo, detect_kernel, running_kernel

PAGE_SIZE = linux.PAGE_SIZE
PMD_SIZE = linux.PMD_SIZE
PUD_SIZE = linux.PUD_SIZE
MAX_SIZE = PUD_SIZE  # the experiment must fit in the 1 GiB region it owns
OPS = ("mmap", "touch", "madvise", "munmap")
ADVICE = ("dontneed", "free")
DEMO_FILE = "demo_experiment.json"

#: Where predictions-only mode pretends the kernel put things: a 1 GiB-aligned region
#: and a stack in the same 512 GiB span (like a typical x86-64 process).
DEFAULT_REGION = 0x7FC0_0000_0000
DEFAULT_STACK = linux.Vma(0x7FFF_FFFD_E000, 0x7FFF_FFFF_F000, "rw-p", "[stack]")


class ExperimentError(ValueError):
    """A bad experiment description; the message names the entry and the field."""


@dataclass(frozen=True)
class MmapOp:
    size: int
    thp: bool = False
    placement: int = 0
    op: Literal["mmap"] = "mmap"

    def describe(self) -> str:
        where = f" at +0x{self.placement:x} from a 1 GiB boundary" if self.placement else ""
        return f"mmap {_human(self.size)} {'THP' if self.thp else 'no THP'}{where}"


@dataclass(frozen=True)
class TouchOp:
    offset: int
    length: int
    stride: int = PAGE_SIZE
    op: Literal["touch"] = "touch"

    def describe(self) -> str:
        every = "every page" if self.stride == PAGE_SIZE else f"every {_human(self.stride)}"
        return f"touch {_range(self.offset, self.length)} {every}"


@dataclass(frozen=True)
class MadviseOp:
    advice: Literal["dontneed", "free"]
    offset: int
    length: int
    op: Literal["madvise"] = "madvise"

    def describe(self) -> str:
        return f"MADV_{self.advice.upper()} {_range(self.offset, self.length)}"


@dataclass(frozen=True)
class MunmapOp:
    offset: int
    length: int
    op: Literal["munmap"] = "munmap"

    def describe(self) -> str:
        return f"munmap {_range(self.offset, self.length)}"


Op: TypeAlias = MmapOp | TouchOp | MadviseOp | MunmapOp


def _human(n: int) -> str:
    for unit, size in (("G", 1 << 30), ("M", 1 << 20), ("K", 1 << 10)):
        if n >= size and n % size == 0:
            return f"{n // size} {unit}iB"
    return f"{n} B"


def _range(offset: int, length: int) -> str:
    return f"[+0x{offset:x}, +0x{offset + length:x})"


def op_to_json(op: Op) -> dict[str, object]:
    if isinstance(op, MmapOp):
        d: dict[str, object] = {"op": "mmap", "size": op.size, "thp": op.thp}
        if op.placement:
            d["placement"] = op.placement
        return d
    if isinstance(op, TouchOp):
        return {"op": "touch", "offset": op.offset, "length": op.length, "stride": op.stride}
    if isinstance(op, MadviseOp):
        return {"op": "madvise", "advice": op.advice, "offset": op.offset, "length": op.length}
    return {"op": "munmap", "offset": op.offset, "length": op.length}


# -- validation ---------------------------------------------------------------------------
_FIELDS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    # op: (required, optional)
    "mmap": (("size",), ("thp", "placement")),
    "touch": (("offset", "length"), ("stride",)),
    "madvise": (("advice", "offset", "length"), ()),
    "munmap": (("offset", "length"), ()),
}
_NUMBER = re.compile(r"^\s*(0x[0-9a-f_]+|\d[\d_]*)\s*([kmg])?(?:i?b)?\s*$", re.I)
_UNITS = {None: 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}


def _where(index: int, entry: object) -> str:
    name = entry.get("op") if isinstance(entry, dict) else None
    return f"entry {index}" + (f" ({name})" if isinstance(name, str) else "")


def _int(value: object, where: str, key: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ExperimentError(
            f"{where}: field {key!r} is {value!r}; expected a whole number of bytes "
            "(e.g. 4096, \"0x1000\", \"2M\")"
        )
    if isinstance(value, int):
        n = value
    else:
        m = _NUMBER.match(value)
        if m is None:
            raise ExperimentError(
                f"{where}: field {key!r} is {value!r}; expected a number of bytes such as "
                "4096, \"0x1000\", \"2M\" or \"1G\""
            )
        n = int(m.group(1).replace("_", ""), 0) * _UNITS[(m.group(2) or "").lower() or None]
    if n < 0:
        raise ExperimentError(f"{where}: field {key!r} is {n}; it must not be negative")
    return n


def _intervals_cover(mapped: list[tuple[int, int]], lo: int, hi: int) -> bool:
    for a, b in mapped:
        if a <= lo < b:
            if hi <= b:
                return True
            lo = b
    return False


def _remove(mapped: list[tuple[int, int]], lo: int, hi: int) -> list[tuple[int, int]]:
    out = []
    for a, b in mapped:
        if b <= lo or hi <= a:
            out.append((a, b))
            continue
        if a < lo:
            out.append((a, lo))
        if hi < b:
            out.append((hi, b))
    return out


def _page_up(n: int) -> int:
    return (n + PAGE_SIZE - 1) // PAGE_SIZE * PAGE_SIZE


def parse_ops(data: object) -> list[Op]:
    """Validate an experiment (a list of op dicts, or ``{"ops": [...]}``) into ops.

    Errors raise one :class:`ExperimentError` naming the entry (index and op), the field
    and what is allowed.  Besides types, it checks what the kernel would reject or what
    would crash the process: madvise/munmap offsets must be page-aligned (the kernel
    says EINVAL otherwise; lengths are rounded up to whole pages as the kernel does),
    touch and madvise ranges must lie in the still-mapped part of the mapping, munmap
    ranges inside the original mapping.
    """
    if isinstance(data, dict):
        if "ops" not in data:
            raise ExperimentError("experiment object has no 'ops' list")
        data = data["ops"]
    if not isinstance(data, list) or not data:
        raise ExperimentError("an experiment is a non-empty JSON list of operations")
    ops: list[Op] = []
    size = 0
    mapped: list[tuple[int, int]] = []
    for index, entry in enumerate(data):
        where = _where(index, entry)
        if not isinstance(entry, dict):
            raise ExperimentError(f"{where}: {entry!r} is not an object like {{\"op\": ...}}")
        kind = entry.get("op")
        if kind not in _FIELDS:
            raise ExperimentError(
                f"{where}: unknown op {kind!r}; allowed ops: {', '.join(OPS)}"
            )
        required, optional = _FIELDS[kind]
        for key in entry:
            if key != "op" and key not in required + optional:
                raise ExperimentError(
                    f"{where}: unknown field {key!r}; {kind} takes "
                    f"{', '.join(required + optional)}"
                )
        for key in required:
            if key not in entry:
                raise ExperimentError(f"{where}: missing field {key!r}")
        if (kind == "mmap") != (index == 0):
            raise ExperimentError(
                f"{where}: the first entry, and only the first, must be an mmap "
                "(an experiment works on exactly one mapping)"
            )
        if kind == "mmap":
            size = _int(entry["size"], where, "size")
            placement = _int(entry.get("placement", 0), where, "placement")
            thp = entry.get("thp", False)
            if not isinstance(thp, bool):
                raise ExperimentError(f"{where}: field 'thp' is {thp!r}; allowed: true, false")
            if size == 0 or size % PAGE_SIZE:
                raise ExperimentError(
                    f"{where}: field 'size' is {size}; it must be a positive multiple of "
                    f"{PAGE_SIZE}"
                )
            if placement % PAGE_SIZE:
                raise ExperimentError(
                    f"{where}: field 'placement' is {placement}; it must be a multiple of "
                    f"{PAGE_SIZE}"
                )
            if placement + size > MAX_SIZE:
                raise ExperimentError(
                    f"{where}: placement + size = {placement + size} bytes; the mapping "
                    f"must fit in the 1 GiB region ({MAX_SIZE} bytes) the experiment owns"
                )
            ops.append(MmapOp(size, thp, placement))
            mapped = [(0, size)]
            continue
        offset = _int(entry["offset"], where, "offset")
        length = _int(entry["length"], where, "length")
        if length == 0:
            raise ExperimentError(f"{where}: field 'length' is 0; it must be positive")
        end = offset + length
        if end > size:
            raise ExperimentError(
                f"{where}: range {_range(offset, length)} is outside the mapping "
                f"[+0x0, +0x{size:x})"
            )
        if kind in ("madvise", "munmap"):
            if offset % PAGE_SIZE:
                raise ExperimentError(
                    f"{where}: field 'offset' is {offset}; {kind} needs a multiple of "
                    f"{PAGE_SIZE} (the kernel returns EINVAL otherwise)"
                )
            end = min(offset + _page_up(length), size)
        if kind == "touch":
            stride = _int(entry.get("stride", PAGE_SIZE), where, "stride")
            if stride == 0:
                raise ExperimentError(f"{where}: field 'stride' is 0; it must be positive")
            if not _intervals_cover(mapped, offset, end):
                raise ExperimentError(
                    f"{where}: range {_range(offset, length)} is not all mapped any more "
                    "(touching it would crash the process with SIGSEGV)"
                )
            ops.append(TouchOp(offset, length, stride))
        elif kind == "madvise":
            advice = entry["advice"]
            if advice not in ADVICE:
                raise ExperimentError(
                    f"{where}: field 'advice' is {advice!r}; allowed: {', '.join(ADVICE)}"
                )
            if not _intervals_cover(mapped, offset, end):
                raise ExperimentError(
                    f"{where}: range {_range(offset, length)} is not all mapped any more "
                    "(the kernel would return ENOMEM)"
                )
            ops.append(MadviseOp(advice, offset, end - offset))
        else:
            ops.append(MunmapOp(offset, end - offset))
            mapped = _remove(mapped, offset, end)
    return ops


def load_ops(path: str) -> list[Op]:
    """Read and validate an experiment JSON file (errors name the file)."""
    try:
        with open(path) as fh:
            data = json.load(fh)
    except OSError as exc:
        raise ExperimentError(f"cannot read {path}: {exc.strerror}") from None
    except json.JSONDecodeError as exc:
        raise ExperimentError(
            f"{path} is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from None
    return parse_ops(data)


def demo_experiment() -> dict[str, object]:
    """The lesson's default experiment (package data ``demo_experiment.json``)."""
    text = resources.files("ptlab.live").joinpath(DEMO_FILE).read_text()
    data: dict[str, object] = json.loads(text)
    return data


def demo_ops() -> list[Op]:
    return parse_ops(demo_experiment())


# -- results ----------------------------------------------------------------------------
@dataclass(frozen=True)
class Step:
    """One operation: predicted and (when live) measured VmPTE change in KiB."""

    index: int
    op: Op
    predicted_kib: int
    measured_kib: int | None = None
    vmpte_after_kib: int | None = None
    predicted_huge_kib: int = 0
    measured_huge_kib: int | None = None

    @property
    def match(self) -> bool | None:
        """Prediction equals measurement (None when nothing was measured)."""
        return None if self.measured_kib is None else self.measured_kib == self.predicted_kib

    def to_json(self) -> dict[str, object]:
        return {
            "index": self.index,
            "op": op_to_json(self.op),
            "description": self.op.describe(),
            "predicted_kib": self.predicted_kib,
            "measured_kib": self.measured_kib,
            "match": self.match,
            "vmpte_after_kib": self.vmpte_after_kib,
            "predicted_huge_kib": self.predicted_huge_kib,
            "measured_huge_kib": self.measured_huge_kib,
        }


@dataclass(frozen=True)
class ExperimentResult:
    steps: tuple[Step, ...]
    kernel: KernelInfo
    address: int  # where the mapping was (or, predictions only, would be) placed
    live: bool
    neighbours: tuple[linux.Vma, ...] = field(default_factory=tuple)

    @property
    def all_match(self) -> bool:
        """Every measured step equals its prediction (vacuously true if not live)."""
        return all(s.match is not False for s in self.steps)

    def mismatches(self) -> list[Step]:
        return [s for s in self.steps if s.match is False]

    def to_json(self) -> dict[str, object]:
        return {
            "kernel": self.kernel.to_json(),
            "live": self.live,
            "address": f"0x{self.address:x}",
            "all_match": self.all_match,
            "steps": [s.to_json() for s in self.steps],
        }

    def table(self) -> str:
        """Predicted vs measured per step, as aligned text."""
        head = f"{'#':>2}  {'operation':<46} {'predicted':>10} {'measured':>10}  match"
        lines = [head, "-" * len(head)]
        for s in self.steps:
            measured = "-" if s.measured_kib is None else f"{s.measured_kib:+d} kB"
            mark = {True: "yes", False: "NO", None: "-"}[s.match]
            lines.append(
                f"{s.index:>2}  {s.op.describe():<46} {s.predicted_kib:+7d} kB "
                f"{measured:>10}  {mark}"
            )
        return "\n".join(lines)


# -- prediction through ptlab's model ----------------------------------------------------
def _thp_effective(op: MmapOp, kernel: KernelInfo) -> bool:
    """MADV_HUGEPAGE gets huge PMDs in modes "always" and "madvise"; MADV_NOHUGEPAGE never."""
    return op.thp and kernel.thp_mode in ("always", "madvise")


def _model_huge_kib(mm: object, start: int, end: int) -> int:
    """KiB of [start, end) the model maps with huge PMDs."""
    from ptlab.mm.memory import Mm

    assert isinstance(mm, Mm)
    huge = 0
    addr = (start + PMD_SIZE - 1) // PMD_SIZE * PMD_SIZE
    while addr + PMD_SIZE <= end:
        if mm.walk(addr).state == "huge":
            huge += PMD_SIZE >> 10
        addr += PMD_SIZE
    return huge


def predict(
    ops: Sequence[Op],
    address: int,
    *,
    kernel: KernelInfo | None = None,
    neighbours: Sequence[linux.Vma] = (DEFAULT_STACK,),
) -> list[Step]:
    """Per-op VmPTE deltas (KiB) that ptlab's :class:`~ptlab.mm.memory.Mm` predicts for
    ``ops`` with the mapping at ``address``.

    ``neighbours`` are the other VMAs of the experiment's 512 GiB span (from
    /proc/self/maps); the first ``[stack]`` among them gets one page touched, because in
    the real process the stack has been used and so its PUD table exists.
    """
    from ptlab.mm.memory import Mm

    if kernel is None:
        kernel = detect_kernel(probe=False, live=False)
    if not ops or not isinstance(ops[0], MmapOp):
        raise ExperimentError("entry 0: an experiment starts with an mmap")
    mm = Mm(pt_reclaim=kernel.pt_reclaim, kernel=kernel.model_kernel)
    for v in neighbours:
        mm.mmap(v.start, v.end - v.start)
        if v.name == "[stack]":
            mm.touch(v.end - PAGE_SIZE)
    first = ops[0]
    steps: list[Step] = []
    for index, op in enumerate(ops):
        before = mm.vm_pte_kib
        if isinstance(op, MmapOp):
            mm.mmap(address, op.size, thp=_thp_effective(op, kernel))
        elif isinstance(op, TouchOp):
            start, end = address + op.offset, address + op.offset + op.length
            if op.stride < PAGE_SIZE:
                # Writes closer than a page apart fault in every page from the first
                # address's page to the last address's: the same as one write per page.
                last = start + (op.length - 1) // op.stride * op.stride
                start, end = start & ~(PAGE_SIZE - 1), last + 1
            mm.touch_range(start, end, stride=max(op.stride, PAGE_SIZE))
        elif isinstance(op, MadviseOp):
            mm.madvise(address + op.offset, op.length, op.advice)
        else:
            mm.munmap(address + op.offset, op.length)
        huge = _model_huge_kib(mm, address, address + first.size)
        steps.append(Step(index, op, mm.vm_pte_kib - before, predicted_huge_kib=huge))
    return steps


# -- exercise: the learner predicts, the model checks ----------------------------------------
_HINTS = {
    "mmap": "mmap only creates a VMA; page tables appear at the first fault.",
    "touch": "each 2 MiB span touched for the first time needs a PTE table (4 KiB); the "
             "first fault in an empty 1 GiB region also needs a PMD table.",
    "dontneed": "PT_RECLAIM frees a PTE table only if the range covers its whole 2 MiB "
                "span - spans are aligned in the address space, not in the mapping.",
    "free": "MADV_FREE only marks pages lazily freeable.",
    "munmap": "free_pgtables frees a table only if no remaining VMA shares its span.",
}


@dataclass(frozen=True)
class GuessCheck:
    """Outcome of :func:`check_guess`; prints as its message."""

    correct: bool
    message: str

    def __str__(self) -> str:
        return self.message


def check_guess(
    ops: Sequence[Op],
    index: int,
    guess_kib: int | None,
    *,
    kernel: KernelInfo | None = None,
    address: int | None = None,
) -> GuessCheck:
    """Compare a learner's VmPTE-delta guess for step ``index`` with the model.

    The answer is computed by running the model (:func:`predict`), never stored.
    A wrong guess gets a hint, not the answer.

    >>> exp = parse_ops([{"op": "mmap", "size": "4M"},
    ...                  {"op": "touch", "offset": 0, "length": "4M"}])
    >>> check_guess(exp, 1, 8).correct
    False
    """
    if not 0 <= index < len(ops):
        raise ValueError(f"step {index} does not exist; steps are 0..{len(ops) - 1}")
    op = ops[index]
    first = ops[0]
    if not isinstance(first, MmapOp):
        raise ExperimentError("entry 0: an experiment starts with an mmap")
    where = address if address is not None else DEFAULT_REGION + first.placement
    step = predict(ops, where, kernel=kernel)[index]
    if guess_kib is None:
        return GuessCheck(False, f"Step {index} is: {op.describe()}. Set your guess (KiB, "
                                 "e.g. -8 or +4) and run the cell again.")
    if isinstance(guess_kib, bool) or not isinstance(guess_kib, int):
        raise ValueError(f"guess {guess_kib!r} must be a whole number of KiB, like -8")
    if guess_kib == step.predicted_kib:
        tables = abs(step.predicted_kib) // 4
        verb = "adds" if step.predicted_kib > 0 else "frees"
        what = f"{verb} {tables} page table(s)" if tables else "changes no page table"
        return GuessCheck(True, f"Right: {op.describe()} {what}: VmPTE "
                                f"{step.predicted_kib:+d} KiB (the model agrees).")
    key = op.advice if isinstance(op, MadviseOp) else op.op
    side = "high" if guess_kib > step.predicted_kib else "low"
    return GuessCheck(False, f"Not quite: {guess_kib:+d} KiB is too {side} for "
                             f"{op.describe()}. Hint: {_HINTS[key]}")


# -- the real thing ---------------------------------------------------------------------
def _live_op(op: Op, address: int) -> None:
    """Perform one non-mmap op with real system calls."""
    if isinstance(op, TouchOp):
        linux.touch(address + op.offset, op.length, op.stride)
    elif isinstance(op, MadviseOp):
        advice = linux.MADV_DONTNEED if op.advice == "dontneed" else linux.MADV_FREE
        linux.madvise(address + op.offset, op.length, advice)
    elif isinstance(op, MunmapOp):
        linux.munmap(address + op.offset, op.length)
    else:
        raise ExperimentError(f"{op.describe()}: only the first entry may be an mmap")


def _as_ops(ops: Sequence[Op] | object) -> list[Op]:
    if isinstance(ops, list | tuple) and ops and all(
        isinstance(o, MmapOp | TouchOp | MadviseOp | MunmapOp) for o in ops
    ):
        return list(ops)
    return parse_ops(ops)


def span_neighbours(maps: Sequence[linux.Vma], region: int) -> list[linux.Vma]:
    """The VMAs in the 512 GiB PGD-entry span that contains ``region``."""
    lo = region & ~(linux.PGDIR_SIZE - 1)
    hi = lo + linux.PGDIR_SIZE
    return [v for v in maps if lo <= v.start and v.end <= hi]


def run_experiment(
    ops: Sequence[Op] | object,
    *,
    kernel: KernelInfo | None = None,
    live: bool | None = None,
) -> ExperimentResult:
    """Run ``ops`` on the live kernel (if possible) and beside it through the model.

    ``ops`` may be parsed ops or raw JSON data (validated first).  ``live=False`` forces
    predictions only.  The mapping is always unmapped again, also after an error.
    """
    checked = _as_ops(ops)
    if kernel is None:
        kernel = running_kernel()
    if live is None:
        live = kernel.live
    first = checked[0]
    assert isinstance(first, MmapOp)
    if not live:
        address = DEFAULT_REGION + first.placement
        steps = predict(checked, address, kernel=kernel)
        return ExperimentResult(tuple(steps), kernel, address, False, (DEFAULT_STACK,))
    maps = linux.read_maps()
    region, _anchor = linux.find_free_region(maps)
    neighbours = span_neighbours(maps, region)
    address = region + first.placement
    predicted = predict(checked, address, kernel=kernel, neighbours=neighbours)
    measured: list[tuple[int, int, int]] = []
    before = linux.vmpte_kib()
    linux.mmap_anon(address, first.size)
    try:
        if kernel.thp_mode != "unavailable":
            advice = linux.MADV_HUGEPAGE if first.thp else linux.MADV_NOHUGEPAGE
            linux.madvise(address, first.size, advice)
        after = linux.vmpte_kib()
        measured.append((after - before, after, 0))
        for op in checked[1:]:
            before = linux.vmpte_kib()
            _live_op(op, address)
            after = linux.vmpte_kib()
            huge = linux.anon_huge_kib(region, region + PUD_SIZE)
            measured.append((after - before, after, huge))
    finally:
        linux.munmap(address, first.size)
    done = tuple(
        Step(p.index, p.op, p.predicted_kib, d, after, p.predicted_huge_kib, huge)
        for p, (d, after, huge) in zip(predicted, measured, strict=True)
    )
    return ExperimentResult(done, kernel, address, True, tuple(neighbours))


# -- PageTables lags VmPTE by a grace period ----------------------------------------------
@dataclass(frozen=True)
class LagResult:
    """VmPTE drop at madvise return vs when /proc/meminfo PageTables followed."""

    tables: int
    vmpte_drop_kib: int
    pagetables_drop_kib_at_return: int
    lag_ms: float | None  # None: PageTables did not drop by half the tables within timeout

    def describe(self) -> str:
        head = (f"MADV_DONTNEED emptied {self.tables} PTE tables: VmPTE fell "
                f"{self.vmpte_drop_kib} kB by the time madvise() returned, while /proc/meminfo "
                f"PageTables had fallen {self.pagetables_drop_kib_at_return} kB by then")
        if self.lag_ms is None:
            return head + "; PageTables did not follow within the timeout."
        return (head + f"; PageTables followed {self.lag_ms:.1f} ms later (the tables are "
                "freed in an RCU callback, after a grace period).")


def measure_pagetables_lag(size: int = 512 << 20, timeout_s: float = 0.5) -> LagResult:
    """Touch one page per 2 MiB of a ``size`` mapping, MADV_DONTNEED it, and time how
    long system-wide ``PageTables`` takes to fall after VmPTE already has.

    VmPTE drops in ``free_pte`` (``mm_dec_nr_ptes``) at queue time; PageTables
    (NR_PAGETABLE) drops in ``pagetable_dtor`` inside the RCU callback, a grace period
    later (kernel-facts §2.4, Appendix B.2).  Other processes also change PageTables,
    so the threshold is half the freed tables.
    """
    if size % PMD_SIZE or not 0 < size <= PUD_SIZE:
        raise ValueError(f"size {size}: must be a multiple of 2 MiB, at most 1 GiB")
    region, _ = linux.find_free_region(linux.read_maps())
    addr = linux.mmap_anon(region, size)
    try:
        linux.madvise(addr, size, linux.MADV_NOHUGEPAGE)
        linux.touch(addr, size, PMD_SIZE)
        tables = size // PMD_SIZE
        vm0 = linux.vmpte_kib()
        pt0 = linux.meminfo_kib("PageTables")
        t0 = time.perf_counter()
        linux.madvise(addr, size, linux.MADV_DONTNEED)
        vm1 = linux.vmpte_kib()
        pt1 = linux.meminfo_kib("PageTables")
        lag: float | None = None
        threshold = tables * 4 // 2
        while time.perf_counter() - t0 < timeout_s:
            if pt0 - linux.meminfo_kib("PageTables") >= threshold:
                lag = (time.perf_counter() - t0) * 1000
                break
            time.sleep(0.0005)
    finally:
        linux.munmap(addr, size)
    return LagResult(tables, vm0 - vm1, pt0 - pt1, lag)
