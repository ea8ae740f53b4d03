"""VmPTE experiments: validation, the model's predictions, and the live kernel.

Expected numbers are derived from kernel facts (kernel-facts §1.1, §6.1, §6.4):
- every page-table page is 4 KiB and VmPTE counts PTE, PMD and PUD tables (not the PGD);
- one PTE table maps a 2 MiB span (PMD_SIZE), one PMD table a 1 GiB span (PUD_SIZE);
- the experiment owns a 1 GiB-aligned region in the stack's 512 GiB span, so its first
  fault adds one PMD table (+4 KiB) and each touched 2 MiB span one PTE table (+4 KiB);
- PT_RECLAIM: MADV_DONTNEED frees each PTE table whose whole 2 MiB span it covers;
  MADV_FREE frees none; munmap frees (via free_pgtables) the PTE tables whose span no
  remaining VMA touches, and the PMD table once its 1 GiB holds no VMA;
- THP: a huge PMD still accounts one deposited PTE table (+4 KiB per 2 MiB).
"""

from __future__ import annotations

from typing import Any

import pytest

from ptlab.live import experiment as X
from ptlab.live import linux
from ptlab.live.kernel import KernelInfo, detect_kernel, running_kernel

M = 1 << 20


def ops(*entries: dict[str, Any]) -> list[X.Op]:
    return X.parse_ops(list(entries))


# -- validation ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({}, "no 'ops' list"),
        ([], "non-empty JSON list"),
        ([42], r"entry 0: 42 is not an object"),
        ([{"op": "mmap", "size": "4M"}, {"op": "poke"}],
         r"entry 1 \(poke\): unknown op 'poke'; allowed ops: mmap, touch"),
        ([{"op": "touch", "offset": 0, "length": 1}], r"entry 0 \(touch\): the first entry"),
        ([{"op": "mmap", "size": "4M"}, {"op": "mmap", "size": "4M"}], r"entry 1 \(mmap\)"),
        ([{"op": "mmap"}], r"entry 0 \(mmap\): missing field 'size'"),
        ([{"op": "mmap", "size": 4096, "huge": True}], r"unknown field 'huge'"),
        ([{"op": "mmap", "size": True}], r"field 'size' is True"),
        ([{"op": "mmap", "size": 5000}], r"field 'size' is 5000; it must be a positive multiple"),
        ([{"op": "mmap", "size": "lots"}], r"field 'size' is 'lots'"),
        ([{"op": "mmap", "size": "4M", "thp": "yes"}], r"field 'thp' is 'yes'; allowed: true"),
        ([{"op": "mmap", "size": "1G", "placement": 4096}], r"must fit in the 1 GiB region"),
        ([{"op": "mmap", "size": "4M"}, {"op": "touch", "offset": -1, "length": 1}],
         r"entry 1 \(touch\): field 'offset' is -1"),
        ([{"op": "mmap", "size": "4M"}, {"op": "touch", "offset": "3M", "length": "2M"}],
         r"entry 1 \(touch\): range \[\+0x300000, \+0x500000\) is outside the mapping"),
        ([{"op": "mmap", "size": "4M"}, {"op": "madvise", "advice": "cold", "offset": 0,
                                         "length": 4096}], r"field 'advice' is 'cold'"),
        ([{"op": "mmap", "size": "4M"}, {"op": "madvise", "advice": "free", "offset": 100,
                                         "length": 4096}], r"field 'offset' is 100; madvise"),
        ([{"op": "mmap", "size": "4M"}, {"op": "munmap", "offset": 0, "length": "1M"},
          {"op": "touch", "offset": 4096, "length": 1}], r"entry 2 \(touch\).*not all mapped"),
        ([{"op": "mmap", "size": "4M"}, {"op": "touch", "offset": 0, "length": 0}],
         r"field 'length' is 0"),
    ],
)
def test_bad_experiments_name_the_entry(data: object, message: str) -> None:
    with pytest.raises(X.ExperimentError, match=message):
        X.parse_ops(data)


def test_numbers_with_units_and_page_rounding() -> None:
    parsed = ops({"op": "mmap", "size": "4M", "thp": True, "placement": "0x1000"},
                 {"op": "touch", "offset": 1, "length": "1K", "stride": 3},
                 {"op": "madvise", "advice": "free", "offset": 0, "length": 1})
    assert parsed[0] == X.MmapOp(4 * M, True, 4096)
    assert parsed[1] == X.TouchOp(1, 1024, 3)
    # the kernel rounds madvise lengths up to whole pages; so does the parser
    assert parsed[2] == X.MadviseOp("free", 0, 4096)


def test_demo_file_is_valid() -> None:
    demo = X.demo_ops()
    assert isinstance(demo[0], X.MmapOp) and demo[0].size == 256 * M


# -- the model's predictions (no live kernel needed) ------------------------------------------
def predicted(*entries: dict[str, Any], address: int = X.DEFAULT_REGION) -> list[int]:
    return [s.predicted_kib for s in X.predict(ops(*entries), address)]


def test_predict_touch_dontneed_free_munmap() -> None:
    got = predicted(
        {"op": "mmap", "size": "64M"},
        {"op": "touch", "offset": 0, "length": "64M"},
        {"op": "madvise", "advice": "dontneed", "offset": 0, "length": "1M"},
        {"op": "madvise", "advice": "dontneed", "offset": "3M", "length": "6M"},
        {"op": "madvise", "advice": "free", "offset": "16M", "length": "16M"},
        {"op": "madvise", "advice": "dontneed", "offset": "32M", "length": "32M"},
        {"op": "munmap", "offset": 0, "length": "64M"},
    )
    # 32 PTE tables + 1 PMD table; 1 MiB covers no whole span; [3M,9M) covers [4M,6M) and
    # [6M,8M); MADV_FREE frees nothing; [32M,64M) covers 16 spans; munmap frees the other
    # 32-2-16 = 14 PTE tables and the PMD table.
    assert got == [0, 4 + 32 * 4, 0, -8, 0, -64, -(14 + 1) * 4]


def test_predict_without_pt_reclaim() -> None:
    kernel = KernelInfo("Linux", "6.6.0", (6, 6), False, False, "test", "madvise")
    steps = X.predict(ops({"op": "mmap", "size": "8M"},
                          {"op": "touch", "offset": 0, "length": "8M"},
                          {"op": "madvise", "advice": "dontneed", "offset": 0,
                           "length": "8M"}), X.DEFAULT_REGION, kernel=kernel)
    # before 6.14 madvise never frees page tables
    assert [s.predicted_kib for s in steps] == [0, 4 + 4 * 4, 0]


def test_predict_straddling_mapping() -> None:
    # Placed 4 KiB after a 2 MiB boundary, 8 MiB touch 5 spans: +4 (PMD) + 5*4; a
    # MADV_DONTNEED of all of it covers only the 3 whole spans inside.
    got = predicted({"op": "mmap", "size": "8M", "placement": 4096},
                    {"op": "touch", "offset": 0, "length": "8M"},
                    {"op": "madvise", "advice": "dontneed", "offset": 0, "length": "8M"},
                    address=X.DEFAULT_REGION + 4096)
    assert got == [0, 24, -12]


# -- the live kernel ---------------------------------------------------------------------------
def _not_live() -> str | None:
    info = detect_kernel(probe=False)
    if not info.live:
        return f"no live Linux with /proc/self/status VmPTE here ({info.system})"
    return None


live = pytest.mark.skipif(_not_live() is not None, reason=str(_not_live()))


def run_live(*entries: dict[str, Any]) -> X.ExperimentResult:
    result = X.run_experiment(ops(*entries))
    assert result.live
    for step in result.steps:
        assert step.measured_kib == step.predicted_kib, result.table()
    return result


def deltas(result: X.ExperimentResult) -> list[int]:
    return [s.predicted_kib for s in result.steps]


@live
def test_live_kernel_rule_set_is_detected() -> None:
    info = running_kernel()
    if info.version is not None and info.version >= (6, 14) and info.pt_reclaim:
        # where the config says PT_RECLAIM, the probe must agree
        from ptlab.live.kernel import probe_pt_reclaim

        assert probe_pt_reclaim()[0] is True


@live
def test_live_aligned_unaligned_and_free() -> None:
    if not running_kernel().pt_reclaim:
        pytest.skip("kernel without PT_RECLAIM: the reclaim numbers below do not apply")
    result = run_live(
        {"op": "mmap", "size": "64M"},
        {"op": "touch", "offset": 0, "length": "64M"},
        {"op": "madvise", "advice": "dontneed", "offset": 0, "length": "1M"},
        {"op": "madvise", "advice": "dontneed", "offset": "3M", "length": "6M"},
        {"op": "madvise", "advice": "free", "offset": "16M", "length": "16M"},
        {"op": "madvise", "advice": "dontneed", "offset": "32M", "length": "32M"},
    )
    assert deltas(result) == [0, 132, 0, -8, 0, -64]


@live
def test_live_sparse_touch_partial_tables() -> None:
    # one byte per 2 MiB still needs a whole PTE table per span; a range that covers a span
    # frees its table even though only one entry of it was used
    result = run_live(
        {"op": "mmap", "size": "16M"},
        {"op": "touch", "offset": "1M", "length": "15M", "stride": "2M"},
        {"op": "madvise", "advice": "dontneed", "offset": "2M", "length": "6M"},
        {"op": "madvise", "advice": "dontneed", "offset": "9M", "length": "4K"},
    )
    reclaim = -12 if running_kernel().pt_reclaim else 0
    assert deltas(result) == [0, 4 + 8 * 4, reclaim, 0]


@live
def test_live_straddling_mapping() -> None:
    result = run_live(
        {"op": "mmap", "size": "8M", "placement": 4096},
        {"op": "touch", "offset": 0, "length": "8M"},
        {"op": "madvise", "advice": "dontneed", "offset": 0, "length": "8M"},
    )
    assert deltas(result) == [0, 24, -12 if running_kernel().pt_reclaim else 0]


@live
@pytest.mark.parametrize("thp", [False, True], ids=["thp-off", "thp-on"])
def test_live_thp_on_and_off(thp: bool) -> None:
    # Huge PMD or not, each touched 2 MiB accounts one PTE table (deposited or real).
    # [1M,3M) splits/zaps parts of two spans: nothing freed; [4M,8M) covers two whole
    # spans: two tables go (zap_huge_pmd frees the deposit; PT_RECLAIM frees a PTE table).
    result = run_live(
        {"op": "mmap", "size": "8M", "thp": thp},
        {"op": "touch", "offset": 0, "length": "8M"},
        {"op": "madvise", "advice": "dontneed", "offset": "1M", "length": "2M"},
        {"op": "madvise", "advice": "dontneed", "offset": "4M", "length": "4M"},
    )
    huge_possible = thp and running_kernel().thp_mode in ("always", "madvise")
    reclaim = -8 if (running_kernel().pt_reclaim or huge_possible) else 0
    assert deltas(result) == [0, 20, 0, reclaim]
    assert result.steps[1].predicted_huge_kib == (8192 if huge_possible else 0)


@live
def test_live_partial_munmap() -> None:
    result = run_live(
        {"op": "mmap", "size": "64M"},
        {"op": "touch", "offset": 0, "length": "64M"},
        {"op": "munmap", "offset": "10M", "length": "10M"},
        {"op": "munmap", "offset": "21M", "length": "10M"},
        {"op": "munmap", "offset": 0, "length": "64M"},
    )
    # [10M,20M): 5 whole spans. [21M,31M) between VMAs ending at 21M and starting at 31M:
    # free_pgd_range rounds the floor up and the ceiling down to 2 MiB: spans 22M..30M (4).
    # Finally 32 - 5 - 4 = 23 PTE tables and the PMD table.
    assert deltas(result) == [0, 132, -20, -16, -(23 + 1) * 4]


@live
def test_live_failure_leaves_nothing_mapped(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = {"n": 0}
    real = linux.madvise

    def failing(addr: int, length: int, advice: int) -> None:
        calls["n"] += 1
        if calls["n"] == 2:
            raise linux.LiveError(22, "madvise failed: injected")
        real(addr, length, advice)

    monkeypatch.setattr(linux, "madvise", failing)
    before = linux.read_maps()
    with pytest.raises(linux.LiveError, match="injected"):
        X.run_experiment(ops({"op": "mmap", "size": "4M"},
                             {"op": "madvise", "advice": "free", "offset": 0, "length": "4M"}))
    after = linux.read_maps()
    region, _ = linux.find_free_region(before)
    assert not [v for v in after if region <= v.start < region + linux.PUD_SIZE]


def test_predictions_only_mode() -> None:
    info = detect_kernel(uname=("Darwin", "23.0.0"), live=False)
    assert not info.live and "predictions only" in info.summary()
    result = X.run_experiment(ops({"op": "mmap", "size": "4M"},
                                  {"op": "touch", "offset": 0, "length": "4M"}), kernel=info)
    assert not result.live and result.all_match
    assert [s.measured_kib for s in result.steps] == [None, None]
    assert deltas(result) == [0, 12]


@live
def test_live_byte_strides_and_unaligned_touch() -> None:
    # Writes 1000 bytes apart from +4000 over 8 MiB fault every page from page 0 up to the
    # last write at 4000 + 8388000 = +0x800da0, just past 8 MiB: spans 0, 2, 4, 6 and 8 MiB
    # (5 PTE tables) + the PMD table. A 1-byte-stride page at 9M lies in the 8 MiB span
    # (no new table); a 3-byte touch straddling +2M needs none either.
    result = run_live(
        {"op": "mmap", "size": "10M"},
        {"op": "touch", "offset": 4000, "length": "8M", "stride": 1000},
        {"op": "touch", "offset": "9M", "length": 4096, "stride": 1},
        {"op": "touch", "offset": 2 * M - 1, "length": 3, "stride": 1},
    )
    assert deltas(result) == [0, 4 + 5 * 4, 0, 0]


# -- which kernel am I on ----------------------------------------------------------------------
def test_rule_set_from_config_files(tmp_path: Any) -> None:
    import gzip

    off = tmp_path / "config-off"
    off.write_text("CONFIG_MMU=y\n# CONFIG_PT_RECLAIM is not set\n")
    info = detect_kernel(config_paths=(str(off),), uname=("Linux", "6.14.2"), live=True,
                         probe=False)
    assert (info.pt_reclaim, info.rule_set) == (False, "no PT_RECLAIM")
    assert str(off) in info.pt_reclaim_source
    on = tmp_path / "config.gz"
    with gzip.open(on, "wt") as fh:
        fh.write("CONFIG_MMU=y\nCONFIG_PT_RECLAIM=y\n")
    info = detect_kernel(config_paths=(str(tmp_path / "missing"), str(on)),
                         uname=("Linux", "6.18.44"), live=True, probe=False)
    assert info.pt_reclaim and info.model_kernel == "v6.18"
    assert info.pt_reclaim_source == f"{on}: CONFIG_PT_RECLAIM=y"


def test_rule_set_from_version_and_fallbacks() -> None:
    old = detect_kernel(uname=("Linux", "6.6.30"), live=True, probe=False)
    assert not old.pt_reclaim and "< 6.14" in old.pt_reclaim_source
    assumed = detect_kernel(config_paths=(), uname=("Linux", "6.15.0"), live=True, probe=False)
    assert assumed.pt_reclaim and "assumed" in assumed.pt_reclaim_source
    assert assumed.model_kernel == "v6.14"


@live
def test_probe_agrees_with_the_config() -> None:
    probed = detect_kernel(config_paths=(), probe=True)
    assert probed.pt_reclaim_source.startswith("probe:")
    configured = detect_kernel(probe=False)
    if "CONFIG_PT_RECLAIM" in configured.pt_reclaim_source:
        assert probed.pt_reclaim == configured.pt_reclaim


def test_madvise_over_a_hole_is_rejected() -> None:
    with pytest.raises(X.ExperimentError, match=r"entry 2 \(madvise\).*not all mapped"):
        ops({"op": "mmap", "size": "8M"}, {"op": "munmap", "offset": "2M", "length": "2M"},
            {"op": "madvise", "advice": "dontneed", "offset": 0, "length": "8M"})
