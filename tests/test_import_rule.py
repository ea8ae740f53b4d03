"""The import rule: ptlab outside ``viz/`` and ``widgets/`` imports no plotting or widget code.

The model must run in a terminal, a script or CI without matplotlib, ipywidgets or IPython,
so only ``ptlab/viz/`` and ``ptlab/widgets/`` may import them (or import those two packages).
Checked twice: statically (every ``import`` in every core module, at module level or inside
functions) and dynamically (importing every core module leaves them out of ``sys.modules``).
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
PACKAGE_DIR = REPO_ROOT / "ptlab"
PRESENTATION = ("viz", "widgets")
FORBIDDEN = ("matplotlib", "ipywidgets", "IPython", "ptlab.viz", "ptlab.widgets")
FORBIDDEN_IN_SYS_MODULES = ("matplotlib", "ipywidgets", "IPython")


def core_modules() -> dict[str, Path]:
    """Dotted name -> file for every module of ptlab outside viz/ and widgets/."""
    modules: dict[str, Path] = {}
    for path in sorted(PACKAGE_DIR.rglob("*.py")):
        parts = path.relative_to(REPO_ROOT).with_suffix("").parts
        if len(parts) > 1 and parts[1] in PRESENTATION:
            continue
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        modules[name] = path
    return modules


def is_forbidden(module: str) -> bool:
    return any(module == bad or module.startswith(bad + ".") for bad in FORBIDDEN)


def resolve_relative(module_name: str, is_package: bool, level: int, target: str | None) -> str:
    """The absolute name ``from <level dots><target> import ...`` refers to inside a module."""
    package = module_name.split(".") if is_package else module_name.split(".")[:-1]
    base = package[: len(package) - (level - 1)] if level > 1 else package
    return ".".join([*base, target] if target else base)


def forbidden_imports(source: str, module_name: str, is_package: bool = False) -> list[str]:
    """Every forbidden import in ``source``, as ``line N: <import text>``.

    Looks at ``import x``, ``from x import y`` (absolute and relative, so ``from ..viz import
    f`` counts), and ``importlib.import_module("x")`` / ``__import__("x")`` with a literal name,
    wherever they appear (module level, functions, classes, ``if TYPE_CHECKING`` blocks).
    """
    found: list[str] = []
    for node in ast.walk(ast.parse(source)):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = resolve_relative(module_name, is_package, node.level, node.module)
            else:
                base = node.module or ""
            names = [base, *(f"{base}.{alias.name}" for alias in node.names)]
        elif isinstance(node, ast.Call):
            func = node.func
            called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if (
                called in ("import_module", "__import__")
                and node.args
                and isinstance(node.args[0], ast.Constant)
                and isinstance(node.args[0].value, str)
            ):
                names = [node.args[0].value]
        if any(is_forbidden(name) for name in names):
            found.append(
                f"line {getattr(node, 'lineno', 0)}: {ast.get_source_segment(source, node)}"
            )
    return found


# ---- the checker itself can fail -------------------------------------------------------------


@pytest.mark.parametrize(
    "source",
    [
        "import matplotlib.pyplot as plt",
        "def f():\n    import ipywidgets\n",
        "from IPython.display import display",
        "class C:\n    def m(self):\n        from matplotlib import pyplot\n",
        "import importlib\nmod = importlib.import_module('ipywidgets')",
        "from ..viz import paging",
        "from ptlab.widgets.common import App",
    ],
)
def test_checker_flags_forbidden_imports(source: str) -> None:
    assert forbidden_imports(source, "ptlab.mm.memory"), source


@pytest.mark.parametrize(
    "source",
    [
        "import numpy as np",
        "from . import page",
        "from ..kernel import rcu",
        "from matplotlib_inline_like_name import x",
        "name = 'matplotlib'",
    ],
)
def test_checker_accepts_allowed_imports(source: str) -> None:
    assert forbidden_imports(source, "ptlab.mm.memory") == [], source


def test_relative_imports_resolve_like_python() -> None:
    assert resolve_relative("ptlab.mm.memory", False, 1, "page") == "ptlab.mm.page"
    assert resolve_relative("ptlab.mm.memory", False, 2, "viz") == "ptlab.viz"
    assert resolve_relative("ptlab.mm", True, 1, "page") == "ptlab.mm.page"
    assert resolve_relative("ptlab.mm", True, 2, None) == "ptlab"


# ---- the rule, applied to the package --------------------------------------------------------


def test_core_modules_import_no_presentation_code_statically() -> None:
    modules = core_modules()
    assert "ptlab" in modules
    offences = [
        f"{name} ({path.relative_to(REPO_ROOT)}) {finding}"
        for name, path in modules.items()
        for finding in forbidden_imports(path.read_text(), name, path.name == "__init__.py")
    ]
    assert not offences, "only ptlab/viz and ptlab/widgets may import these:\n" + "\n".join(
        offences
    )


def test_importing_every_core_module_loads_no_presentation_code() -> None:
    names = sorted(core_modules())
    script = (
        "import importlib, json, sys\n"
        f"for name in {names!r}:\n"
        "    importlib.import_module(name)\n"
        f"bad = sorted(m for m in sys.modules if m.split('.')[0] in {FORBIDDEN_IN_SYS_MODULES!r})\n"
        "print(json.dumps(bad))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, cwd=REPO_ROOT, check=False
    )
    if result.returncode != 0:
        last_lines = "\n".join(result.stderr.strip().splitlines()[-6:])
        pytest.fail(f"importing ptlab's core modules failed:\n{last_lines}", pytrace=False)
    loaded = json.loads(result.stdout.strip().splitlines()[-1])
    assert loaded == [], f"importing ptlab's core modules loaded: {loaded}"
