"""``ptlab vmpte``: exit codes, table/JSON output, bad files.

The demo's expected deltas are derived in ptlab/live/demo_experiment.json's terms
(256 MiB = 128 PTE tables of 2 MiB each, in a 1 GiB region the experiment owns):
touch all: 1 PMD table + 128 PTE tables = +516 KiB; MADV_DONTNEED of 1 MiB covers no whole
span: 0; of [3M, 9M): the spans at 4M and 6M: -8; MADV_FREE: 0; munmap [65M, 128M): the
span at 64M is still used by [64M, 65M), so spans 66M..126M go (31 tables): -124; touching
[4M, 6M) again allocates a PTE table: +4; munmap of everything: the remaining
128 - 2 - 31 + 1 = 96 PTE tables and the PMD table: -388.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ptlab.__main__ import main
from ptlab.cli import vmpte
from ptlab.live import experiment as X
from ptlab.live.kernel import KernelInfo, detect_kernel

DEMO_DELTAS = [0, 516, 0, -8, 0, -124, 4, -388]
LIVE = detect_kernel(probe=False).live


def cli(argv: list[str]) -> int:
    """``ptlab vmpte ...`` through the real entry point."""
    return main(["vmpte", *argv])


def test_demo_json(capsys: pytest.CaptureFixture[str]) -> None:
    code = cli(["--demo", "--json"])
    out = json.loads(capsys.readouterr().out)
    assert [s["predicted_kib"] for s in out["steps"]] == DEMO_DELTAS
    assert out["live"] is LIVE
    if LIVE:
        assert [s["measured_kib"] for s in out["steps"]] == DEMO_DELTAS
    assert code == 0 and out["all_match"] is True


def test_demo_table(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli(["--demo"]) == 0
    out = capsys.readouterr().out
    assert "MADV_DONTNEED [+0x300000, +0x900000)" in out
    assert ("predicted = measured for all 8 steps" if LIVE else "predictions only") in out


def test_predict_only(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli(["--demo", "--predict-only"]) == 0
    out = capsys.readouterr().out
    assert "predictions only" in out and "-124 kB" in out


@pytest.mark.skipif(not LIVE, reason="needs a live Linux kernel to disagree with")
def test_wrong_rule_set_is_caught(monkeypatch: pytest.MonkeyPatch,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    # Predicting as if PT_RECLAIM were off: the model says MADV_DONTNEED of [3M, 9M)
    # frees nothing, the 6.14+ kernel frees two tables -> exit 1, step 3 flagged.
    real = detect_kernel(probe=False)
    if not real.pt_reclaim:
        pytest.skip("this kernel has no PT_RECLAIM, so the wrong rule set would agree")
    wrong = KernelInfo(real.system, real.release, real.version, True, False, "test",
                       real.thp_mode)
    monkeypatch.setattr(vmpte, "running_kernel", lambda: wrong)
    assert cli(["--demo"]) == 1
    out = capsys.readouterr().out
    assert "MISMATCH at step(s) 3" in out


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("[{\"op\": \"mmap\", \"size\": 4096", "is not valid JSON"),
        ('[{"op": "mmap", "size": "4M"}, {"op": "poke"}]', "entry 1 (poke): unknown op"),
        ('[{"op": "mmap", "size": "4M"}, {"op": "munmap", "offset": "4M", "length": 4096}]',
         "entry 1 (munmap): range [+0x400000, +0x401000) is outside the mapping"),
    ],
)
def test_bad_files_exit_2_with_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                        content: str, message: str) -> None:
    path = tmp_path / "exp.json"
    path.write_text(content)
    assert cli(["--ops", str(path)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ptlab vmpte: error:")
    assert message in lines[0]


def test_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli(["--ops", str(tmp_path / "nope.json")]) == 2
    assert "cannot read" in capsys.readouterr().err


def test_ops_file_runs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "exp.json"
    path.write_text(json.dumps({"ops": [
        {"op": "mmap", "size": "4M"},
        {"op": "touch", "offset": 0, "length": "4M", "stride": "2M"},
    ]}))
    assert cli(["--ops", str(path), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    # one PMD table + two PTE tables
    assert [s["predicted_kib"] for s in out["steps"]] == [0, 12]


def test_help_has_an_example(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        cli(["--help"])
    assert exc.value.code == 0
    assert "ptlab vmpte --demo" in capsys.readouterr().out


def test_demo_file_is_package_data() -> None:
    assert X.demo_experiment()["ops"]
