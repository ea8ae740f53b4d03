"""Every lesson clicked through in JupyterLab in a real Chromium, as a learner would.

For each notebook: open it by URL, Run All, wait for the kernel, check that no cell shows an
error, that every widget rendered and every figure is shown, perform the lesson's steps
from ``lesson_steps.py``, check again (also for errors raised inside widget callbacks,
which no cell shows) and save ``artifacts/<stem>.png``. A failure is reported as one
message naming the lesson, the cell or step and the error text, with a screenshot
``artifacts/<stem>-FAILED.png`` of what the browser showed.
"""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

import pytest
from labdriver import (
    NOTEBOOKS_DIR,
    KernelErrors,
    LabError,
    assert_figures_shown,
    assert_no_errors,
    assert_no_widget_errors,
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


def check_page(page: Page, notebook: Path, kernel_errors: KernelErrors) -> None:
    """Everything a learner would notice: errors in cells, in widgets or in callbacks,
    widgets not drawn, figures missing."""
    assert_no_errors(page)
    assert_widgets_rendered(page)
    assert_figures_shown(page, notebook)
    assert_no_widget_errors(page)
    kernel_errors.assert_none(page)


@pytest.mark.parametrize("notebook", NOTEBOOKS)
def test_lesson_in_browser(lab_page: Page, notebook: str) -> None:
    path = NOTEBOOKS_DIR / notebook
    stored = hashlib.sha256(path.read_bytes()).hexdigest()
    kernel_errors = KernelErrors(lab_page)
    where = "opening the notebook"
    failure = ""
    try:
        started = time.monotonic()
        open_notebook(lab_page, notebook)
        where = "Run All and the checks after it"
        run_all(lab_page)
        wait_all_cells_done(lab_page)
        check_page(lab_page, path, kernel_errors)
        print(f"{notebook} open + Run All + checks: {time.monotonic() - started:.1f} s")
        for number, step in enumerate(LESSON_STEPS.get(notebook, ()), 1):
            where = f"step {number} {step}"
            started = time.monotonic()
            step.run(lab_page)
            assert_no_widget_errors(lab_page)
            kernel_errors.assert_none(lab_page)
            print(f"{notebook} step {number}: {time.monotonic() - started:.1f} s  {step}")
        where = "after the last step"
        check_page(lab_page, path, kernel_errors)
        screenshot(lab_page, Path(notebook).stem)
    except LabError as error:
        shot = screenshot(lab_page, f"{Path(notebook).stem}-FAILED")
        failure = f"{error}\n(during {where}; screenshot: {shot})"
    if failure:  # outside the except block: one message, no chained traceback
        pytest.fail(failure, pytrace=False)
    # Autosave is off in the test server: clicking through must not rewrite the lesson.
    assert hashlib.sha256(path.read_bytes()).hexdigest() == stored, f"{notebook} was modified"
