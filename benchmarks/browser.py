"""Drive the real app in a real browser: start ``streamlit run app.py`` on a free loopback port
and Debian's Chromium through Playwright, and wait for searches to finish on screen.

Used by ``tests/test_browser.py`` (end-to-end test) and ``benchmarks/bench_app_latency.py``
(click-to-results latency).
"""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CHROMIUM = Path(os.environ.get("CBIR_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync"]
RESULTS = ".st-key-results"             # the results grid (st.grid(key="results"))
CELL = '[data-testid="stGridCell"], [data-testid="stColumn"]'      # one result (grid cell; columns before issue 14)
CROPPER = "iframe[title='streamlit_cropper.st_cropper']"

PREVIOUS = "results of the previous query"       # the page's warning above results of another query

# True once the results grid shows ``k`` loaded images and, when given, ``first`` is in the first
# result's cell, with no element left stale by a rerun in progress and, when ``fresh``, no warning
# that the results shown are those of the previous query.
RESULTS_SHOWN = """([k, first, fresh]) => {
  const grid = document.querySelector('%s');
  if (!grid || document.querySelector('[data-stale="true"]')) return false;
  if (fresh && document.body.innerText.includes('%s')) return false;
  const imgs = [...grid.querySelectorAll('img')];
  if (imgs.length !== k || !imgs.every(i => i.complete && i.naturalWidth > 0)) return false;
  const cell = grid.querySelector('%s');
  return !first || (cell !== null && cell.innerText.includes(first));
}""" % (RESULTS, PREVIOUS, CELL)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def app_server(artifacts: Path, log: Path, timeout: float = 120.0, root: Path = REPO) -> Iterator[str]:
    """``streamlit run app.py`` of the checkout ``root`` over ``artifacts`` on a free loopback
    port; yields its URL once its health check answers, and stops it on exit. Its output goes to
    ``log``."""
    port = free_port()
    env = {**os.environ, "CBIR_ARTIFACTS": str(artifacts)}
    cmd = [sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless", "true",
           "--server.port", str(port), "--server.address", "127.0.0.1", "--browser.gatherUsageStats", "false",
           "--server.fileWatcherType", "none"]
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, cwd=root, env=env, stdout=out, stderr=subprocess.STDOUT)
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + timeout
            while True:
                if proc.poll() is not None:
                    raise RuntimeError(f"streamlit exited with {proc.returncode}: {log.read_text()[-2000:]}")
                try:
                    with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
                        if r.read().strip() == b"ok":
                            break
                except OSError:
                    pass
                if time.monotonic() > deadline:
                    raise TimeoutError(f"streamlit did not answer on {url} within {timeout:.0f} s")
                time.sleep(0.3)
            yield url
        finally:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@contextmanager
def chromium_page(width: int = 1400, height: int = 1000) -> Iterator:
    """A Playwright page in Debian's Chromium (headless)."""
    from playwright.sync_api import sync_playwright

    if not CHROMIUM.exists():
        raise FileNotFoundError(f"{CHROMIUM} is missing: apt-get install -y chromium (.ci/run does)")
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        try:
            yield browser.new_page(viewport={"width": width, "height": height})
        finally:
            browser.close()


def wait_idle(page, timeout_ms: float = 120_000) -> None:
    """Wait until the app's script run is over (nothing stale, no running indicator)."""
    page.wait_for_function("""() => !document.querySelector('[data-stale="true"]')
        && !document.querySelector('[data-testid="stStatusWidget"] [data-testid="stStatusWidgetRunningIcon"]')""",
                           timeout=timeout_ms, polling="raf")


def wait_rerun(page, timeout_ms: float = 120_000) -> None:
    """Wait for the rerun that an interaction starts: first for it to begin (elements turn
    stale; a very fast rerun may finish unseen), then for it to end."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    try:
        page.wait_for_function("() => !!document.querySelector('[data-stale=\"true\"]')", timeout=2_000, polling="raf")
    except PlaywrightTimeout:
        pass
    wait_idle(page, timeout_ms)


def choose(page, key: str, option: str) -> None:
    """Pick ``option`` in the selectbox of widget ``key`` by typing it, and wait for the rerun."""
    box = page.locator(f".st-key-{key} input")
    box.click()
    box.fill(option)
    page.keyboard.press("Enter")
    page.wait_for_function("([sel, o]) => (document.querySelector(sel) || {}).value?.startsWith(o)",
                           arg=[f".st-key-{key} input", option], timeout=60_000)
    wait_rerun(page)


def type_text(page, key: str, text: str) -> None:
    """Type ``text`` into the text field of widget ``key``, commit it (Enter) and wait for the rerun."""
    box = page.locator(f".st-key-{key} input")
    box.fill(text)
    box.press("Enter")
    wait_rerun(page)


def upload(page, key: str, path: str | Path) -> None:
    """Give the file uploader of widget ``key`` the file ``path``, wait for the rerun that follows
    its transfer, then for the cropper to draw the new image and for the rerun its first box
    starts: a click before either rerun is over is lost (the rerun supersedes the click's)."""
    with page.expect_request_finished(lambda request: "/_stcore/upload_file/" in request.url, timeout=60_000):
        page.locator(f".st-key-{key} input[type=file]").set_input_files(str(path))
    wait_rerun(page)
    page.frame_locator(CROPPER).locator("canvas").first.wait_for(timeout=60_000)
    wait_rerun(page)


def search(page, k: int, first: str | None = None, timeout_ms: float = 120_000, fresh: bool = False) -> float:
    """Press Search and wait until ``k`` results are on screen (``first`` in the first cell; with
    ``fresh``, once the warning that they belong to the previous query is gone: the results of a
    new query whose best match is unknown); returns the seconds from the click to the results,
    timed inside the page (the browser's clock, from the click event to the frame that shows
    them) so that the round trips of the test driver are not counted."""
    page.locator(".st-key-search button").wait_for()
    ms = page.evaluate("""async ([k, first, fresh, timeout]) => {
      const shown = %s;
      const t0 = performance.now();
      document.querySelector('.st-key-search button').click();
      while (!shown([k, first, fresh])) {
        if (performance.now() - t0 > timeout) throw new Error('no results after ' + timeout + ' ms');
        await new Promise(r => requestAnimationFrame(r));
      }
      return performance.now() - t0;
    }""" % RESULTS_SHOWN, [k, first, fresh, timeout_ms])
    return ms / 1000
