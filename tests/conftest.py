"""Shared fixtures for ptlab's tests (generic only; topic fixtures live next to their tests)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def repo_root() -> Path:
    """The repository's top directory (where Makefile and pyproject.toml live)."""
    return REPO_ROOT


@pytest.fixture(scope="session")
def venv_bin() -> Path:
    """The ``bin`` directory of the Python running the tests (the project's .venv)."""
    return Path(sys.executable).parent
