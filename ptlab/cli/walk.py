"""``ptlab walk``: page-walk one user address through freshly populated page tables."""

from __future__ import annotations

import argparse
import json

from ptlab.arch.x86.paging import (
    PAGE_SIZE,
    check_canonical,
    decode_entry,
    format_entry,
    parse_address,
    task_size_max,
)
from ptlab.mm.memory import Mm, Walk

EPILOG = """\
examples:
  ptlab walk 0x7ffc12345678
  ptlab walk 0x7ffc_1234_5678 --levels 5 --json

The address is touched (written) in a fresh address space holding one 4 KiB VMA around
it, so every level gets a table; then each level's index, table frame (pfn) and entry
are printed, followed by the page offset and the physical address.
"""


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = subparsers.add_parser(
        "walk",
        help="walk a virtual address through PGD/(P4D)/PUD/PMD/PTE",
        description=__doc__,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("addr", metavar="ADDR", help="user virtual address (hex 0x... or decimal)")
    p.add_argument("--levels", type=int, choices=(4, 5), default=4,
                   help="paging levels: 4 (P4D folded, default) or 5 (LA57)")
    p.add_argument("--json", action="store_true", help="print a JSON object")
    p.set_defaults(func=run)


def walk_address(addr: int, levels: int = 4) -> Walk:
    """Touch ``addr`` in a fresh :class:`Mm` with one VMA around it and walk it.
    ``ValueError`` for non-canonical or kernel-half addresses."""
    check_canonical(addr, levels)
    top = task_size_max(levels)
    if addr >= top:
        raise ValueError(
            f"address {addr:#x} is not a user address; allowed: 0x0..{top - 1:#x} "
            f"({levels}-level paging)"
        )
    mm = Mm(levels=levels)
    page = addr & ~(PAGE_SIZE - 1)
    mm.mmap(page, PAGE_SIZE)
    mm.touch(addr)
    return mm.walk(addr)


def walk_json(w: Walk) -> dict[str, object]:
    """The walk as a JSON-ready dict (64-bit values as hex strings)."""
    return {
        "address": f"{w.addr:#x}",
        "levels": w.levels,
        "steps": [
            {
                "level": s.level,
                "index": s.index,
                "table_pfn": s.table_pfn,
                "entry": f"{s.entry:#018x}",
                "flags": decode_entry(s.entry).names(),
                "next_pfn": s.next_pfn,
            }
            for s in w.steps
        ],
        "state": w.state,
        "offset": w.offset,
        "phys": None if w.phys is None else f"{w.phys:#x}",
    }


def walk_text(w: Walk) -> str:
    """Aligned text table of the walk."""
    folded = ", P4D folded" if w.levels == 4 else ""
    lines = [
        f"virtual address {w.addr:#x} ({w.levels}-level paging{folded})",
        f"{'level':<6} {'index':>5}  {'table pfn':<10} entry",
    ]
    for s in w.steps:
        lines.append(f"{s.level:<6} {s.index:>5}  {s.table_pfn:<#10x} {format_entry(s.entry)}")
    phys = "not mapped" if w.phys is None else f"{w.phys:#x}"
    lines.append(f"offset {w.offset:#x} -> physical address {phys}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    w = walk_address(parse_address(args.addr), args.levels)
    print(json.dumps(walk_json(w), indent=2) if args.json else walk_text(w))
    return 0
