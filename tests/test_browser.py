"""The notebooks in a real JupyterLab, driven through headless Chromium.

JupyterLab serves a temporary copy of the repository (notebooks, data link, dvc.yaml,
params.yaml) on 127.0.0.1 with a random port and token, and private Jupyter/IPython
settings folders. Each notebook must open with its cells rendered, an idle kernel and no
dialog; the data notebook then runs its quick defaults through "Run > Run All Cells" and
its report table and sprite preview must appear. Screenshots (and the server log) go to
tests/artifacts/browser/ or $PXBY_TEST_ARTIFACTS/browser/.

Set-up installs what is missing: Debian's `chromium` (apt-get, as root) and the Python
`playwright` driver (pip; its own browser download is never used). Without playwright the
raw DevTools protocol over websocket-client (a jupyter_server dependency) drives the same
steps; PXBY_BROWSER_DRIVER=cdp forces that path. The test skips only when Chromium cannot
be installed. Every process started here is stopped by its id.
"""

from __future__ import annotations

import base64
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
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

pytestmark = pytest.mark.browser

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted(p.name for p in (REPO / "notebooks").glob("*.ipynb"))
DATA_NOTEBOOK = "01_prepare_data.ipynb"
CHROMIUM = Path(os.environ.get("PXBY_CHROMIUM", "/usr/bin/chromium"))
VIEWPORT = (1400, 1000)
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-dev-shm-usage", "--no-default-browser-check", "--disable-extensions",
    "--hide-scrollbars", f"--window-size={VIEWPORT[0]},{VIEWPORT[1]}",
    "--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0",
]
SERVER_START_S = 90
PAGE_READY_S = 90
RUN_ALL_S = 180


# ---------------------------------------------------------------- processes and files

def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _stop_group(proc: subprocess.Popen, grace_s: float = 10.0) -> None:
    """SIGTERM the process group led by proc (started with start_new_session), then SIGKILL."""
    if proc.poll() is not None:
        return
    for sig, wait_s in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait_s)
            return
        except subprocess.TimeoutExpired:
            continue


def _write_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=1))
    tmp.replace(path)


def _tail(path: Path, chars: int = 3000) -> str:
    return path.read_text(errors="replace")[-chars:] if path.exists() else "(no log)"


@pytest.fixture(scope="session")
def artifacts() -> Path:
    root = os.environ.get("PXBY_TEST_ARTIFACTS")
    folder = (Path(root) if root else REPO / "tests" / "artifacts") / "browser"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


# ---------------------------------------------------------------- set-up: chromium, driver

@pytest.fixture(scope="session")
def chromium() -> Path:
    """Debian's chromium, installed with apt-get when missing (the only reason to skip)."""
    if CHROMIUM.exists():
        return CHROMIUM
    if shutil.which("apt-get") is None or os.geteuid() != 0:
        pytest.skip(f"Chromium is not at {CHROMIUM} and cannot be installed here (needs apt-get "
                    "as root): run `apt-get install chromium` or set PXBY_CHROMIUM")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    try:
        done = subprocess.run("apt-get update -qq && apt-get install -y -qq chromium", shell=True,
                              env=env, capture_output=True, text=True, timeout=400)
    except subprocess.TimeoutExpired:
        pytest.skip("Chromium could not be installed: `apt-get install chromium` took over 400 s")
    if done.returncode != 0 or not CHROMIUM.exists():
        pytest.skip(f"Chromium could not be installed: `apt-get install chromium` exited "
                    f"{done.returncode}: {(done.stdout + done.stderr)[-600:]}")
    return CHROMIUM


def _playwright_or_none() -> Any:
    """playwright.sync_api, pip-installed into this interpreter's environment if missing."""
    if os.environ.get("PXBY_BROWSER_DRIVER") == "cdp":
        return None
    try:
        return importlib.import_module("playwright.sync_api")
    except ImportError:
        pass
    try:
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--disable-pip-version-check",
                        "playwright"], capture_output=True, timeout=240, check=True)
    except (subprocess.SubprocessError, OSError):
        return None  # the raw DevTools protocol drives the same steps
    importlib.invalidate_caches()
    try:
        return importlib.import_module("playwright.sync_api")
    except ImportError:
        return None


# ---------------------------------------------------------------- browser drivers

class PlaywrightPage:
    """Playwright attached over CDP to the Chromium this test launched (and will kill)."""

    name = "playwright"

    def __init__(self, sync_api: Any, cdp_port: int):
        self._pw = sync_api.sync_playwright().start()
        self._browser = self._pw.chromium.connect_over_cdp(f"http://127.0.0.1:{cdp_port}",
                                                           timeout=30_000)
        context = self._browser.contexts[0]
        self._page = context.pages[0] if context.pages else context.new_page()
        self._page.set_viewport_size({"width": VIEWPORT[0], "height": VIEWPORT[1]})
        self._page.set_default_timeout(30_000)

    def goto(self, url: str) -> None:
        self._page.goto(url, wait_until="domcontentloaded", timeout=60_000)

    def js(self, expression: str) -> Any:
        return self._page.evaluate(expression)

    def click_at(self, x: float, y: float) -> None:
        self._page.mouse.click(x, y)

    def png(self) -> bytes:
        return self._page.screenshot()

    def close(self) -> None:
        try:
            self._browser.close()
        finally:
            self._pw.stop()


class CdpPage:
    """The same four actions over the raw DevTools protocol (websocket-client)."""

    name = "cdp"

    def __init__(self, cdp_port: int):
        import websocket  # jupyter_server depends on websocket-client

        with urllib.request.urlopen(f"http://127.0.0.1:{cdp_port}/json/list", timeout=10) as r:
            pages = [t for t in json.load(r) if t["type"] == "page"]
        self._ws = websocket.create_connection(pages[0]["webSocketDebuggerUrl"], timeout=60,
                                               suppress_origin=True)
        self._next_id = 0
        self._call("Page.enable")
        self._call("Emulation.setDeviceMetricsOverride", width=VIEWPORT[0], height=VIEWPORT[1],
                   deviceScaleFactor=1, mobile=False)

    def _call(self, method: str, **params: Any) -> dict:
        self._next_id += 1
        self._ws.send(json.dumps({"id": self._next_id, "method": method, "params": params}))
        while True:  # events arrive in between; skip them
            message = json.loads(self._ws.recv())
            if message.get("id") == self._next_id:
                if "error" in message:
                    raise RuntimeError(f"DevTools {method}: {message['error']}")
                return message.get("result", {})

    def goto(self, url: str) -> None:
        self._call("Page.navigate", url=url)

    def js(self, expression: str) -> Any:
        result = self._call("Runtime.evaluate", expression=expression, returnByValue=True,
                            awaitPromise=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"page script failed: {result['exceptionDetails']}")
        return result["result"].get("value")

    def click_at(self, x: float, y: float) -> None:
        self._call("Input.dispatchMouseEvent", type="mouseMoved", x=x, y=y)
        for kind in ("mousePressed", "mouseReleased"):
            self._call("Input.dispatchMouseEvent", type=kind, x=x, y=y, button="left",
                       clickCount=1)

    def png(self) -> bytes:
        return base64.b64decode(self._call("Page.captureScreenshot", format="png")["data"])

    def close(self) -> None:
        self._ws.close()


@pytest.fixture(scope="session")
def page(chromium: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """One headless Chromium (fresh profile) and a driver attached to its first tab."""
    sync_api = _playwright_or_none()
    profile = tmp_path_factory.mktemp("chromium-profile")
    log = profile.parent / "chromium.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([str(chromium), *CHROMIUM_ARGS, f"--user-data-dir={profile}",
                                 "about:blank"], stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
    driver = None
    try:
        port_file = profile / "DevToolsActivePort"
        deadline = time.monotonic() + 60
        while not (port_file.exists() and port_file.read_text().strip()):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"Chromium did not open its DevTools port: {_tail(log)}")
            time.sleep(0.2)
        cdp_port = int(port_file.read_text().split()[0])
        driver = PlaywrightPage(sync_api, cdp_port) if sync_api else CdpPage(cdp_port)
        yield driver
    finally:
        if driver is not None:
            try:
                driver.close()
            finally:
                _stop_group(proc)
        else:
            _stop_group(proc)


# ---------------------------------------------------------------- JupyterLab server

class Lab:
    """A running JupyterLab: its URL, token, served folder and process."""

    def __init__(self, root: Path, port: int, token: str, proc: subprocess.Popen, log: Path):
        self.root, self.port, self.token, self.proc, self.log = root, port, token, proc, log
        self.base = f"http://127.0.0.1:{port}"

    def api(self, method: str, path: str) -> Any:
        request = urllib.request.Request(self.base + path, method=method,
                                         headers={"Authorization": f"token {self.token}"})
        with urllib.request.urlopen(request, timeout=10) as reply:
            body = reply.read()
        return json.loads(body) if body else None

    def url(self, notebook: str) -> str:
        # a workspace per notebook, so each page opens exactly one document
        workspace = re.sub(r"\W", "-", Path(notebook).stem)
        return f"{self.base}/lab/workspaces/{workspace}/tree/notebooks/{notebook}?token={self.token}"


def _workspace_copy(dest: Path) -> Path:
    """What the notebooks need from the repository; running them writes scratch/ here only."""
    shutil.copytree(REPO / "notebooks", dest / "notebooks",
                    ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
    for name in ("dvc.yaml", "params.yaml"):  # repo_root() looks for dvc.yaml
        shutil.copy2(REPO / name, dest / name)
    shutil.copytree(REPO / "profiles", dest / "profiles")  # the notebooks' quick defaults
    if (REPO / "data").exists():
        (dest / "data").symlink_to(REPO / "data", target_is_directory=True)
    return dest


def _private_jupyter_env(home: Path) -> dict[str, str]:
    """Jupyter, JupyterLab, IPython and matplotlib settings in temp folders: no user leaks."""
    dirs = {"HOME": "home", "JUPYTER_CONFIG_DIR": "config", "JUPYTER_DATA_DIR": "data",
            "JUPYTER_RUNTIME_DIR": "runtime", "IPYTHONDIR": "ipython",
            "JUPYTERLAB_SETTINGS_DIR": "lab-settings", "JUPYTERLAB_WORKSPACES_DIR": "workspaces",
            "MPLCONFIGDIR": "matplotlib", "XDG_CACHE_HOME": "cache", "XDG_CONFIG_HOME": "xdg"}
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JUPYTER", "IPYTHON"))}
    for var, name in dirs.items():
        (home / name).mkdir(parents=True, exist_ok=True)
        env[var] = str(home / name)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONUNBUFFERED"] = "1"
    # no news feed, no update check, no "receive official Jupyter news?" toast
    _write_json(home / "config" / "jupyter_server_config.json", {"LabApp": {
        "news_url": None,
        "check_for_updates_class": "jupyterlab.handlers.announcements.NeverCheckForUpdate"}})
    _write_json(home / "lab-settings" / "@jupyterlab" / "apputils-extension"
                / "notification.jupyterlab-settings",
                {"fetchNews": "false", "checkForUpdates": False})
    return env


@pytest.fixture(scope="session")
def lab(tmp_path_factory: pytest.TempPathFactory, artifacts: Path) -> Iterator[Lab]:
    base = tmp_path_factory.mktemp("jupyterlab")
    root = _workspace_copy(base / "repo")
    env = _private_jupyter_env(base / "private")
    port, token, log = _free_port(), secrets.token_hex(16), artifacts / "jupyter.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "jupyter", "lab", "--no-browser", "--ip=127.0.0.1",
             f"--port={port}", "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}",
             f"--ServerApp.root_dir={root}", "--allow-root", "--LabApp.extension_manager=readonly",
             "--LabApp.expose_app_in_browser=True"],
            cwd=root, env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True)
    server = Lab(root, port, token, proc, log)
    try:
        deadline = time.monotonic() + SERVER_START_S
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"JupyterLab exited with {proc.returncode}: {_tail(log)}")
            try:
                server.api("GET", "/api/status")
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"JupyterLab did not answer /api/status within "
                                       f"{SERVER_START_S} s: {_tail(log)}") from None
                time.sleep(0.5)
        yield server
    finally:
        try:
            for kernel in server.api("GET", "/api/kernels"):
                server.api("DELETE", f"/api/kernels/{kernel['id']}")
        except OSError:
            pass  # the server is gone already; its process group is stopped below
        _stop_group(proc)


# ---------------------------------------------------------------- page helpers

PANEL = "document.querySelector('.jp-NotebookPanel:not(.lm-mod-hidden)')"

# errors from the notebook model (window.jupyterapp: --LabApp.expose_app_in_browser): the
# rendered traceback has the same mime type as any stderr text
ERRORS = """(() => {
  const widget = window.jupyterapp && window.jupyterapp.shell.currentWidget;
  const cells = widget && widget.content && widget.content.model && widget.content.model.cells;
  const errors = [];
  for (let i = 0; cells && i < cells.length; i++) {
    const cell = cells.get(i);
    if (cell.type !== 'code') continue;
    for (const o of cell.outputs.toJSON())
      if (o.output_type === 'error') errors.push(`cell ${i}: ${o.ename}: ${o.evalue}`);
  }
  return errors;
})()"""

PANEL_STATE = f"""(() => {{
  const panel = {PANEL};
  if (!panel) return null;
  const indicator = panel.querySelector('.jp-Notebook-ExecutionIndicator');
  const h1 = panel.querySelector('.jp-MarkdownCell .jp-RenderedMarkdown h1');
  return {{
    cells: panel.querySelectorAll('.jp-Notebook .jp-Cell').length,
    kernel: indicator ? indicator.dataset.status : null,
    title: h1 ? h1.textContent : null,
    prompts: [...panel.querySelectorAll('.jp-CodeCell .jp-InputPrompt')]
      .map(p => p.textContent.trim()),
    errors: {ERRORS},
  }};
}})()"""

PROBLEMS = """(() => [
  ...[...document.querySelectorAll('.jp-Dialog')].map(d => 'dialog: ' + d.innerText),
  ...[...document.querySelectorAll('.Toastify__toast--error')].map(t => 'error toast: ' + t.innerText),
])()"""

OUTPUTS = f"""(() => {{
  const panel = {PANEL};
  return {{
    tables: [...panel.querySelectorAll('.jp-OutputArea .jp-RenderedMarkdown table')]
      .map(t => ({{rows: t.rows.length, header: [...t.rows[0].cells].map(c => c.innerText.trim())}})),
    images: [...panel.querySelectorAll('.jp-OutputArea img')]
      .map(i => [i.complete, i.naturalWidth, i.naturalHeight]),
  }};
}})()"""

# centre of an element after scrolling it into view, or null while it is not shown
CENTRE = """((el) => {
  if (!el) return null;
  el.scrollIntoView({block: 'nearest'});
  const r = el.getBoundingClientRect();
  return r.width && r.height ? [r.x + r.width / 2, r.y + r.height / 2] : null;
})(%s)"""

RUN_MENU = "[...document.querySelectorAll('.lm-MenuBar-item')].find(e => e.textContent.trim() === 'Run')"
RUN_ALL_ITEM = ("[...document.querySelectorAll('.lm-Menu .lm-Menu-itemLabel')]"
                ".find(e => e.textContent.trim() === 'Run All Cells')")


def _shot(page: Any, folder: Path, name: str) -> Path:
    path = folder / f"{name}.png"
    tmp = path.with_suffix(".tmp.png")
    tmp.write_bytes(page.png())
    tmp.replace(path)
    return path


def _wait(page: Any, expression: str, ok: Any, what: str, timeout_s: float,
          folder: Path, name: str) -> Any:
    """Poll a page expression until ok(value); on timeout screenshot `name`-timeout and fail."""
    deadline, value = time.monotonic() + timeout_s, None
    while time.monotonic() < deadline:
        try:
            value = page.js(expression)
        except Exception as err:  # the page may be navigating
            value = err
        if not isinstance(value, Exception) and ok(value):
            return value
        try:
            problems = page.js(PROBLEMS)
        except Exception:  # navigating; checked again on the next poll
            problems = []
        if problems:
            _shot(page, folder, f"{name}-problem")
            raise AssertionError(f"{name}: {problems} while waiting for {what}")
        time.sleep(0.3)
    _shot(page, folder, f"{name}-timeout")
    raise AssertionError(f"{name}: no {what} after {timeout_s} s; last page state {value!r}")


def _click(page: Any, element: str, what: str, folder: Path, name: str) -> None:
    x, y = _wait(page, CENTRE % element, bool, what, 30, folder, name)
    page.click_at(x, y)


def _notebook(name: str) -> dict:
    return json.loads((REPO / "notebooks" / name).read_text())


def _open(page: Any, lab: Lab, name: str, folder: Path) -> dict:
    """Open a notebook; wait for all its cells, its title and an idle kernel."""
    cells = _notebook(name)["cells"]
    title = "".join(cells[0]["source"]).splitlines()[0].lstrip("# ").strip()
    page.goto(lab.url(name))
    state = _wait(page, PANEL_STATE,
                  lambda s: bool(s) and s["cells"] == len(cells) and s["kernel"] == "idle"
                  and bool(s["title"]),
                  "rendered notebook with an idle kernel", PAGE_READY_S, folder, Path(name).stem)
    assert title in state["title"], f"{name}: first heading {state['title']!r}, want {title!r}"
    return state


# ---------------------------------------------------------------- tests

@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_opens_and_renders(name: str, page: Any, lab: Lab, artifacts: Path) -> None:
    state = _open(page, lab, name, artifacts)
    code_cells = sum(c["cell_type"] == "code" for c in _notebook(name)["cells"])
    assert len(state["prompts"]) == code_cells, f"{name}: {state['prompts']}"
    time.sleep(1.0)  # a late dialog (kernel choice, build prompt) shows within a moment
    assert page.js(PROBLEMS) == [], f"{name}: {page.js(PROBLEMS)}"
    _shot(page, artifacts, Path(name).stem)


def test_data_notebook_runs_through_the_ui(page: Any, lab: Lab, artifacts: Path) -> None:
    assert (REPO / "data" / "pokemon").is_dir(), \
        "data/pokemon is missing: restore the data snapshot with `make data` (dvc pull)"
    stem = Path(DATA_NOTEBOOK).stem
    _open(page, lab, DATA_NOTEBOOK, artifacts)
    _click(page, RUN_MENU, "'Run' in the menu bar", artifacts, stem)
    _click(page, RUN_ALL_ITEM, "'Run All Cells' in the Run menu", artifacts, stem)

    def finished(state: dict) -> bool:  # every cell ran, or one failed and the run stopped
        numbered = [bool(re.fullmatch(r"\[\d+\]:", p)) for p in state["prompts"]]
        # after an error the kernel aborts the queue; JupyterLab may leave those at [*]
        return state["kernel"] == "idle" and bool(numbered) and (
            all(numbered) or bool(state["errors"]))

    started = time.monotonic()
    _wait(page, PANEL_STATE, finished, "execution count on every code cell", RUN_ALL_S,
          artifacts, f"{stem}-run")
    print(f"\n{DATA_NOTEBOOK}: Run All Cells took {time.monotonic() - started:.1f} s "
          f"(driver: {page.name})")
    _shot(page, artifacts, f"{stem}-run")  # the view after the run, kept for failures too
    assert page.js(ERRORS) == [], f"{DATA_NOTEBOOK} raised: {page.js(ERRORS)}"
    outputs = page.js(OUTPUTS)
    assert page.js(PROBLEMS) == [], page.js(PROBLEMS)

    # the data report: a markdown table whose header is the one written to report.md
    dataset = lab.root / "scratch" / "artifacts" / "pokemon"
    report = (dataset / "report.md").read_text()
    assert outputs["tables"], "no markdown table in the outputs (the data report)"
    table = max(outputs["tables"], key=lambda t: t["rows"])
    assert table["rows"] >= 2 and all(cell in report for cell in table["header"]), table

    # the sprite preview: an image output with the size of sprites_preview.png, decoded
    with Image.open(dataset / "sprites_preview.png") as preview:
        size = list(preview.size)
    shown = [img for img in outputs["images"] if img[0] and img[1:] == size]
    assert shown, f"sprite preview {size} not among the output images {outputs['images']}"
    assert len([img for img in outputs["images"] if img[0] and img[1] > 0]) >= 2, \
        f"want the preview and the length histogram, got {outputs['images']}"

    page.js(f"{PANEL}.querySelector('.jp-OutputArea .jp-RenderedMarkdown')"
            ".scrollIntoView({block: 'start'})")
    _shot(page, artifacts, f"{stem}-run-report")
    page.js(f"[...{PANEL}.querySelectorAll('.jp-OutputArea img')]"
            f".find(i => i.naturalWidth === {size[0]}).scrollIntoView({{block: 'start'}})")
    _shot(page, artifacts, f"{stem}-run-preview")
