"""The simulator's command line: scenarios, path, explore (and --replay), matrix."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from ptlab.__main__ import main

README = Path(__file__).resolve().parent.parent / "README.md"


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_scenarios_lists_every_scenario(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "scenarios", "--json")
    names = [s["name"] for s in json.loads(out)]
    assert code == 0 and "reclaim-vs-pte-offset-map-lock" in names and "munmap" in names


def test_path_json(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "path", "--kernel", "v6.14", "--paravirt", "none",
                       "--batch", "fails", "--json")
    data = json.loads(out)
    assert code == 0 and data["hook"].startswith("static paravirt_tlb_remove_table")
    assert any("__tlb_remove_table_one" in s["stack"] for s in data["steps"])


def test_explore_then_replay_the_saved_witness(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    w = tmp_path / "w.json"
    code, out, _ = run(capsys, "explore", "--scenario", "reclaim-vs-pte-offset-map-lock",
                       "--kernel", "v6.13", "--save-witness", str(w))
    assert code == 0 and "use-after-free: sometimes" in out
    code, out, _ = run(capsys, "explore", "--replay", str(w))
    assert code == 0 and "BUG: KASAN: use-after-free" in out


def test_readme_replay_example_reproduces_the_bug(capsys: pytest.CaptureFixture[str]) -> None:
    # The schedule printed in the README must still be a witness of the v6.13 bug.
    m = re.search(r'--replay "([^"]+)"', README.read_text())
    assert m is not None
    code, out, _ = run(capsys, "explore", "--scenario", "reclaim-vs-pte-offset-map-lock",
                       "--kernel", "v6.13", "--replay", m.group(1))
    assert code == 0 and "use-after-free" in out


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["explore", "--scenario", "nope"], "unknown scenario 'nope'"),
        (["explore"], "--scenario NAME is required"),
        (["explore", "--scenario", "munmap", "--kernel", "v9"], "unknown kernel 'v9'"),
        (["explore", "--scenario", "munmap", "--replay", "CPU0 CPU9"], "unknown lane 'CPU9'"),
        (["explore", "--scenario", "munmap", "--replay", "CPU0*0"], "bad repeat count"),
        (["explore", "--scenario", "munmap", "--replay", "RCU:gp"], "no callbacks are waiting"),
        (["explore", "--replay", "/nonexistent/w.json"], "does not exist"),
        (["path", "--pt-reclaim", "maybe"], "--pt-reclaim must be 'on' or 'off'"),
        (["path", "--level", "pgd"], "unknown level 'pgd'"),
        (["path", "--cpus", "x"], "--cpus must be a number"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    capsys: pytest.CaptureFixture[str], argv: list[str], needle: str
) -> None:
    code, _out, err = run(capsys, *argv)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], err


def test_malformed_schedule_file(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    f = tmp_path / "bad.json"
    f.write_text('{"scenario": "munmap"}')
    code, _, err = run(capsys, "explore", "--replay", str(f))
    assert code == 2 and "must be an object with scenario, config and schedule" in err
    f.write_text("{nope")
    code, _, err = run(capsys, "explore", "--replay", str(f))
    assert code == 2 and "not valid JSON" in err


def test_matrix_json_has_every_cell(capsys: pytest.CaptureFixture[str]) -> None:
    from ptlab.sim.matrix import default_configs, default_scenarios

    code, out, _ = run(capsys, "matrix", "--json")
    data = json.loads(out)
    assert code == 0
    assert len(data["cells"]) == len(default_configs()) * len(default_scenarios())
    bad = {(c["config"]["kernel"], c["scenario"]) for c in data["cells"]
           if "use-after-free" in c["verdicts"]}
    # Only v6.13 ever frees a table under a reader (kernel-facts §7).
    assert bad and {k for k, _ in bad} == {"v6.13"}
