"""What the web-page tests share: Debian's Chromium driven by playwright (never a downloaded
browser), `visionml serve` and `visionml view` in their own processes on loopback, and untrained
models adjusted to answer with spread-out scores."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support import calibrate_batch_norm, free_port, stop_process

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
LABELS = ["circle", "square", "star", "triangle"]  # the sample data's classes, in training's order
API_KEY = "page-test-key"


def browser_missing() -> str | None:
    """Why the browser tests cannot run here, or None. Only a missing browser skips them (CI's
    .ci/run installs it); the playwright package is in the test extra, so its absence is an
    error of the environment and fails the tests instead of hiding them."""
    if not os.path.exists(CHROMIUM):
        return f"{CHROMIUM} is missing: `apt-get install chromium` (.ci/run does)"
    return None


LOOPBACK = ("127.0.0.1", "localhost", "::1")  # hostnames as urlsplit gives them


def _offline(outside: list):
    """A route handler: requests to loopback go through; any other (a CDN, a font, a tracker) is
    recorded in ``outside`` and aborted, as it would fail on a machine with no network."""
    from urllib.parse import urlsplit

    def route(route):
        url = urlsplit(route.request.url)
        if url.scheme in ("http", "https", "ws", "wss") and url.hostname not in LOOPBACK:
            outside.append(route.request.url)
            route.abort()
        else:
            route.continue_()

    return route


@contextlib.contextmanager
def chromium_page(profile: Path, width: int = 1280, height: int = 900):
    """A page of a fresh headless Chromium (its own user-data folder ``profile``), closed on exit,
    on failure too. The page's JavaScript errors are collected in ``page.errors``, its requests in
    ``page.requests`` (method, path); a request that leaves the loopback interface is aborted and
    fails the test when the block ends: the pages must work with no network."""
    from urllib.parse import urlsplit

    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("the playwright package is missing: `pip install -e '.[test]'` (the test extra has it)")

    with sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            str(profile), executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True,
            viewport={"width": width, "height": height}, accept_downloads=True)
        try:
            outside: list[str] = []
            context.route("**/*", _offline(outside))
            page = context.pages[0] if context.pages else context.new_page()
            page.errors, page.requests = [], []
            page.on("pageerror", lambda error: page.errors.append(str(error)))
            page.on("request", lambda r: page.requests.append((r.method, urlsplit(r.url).path)))
            page.set_default_timeout(90_000)
            yield page
            assert outside == [], f"the page asked for files off this machine: {outside}"
        finally:
            context.close()


def unlabelled_controls(page) -> list[str]:
    """The page's visible inputs, selects and buttons that have no accessible name (no label, no
    aria-label, no text): each should say what it does to a screen reader."""
    return page.evaluate("""() => [...document.querySelectorAll('input, select, button, textarea')]
        .filter(e => e.getClientRects().length > 0 || e.classList.contains('visually-hidden'))
        .filter(e => !(e.labels && e.labels.length) && !e.getAttribute('aria-label') && !e.textContent.trim())
        .map(e => e.id || e.outerHTML.slice(0, 80))""")


class VisionmlProcess:
    """``visionml COMMAND ... --port P`` in its own process on loopback, output in a log file;
    a context manager, so it stops on failure too."""

    def __init__(self, log_dir: Path, *args: str, ready_path: str = "/"):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.ready_path = ready_path
        self.log_path = Path(log_dir) / f"{args[0]}-{self.port}.log"
        self.args = [sys.executable, "-m", "visionml", *args, "--port", str(self.port)]
        self.proc = None

    def __enter__(self):
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(self.args, stdout=log, stderr=subprocess.STDOUT, env=env)
        try:
            self._wait()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait(self, timeout: float = 240.0):
        import httpx

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{' '.join(self.args)} exited with {self.proc.returncode}:\n{self.log()}")
            try:
                if httpx.get(self.url + self.ready_path, timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"{' '.join(self.args)} not ready after {timeout:.0f} s:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def stop(self):
        stop_process(self.proc)

    def __exit__(self, *exc):
        self.stop()


def calibrated_detector(images):
    """An ``adjust`` for make_untrained_model_folder: BatchNorm statistics taken from ``images``
    (an untrained network's 0/1 shrink every activation until all boxes score alike) and a
    sharper box classifier, so that the detector answers with boxes whose scores spread from
    about 0.3 to 0.97, as a trained one does."""
    import numpy as np
    import torch
    from PIL import Image

    def adjust(model):
        pixels = [torch.from_numpy(np.asarray(Image.open(p).convert("RGB"), dtype=np.float32) / 255).permute(2, 0, 1)
                  for p in images]
        calibrate_batch_norm(model, pixels)
        with torch.no_grad():
            model.roi_heads.box_predictor.cls_score.weight.mul_(20)

    return adjust


def copy_tree(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def needs_browser():
    reason = browser_missing()
    if reason:
        pytest.skip(reason)
