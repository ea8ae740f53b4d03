"""Binder: build a fresh venv from ``binder/`` exactly as repo2docker would, then run lessons.

repo2docker (mybinder.org) copies the repository, runs ``pip install -r
binder/requirements.txt`` in its Python environment, then runs ``binder/postBuild`` from the
repository root with that environment first on PATH, and ignores the root ``pyproject.toml``.
This test does the same in a temporary venv and executes every lesson in it. Neither Docker
nor repo2docker is needed; pip's local wheels and cache keep it well under two minutes.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

REPO_ROOT = Path(__file__).resolve().parent.parent
NOT_IN_A_CLONE = {
    ".venv",
    ".git",
    "artifacts",
    "build",
    "dist",
    "__pycache__",
    ".ipynb_checkpoints",
}


def run(command: list[str], cwd: Path, env: dict[str, str], timeout: float = 300) -> str:
    """Run a command; on failure raise with the command and the end of its output."""
    result = subprocess.run(
        command,
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=timeout,
        check=False,
    )
    if result.returncode != 0:
        tail = "\n".join(result.stdout.splitlines()[-40:])
        pytest.fail(
            f"`{' '.join(command)}` (in {cwd}) exited {result.returncode}:\n{tail}", pytrace=False
        )
    return result.stdout


def copy_checkout(destination: Path) -> Path:
    """The files a clone would have (tracked or not ignored), copied to ``destination``."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=REPO_ROOT,
        capture_output=True,
        check=False,
    )
    if listed.returncode == 0:
        for name in listed.stdout.decode().split("\0"):
            source = REPO_ROOT / name
            if name and source.is_file():
                (destination / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(source, destination / name)
    else:  # not a git checkout: copy everything but local state
        shutil.copytree(
            REPO_ROOT,
            destination,
            dirs_exist_ok=True,
            ignore=lambda _dir, names: [
                n for n in names if n in NOT_IN_A_CLONE or n.endswith((".egg-info", "_cache"))
            ],
        )
    return destination


def clean_env(venv: Path, jupyter_home: Path) -> dict[str, str]:
    """The environment repo2docker's build and kernel see: the new venv first on PATH, no
    trace of the project's own venv, and Jupyter directories of its own."""
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    env["JUPYTER_PLATFORM_DIRS"] = "1"
    for name in ("CONFIG", "DATA", "RUNTIME"):
        env[f"JUPYTER_{name}_DIR"] = str(jupyter_home / name.lower())
    return env


def test_binder_build_runs_every_lesson(tmp_path: Path) -> None:
    repo = copy_checkout(tmp_path / "repo")
    venv = tmp_path / "venv"
    env = clean_env(venv, tmp_path / "jupyter")
    python = venv / "bin" / "python"

    run([sys.executable, "-m", "venv", str(venv)], tmp_path, env)
    # repo2docker's environment has a current pip; Python's bundled one is twice as slow here.
    run(
        [str(python), "-m", "pip", "install", "-q", "-c", "binder/constraints.txt", "-U", "pip"],
        repo,
        env,
    )
    run([str(python), "-m", "pip", "install", "-q", "-r", "binder/requirements.txt"], repo, env)
    run([str(repo / "binder" / "postBuild")], repo, env)

    # ptlab comes from the venv (not from the checkout on sys.path), and imports.
    located = run([str(python), "-c", "import ptlab; print(ptlab.__file__)"], tmp_path, env)
    assert Path(located.strip()).is_relative_to(venv), located

    # The widgets' front-end is installed where JupyterLab looks for it.
    extensions = run([str(venv / "bin" / "jupyter"), "labextension", "list"], tmp_path, env)
    assert "@jupyter-widgets/jupyterlab-manager" in extensions, extensions
    settings = venv / "share" / "jupyter" / "lab" / "settings" / "overrides.json"
    assert json.loads(settings.read_text()) == json.loads(
        (REPO_ROOT / "binder" / "overrides.json").read_text()
    )

    # Every lesson, not only the first: a learner on Binder may open any of them, and files
    # missing from the built package (package data) only show up in a non-editable install.
    lessons = sorted(path.name for path in (repo / "notebooks").glob("*.ipynb"))
    assert lessons, "no notebooks to run"
    out_dir = tmp_path / "executed"
    run(
        [
            str(venv / "bin" / "jupyter"),
            "nbconvert",
            "--to",
            "notebook",
            "--execute",
            "--ExecutePreprocessor.timeout=300",
            "--output-dir",
            str(out_dir),
            *(f"notebooks/{lesson}" for lesson in lessons),
        ],
        repo,
        env,
    )
    for lesson in lessons:
        executed = json.loads((out_dir / lesson).read_text())
        code_cells = [c for c in executed["cells"] if c["cell_type"] == "code"]
        errors = [
            f"cell {i}: {o.get('ename')}: {o.get('evalue')}"
            for i, cell in enumerate(executed["cells"])
            for o in cell.get("outputs", [])
            if o["output_type"] == "error"
        ]
        assert not errors, f"{lesson} failed in the Binder venv: {errors}"
        assert all(c["execution_count"] for c in code_cells), f"{lesson}: not every cell ran"
