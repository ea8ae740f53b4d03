"""Fixtures for the real-browser suite: one JupyterLab server and one Chromium per session.

Both are always shut down, even when a test fails.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from labdriver import (
    CHROMIUM,
    CHROMIUM_FLAGS,
    NOTEBOOKS_DIR,
    LabServer,
    start_lab,
    stop_lab,
)
from playwright.sync_api import BrowserContext, Page, ViewportSize, sync_playwright

VIEWPORT: ViewportSize = {"width": 1280, "height": 900}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Everything under tests/browser/ carries the ``browser`` marker."""
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.browser)


@pytest.fixture(scope="session")
def lab_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabServer]:
    """JupyterLab from the project's .venv on 127.0.0.1, a free port and a random token."""
    server = start_lab(NOTEBOOKS_DIR, tmp_path_factory.mktemp("jupyter"))
    try:
        yield server
    finally:
        stop_lab(server)


@pytest.fixture(scope="session")
def browser_context(
    lab_server: LabServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[BrowserContext]:
    """Debian's Chromium with a fresh profile, pointed at the server, token sent as a header."""
    if not CHROMIUM.is_file():
        pytest.fail(
            f"Chromium not found at {CHROMIUM}: `make test` installs Debian's chromium "
            "(or run `apt-get install -y chromium`); never `playwright install`.",
            pytrace=False,
        )
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("chromium-profile")),
            executable_path=str(CHROMIUM),
            args=CHROMIUM_FLAGS,
            headless=True,
            base_url=lab_server.base_url,
            extra_http_headers={"Authorization": f"token {lab_server.token}"},
            viewport=VIEWPORT,
        )
        context.set_default_timeout(30_000)
        try:
            yield context
        finally:
            context.close()


@pytest.fixture
def lab_page(browser_context: BrowserContext, lab_server: LabServer) -> Iterator[Page]:
    """A new tab; its browser console errors are printed (shown by pytest on failure)."""
    page = browser_context.new_page()
    console_errors: list[str] = []
    page.on("pageerror", lambda error: console_errors.append(f"page error: {error}"))
    page.on(
        "console",
        lambda message: (
            console_errors.append(f"console.{message.type}: {message.text}")
            if message.type == "error"
            else None
        ),
    )
    try:
        yield page
    finally:
        page.close()
        for line in console_errors:
            print(line)
        # One kernel per lesson is enough: stop this test's kernels before the next one.
        for kernel in lab_server.api("GET", "/api/kernels") or []:
            lab_server.api("DELETE", f"/api/kernels/{kernel['id']}")
