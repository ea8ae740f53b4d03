"""``ptlab layout``: the fields of ``struct ptdesc`` or ``struct page``: offsets, sizes,
union groups."""

from __future__ import annotations

import argparse
import json

from ptlab.mm.layout import StructLayout
from ptlab.mm.ptdesc import KERNELS, STRUCTS, layout

EPILOG = """\
examples:
  ptlab layout
  ptlab layout --struct page --kernel v6.18
  ptlab layout --struct ptdesc --json
  ptlab layout --kernel live --struct ptdesc   (this machine's BTF vs ptlab's 6.18 model)

Members of one union share a union label (e.g. union@8) and overlap: writing one
changes the others.  Dotted names (pt_rcu_head.next) are members of a nested struct.
"""


def known_kernels() -> tuple[str, ...]:
    """Kernel names ``--kernel`` accepts: ptlab's models, and ``live`` — the running
    kernel's own layout read from /sys/kernel/btf/vmlinux."""
    return (*KERNELS, "live")


def live_structs() -> tuple[str, ...]:
    from ptlab.live.btf import LIVE_STRUCTS

    return tuple(LIVE_STRUCTS)


def load_layout(struct: str, kernel: str) -> StructLayout:
    """The layout ``ptlab layout`` shows for ``struct`` on ``kernel``."""
    return layout(struct, kernel)


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = subparsers.add_parser(
        "layout",
        help="show struct ptdesc / struct page fields, offsets and union groups",
        description=__doc__,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--struct", default="ptdesc", metavar="NAME",
                   help=f"which struct: {', '.join(STRUCTS)}; with --kernel live also "
                        "rcu_head, mmu_table_batch, mmu_gather (default ptdesc)")
    p.add_argument("--kernel", choices=known_kernels(), default=KERNELS[0],
                   help=f"kernel version (default {KERNELS[0]})")
    p.add_argument("--json", action="store_true", help="print a JSON object")
    p.set_defaults(func=run)


def layout_json(lay: StructLayout, kernel: str) -> dict[str, object]:
    return {
        "struct": lay.name,
        "kernel": kernel,
        "size": lay.size,
        "source": lay.source,
        "fields": [
            {
                "name": f.name,
                "offset": f.offset,
                "size": f.size,
                "ctype": f.ctype,
                "union": f.union,
                "path": f.path,
            }
            for f in lay
        ],
    }


def layout_text(lay: StructLayout, kernel: str) -> str:
    width = max(len(f.name) + (2 if f.path else 0) for f in lay)
    twidth = max(len(f.ctype) for f in lay)
    lines = [
        f"struct {lay.name} ({kernel}), {lay.size} bytes  [{lay.source}]",
        f"{'offset':>6} {'size':>4}  {'field':<{width}}  {'type':<{twidth}}  union",
    ]
    for f in lay:
        name = ("  " + f.name) if f.path else f.name
        lines.append(
            f"{f.offset:>6} {f.size:>4}  {name:<{width}}  {f.ctype:<{twidth}}  {f.union or '-'}"
        )
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    if args.kernel == "live":
        from ptlab.live.btf import layout_report, live_layout

        if args.json:
            print(json.dumps(layout_json(live_layout(args.struct), "live"), indent=2))
        else:
            print(layout_report(args.struct))
        return 0
    if args.struct not in STRUCTS:
        raise ValueError(
            f"unknown struct {args.struct!r} for kernel {args.kernel}; allowed: "
            f"{', '.join(STRUCTS)} (with --kernel live: {', '.join(live_structs())})"
        )
    lay = load_layout(args.struct, args.kernel)
    print(json.dumps(layout_json(lay, args.kernel), indent=2) if args.json
          else layout_text(lay, args.kernel))
    return 0
