"""Physical memory: frames, their ``struct page`` words, a page allocator and a small KASAN.

Models the parts of ``mm/page_alloc.c`` (order-0 allocation and freeing, reference counts
of ``include/linux/page_ref.h``) and of KASAN/SLUB poisoning that the lessons need
(v6.14; unchanged in spirit up to v6.18).

* Every frame has a page frame number (pfn), an allocation *generation* (bumped at every
  allocation, so a stale user can be told from the current one) and a *kind*:
  ``"pagetable"``, ``"data"`` or ``"kernel"``.
* ``struct page`` is eight little-endian u64 words (64 bytes, kernel-facts Appendix A):
  word 6 holds ``page_type``/``_mapcount`` in its low half (bytes 48..51) and
  ``_refcount`` in its high half (bytes 52..55).  A fresh page has ``_refcount`` 1 and
  ``_mapcount`` -1 (``page_type`` 0xffffffff, "no type"), everything else 0.
* Page-table and kernel frames carry 4 KiB of contents (numpy ``uint64[512]``).  Data
  frames carry no per-frame Python objects at all (compact numpy metadata only) unless
  somebody touches their struct page or contents, so a 1 GiB mapping stays small.
* Freed frames go on a LIFO free list: the frame freed last is handed out first, which
  makes reuse - the dangerous part of a use-after-free - immediate and visible.
* KASAN: touching a free frame, or a frame whose generation differs from the one the
  toucher expected (freed and reused), appends a :class:`Report`; the access still
  happens.  Freed contents read as the poison 0x6b6b6b6b6b6b6b6b (SLUB's POISON_FREE).

>>> mem = PhysMem()
>>> pfn = mem.alloc_page(kind="pagetable")
>>> mem.free_page(pfn, Who("CPU1", ("free_pte",), step=3))
>>> hex(mem.read(pfn, 0, Who("CPU0", ("zap_pte_range",), step=4)))
'0x6b6b6b6b6b6b6b6b'
>>> mem.reports[0].kind, mem.reports[0].freed.who.actor
('use-after-free', 'CPU1')
"""

from __future__ import annotations

import hashlib
from collections.abc import Hashable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from ptlab.arch.x86.paging import (
    PAGE_OFFSET,
    PAGE_SHIFT,
    PAGE_SIZE,
    PTRS_PER_PTE,
    STRUCT_PAGE_SIZE,
    U64_MASK,
    VMEMMAP_START,
)

#: What SLUB writes into freed objects (``POISON_FREE`` byte 0x6b), here a whole u64.
POISON_FREE = 0x6B6B_6B6B_6B6B_6B6B
KINDS = ("pagetable", "data", "kernel")
_KIND_CODE = {k: i for i, k in enumerate(KINDS)}
WORDS_PER_PAGE = STRUCT_PAGE_SIZE // 8
#: struct page word holding page_type/_mapcount (low half) and _refcount (high half).
REFCOUNT_WORD = 6
#: ``_mapcount`` = -1 seen as the u32 ``page_type`` = "page has no type".
PAGE_TYPE_NONE = 0xFFFF_FFFF

_NEVER, _ALLOCATED, _FREE = 0, 1, 2
_VMEMMAP_END = VMEMMAP_START + (1 << 40) * STRUCT_PAGE_SIZE

U64Array = npt.NDArray[np.uint64]
I64Array = npt.NDArray[np.int64]


@dataclass(frozen=True)
class Who:
    """Who touched or freed something: an actor, its kernel call stack, the machine step."""

    actor: str = "setup"  # "CPU0", "CPU1", "RCU", "setup"
    stack: tuple[str, ...] = ()  # outermost first, e.g. ("zap_pte_range", "free_pte")
    step: int | None = None

    def describe(self) -> str:
        """``"CPU1 at step 5 [zap_pte_range > free_pte]"``."""
        s = self.actor
        if self.step is not None:
            s += f" at step {self.step}"
        if self.stack:
            s += " [" + " > ".join(self.stack) + "]"
        return s


SETUP = Who()


@dataclass(frozen=True)
class FreeRecord:
    """Who freed frame ``pfn`` while it had allocation ``generation`` and ``kind``."""

    pfn: int
    generation: int
    who: Who
    kind: str


@dataclass(frozen=True)
class Report:
    """One KASAN-like finding."""

    kind: str  # "use-after-free" | "double-free" | "refcount-underflow" | "bad-pfn"
    pfn: int
    who: Who
    access: str  # "read" | "write" | "free" | "put" | "get"
    what: str  # e.g. "entry 325", "struct page +40 (ptl)"
    freed: FreeRecord | None
    reused: bool

    def message(self) -> str:
        """One paragraph in the spirit of a KASAN splat."""
        where = self.who.stack[-1] if self.who.stack else self.who.actor
        target = f"pfn {self.pfn:#x}" + (f" ({self.what})" if self.what else "")
        verb = {
            "read": "Read at",
            "write": "Write at",
            "free": "Free of",
            "put": "put_page() on",
            "get": "get_page() on",
        }.get(self.access, f"{self.access} of")
        text = f"BUG: KASAN: {self.kind} in {where}: {verb} {target} by {self.who.describe()}."
        if self.freed is not None:
            text += (
                f" The {self.freed.kind} frame was freed by {self.freed.who.describe()}"
                f" (allocation generation {self.freed.generation})"
            )
            text += " and has since been allocated again." if self.reused else "."
        elif self.kind == "bad-pfn":
            text += " The frame was never allocated."
        return text


def _u64(value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= U64_MASK:
        raise ValueError(f"value {value!r} is not a 64-bit unsigned int (0..{U64_MASK:#x})")
    return value


class PhysMem:
    """Physical memory: frames with struct page words and, for tables, 4 KiB contents.

    ``first_pfn`` is the first frame the bump allocator hands out (frames below it are
    "bad pfns").  All state is deterministic; :meth:`clone` makes an independent copy and
    :meth:`state_key` a hashable summary for state caching.
    """

    reports: list[Report]
    nr_pagetable: int

    def __init__(self, first_pfn: int = 0x100) -> None:
        if isinstance(first_pfn, bool) or not isinstance(first_pfn, int) or first_pfn < 1:
            raise ValueError(f"first_pfn {first_pfn!r} must be an int >= 1")
        self.reports = []
        self.nr_pagetable = 0
        self._first = first_pfn
        self._next = first_pfn  # bump pointer
        cap = 64
        self._state = np.zeros(cap, dtype=np.uint8)
        self._kind = np.zeros(cap, dtype=np.uint8)
        self._gen = np.zeros(cap, dtype=np.uint32)
        self._free_stack = np.zeros(64, dtype=np.int64)
        self._free_top = 0
        # struct page words / contents only for frames that need them (see module doc)
        self._words: dict[int, list[int]] = {}
        self._contents: dict[int, U64Array] = {}
        # Contents arrays shared with a clone: copied before their first write
        # (copy-on-write keeps clone() cheap for the model checker).
        self._shared: set[int] = set()
        self._digest: dict[int, bytes] = {}
        # free history: tables/kernel frames by (pfn, generation); data frames in arrays
        self._free_hist: dict[tuple[int, int], FreeRecord] = {}
        self._data_free_who: npt.NDArray[np.int32] | None = None
        self._data_free_gen: npt.NDArray[np.uint32] | None = None
        self._whos: list[Who] = []
        self._who_ids: dict[Who, int] = {}
        self._globals: dict[str, tuple[int, int]] = {}
        self._globals_next = 0
        self._globals_pfn: int | None = None
        self._zero_pfn: int | None = None

    # ------------------------------------------------------------------ capacity helpers
    def _slot(self, pfn: int) -> int:
        return pfn - self._first

    def _grow(self, needed_slots: int) -> None:
        cap = len(self._state)
        if needed_slots <= cap:
            return
        new_cap = max(needed_slots, cap + cap // 2)
        for name in ("_state", "_kind", "_gen"):
            old = getattr(self, name)
            arr = np.zeros(new_cap, dtype=old.dtype)
            arr[:cap] = old
            setattr(self, name, arr)
        for name in ("_data_free_who", "_data_free_gen"):
            old = getattr(self, name)
            if old is not None:
                arr = np.full(new_cap, -1 if name == "_data_free_who" else 0, dtype=old.dtype)
                arr[:cap] = old
                setattr(self, name, arr)

    def reserve(self, n_frames: int) -> None:
        """Make room for ``n_frames`` more frames at once (avoids repeated growth)."""
        self._grow(self._next - self._first + max(0, n_frames))

    def _push_free(self, pfns: I64Array) -> None:
        n = len(pfns)
        if self._free_top + n > len(self._free_stack):
            new = np.zeros(max(self._free_top + n, 2 * len(self._free_stack)), dtype=np.int64)
            new[: self._free_top] = self._free_stack[: self._free_top]
            self._free_stack = new
        self._free_stack[self._free_top : self._free_top + n] = pfns
        self._free_top += n

    def _who_id(self, who: Who) -> int:
        i = self._who_ids.get(who)
        if i is None:
            i = len(self._whos)
            self._whos.append(who)
            self._who_ids[who] = i
        return i

    @staticmethod
    def _check_pfn_arg(pfn: int) -> int:
        if isinstance(pfn, bool) or not isinstance(pfn, (int, np.integer)) or pfn < 0:
            raise ValueError(f"pfn {pfn!r} must be a non-negative int")
        return int(pfn)

    def _state_of(self, pfn: int) -> int:
        s = self._slot(pfn)
        if s < 0 or pfn >= self._next:
            return _NEVER
        return int(self._state[s])

    # ------------------------------------------------------------------ allocation
    def alloc_page(self, who: Who = SETUP, *, kind: str = "pagetable") -> int:
        """Allocate one frame (LIFO reuse of freed frames, else a new pfn); return its pfn.

        Contents are zeroed; struct page gets ``_refcount`` 1, ``_mapcount`` -1 and zeros.
        """
        code = self._kind_code(kind)
        if self._free_top:
            self._free_top -= 1
            pfn = int(self._free_stack[self._free_top])
        else:
            pfn = self._next
            self._grow(pfn - self._first + 1)
            self._next += 1
        self._mark_allocated(pfn, code)
        return pfn

    def _kind_code(self, kind: str) -> int:
        code = _KIND_CODE.get(kind)
        if code is None:
            raise ValueError(f"kind {kind!r} unknown; allowed: {', '.join(KINDS)}")
        return code

    def _mark_allocated(self, pfn: int, code: int) -> None:
        s = self._slot(pfn)
        self._state[s] = _ALLOCATED
        self._kind[s] = code
        self._gen[s] += 1
        self._digest.pop(pfn, None)
        if code == _KIND_CODE["data"]:
            self._words.pop(pfn, None)
            self._contents.pop(pfn, None)
        else:
            self._words[pfn] = self._fresh_words()
            self._contents[pfn] = np.zeros(PTRS_PER_PTE, dtype=np.uint64)
            self._shared.discard(pfn)

    @staticmethod
    def _fresh_words() -> list[int]:
        w = [0] * WORDS_PER_PAGE
        w[REFCOUNT_WORD] = (1 << 32) | PAGE_TYPE_NONE
        return w

    def alloc_pages_bulk(self, n: int, who: Who = SETUP, *, kind: str = "data") -> I64Array:
        """Allocate ``n`` frames exactly as ``n`` calls of :meth:`alloc_page` would
        (same pfns, same order), but vectorised (``alloc_pages_bulk()``)."""
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise ValueError(f"n {n!r} must be a non-negative int")
        code = self._kind_code(kind)
        k = min(n, self._free_top)
        reused = self._free_stack[self._free_top - k : self._free_top][::-1].copy()
        self._free_top -= k
        fresh = np.arange(self._next, self._next + (n - k), dtype=np.int64)
        self._grow(self._next + (n - k) - self._first)
        self._next += n - k
        pfns = np.concatenate([reused, fresh])
        if code == _KIND_CODE["data"]:
            slots = pfns - self._first
            self._state[slots] = _ALLOCATED
            self._kind[slots] = code
            self._gen[slots] += 1
            if k:
                for p in reused.tolist():
                    self._words.pop(p, None)
                    self._contents.pop(p, None)
                    self._digest.pop(p, None)
        else:
            for p in pfns.tolist():
                self._mark_allocated(p, code)
        return pfns

    def alloc_pages(self, order: int, who: Who = SETUP, *, kind: str = "data") -> int:
        """Allocate ``2**order`` physically contiguous, naturally aligned frames (a
        compound page such as a 2 MiB THP); return the head pfn.  Taken from fresh
        memory: the model's free list holds single frames only (no buddy merging)."""
        if isinstance(order, bool) or not isinstance(order, int) or not 0 <= order <= 10:
            raise ValueError(f"order {order!r} out of range; allowed 0..10")
        if order == 0:
            return self.alloc_page(who, kind=kind)
        code = self._kind_code(kind)
        n = 1 << order
        head = (self._next + n - 1) & ~(n - 1)
        self._grow(head + n - self._first)
        self._next = head + n
        for p in range(head, head + n):
            self._mark_allocated(p, code)
        return head

    def free_page(self, pfn: int, who: Who = SETUP) -> None:
        """Drop the allocation reference and free the frame when it was the last one
        (``__free_pages()`` on an order-0 page).  Freeing a free frame is a double free:
        it is reported, not raised."""
        pfn = self._check_pfn_arg(pfn)
        st = self._state_of(pfn)
        if st == _NEVER:
            self._report("bad-pfn", pfn, who, "free", "", gen=None)
            return
        if st == _FREE:
            self._report("double-free", pfn, who, "free", "", gen=None)
            return
        words = self._words.get(pfn)
        if words is not None:
            ref = self._refcount_of(words)
            if ref > 1:
                self._set_refcount(words, ref - 1)
                self._digest.pop(pfn, None)
                return
        self._do_free(pfn, who)

    def free_pages(self, pfn: int, order: int, who: Who = SETUP) -> None:
        """Free the ``2**order`` frames of a compound page starting at ``pfn``."""
        for p in range(pfn, pfn + (1 << order)):
            self.free_page(p, who)

    def free_pages_bulk(self, pfns: I64Array | list[int], who: Who = SETUP) -> None:
        """Free frames in the given order, as repeated :meth:`free_page` would."""
        arr = np.asarray(pfns, dtype=np.int64)
        if len(arr) == 0:
            return
        slots = arr - self._first
        simple = (
            bool((slots >= 0).all())
            and bool((arr < self._next).all())
            and bool((self._state[slots] == _ALLOCATED).all())
            and bool((self._kind[slots] == _KIND_CODE["data"]).all())
            and len(np.unique(arr)) == len(arr)
            and not any(p in self._words or p in self._contents for p in arr.tolist())
        )
        if not simple:
            for p in arr.tolist():
                self.free_page(p, who)
            return
        self._state[slots] = _FREE
        self._ensure_data_free_arrays()
        assert self._data_free_who is not None and self._data_free_gen is not None
        self._data_free_who[slots] = self._who_id(who)
        self._data_free_gen[slots] = self._gen[slots]
        self._push_free(arr)

    def _ensure_data_free_arrays(self) -> None:
        if self._data_free_who is None:
            cap = len(self._state)
            self._data_free_who = np.full(cap, -1, dtype=np.int32)
            self._data_free_gen = np.zeros(cap, dtype=np.uint32)

    def _do_free(self, pfn: int, who: Who) -> None:
        s = self._slot(pfn)
        kind = KINDS[int(self._kind[s])]
        gen = int(self._gen[s])
        self._state[s] = _FREE
        if kind == "data":
            self._ensure_data_free_arrays()
            assert self._data_free_who is not None and self._data_free_gen is not None
            self._data_free_who[s] = self._who_id(who)
            self._data_free_gen[s] = gen
            self._contents.pop(pfn, None)
        else:
            self._free_hist[(pfn, gen)] = FreeRecord(pfn, gen, who, kind)
            self._contents[pfn] = np.full(PTRS_PER_PTE, POISON_FREE, dtype=np.uint64)
            self._shared.discard(pfn)
        words = self._words.get(pfn)
        if words is not None:
            self._set_refcount(words, 0)
        self._digest.pop(pfn, None)
        self._push_free(np.array([pfn], dtype=np.int64))

    # ------------------------------------------------------------------ queries
    def is_allocated(self, pfn: int) -> bool:
        """True while the frame is allocated."""
        pfn = self._check_pfn_arg(pfn)
        return self._state_of(int(pfn)) == _ALLOCATED

    def generation(self, pfn: int) -> int:
        """Allocation generation: 0 if never allocated, bumped by every allocation."""
        pfn = self._check_pfn_arg(pfn)
        if self._state_of(int(pfn)) == _NEVER:
            return 0
        return int(self._gen[self._slot(int(pfn))])

    def kind(self, pfn: int) -> str:
        """Kind of the frame's current (or, if free, last) allocation."""
        pfn = self._check_pfn_arg(pfn)
        if self._state_of(int(pfn)) == _NEVER:
            raise ValueError(f"pfn {pfn:#x} was never allocated")
        return KINDS[int(self._kind[self._slot(int(pfn))])]

    def freed_record(self, pfn: int) -> FreeRecord | None:
        """The latest free of ``pfn``, or ``None`` if it was never freed."""
        pfn = self._check_pfn_arg(pfn)
        st = self._state_of(pfn)
        if st == _NEVER:
            return None
        gen = int(self._gen[self._slot(pfn)])
        last_free_gen = gen if st == _FREE else gen - 1
        return self._record_for(pfn, last_free_gen)

    def _record_for(self, pfn: int, gen: int) -> FreeRecord | None:
        rec = self._free_hist.get((pfn, gen))
        if rec is not None:
            return rec
        if self._data_free_who is not None and self._data_free_gen is not None:
            s = self._slot(pfn)
            wid = int(self._data_free_who[s])
            if wid >= 0 and int(self._data_free_gen[s]) == gen:
                return FreeRecord(pfn, gen, self._whos[wid], "data")
        return None

    def n_allocated(self, kind: str | None = None) -> int:
        """Number of allocated frames, optionally of one kind."""
        return len(self._allocated_mask_pfns(kind))

    def allocated_pfns(self, kind: str | None = None) -> list[int]:
        """Sorted pfns of allocated frames, optionally of one kind."""
        return [int(p) for p in self._allocated_mask_pfns(kind)]

    def _allocated_mask_pfns(self, kind: str | None) -> I64Array:
        n = self._next - self._first
        mask = self._state[:n] == _ALLOCATED
        if kind is not None:
            mask &= self._kind[:n] == self._kind_code(kind)
        return np.nonzero(mask)[0].astype(np.int64) + self._first

    @property
    def free_list(self) -> list[int]:
        """The free list, next-to-be-reused first."""
        return [int(p) for p in self._free_stack[: self._free_top][::-1]]

    # ------------------------------------------------------------------ KASAN
    def _report(
        self, kind: str, pfn: int, who: Who, access: str, what: str, gen: int | None
    ) -> None:
        st = self._state_of(pfn)
        freed: FreeRecord | None = None
        reused = False
        if st != _NEVER:
            cur = int(self._gen[self._slot(pfn)])
            if gen is not None and gen != cur:
                reused = True
                freed = self._record_for(pfn, gen)
            if freed is None:
                freed = self.freed_record(pfn)
        self.reports.append(Report(kind, pfn, who, access, what, freed, reused))

    def _check_access(
        self, pfn: int, who: Who, access: str, what: str, gen: int | None
    ) -> int:
        """Return the frame state after reporting bad accesses."""
        pfn = self._check_pfn_arg(pfn)
        st = self._state_of(pfn)
        if st == _NEVER:
            self._report("bad-pfn", pfn, who, access, what, gen=None)
        elif st == _FREE or (gen is not None and gen != int(self._gen[self._slot(pfn)])):
            self._report("use-after-free", pfn, who, access, what, gen)
        return st

    @staticmethod
    def _check_index(index: int, stop: int = PTRS_PER_PTE) -> None:
        if isinstance(index, bool) or not isinstance(index, (int, np.integer)):
            raise ValueError(f"index {index!r} must be an int in 0..{stop - 1}")
        if not 0 <= index < stop:
            raise ValueError(f"index {index} out of range; allowed 0..{stop - 1}")

    # ------------------------------------------------------------------ contents
    def read(self, pfn: int, index: int, who: Who = SETUP, *, gen: int | None = None) -> int:
        """Read u64 number ``index`` (0..511) of the frame's contents."""
        pfn = self._check_pfn_arg(pfn)
        self._check_index(index)
        st = self._check_access(pfn, who, "read", f"entry {index}", gen)
        if st == _NEVER:
            return 0
        arr = self._contents.get(pfn)
        if arr is None:
            return POISON_FREE if st == _FREE else 0
        return int(arr[index])

    def write(
        self, pfn: int, index: int, value: int, who: Who = SETUP, *, gen: int | None = None
    ) -> None:
        """Write u64 number ``index`` (0..511) of the frame's contents."""
        pfn = self._check_pfn_arg(pfn)
        self._check_index(index)
        _u64(value)
        st = self._check_access(pfn, who, "write", f"entry {index}", gen)
        if st == _NEVER:
            return
        self._contents_for_write(pfn, st)[index] = value
        self._digest.pop(pfn, None)

    def _contents_for_write(self, pfn: int, st: int) -> U64Array:
        arr = self._contents.get(pfn)
        if arr is not None and pfn in self._shared:
            arr = arr.copy()
            self._contents[pfn] = arr
            self._shared.discard(pfn)
        if arr is None:
            fill = POISON_FREE if st == _FREE else 0
            arr = np.full(PTRS_PER_PTE, fill, dtype=np.uint64)
            self._contents[pfn] = arr
        return arr

    def read_range(
        self, pfn: int, start: int, stop: int, who: Who = SETUP, *, gen: int | None = None
    ) -> U64Array:
        """A copy of entries ``start..stop-1`` (one access check for the whole range)."""
        pfn = self._check_pfn_arg(pfn)
        self._check_index(start, PTRS_PER_PTE + 1)
        self._check_index(stop, PTRS_PER_PTE + 1)
        if start > stop:
            raise ValueError(f"range {start}..{stop} is empty or reversed; need start <= stop")
        st = self._check_access(pfn, who, "read", f"entries {start}..{stop - 1}", gen)
        arr = self._contents.get(pfn)
        if arr is None:
            fill = POISON_FREE if st == _FREE else 0
            return np.full(stop - start, fill, dtype=np.uint64)
        return arr[start:stop].copy()

    def write_range(
        self,
        pfn: int,
        start: int,
        values: U64Array,
        who: Who = SETUP,
        *,
        gen: int | None = None,
    ) -> None:
        """Write consecutive entries from ``start`` (one access check for the range)."""
        pfn = self._check_pfn_arg(pfn)
        vals = np.asarray(values, dtype=np.uint64)
        stop = start + len(vals)
        self._check_index(start, PTRS_PER_PTE + 1)
        self._check_index(stop, PTRS_PER_PTE + 1)
        st = self._check_access(pfn, who, "write", f"entries {start}..{stop - 1}", gen)
        if st == _NEVER:
            return
        self._contents_for_write(pfn, st)[start:stop] = vals
        self._digest.pop(pfn, None)

    def contents_view(self, pfn: int) -> U64Array | None:
        """The live contents array of an allocated table/kernel frame (no KASAN check;
        for fast read-only walks and drawing).  ``None`` for frames without contents."""
        return self._contents.get(self._check_pfn_arg(pfn))

    # ------------------------------------------------------------------ struct page
    def _words_of(self, pfn: int, st: int) -> list[int]:
        w = self._words.get(pfn)
        if w is None:
            w = self._fresh_words()
            if st == _FREE:
                self._set_refcount(w, 0)
            self._words[pfn] = w
        return w

    @staticmethod
    def _refcount_of(words: list[int]) -> int:
        raw = words[REFCOUNT_WORD] >> 32
        return raw - (1 << 32) if raw & (1 << 31) else raw

    @staticmethod
    def _set_refcount(words: list[int], value: int) -> None:
        w = words[REFCOUNT_WORD]
        words[REFCOUNT_WORD] = (w & 0xFFFF_FFFF) | ((value & 0xFFFF_FFFF) << 32)

    def page_word(
        self, pfn: int, word: int, who: Who = SETUP, *, gen: int | None = None, what: str = ""
    ) -> int:
        """Read u64 ``word`` (0..7) of the frame's struct page."""
        pfn = self._check_pfn_arg(pfn)
        self._check_index(word, WORDS_PER_PAGE)
        label = what or f"struct page +{word * 8}"
        st = self._check_access(pfn, who, "read", label, gen)
        if st == _NEVER:
            return 0
        w = self._words.get(pfn)
        if w is None:  # a data frame nobody looked at: default words
            w = self._fresh_words()
            if st == _FREE:
                self._set_refcount(w, 0)
        return w[word]

    def set_page_word(
        self,
        pfn: int,
        word: int,
        value: int,
        who: Who = SETUP,
        *,
        gen: int | None = None,
        what: str = "",
        mask: int = U64_MASK,
    ) -> None:
        """Write u64 ``word`` (0..7) of the struct page; only the bits in ``mask`` change
        (one access, so a 4-byte field write is one report, not a read plus a write)."""
        pfn = self._check_pfn_arg(pfn)
        self._check_index(word, WORDS_PER_PAGE)
        _u64(value)
        _u64(mask)
        label = what or f"struct page +{word * 8}"
        st = self._check_access(pfn, who, "write", label, gen)
        if st == _NEVER:
            return
        w = self._words_of(pfn, st)
        w[word] = (w[word] & ~mask & U64_MASK) | (value & mask)
        self._digest.pop(pfn, None)

    def refcount(self, pfn: int) -> int:
        """``page_ref_count()``: the signed ``_refcount`` (no KASAN check)."""
        pfn = self._check_pfn_arg(pfn)
        st = self._state_of(int(pfn))
        if st == _NEVER:
            raise ValueError(f"pfn {pfn:#x} was never allocated")
        w = self._words.get(int(pfn))
        if w is None:
            return 1 if st == _ALLOCATED else 0
        return self._refcount_of(w)

    def get_page(self, pfn: int, who: Who = SETUP) -> None:
        """Take a reference (``get_page()``)."""
        pfn = self._check_pfn_arg(pfn)
        st = self._check_access(pfn, who, "get", "struct page +52 (_refcount)", None)
        if st == _NEVER:
            return
        w = self._words_of(pfn, st)
        self._set_refcount(w, self._refcount_of(w) + 1)
        self._digest.pop(pfn, None)

    def put_page(self, pfn: int, who: Who = SETUP) -> None:
        """Drop a reference (``put_page()``); the frame is freed when it reaches 0.
        Dropping a reference that is not there is a refcount underflow report."""
        pfn = self._check_pfn_arg(pfn)
        st = self._state_of(pfn)
        if st == _NEVER:
            self._report("bad-pfn", pfn, who, "put", "struct page +52 (_refcount)", None)
            return
        w = self._words_of(pfn, st)
        ref = self._refcount_of(w)
        if st == _FREE or ref <= 0:
            self._report("refcount-underflow", pfn, who, "put", "struct page +52 (_refcount)",
                         None)
            self._set_refcount(w, ref - 1)
            self._digest.pop(pfn, None)
            return
        if ref == 1:
            self._do_free(pfn, who)
        else:
            self._set_refcount(w, ref - 1)
            self._digest.pop(pfn, None)

    # ------------------------------------------------------------------ kernel addresses
    def kernel_global(self, name: str, nwords: int = 1) -> tuple[int, int]:
        """``(pfn, index)`` of a named kernel global (e.g. ``"pgd_list"``) in the model's
        page of kernel ``.data``; space is handed out on first use, in call order."""
        loc = self._globals.get(name)
        if loc is not None:
            return loc
        if not 1 <= nwords <= PTRS_PER_PTE:
            raise ValueError(f"nwords {nwords!r} out of range 1..{PTRS_PER_PTE}")
        if self._globals_pfn is None or self._globals_next + nwords > PTRS_PER_PTE:
            self._globals_pfn = self.alloc_page(SETUP, kind="kernel")
            self._globals_next = 0
        loc = (self._globals_pfn, self._globals_next)
        self._globals_next += nwords
        self._globals[name] = loc
        return loc

    def kernel_object(self, type_name: str, nwords: int) -> tuple[int, int]:
        """``(pfn, index)`` of a new kernel object (e.g. a ``struct mm_struct``) of
        ``nwords`` u64 words, placed like :meth:`kernel_global` under a fresh name."""
        i = 0
        while f"{type_name}#{i}" in self._globals:
            i += 1
        return self.kernel_global(f"{type_name}#{i}", nwords)

    def zero_pfn(self) -> int:
        """The shared zero page (``my_zero_pfn()``), allocated on first use."""
        if self._zero_pfn is None:
            self._zero_pfn = self.alloc_page(SETUP, kind="kernel")
        return self._zero_pfn

    @staticmethod
    def kaddr_of(pfn: int, index: int) -> int:
        """Direct-map kernel virtual address of u64 ``index`` in frame ``pfn``."""
        return PAGE_OFFSET + (pfn << PAGE_SHIFT) + index * 8

    @staticmethod
    def _kaddr_loc(addr: int) -> tuple[str, int, int]:
        if addr % 8:
            raise ValueError(f"kernel address {addr:#x} is not 8-byte aligned")
        if VMEMMAP_START <= addr < _VMEMMAP_END:
            off = addr - VMEMMAP_START
            return "page", off // STRUCT_PAGE_SIZE, (off % STRUCT_PAGE_SIZE) // 8
        if PAGE_OFFSET <= addr < VMEMMAP_START:
            off = addr - PAGE_OFFSET
            return "contents", off >> PAGE_SHIFT, (off % PAGE_SIZE) // 8
        raise ValueError(
            f"kernel address {addr:#x} is neither in the direct map "
            f"({PAGE_OFFSET:#x}..) nor in vmemmap ({VMEMMAP_START:#x}..)"
        )

    def read_kaddr(self, addr: int, who: Who = SETUP, *, what: str = "") -> int:
        """Read the u64 at a kernel virtual address (a struct page word via vmemmap, or
        frame contents via the direct map), with the usual KASAN checks."""
        where, pfn, idx = self._kaddr_loc(addr)
        if where == "page":
            return self.page_word(pfn, idx, who, what=what)
        return self.read(pfn, idx, who)

    def write_kaddr(self, addr: int, value: int, who: Who = SETUP, *, what: str = "") -> None:
        """Write the u64 at a kernel virtual address (see :meth:`read_kaddr`)."""
        where, pfn, idx = self._kaddr_loc(addr)
        if where == "page":
            self.set_page_word(pfn, idx, value, who, what=what)
        else:
            self.write(pfn, idx, value, who)

    # ------------------------------------------------------------------ snapshots
    def clone(self) -> PhysMem:
        """An independent deep copy (cheap for a few dozen table frames)."""
        c = PhysMem.__new__(PhysMem)
        c.__dict__.update(self.__dict__)
        c.reports = list(self.reports)
        c._state = self._state.copy()
        c._kind = self._kind.copy()
        c._gen = self._gen.copy()
        c._free_stack = self._free_stack.copy()
        c._words = {p: list(w) for p, w in self._words.items()}
        c._contents = dict(self._contents)  # shared until written (copy-on-write)
        self._shared = set(self._contents)
        c._shared = set(self._contents)
        c._digest = dict(self._digest)
        c._free_hist = dict(self._free_hist)
        c._data_free_who = None if self._data_free_who is None else self._data_free_who.copy()
        c._data_free_gen = None if self._data_free_gen is None else self._data_free_gen.copy()
        c._whos = list(self._whos)
        c._who_ids = dict(self._who_ids)
        c._globals = dict(self._globals)
        return c

    def _content_digest(self, pfn: int) -> bytes:
        d = self._digest.get(pfn)
        if d is None:
            d = hashlib.blake2b(self._contents[pfn].tobytes(), digest_size=16).digest()
            self._digest[pfn] = d
        return d

    def state_key(self, *, history: bool = True) -> Hashable:
        """Hashable value that is equal for two PhysMems iff their observable state is:
        frame states, kinds, generations, free-list order, struct page words, contents,
        free records, counters and reports.  Content digests are cached per frame.

        With ``history=False`` *who* freed a frame and *who* caused a report (actor,
        stack, step) are left out, only their kinds and frames kept: two runs that differ
        only in when something happened then compare equal, which is what a model
        checker needs to merge interleavings (nothing later depends on those records)."""
        n = self._next - self._first
        data_free: tuple[tuple[Who | None, ...], bytes] | None = None
        if history and self._data_free_who is not None and self._data_free_gen is not None:
            ids = self._data_free_who[:n].tolist()
            data_free = (
                tuple(self._whos[i] if i >= 0 else None for i in ids),
                self._data_free_gen[:n].tobytes(),
            )
        if history:
            freed: tuple[object, ...] = tuple(sorted(self._free_hist.items()))
            reports: tuple[object, ...] = tuple(self.reports)
        else:
            freed = ()
            reports = tuple((r.kind, r.pfn, r.access, r.reused) for r in self.reports)
        return (
            self._first,
            self._next,
            self._state[:n].tobytes(),
            self._kind[:n].tobytes(),
            self._gen[:n].tobytes(),
            self._free_stack[: self._free_top].tobytes(),
            tuple(sorted((p, tuple(w)) for p, w in self._words.items())),
            tuple(sorted((p, self._content_digest(p)) for p in self._contents)),
            freed,
            data_free,
            self.nr_pagetable,
            reports,
            tuple(sorted(self._globals.items())),
            self._zero_pfn,
        )
