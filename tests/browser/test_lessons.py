"""Every lesson clicked through in JupyterLab in a real Chromium, as a learner would.

For each notebook: open it by URL, Run All, wait for the kernel, check that no cell shows an
error and that every widget rendered, perform the lesson's steps from ``lesson_steps.py``,
check again and save ``artifacts/<stem>.png``.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from labdriver import (
    NOTEBOOKS_DIR,
    assert_no_errors,
    assert_widgets_rendered,
    open_notebook,
    run_all,
    screenshot,
    wait_all_cells_done,
)
from lesson_steps import LESSON_STEPS
from playwright.sync_api import Page

NOTEBOOKS = sorted(path.name for path in NOTEBOOKS_DIR.glob("*.ipynb"))


def test_every_notebook_has_a_walkthrough() -> None:
    """A lesson cannot join the course without being clicked through here (and vice versa)."""
    missing = sorted(set(NOTEBOOKS) - set(LESSON_STEPS))
    stale = sorted(set(LESSON_STEPS) - set(NOTEBOOKS))
    assert not missing, f"add these notebooks to LESSON_STEPS in {Path(__file__).parent}: {missing}"
    assert not stale, f"LESSON_STEPS lists notebooks that do not exist: {stale}"


@pytest.mark.parametrize("notebook", NOTEBOOKS)
def test_lesson_in_browser(lab_page: Page, notebook: str) -> None:
    path = NOTEBOOKS_DIR / notebook
    stored = hashlib.sha256(path.read_bytes()).hexdigest()
    open_notebook(lab_page, notebook)
    run_all(lab_page)
    wait_all_cells_done(lab_page)
    assert_no_errors(lab_page)
    assert_widgets_rendered(lab_page)
    for step in LESSON_STEPS.get(notebook, ()):
        step.run(lab_page)
    assert_no_errors(lab_page)
    assert_widgets_rendered(lab_page)
    screenshot(lab_page, Path(notebook).stem)
    # Autosave is off in the test server: clicking through must not rewrite the lesson.
    assert hashlib.sha256(path.read_bytes()).hexdigest() == stored, f"{notebook} was modified"
