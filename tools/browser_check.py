"""Run the tutorial notebooks in JupyterLab in a real (headless Chromium) browser and check their widgets.

For each notebook: open it in JupyterLab, Run > Run All Cells, wait until no cell is running, then check that
(a) no output shows a traceback, (b) every widget output rendered as a widget (not as its text fallback such as
"VBox(children=...)" or "Loading widget..."), (c) moving a slider (arrow key on its handle) changes something else
in the same widget. Prints one JSON line per notebook, saves a screenshot per notebook; exit code 1 if any fails.

The kernels run the notebooks' fast mode (CAVMAE_FAST=1). CAVMAE_QUIZ_SOLUTIONS is removed from the server's
environment: the quiz cells run as a reader sees them, blank answers print "not answered yet" and raise nothing,
so an error in a quiz cell is a real error. Nothing is saved: autosave is off, and JupyterLab's settings,
workspaces and checkpoints go to a temporary folder.

Tools (not project dependencies; the system browser and driver, nothing is downloaded at run time):

    apt-get install -y chromium chromium-driver
    python3 -m venv /opt/browsercheck && /opt/browsercheck/bin/pip install selenium

Run from anywhere (JupyterLab from the project's .venv):

    /opt/browsercheck/bin/python tools/browser_check.py 02_masking.ipynb [more.ipynb ...] [--out DIR] [--timeout S]
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys

REPO = Path(__file__).resolve().parents[1]
JUPYTER = REPO / ".venv" / "bin" / "jupyter"
SETTINGS = {  # JupyterLab user settings: never write the notebooks, keep every cell in the DOM, no news toast
    "@jupyterlab/docmanager-extension/plugin": {"autosave": False},
    "@jupyterlab/notebook-extension/tracker": {"windowingMode": "none", "scrollPastEnd": False},
    "@jupyterlab/apputils-extension/notification": {"fetchNews": "false"},
}
JS_STATE = """
const panel = document.querySelector('.jp-NotebookPanel:not(.lm-mod-hidden)');
const status = [...document.querySelectorAll('.jp-StatusBar-TextItem')].map(e => e.textContent).find(t => t.includes(' | ')) || '';
const ind = panel && panel.querySelector('.jp-Notebook-ExecutionIndicator');
return {kernel: status, indicator: ind ? ind.dataset.status : null,
        prompts: panel ? [...panel.querySelectorAll('.jp-CodeCell .jp-InputArea-prompt')].map(e => e.textContent.trim()) : []};
"""
JS_CHECK = """
const panel = document.querySelector('.jp-NotebookPanel:not(.lm-mod-hidden)');
const cells = [...panel.querySelectorAll('.jp-Notebook-cell')];
const cellOf = el => cells.indexOf(el.closest('.jp-Notebook-cell'));
const errors = [...panel.querySelectorAll('.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]')]
  .filter(e => /Traceback|Error displaying widget/.test(e.textContent)).map(e => ({cell: cellOf(e), text: e.textContent}));
const top = [...panel.querySelectorAll('.jp-Cell-outputArea > .jp-OutputArea-child > .jp-OutputArea-output')];
const widgets = top.filter(e => e.firstElementChild && e.firstElementChild.classList.contains('jupyter-widgets'));
const fallback = /^\\s*(\\w*(Box|Slider|Dropdown|Text|Buttons?|Output|HTML)|interactive)\\(|Loading widget|Error displaying widget|model not found/;
const fallbacks = top.filter(e => !widgets.includes(e) && fallback.test(e.textContent)).map(e => ({cell: cellOf(e), text: e.textContent}));
return {errors, widgets: widgets.length, fallbacks};
"""
JS_SIGNATURE = """  // the widget area holding the slider, minus the slider itself: what the slider should change
const c = arguments[0].closest('.jp-OutputArea-output').cloneNode(true);
c.querySelectorAll('.widget-slider').forEach(s => s.remove());
return c.innerHTML;
"""
JS_SHUTDOWN = """  // the browser has the XSRF cookie the REST API wants
const done = arguments[arguments.length - 1];
const xsrf = (document.cookie.match(/_xsrf=([^;]+)/) || [])[1] || '';
fetch('/api/sessions').then(r => r.json()).then(ss => Promise.all(ss.map(s =>
  fetch('/api/sessions/' + s.id, {method: 'DELETE', headers: {'X-XSRFToken': xsrf}}))))
  .then(() => done(true), e => done(String(e)));
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(root: Path, tmp: Path) -> tuple[subprocess.Popen, str]:
    for name, value in SETTINGS.items():
        f = tmp / "settings" / f"{name}.jupyterlab-settings"
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text(json.dumps(value))
    port = free_port()
    env = {**os.environ, "CAVMAE_FAST": "1"}
    env.pop("CAVMAE_QUIZ_SOLUTIONS", None)
    cmd = [str(JUPYTER), "lab", "--no-browser", f"--port={port}", "--ServerApp.ip=127.0.0.1", "--ServerApp.token=",
           "--ServerApp.password=", f"--ServerApp.root_dir={root}", f"--LabApp.user_settings_dir={tmp / 'settings'}",
           f"--LabApp.workspaces_dir={tmp / 'workspaces'}", f"--FileCheckpoints.root_dir={tmp / 'checkpoints'}"]
    if os.geteuid() == 0:
        cmd.append("--allow-root")
    server = subprocess.Popen(cmd, env=env, stdout=open(tmp / "server.log", "w"), stderr=subprocess.STDOUT,
                              start_new_session=True)  # Ctrl-C reaches us, and we stop it
    base = f"http://127.0.0.1:{port}"
    for _ in range(120):
        try:
            urllib.request.urlopen(base + "/api/status", timeout=2)
            return server, base
        except OSError:
            if server.poll() is not None:
                break
            time.sleep(1)
    stop_server(server)
    raise RuntimeError(f"JupyterLab did not answer; see {tmp / 'server.log'}")


def stop_server(server: subprocess.Popen) -> None:
    server.terminate()  # SIGTERM: jupyter_server shuts its kernels down
    try:
        server.wait(30)
    except subprocess.TimeoutExpired:
        server.kill()


def browser() -> webdriver.Chrome:
    opts = webdriver.ChromeOptions()
    opts.binary_location = "/usr/bin/chromium"
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--window-size=1400,1000"):
        opts.add_argument(arg)
    return webdriver.Chrome(options=opts, service=Service("/usr/bin/chromedriver"))


def wait_for(what: str, pred, timeout: float, poll: float = 1.0):
    end = time.time() + timeout
    while time.time() < end:
        value = pred()
        if value:
            return value
        time.sleep(poll)
    raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")


def first_lines(text: str) -> str:
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip() and not set(ln.strip()) <= {"-"}]
    return " | ".join(lines[:2] + lines[-1:] if len(lines) > 3 else lines)[:300]


def check_notebook(driver, base: str, path: Path, timeout: float, out: Path) -> dict:
    t0 = time.time()
    n_code = sum(c["cell_type"] == "code" for c in json.loads(path.read_text())["cells"])
    result = {"name": path.name, "seconds": None, "cells_run": 0, "code_cells": n_code, "errors": [],
              "widgets_rendered": 0, "widget_fallbacks": [], "slider_changed_output": None, "screenshot": None}
    state = lambda: driver.execute_script(JS_STATE)  # noqa: E731
    idle = lambda s: s["kernel"].endswith("Idle") and s["indicator"] == "idle" and "[*]:" not in s["prompts"]  # noqa: E731
    try:
        driver.get(f"{base}/lab/tree/{path.name}")
        wait_for("the kernel to be idle", lambda: idle(s := state()) and len(s["prompts"]) == n_code, 180)
        driver.find_element(By.XPATH, "//div[contains(@class, 'lm-MenuBar-itemLabel') and text()='Run']").click()
        wait_for("the Run menu", lambda: driver.find_elements(By.CSS_SELECTOR, "[data-command='runmenu:run-all']"), 10,
                 0.2)[0].click()
        wait_for("the run to start", lambda: any(p != "[ ]:" for p in state()["prompts"]), 60, 0.2)
        polls = []  # done = idle on three polls in a row (the status bar flickers to Idle between cells)
        wait_for("all cells to finish", lambda: polls.append(idle(state())) or all(polls[-3:]) and len(polls) >= 3,
                 timeout)
        time.sleep(2)  # widget views render after their output arrives
        result["cells_run"] = sum(p[1:-2].isdigit() for p in state()["prompts"])
        handles = driver.find_elements(By.CSS_SELECTOR, ".jp-Cell-outputArea .widget-slider .noUi-handle, "
                                                        ".jp-Cell-outputArea .jupyter-widgets input[type=range]")
        if handles:
            handle = handles[0]
            before = driver.execute_script(JS_SIGNATURE, handle)
            at_max = handle.get_attribute("aria-valuenow") == handle.get_attribute("aria-valuemax")
            driver.execute_script("arguments[0].scrollIntoView({block: 'center'}); arguments[0].focus();", handle)
            handle.send_keys(Keys.ARROW_LEFT if at_max else Keys.ARROW_RIGHT)
            try:
                wait_for("the slider's output to change", lambda: driver.execute_script(JS_SIGNATURE, handle) != before
                         and idle(state()), 120)
                result["slider_changed_output"] = True
            except TimeoutError:
                result["slider_changed_output"] = False
        found = driver.execute_script(JS_CHECK)  # after the slider: its callback's errors count too
        result["errors"] = [f"cell {e['cell']}: {first_lines(e['text'])}" for e in found["errors"]]
        result["widgets_rendered"] = found["widgets"]
        result["widget_fallbacks"] = [f"cell {e['cell']}: {first_lines(e['text'])}" for e in found["fallbacks"]]
    except Exception as e:  # noqa: BLE001 - a notebook that cannot be checked is a failed notebook
        result["errors"].append(f"check failed: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")
    finally:
        result["seconds"] = round(time.time() - t0, 1)
        result["screenshot"] = screenshot(driver, out / f"{path.stem}.png")
    return result


def screenshot(driver, file: Path) -> str | None:
    """Grow the window to the notebook's height (capped) so one screenshot shows every cell."""
    try:
        js = ("const e = document.querySelector('.jp-NotebookPanel:not(.lm-mod-hidden) .jp-WindowedPanel-outer');"
              "if (!e) return 0; e.scrollTop = 0; return e.scrollHeight - e.clientHeight;")
        driver.set_window_size(1400, min(1000 + driver.execute_script(js), 16000))  # what is hidden, shown
        time.sleep(1)
        driver.execute_script(js)
        driver.save_screenshot(str(file))
        return str(file)
    except Exception:  # noqa: BLE001
        return None


def failed(r: dict) -> bool:
    return bool(r["errors"] or r["widget_fallbacks"] or r["cells_run"] < r["code_cells"]
                or r["slider_changed_output"] is False)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("notebooks", nargs="*", help="notebook names in --root (default: all *.ipynb there)")
    ap.add_argument("--root", type=Path, default=REPO / "notebooks", help="JupyterLab's root dir (default: notebooks/)")
    ap.add_argument("--out", type=Path, default=Path("/tmp/browser_check"), help="screenshot folder")
    ap.add_argument("--timeout", type=float, default=600, help="seconds per notebook for Run All (default 600)")
    args = ap.parse_args()
    root = args.root.resolve()
    paths = [root / n for n in args.notebooks] or sorted(root.glob("*.ipynb"))
    if missing := [p.name for p in paths if not p.is_file()]:
        ap.error(f"no such notebook in {root}: {', '.join(missing)}")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # a kill runs the clean-up below, as Ctrl-C does
    args.out.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="browser_check_"))
    server, base = start_server(root, tmp)
    bad = 0
    try:
        for path in paths:
            shutil.rmtree(tmp / "workspaces", ignore_errors=True)  # open only this notebook
            driver = browser()
            try:
                result = check_notebook(driver, base, path, args.timeout, args.out)
                with contextlib.suppress(Exception):
                    driver.execute_async_script(JS_SHUTDOWN)  # free the CPU before the next notebook
            finally:
                with contextlib.suppress(Exception):
                    driver.quit()
            bad += failed(result)
            print(json.dumps(result), flush=True)
    finally:
        stop_server(server)
        shutil.rmtree(tmp, ignore_errors=True)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
