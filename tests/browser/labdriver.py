"""Drive JupyterLab in Debian's Chromium the way a learner does.

Two halves:

* the server: :func:`start_lab` runs ``jupyter lab`` from the project's ``.venv`` on
  127.0.0.1 with a free port and a random token, isolated from the user's own Jupyter
  settings, and :func:`stop_lab` always takes it down again (kernels included);
* the page helpers: :func:`open_notebook`, :func:`wait_kernel_idle`, :func:`run_all`,
  :func:`wait_all_cells_done`, :func:`assert_no_errors`, :func:`assert_widgets_rendered`,
  :func:`assert_figures_shown`, :func:`assert_no_widget_errors`, :func:`click_button`,
  :func:`label_text`, :func:`image_sources`, :func:`settle`, :func:`screenshot`,
  :func:`readme_picture`;
* :class:`KernelErrors`: every error the kernel reports while the page runs, including the
  ones raised inside widget callbacks, which JupyterLab shows in no cell.

Every failure message names the notebook and, where there is one, the cell index and the
text the learner would have seen.
"""

from __future__ import annotations

import ast
import contextlib
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from playwright.sync_api import Locator, Page, WebSocket

REPO_ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS_DIR = REPO_ROOT / "notebooks"
ARTIFACTS_DIR = REPO_ROOT / "artifacts"
CHROMIUM = Path(os.environ.get("CHROMIUM", "/usr/bin/chromium"))
# The flags found to work for headless Debian Chromium on these machines (testing-notes.md).
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# The status bar's kernel text. The notebook toolbar's indicator says "idle" before the
# kernel exists, so it must not be trusted (testing-notes.md: Run All then runs nothing).
KERNEL_IDLE_TEXT = "Python 3 (ipykernel) | Idle"
RUN_ALL_ITEM = "li.lm-Menu-item[data-command='runmenu:run-all']"
# The notebook on screen. JupyterLab keeps other open documents in the DOM, hidden, so every
# query is scoped to the visible notebook panel.
NOTEBOOK = ".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook"
OUTPUT = f"{NOTEBOOK} .jp-OutputArea-output"
STDERR = ".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']"
STDERR_OUTPUT = f"{NOTEBOOK} {STDERR}"
WIDGET_MIME = "application/vnd.jupyter.widget-view+json"
WIDGET_FAILURE_TEXTS = ("Loading widget", "Error displaying widget", "model not found")
# JupyterLab settings used only by the test server (a throw-away user-settings directory):
# never autosave (the suite must not rewrite the tracked notebooks) and keep every cell in
# the DOM so that cells below the fold can be inspected.
TEST_USER_SETTINGS = {
    "@jupyterlab/docmanager-extension/plugin.jupyterlab-settings": {"autosave": False},
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {
        "fetchNews": "false",
        "checkForUpdates": False,
    },
}

DEFAULT_TIMEOUT_S = 60.0


class LabError(AssertionError):
    """A browser-suite failure, with a message meant to be read without a traceback."""


@dataclass
class LabServer:
    """A running ``jupyter lab`` started by :func:`start_lab`."""

    process: subprocess.Popen[bytes]
    base_url: str
    token: str
    root_dir: Path
    log_path: Path

    def log_tail(self, lines: int = 30) -> str:
        """The last lines the server wrote, for failure messages."""
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def api(self, method: str, path: str) -> Any:
        """Call the server's REST API with the token; returns the decoded JSON (or None)."""
        request = urllib.request.Request(
            f"{self.base_url}{path}",
            method=method,
            headers={"Authorization": f"token {self.token}"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            body = response.read()
        return json.loads(body) if body else None


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def project_jupyter() -> Path:
    """The ``jupyter`` executable to serve the lessons: the project's ``.venv`` by default.

    ``PTLAB_JUPYTER`` overrides it, e.g. to point the suite at a scratch venv in which
    something (such as ``jupyterlab_widgets``) was deliberately broken.
    """
    jupyter = Path(os.environ.get("PTLAB_JUPYTER", REPO_ROOT / ".venv" / "bin" / "jupyter"))
    if not jupyter.is_file():
        raise LabError(f"jupyter not found at {jupyter}: run `make test` (it creates .venv)")
    return jupyter


def _write_user_settings(settings_dir: Path) -> None:
    for relative, values in TEST_USER_SETTINGS.items():
        path = settings_dir / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(values, indent=2))


def start_lab(
    root_dir: Path, work_dir: Path, jupyter: Path | None = None, timeout: float = DEFAULT_TIMEOUT_S
) -> LabServer:
    """Start JupyterLab on 127.0.0.1 serving ``root_dir``; wait until its API answers.

    Jupyter's config, data, runtime, settings and workspace directories all live in
    ``work_dir`` so that nothing from the user's own set-up (saved workspaces, settings,
    kernelspecs) leaks into the test. Raises :class:`LabError`, with the server's log, when
    the server exits or does not answer ``/api/status`` within ``timeout`` seconds.
    """
    jupyter = jupyter or project_jupyter()
    port = free_port()
    token = secrets.token_hex(24)
    for name in ("config", "data", "runtime", "user-settings", "workspaces"):
        (work_dir / name).mkdir(parents=True, exist_ok=True)
    _write_user_settings(work_dir / "user-settings")
    env = dict(os.environ)
    env.pop("VIRTUAL_ENV", None)
    env.pop("PYTHONPATH", None)
    env.update(
        JUPYTER_CONFIG_DIR=str(work_dir / "config"),
        JUPYTER_DATA_DIR=str(work_dir / "data"),
        JUPYTER_RUNTIME_DIR=str(work_dir / "runtime"),
        JUPYTERLAB_SETTINGS_DIR=str(work_dir / "user-settings"),
        JUPYTERLAB_WORKSPACES_DIR=str(work_dir / "workspaces"),
        JUPYTER_PLATFORM_DIRS="1",
        PATH=f"{jupyter.parent}{os.pathsep}{env.get('PATH', '')}",
    )
    command = [
        str(jupyter),
        "lab",
        "--no-browser",
        "--ServerApp.ip=127.0.0.1",
        f"--ServerApp.port={port}",
        "--ServerApp.port_retries=0",
        f"--ServerApp.token={token}",
        f"--ServerApp.root_dir={root_dir}",
        "--LabApp.expose_app_in_browser=True",
    ]
    if os.geteuid() == 0:
        command.append("--allow-root")
    log_path = work_dir / "jupyter-lab.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=root_dir
        )
    server = LabServer(process, f"http://127.0.0.1:{port}", token, root_dir, log_path)
    try:
        _wait_until_ready(server, timeout)
    except BaseException:
        stop_lab(server)
        raise
    return server


def _wait_until_ready(server: LabServer, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise LabError(
                f"jupyter lab exited with status {server.process.returncode} before answering "
                f"/api/status; its log ends with:\n{server.log_tail()}"
            )
        try:
            server.api("GET", "/api/status")
            return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            time.sleep(0.25)
    raise LabError(
        f"jupyter lab did not answer {server.base_url}/api/status within {timeout:.0f} s; "
        f"its log ends with:\n{server.log_tail()}"
    )


def stop_lab(server: LabServer, timeout: float = 15.0) -> None:
    """Shut down every kernel, then the server; kill whatever is left. Never raises."""
    try:
        for kernel in server.api("GET", "/api/kernels") or []:
            server.api("DELETE", f"/api/kernels/{kernel['id']}")
    except Exception:  # the server may already be gone; the kill below still runs
        pass
    children = _descendants(server.process.pid)
    server.process.terminate()
    try:
        server.process.wait(timeout)
    except subprocess.TimeoutExpired:
        server.process.kill()
        server.process.wait(timeout)
    for pid in children:  # kernels start in their own session, so kill them one by one
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)


def _descendants(pid: int) -> list[int]:
    """Every live process below ``pid`` (read from /proc)."""
    parents: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            # The command name (field 2) may contain spaces; ppid is 2 fields after its ")".
            fields = stat.read_text().rsplit(")", 1)[1].split()
            parents.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found: list[int] = []
    todo = [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


# ---- page helpers ------------------------------------------------------------------------


def poll(check: Callable[[], Any], timeout: float, message: Callable[[], str]) -> Any:
    """Call ``check`` until it returns something truthy; raise LabError(message()) on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise LabError(message())
        time.sleep(0.2)


def notebook_name(page: Page) -> str:
    """The notebook the page shows (from its URL), for messages."""
    match = re.search(r"/lab/tree/([^?#]+)", page.url)
    return match.group(1) if match else page.url


def open_notebook(page: Page, name: str, timeout: float = DEFAULT_TIMEOUT_S) -> None:
    """Open ``notebooks/<name>`` by URL and wait until its kernel is idle.

    The page's context must have been created with the server's ``base_url`` and its
    token in an ``Authorization`` header (see ``tests/browser/conftest.py``).
    """
    # ?reset: start from an empty workspace, not with the previous test's notebooks open.
    page.goto(f"/lab/tree/{quote(name)}?reset")
    page.wait_for_selector(f"{NOTEBOOK} .jp-Cell", timeout=timeout * 1000)
    # Give the lesson the whole width (and the screenshots): fold away the file browser.
    page.evaluate("() => window.jupyterapp && window.jupyterapp.shell.collapseLeft()")
    wait_kernel_idle(page, timeout)


def wait_kernel_idle(page: Page, timeout: float = DEFAULT_TIMEOUT_S) -> None:
    """Wait for the status bar's ``Python 3 (ipykernel) | Idle``."""
    try:
        page.get_by_text(KERNEL_IDLE_TEXT, exact=True).first.wait_for(timeout=timeout * 1000)
    except Exception as error:
        status = page.locator(".jp-StatusBar-Widget").all_inner_texts()
        raise LabError(
            f"{notebook_name(page)}: kernel not idle after {timeout:.0f} s "
            f"(status bar: {' | '.join(s.strip() for s in status if s.strip())!r})"
        ) from error


def run_all(page: Page) -> None:
    """Run > Run All Cells, through the menu as a learner would."""
    page.locator("li.lm-MenuBar-item", has_text="Run").first.click()
    page.locator(RUN_ALL_ITEM).click()


_PROMPTS_JS = """
(notebook) => Array.from(document.querySelectorAll(notebook + ' .jp-Cell')).map((cell, index) => {
  const prompt = cell.querySelector('.jp-InputArea-prompt');
  return {index, code: cell.classList.contains('jp-CodeCell'),
          prompt: prompt ? prompt.textContent.trim() : ''};
})
"""


def cell_prompts(page: Page) -> list[dict[str, Any]]:
    """Each cell's index, whether it is code, and its input prompt text (``[3]:``, ``[*]:``)."""
    prompts: list[dict[str, Any]] = page.evaluate(_PROMPTS_JS, NOTEBOOK)
    return prompts


def wait_all_cells_done(page: Page, timeout: float = DEFAULT_TIMEOUT_S) -> None:
    """Wait until no cell shows ``[*]`` and every code cell has run (or one has failed).

    After an error JupyterLab stops the run and leaves later cells unrun, so an error output
    also ends the wait; :func:`assert_no_errors` then reports it.
    """

    def done() -> bool:
        prompts = [p for p in cell_prompts(page) if p["code"]]
        if any("*" in p["prompt"] for p in prompts):
            return False
        all_ran = all(re.search(r"\[\d+\]", p["prompt"]) for p in prompts)
        return all_ran or page.locator(STDERR_OUTPUT).count() > 0

    poll(
        done,
        timeout,
        lambda: (
            f"{notebook_name(page)}: cells still running or unrun after {timeout:.0f} s: "
            + ", ".join(
                f"cell {p['index']} {p['prompt'] or '[ ]'}" for p in cell_prompts(page) if p["code"]
            )
        ),
    )
    wait_kernel_idle(page, timeout)


_ERRORS_JS = """
([notebook, selector]) => {
  const found = [];
  document.querySelectorAll(notebook + ' .jp-Cell').forEach((cell, index) => {
    cell.querySelectorAll(selector).forEach((output) => {
      const text = output.innerText;
      if (/Traceback|Error/.test(text)) found.push({index, text});
    });
  });
  return found;
}
"""


def assert_no_errors(page: Page) -> None:
    """Fail if any cell shows an error output; name the notebook, cell index and error text.

    Also fails when a code cell was never run (a failed Run All leaves the rest unrun).
    """
    errors: list[dict[str, Any]] = page.evaluate(_ERRORS_JS, [NOTEBOOK, STDERR])
    if errors:
        details = "\n\n".join(f"cell {e['index']}:\n{_shorten(e['text'])}" for e in errors)
        raise LabError(f"{notebook_name(page)}: error output in the notebook\n\n{details}")
    unrun = [
        p["index"]
        for p in cell_prompts(page)
        if p["code"] and not re.search(r"\[\d+\]", p["prompt"])
    ]
    if unrun:
        raise LabError(f"{notebook_name(page)}: code cells never ran: {unrun}")


def _shorten(text: str, lines: int = 25) -> str:
    kept = text.strip().splitlines()
    if len(kept) <= lines:
        return "\n".join(kept)
    return "\n".join(["...", *kept[-lines:]])


_WIDGET_OUTPUTS_JS = """
(widgetMime) => {
  const app = window.jupyterapp;
  if (!app) return {error: 'window.jupyterapp is missing (server not started by start_lab?)'};
  const panel = app.shell.currentWidget;
  if (!panel || !panel.content || !panel.content.widgets) return {error: 'no notebook open'};
  const found = [];
  panel.content.widgets.forEach((cell, index) => {
    if (cell.model.type !== 'code') return;
    const outputs = cell.model.outputs;
    for (let i = 0; i < outputs.length; i++) {
      const output = outputs.get(i);
      if (!output.data || !(widgetMime in output.data)) continue;
      const view = cell.outputArea.widgets[i];
      const node = view ? view.node.querySelector('.jp-OutputArea-output') : null;
      let rendered = 'nothing';
      if (node) {
        const isView = node.classList.contains('jupyter-widgets')
          || node.querySelector('.jupyter-widgets') !== null;
        rendered = isView ? 'widget' : (node.getAttribute('data-mime-type') || 'unknown');
      }
      found.push({index, rendered, text: node ? node.innerText.slice(0, 300) : ''});
    }
  });
  return {found};
}
"""


def assert_widgets_rendered(page: Page) -> None:
    """Fail unless every widget output was drawn by the ipywidgets front-end.

    Catches both the widget manager's own failure texts ("Loading widget...", "Error
    displaying widget", "model not found") and the silent failure a learner sees when the
    front-end extension (``jupyterlab_widgets``) is missing or mismatched: JupyterLab then
    shows the widget's text repr (``Button(description=...)``) instead of the widget.
    """
    name = notebook_name(page)
    outputs_text = "\n".join(page.locator(OUTPUT).all_inner_texts())
    for failure in WIDGET_FAILURE_TEXTS:
        if failure.lower() in outputs_text.lower():
            line = next(
                (ln for ln in outputs_text.splitlines() if failure.lower() in ln.lower()), ""
            )
            raise LabError(f"{name}: a widget did not render: {line.strip()!r}")
    report: dict[str, Any] = page.evaluate(_WIDGET_OUTPUTS_JS, WIDGET_MIME)
    if "error" in report:
        raise LabError(f"{name}: cannot inspect widget outputs: {report['error']}")
    broken = [w for w in report["found"] if w["rendered"] != "widget"]
    if broken:
        details = "; ".join(
            f"cell {w['index']} shown as {w['rendered']}: {w['text'].strip()[:120]!r}"
            for w in broken
        )
        raise LabError(
            f"{name}: widget outputs not rendered by the ipywidgets front-end "
            f"(is jupyterlab_widgets installed and matching ipywidgets?): {details}"
        )


def click_button(page: Page, text: str, timeout: float = 10.0) -> None:
    """Click the widget button (in an output area) whose caption is exactly ``text``.

    A button that is shown but disabled fails at once, with its tooltip (the stepper puts
    the reason a lane cannot step there).
    """
    buttons = page.locator(f"{OUTPUT} button.widget-button").filter(
        has_text=re.compile(rf"^\s*{re.escape(text)}\s*$")
    )
    if buttons.count() and buttons.first.is_disabled():
        tooltip = buttons.first.get_attribute("title") or "no tooltip"
        raise LabError(f"{notebook_name(page)}: button {text!r} is disabled ({tooltip})")
    try:
        buttons.first.click(timeout=timeout * 1000)
    except Exception as error:
        captions = page.locator(f"{OUTPUT} button.widget-button").all_inner_texts()
        raise LabError(
            f"{notebook_name(page)}: no widget button {text!r}; buttons shown: {captions}"
        ) from error


def label_texts(page: Page) -> list[str]:
    """The text of every Label and HTML widget in the outputs, in page order."""
    return [
        text.strip()
        for text in page.locator(
            f"{OUTPUT} div.widget-label, {OUTPUT} .widget-html-content"
        ).all_inner_texts()
    ]


def label_text(page: Page, contains: str | None = None, index: int = 0) -> str:
    """One Label/HTML widget's text: the first containing ``contains``, else the ``index``-th."""
    texts = label_texts(page)
    if contains is not None:
        matching = [t for t in texts if contains in t]
        if not matching:
            raise LabError(
                f"{notebook_name(page)}: no label contains {contains!r}; labels: {texts}"
            )
        return matching[0]
    if index >= len(texts):
        raise LabError(f"{notebook_name(page)}: no label #{index}; labels: {texts}")
    return texts[index]


def image_sources(page: Page) -> list[str]:
    """The ``src`` of every image in the outputs (matplotlib figures are PNG data URLs)."""
    sources: list[str] = page.locator(f"{OUTPUT} img").evaluate_all(
        "(images) => images.map((img) => img.getAttribute('src') || '')"
    )
    return sources


def screenshot(page: Page, name: str) -> Path:
    """Save what the browser window shows as ``artifacts/<name>.png`` (git-ignored)."""
    ARTIFACTS_DIR.mkdir(exist_ok=True)
    path = ARTIFACTS_DIR / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


#: README pictures: at most this wide and this large (a PNG in git stays small).
README_MAX_WIDTH = 1200
README_MAX_BYTES = 300_000
#: A tall window for element pictures, so that a whole widget fits in the notebook panel.
TALL_VIEWPORT_HEIGHT = 2400


def making_readme_pictures() -> bool:
    """True under ``make screenshots`` (``PTLAB_SCREENSHOT_DIR`` set)."""
    return bool(os.environ.get("PTLAB_SCREENSHOT_DIR"))


def readme_picture(page: Page, name: str, element: Locator | None = None) -> Path:
    """Save a README picture as ``artifacts/readme/<name>.png``: ``element`` alone (the
    window made tall enough to hold it), else the browser window; then shrunk to at most
    :data:`README_MAX_WIDTH` pixels wide and :data:`README_MAX_BYTES` bytes.

    With ``PTLAB_SCREENSHOT_DIR`` set (``make screenshots``: ``docs/img``) it is also copied
    there, which is how the README pictures are regenerated from what the code renders.
    """
    folder = ARTIFACTS_DIR / "readme"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.png"
    if element is None:
        page.screenshot(path=str(path))
    else:
        size = page.viewport_size
        if size is None:
            raise LabError(f"{notebook_name(page)}: the page has no fixed viewport size")
        page.set_viewport_size({"width": size["width"], "height": TALL_VIEWPORT_HEIGHT})
        try:
            element.evaluate("(node) => node.scrollIntoView({block: 'start'})")
            page.wait_for_timeout(300)  # let JupyterLab lay the taller panel out
            element.screenshot(path=str(path))
        finally:
            page.set_viewport_size(size)
    _shrink_png(path)
    extra = os.environ.get("PTLAB_SCREENSHOT_DIR")
    if extra:
        target = REPO_ROOT / extra
        target.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target / path.name)
    return path


def _shrink_png(path: Path) -> None:
    """Resize to README_MAX_WIDTH, then fall back to a 256-colour palette if still too big."""
    from PIL import Image  # Pillow comes with matplotlib

    with Image.open(path) as opened:
        image = opened.convert("RGB")
    if image.width > README_MAX_WIDTH:
        height = round(image.height * README_MAX_WIDTH / image.width)
        image = image.resize((README_MAX_WIDTH, height), Image.Resampling.LANCZOS)
    image.save(path, optimize=True)
    if path.stat().st_size > README_MAX_BYTES:
        image.quantize(colors=256, method=Image.Quantize.MEDIANCUT).save(path, optimize=True)
    if path.stat().st_size > README_MAX_BYTES:
        raise LabError(
            f"README picture {path.name} is {path.stat().st_size} bytes even as a 256-colour "
            f"PNG (limit {README_MAX_BYTES}); picture a smaller part of the page"
        )


def settle(page: Page, quiet_s: float = 0.4, timeout: float = DEFAULT_TIMEOUT_S) -> None:
    """Wait until the kernel is idle and the widget texts and pictures stop changing.

    A click can update a widget several times (the text panel, then the picture); the next
    step must start from the final state, or it would see those late updates as its own.
    """
    deadline = time.monotonic() + timeout
    before = (label_texts(page), image_sources(page))
    while True:
        page.wait_for_timeout(quiet_s * 1000)
        now = (label_texts(page), image_sources(page))
        idle = page.get_by_text(KERNEL_IDLE_TEXT, exact=True).count() > 0
        if idle and now == before:
            return
        if time.monotonic() > deadline:
            raise LabError(
                f"{notebook_name(page)}: widgets still changing (or kernel busy) "
                f"{timeout:.0f} s after the last action"
            )
        before = now


def figure_calls(cells: list[dict[str, Any]]) -> dict[int, int]:
    """Code cell index -> how many figures the cell shows unconditionally: its top-level
    ``show(...)`` calls (``ptlab.widgets.common.show`` displays one PNG each).

    >>> figure_calls([{"cell_type": "markdown", "source": "show(x)"},
    ...               {"cell_type": "code", "source": ["show(a)\\n", "if x:\\n", "    show(b)"]}])
    {1: 1}
    """
    counts: dict[int, int] = {}
    for index, cell in enumerate(cells):
        if cell["cell_type"] != "code":
            continue
        source = cell["source"]
        text = "".join(source) if isinstance(source, list) else source
        try:
            tree = ast.parse(
                "\n".join(ln for ln in text.splitlines() if not ln.startswith(("%", "!")))
            )
        except SyntaxError:
            continue
        shown = sum(
            1
            for stmt in tree.body
            if isinstance(stmt, ast.Expr)
            and isinstance(stmt.value, ast.Call)
            and isinstance(stmt.value.func, ast.Name)
            and stmt.value.func.id == "show"
        )
        if shown:
            counts[index] = shown
    return counts


_CELL_IMAGES_JS = """
(notebook) => Array.from(document.querySelectorAll(notebook + ' .jp-Cell')).map(
  (cell) => cell.querySelectorAll('.jp-OutputArea-output img').length)
"""


def assert_figures_shown(page: Page, notebook: Path) -> None:
    """Fail unless every cell that calls ``show(...)`` displays at least that many images."""
    images: list[int] = page.evaluate(_CELL_IMAGES_JS, NOTEBOOK)
    missing = [
        f"cell {index} shows {images[index] if index < len(images) else 0} image(s), "
        f"expected {count}"
        for index, count in figure_calls(json.loads(notebook.read_text())["cells"]).items()
        if index >= len(images) or images[index] < count
    ]
    if missing:
        raise LabError(f"{notebook_name(page)}: figures missing: {'; '.join(missing)}")


def assert_no_widget_errors(page: Page) -> None:
    """Fail if a widget's error line (``ptlab.widgets.common.ErrorBox``) shows a message."""
    shown = [t for t in label_texts(page) if t.startswith("Error:")]
    if shown:
        raise LabError(f"{notebook_name(page)}: a widget shows an error: {shown}")


_MSG_TYPE = re.compile(rb'"msg_type":\s*"([a-z_]+)"')
_ERROR_FIELDS = re.compile(rb'"(ename|evalue)":\s*"((?:[^"\\]|\\.)*)"')


class KernelErrors:
    """Every ``error`` message the kernel sends to the page, in order.

    Errors raised in a widget callback (a button's ``on_click``, an ``observe`` handler)
    appear in no cell: JupyterLab only logs them. Listening on the kernel's websocket sees
    them all. ``entries`` holds ``"<request type>: <ename>: <evalue>"`` strings.
    """

    def __init__(self, page: Page) -> None:
        self.entries: list[str] = []
        page.on("websocket", self._watch)

    def _watch(self, socket: WebSocket) -> None:
        if "/api/kernels/" in socket.url:
            socket.on("framereceived", self._frame)

    def _frame(self, payload: str | bytes) -> None:
        data = payload.encode() if isinstance(payload, str) else payload
        types = [m.group(1).decode() for m in _MSG_TYPE.finditer(data)]
        if not types or types[0] != "error":  # the header's msg_type comes first
            return
        fields = {
            m.group(1).decode(): m.group(2).decode(errors="replace")
            for m in _ERROR_FIELDS.finditer(data)
        }
        request = types[1] if len(types) > 1 else "?"  # the parent header's msg_type
        self.entries.append(f"{request}: {fields.get('ename', '?')}: {fields.get('evalue', '')}")

    def assert_none(self, page: Page, since: int = 0) -> None:
        """Fail if the kernel reported an error (after the first ``since`` entries)."""
        new = self.entries[since:]
        if new:
            raise LabError(
                f"{notebook_name(page)}: the kernel reported "
                f"{'an error' if len(new) == 1 else f'{len(new)} errors'} "
                f"(comm_msg = in a widget callback): " + " | ".join(new)
            )
