"""ptlab's simulator constants checked against the running kernel's BTF.

Skipped only where /sys/kernel/btf/vmlinux cannot be read (the reason is stated).
"""

from __future__ import annotations

import pytest

from ptlab.__main__ import main
from ptlab.live.btf import btf_unavailable, live_layout
from ptlab.mm.mmu_gather import MAX_TABLE_BATCH, MMU_TABLE_BATCH_HEADER

REASON = btf_unavailable("/sys/kernel/btf/vmlinux")
pytestmark = pytest.mark.skipif(REASON is not None, reason=f"no kernel BTF here: {REASON}")


def test_table_batch_header_matches_the_kernel() -> None:
    # struct mmu_table_batch { struct rcu_head rcu; unsigned int nr; void *tables[]; }:
    # the flexible array starts after the 24-byte header, so a 4 KiB batch page holds
    # (4096 - 24) / 8 = 509 table pointers.
    lay = live_layout("mmu_table_batch")
    assert lay.field("tables").offset == MMU_TABLE_BATCH_HEADER
    assert (4096 - lay.field("tables").offset) // 8 == MAX_TABLE_BATCH


def test_rcu_head_is_two_pointers() -> None:
    # pt_rcu_head overlays pt_list (two pointers): both 16 bytes.
    assert live_layout("rcu_head").size == 16 == live_layout("ptdesc").field("pt_list").size


def test_layout_live_cli(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["layout", "--kernel", "live", "--struct", "ptdesc"]) == 0
    out = capsys.readouterr().out
    assert "pt_rcu_head" in out and "matches the running kernel" in out
