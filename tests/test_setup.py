"""The set-up machinery: Makefile bootstrap logic, make lab, .ci/run, README, Binder pins.

The Makefile tests run ``make -n`` (print, do not run) in a scratch copy of the files the
bootstrap depends on, with file times arranged to model "just bootstrapped", "pyproject.toml
changed", "no .venv" and so on, so they test the Make logic without touching the real venv.
"""

from __future__ import annotations

import importlib
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import tomllib
import urllib.error
import urllib.request
from importlib import metadata
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
RUNTIME_PACKAGES = {"jupyterlab", "ipywidgets", "jupyterlab-widgets", "matplotlib", "numpy"}
STAMP = ".venv/.ptlab-bootstrap.stamp"
LAB_SETTINGS = ".venv/share/jupyter/lab/settings/overrides.json"
BOOTSTRAP_SOURCES = (
    "Makefile",
    "pyproject.toml",
    "binder/constraints.txt",
    "binder/overrides.json",
)


def normalize(name: str) -> str:
    """PEP 503 project-name normalisation (``jupyterlab_widgets`` == ``jupyterlab-widgets``)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def read_pins(path: Path) -> dict[str, str]:
    """``name==version`` lines of a requirements/constraints file, by normalised name."""
    pins: dict[str, str] = {}
    for raw in path.read_text().splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line or line.startswith("-"):
            continue
        match = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;]+)", line)
        assert match, f"{path.name}: not an exact pin: {raw!r}"
        pins[normalize(match.group(1))] = match.group(2)
    return pins


# ---- Makefile: the bootstrap stamp ---------------------------------------------------------


@pytest.fixture
def scratch(tmp_path: Path) -> Path:
    """A copy of the bootstrap's inputs, laid out as right after a successful bootstrap."""
    for relative in BOOTSTRAP_SOURCES:
        (tmp_path / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(REPO_ROOT / relative, tmp_path / relative)
    for relative in (".venv/bin/python", STAMP, LAB_SETTINGS):
        (tmp_path / relative).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / relative).touch()
    # Sources first, then the venv's python, the stamp and the settings: Make order of events.
    base = time.time() - 1000
    for offset, relative in enumerate(
        [*BOOTSTRAP_SOURCES, ".venv/bin/python", STAMP, LAB_SETTINGS]
    ):
        os.utime(tmp_path / relative, (base + offset, base + offset))
    return tmp_path


def make_dry_run(directory: Path, *args: str) -> str:
    """``make -n ARGS`` in ``directory`` with an existing file standing in for Chromium."""
    result = subprocess.run(
        ["make", "-n", f"CHROMIUM={sys.executable}", *args],
        cwd=directory,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def touch_newer(path: Path) -> None:
    now = time.time()
    os.utime(path, (now, now))


def test_bootstrapped_make_test_installs_nothing(scratch: Path) -> None:
    out = make_dry_run(scratch, "test")
    assert "pip install" not in out
    assert "-m venv" not in out
    assert "apt-get" not in out
    # ...but it does run the suites.
    assert "ruff check" in out
    assert "pytest -p no:cacheprovider --continue-on-collection-errors tests/" in out
    assert "--nbval-lax --nbval-current-env --nbval-sanitize-with" in out


@pytest.mark.parametrize("changed", ["pyproject.toml", "binder/constraints.txt"])
def test_changed_dependency_file_reinstalls(scratch: Path, changed: str) -> None:
    touch_newer(scratch / changed)
    out = make_dry_run(scratch, "test")
    assert "-c binder/constraints.txt -e '.[test]'" in out
    assert "-m venv" not in out  # the venv itself is kept


def test_no_venv_creates_it_and_upgrades_pip_before_installing(scratch: Path) -> None:
    shutil.rmtree(scratch / ".venv")
    lines = make_dry_run(scratch, "bootstrap").splitlines()
    venv = next(i for i, line in enumerate(lines) if "-m venv .venv" in line)
    pip = next(i for i, line in enumerate(lines) if "install --upgrade" in line and "pip" in line)
    package = next(i for i, line in enumerate(lines) if "-e '.[test]'" in line)
    assert venv < pip < package


def test_missing_chromium_is_installed_from_debian(scratch: Path) -> None:
    out = make_dry_run(scratch, "test", "CHROMIUM=/nonexistent/chromium")
    update = out.index("apt-get update")
    install = out.index("apt-get install -y chromium")
    assert update < install
    assert "playwright install" not in (REPO_ROOT / "Makefile").read_text()


def test_make_lab_command_line(scratch: Path) -> None:
    out = make_dry_run(scratch, "lab", "PORT=9123")
    assert "pip install" not in out
    for expected in (
        "--ServerApp.ip=127.0.0.1",
        "--ServerApp.port=9123",
        "--ServerApp.root_dir=notebooks",
        "--ServerApp.token=",
        "http://127.0.0.1:9123/lab?token=",
    ):
        assert expected in out
    assert ("--allow-root" in out) == (os.geteuid() == 0)


def test_make_lab_serves_the_notebooks(repo_root: Path) -> None:
    """Really run ``make lab`` (bootstrap taken as done) and GET the URL it prints."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    token = secrets.token_hex(16)
    process = subprocess.Popen(
        ["make", "-o", STAMP, "-o", LAB_SETTINGS, "lab", f"PORT={port}", f"TOKEN={token}"],
        cwd=repo_root,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        assert process.stdout is not None
        url = ""
        deadline = time.monotonic() + 30
        while not url and time.monotonic() < deadline:
            line = process.stdout.readline()
            if not line and process.poll() is not None:
                break
            url = next(iter(re.findall(r"http://127\.0\.0\.1:\d+/lab\?token=\w+", line)), "")
        assert url == f"http://127.0.0.1:{port}/lab?token={token}"
        status = 0
        while status != 200 and time.monotonic() < deadline + 30:
            try:
                with urllib.request.urlopen(url, timeout=5) as response:
                    status = response.status
            except (urllib.error.URLError, ConnectionError):
                time.sleep(0.3)
        assert status == 200, f"GET {url} never answered 200"
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(5)


# ---- .ci/run and README --------------------------------------------------------------------


def test_ci_run_is_make_test(repo_root: Path) -> None:
    script = repo_root / ".ci" / "run"
    assert os.access(script, os.X_OK), ".ci/run must be executable"
    lines = script.read_text().splitlines()
    assert lines[0] == "#!/usr/bin/env bash"
    assert "set -euo pipefail" in lines
    commands = [ln.strip() for ln in lines[1:] if ln.strip() and not ln.lstrip().startswith("#")]
    assert commands[-1] == "make test"


def test_readme_starts_with_the_two_commands(repo_root: Path) -> None:
    text = (repo_root / "README.md").read_text()
    assert text.startswith("# "), "README must open with its title"
    before_block, _, rest = text.partition("```")
    assert "\n## " not in before_block, "the set-up commands must come before any section"
    block = rest.split("```", 1)[0].split("\n", 1)[1]  # drop the fence's language tag
    commands = [ln.split("#", 1)[0].strip() for ln in block.splitlines()]
    assert [c for c in commands if c] == ["make lab", "make test"]


def test_readme_binder_badge_opens_lesson_01(repo_root: Path) -> None:
    text = (repo_root / "README.md").read_text()
    assert re.search(
        r"\(https://mybinder\.org/v2/gh/[^/\s]+/[^/\s]+/HEAD"
        r"\?urlpath=lab/tree/notebooks/01_page_tables\.ipynb\)",
        text,
    )
    assert "https://mybinder.org/badge_logo.svg" in text


# ---- Binder ----------------------------------------------------------------------------------


def test_binder_runtime_is_the_tested_python(repo_root: Path) -> None:
    runtime = (repo_root / "binder" / "runtime.txt").read_text().strip()
    # repo2docker rejects anything but "python-X.Y" (testing-notes.md).
    assert runtime == f"python-{sys.version_info.major}.{sys.version_info.minor}"


def test_binder_requirements_pin_the_installed_runtime_versions(repo_root: Path) -> None:
    pins = read_pins(repo_root / "binder" / "requirements.txt")
    pyproject = tomllib.loads((repo_root / "pyproject.toml").read_text())
    declared = {
        normalize(re.split(r"[<>=!~\[; ]", dep, maxsplit=1)[0])
        for dep in pyproject["project"]["dependencies"]
    }
    assert declared | RUNTIME_PACKAGES <= set(pins), "every runtime dependency must be pinned"
    wrong = {n: (v, metadata.version(n)) for n, v in pins.items() if metadata.version(n) != v}
    assert not wrong, f"binder pins differ from the tested venv (pin, installed): {wrong}"
    assert "-c constraints.txt" in (repo_root / "binder" / "requirements.txt").read_text()


def test_constraints_match_the_installed_versions(repo_root: Path) -> None:
    pins = read_pins(repo_root / "binder" / "constraints.txt")
    installed = {normalize(d.metadata["Name"]): d.version for d in metadata.distributions()}
    wrong = {n: (v, installed[n]) for n, v in pins.items() if n in installed and installed[n] != v}
    assert not wrong, f"constraints differ from .venv (pin, installed); run `make pins`: {wrong}"
    assert "ptlab" not in pins
    assert set(pins) >= RUNTIME_PACKAGES


def test_binder_postbuild_installs_the_package(repo_root: Path) -> None:
    post_build = repo_root / "binder" / "postBuild"
    assert os.access(post_build, os.X_OK), "binder/postBuild must be executable"
    text = post_build.read_text()
    assert text.startswith("#!/usr/bin/env bash\n")
    assert "set -euo pipefail" in text
    assert re.search(r"pip install --no-deps \.$", text, re.M)


def test_jupyter_news_toast_is_disabled_in_this_venv(repo_root: Path) -> None:
    source = json.loads((repo_root / "binder" / "overrides.json").read_text())
    notification = source["@jupyterlab/apputils-extension:notification"]
    assert notification == {"fetchNews": "false", "checkForUpdates": False}
    installed = Path(sys.prefix) / "share" / "jupyter" / "lab" / "settings" / "overrides.json"
    assert json.loads(installed.read_text()) == source


# ---- nbval sanitising ------------------------------------------------------------------------


def sanitize(text: str) -> str:
    """Apply notebooks/nbval_sanitize.cfg exactly as nbval does (re.sub, in file order)."""
    cfg = (REPO_ROOT / "notebooks" / "nbval_sanitize.cfg").read_text()
    nbval_plugin = importlib.import_module("nbval.plugin")  # untyped; this is nbval's parser
    for regex, replace in nbval_plugin.get_sanitize_patterns(cfg):
        text = re.sub(regex, replace, text)
    return text


def test_sanitizer_masks_repr_addresses_and_timings() -> None:
    masked = sanitize("<Figure object at 0x7f3a9c2b1d60>")
    assert "7f3a9c2b1d60" not in masked
    assert masked == sanitize("<Figure object at 0x55d0e1a2b3c4>")
    assert sanitize("done in 1.25 s") == sanitize("done in 0.03 s")
    assert sanitize("done in 12.5 µs") == sanitize("done in 3.0 ms")


def test_sanitizer_keeps_lesson_addresses_and_versions() -> None:
    # Page-table addresses and kernel versions are lesson content: they must still be compared.
    assert sanitize("walk 0x7ffc12345678") == "walk 0x7ffc12345678"
    assert sanitize("v6.14 semi-RCU, v6.15 RCU") == "v6.14 semi-RCU, v6.15 RCU"
