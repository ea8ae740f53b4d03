"""``ptlab walk`` / ``ptlab layout`` through ``ptlab.__main__.main`` (exit codes, output).

Expected indices are the issue's worked example (0x7ffc12345678 → 255/496/145/325, offset
0x678); layout offsets are kernel-facts §2.1.
"""

from __future__ import annotations

import itertools
import json

import pytest

from ptlab.__main__ import main
from ptlab.cli import SUBCOMMANDS


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_walk_text(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "walk", "0x7ffc12345678")
    assert code == 0 and err == ""
    rows = [line.split() for line in out.splitlines()[2:6]]
    assert [(r[0], int(r[1])) for r in rows] == [("pgd", 255), ("pud", 496), ("pmd", 145),
                                                 ("pte", 325)]
    # each table's entry points at the next level's table frame
    for upper, lower in itertools.pairwise(rows):
        assert f"pfn={lower[2]}" in " ".join(upper)
    assert "P RW US A D" in out
    last = out.splitlines()[-1]
    assert last.startswith("offset 0x678 -> physical address 0x") and last.endswith("678")


def test_walk_json_five_levels(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "walk", "0x7ffc_1234_5678", "--levels", "5", "--json")
    assert code == 0
    data = json.loads(out)
    assert data["levels"] == 5 and data["state"] == "mapped" and data["offset"] == 0x678
    assert [(s["level"], s["index"]) for s in data["steps"]] == [
        ("pgd", 0), ("p4d", 255), ("pud", 496), ("pmd", 145), ("pte", 325)
    ]
    for upper, lower in itertools.pairwise(data["steps"]):
        assert upper["next_pfn"] == lower["table_pfn"] and "P" in upper["flags"]
    leaf = data["steps"][-1]["next_pfn"]
    assert int(data["phys"], 16) == leaf * 4096 + 0x678


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["walk", "0x800000000000"], "0x800000000000"),  # non-canonical with 4 levels
        (["walk", "hello"], "'hello'"),
        (["walk", "0xffff800000000000"], "not a user address"),
        (["walk", "0x1000", "--levels", "3"], "--levels"),
        (["layout", "--kernel", "v5.4"], "v5.4"),
        (["layout", "--struct", "folio"], "folio"),
        (["nosuchcommand"], "nosuchcommand"),
    ],
)
def test_bad_input_exit_2_one_line(
    capsys: pytest.CaptureFixture[str], argv: list[str], needle: str
) -> None:
    with pytest.raises(SystemExit) as exc:  # argparse errors exit via SystemExit(2)
        code = main(argv)
        raise SystemExit(code)
    assert exc.value.code == 2
    out, err = capsys.readouterr()
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0] and "error:" in lines[0]
    assert lines[0].startswith("ptlab")
    assert "Traceback" not in err


def test_walk_error_names_command(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "walk", "0x800000000000")
    assert code == 2
    assert err.startswith("ptlab walk: error: address 0x800000000000 is not canonical")
    assert "0x7fffffffffff" in err  # names what is allowed


def test_layout_text_and_json(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "layout")
    assert code == 0 and "struct ptdesc (v6.14), 64 bytes" in out
    ptl = next(line for line in out.splitlines() if " ptl " in f" {line} ")
    assert ptl.split()[:3] == ["40", "4", "ptl"] and "union@40" in ptl
    code, out, _ = run(capsys, "layout", "--struct", "page", "--kernel", "v6.18", "--json")
    data = json.loads(out)
    assert data["struct"] == "page" and data["kernel"] == "v6.18" and data["size"] == 64
    fields = {f["name"]: f for f in data["fields"]}
    assert fields["_refcount"]["offset"] == 52 and fields["__folio_index"]["offset"] == 32
    assert fields["lru"]["union"] == "union@8"


def test_help_shows_examples(capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (["--help"], *([name, "--help"] for name in SUBCOMMANDS)):
        with pytest.raises(SystemExit) as exc:
            main(argv)
        assert exc.value.code == 0
        out = capsys.readouterr().out
        assert "example" in out and "ptlab" in out


def test_no_command_prints_help(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys)
    assert code == 2 and "walk" in out and "layout" in out
