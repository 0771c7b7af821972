"""Load a page in headless Chromium and report what went wrong, for the browser tests.

Talks the Chrome DevTools Protocol over ``--remote-debugging-pipe`` (Chromium reads commands on
file descriptor 3 and answers on 4, NUL-separated JSON), so it needs nothing beyond the standard
library and Debian's ``chromium`` package.
"""

from __future__ import annotations

import base64
import json
import os
import select
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

#: Flags for a sandbox-less machine with a closed network (see the machine notes): without the
#: background-networking ones Chromium keeps trying to reach Google's hosts.
FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--remote-debugging-pipe",
)
CANDIDATES = ("/usr/bin/chromium", "chromium", "chromium-browser", "google-chrome")

# Every image must have loaded with real pixels; report the ones that did not.
BROKEN_IMAGES_JS = """
Array.from(document.images)
  .filter(img => !(img.complete && img.naturalWidth > 0))
  .map(img => img.alt || img.src.slice(0, 80))
"""


def find_chromium() -> str | None:
    for candidate in CANDIDATES:
        path = shutil.which(candidate)
        if path:
            return path
    return None


@dataclass
class PageCheck:
    """What a page load produced: console errors, uncaught exceptions, failed loads, broken images."""

    url: str
    console_errors: list[str] = field(default_factory=list)
    broken_images: list[str] = field(default_factory=list)
    image_count: int = 0
    title: str = ""
    screenshots: list[Path] = field(default_factory=list)

    @property
    def problems(self) -> list[str]:
        return [f"console: {m}" for m in self.console_errors] + [f"image did not load: {m}" for m in self.broken_images]


class DevToolsPipe:
    def __init__(self, chromium: str, user_data_dir: str, timeout: float = 60.0):
        self.timeout = timeout
        to_chrome_r, self._to_chrome = os.pipe()
        self._from_chrome, from_chrome_w = os.pipe()

        def wire_fds():  # runs in the child: the protocol lives on fds 3 and 4
            # Duplicate first: a pipe end may already sit on 3 or 4, and dup2 onto itself would
            # leave it close-on-exec.
            reading, writing = os.dup(to_chrome_r), os.dup(from_chrome_w)
            os.dup2(reading, 3)
            os.dup2(writing, 4)

        self.process = subprocess.Popen(
            [chromium, *FLAGS, f"--user-data-dir={user_data_dir}", "about:blank"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            preexec_fn=wire_fds, close_fds=False,
        )
        os.close(to_chrome_r)
        os.close(from_chrome_w)
        self._buffer = b""
        self._next_id = 0
        self.events: list[dict] = []

    def _read_message(self, deadline: float) -> dict:
        while b"\0" not in self._buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("Chromium did not answer in time")
            ready, _, _ = select.select([self._from_chrome], [], [], remaining)
            if ready:
                chunk = os.read(self._from_chrome, 1 << 20)
                if not chunk:
                    raise RuntimeError(f"Chromium closed the DevTools pipe: {self._stderr_tail()}")
                self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(message)

    def _stderr_tail(self) -> str:
        if self.process.poll() is None:
            return "(still running)"
        return (self.process.stderr.read() or b"").decode(errors="replace")[-2000:]

    def send(self, method: str, params: dict | None = None, session: str | None = None) -> dict:
        self._next_id += 1
        message = {"id": self._next_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        os.write(self._to_chrome, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + self.timeout
        while True:
            reply = self._read_message(deadline)
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def wait_for(self, method: str, session: str) -> dict:
        deadline = time.monotonic() + self.timeout
        for event in self.events:
            if event.get("method") == method and event.get("sessionId") == session:
                return event
        while True:
            event = self._read_message(deadline)
            self.events.append(event)
            if event.get("method") == method and event.get("sessionId") == session:
                return event

    def close(self) -> None:
        try:
            self.send("Browser.close")
        except Exception:
            pass
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        for fd in (self._to_chrome, self._from_chrome):
            try:
                os.close(fd)
            except OSError:
                pass
        if self.process.stderr:
            self.process.stderr.close()


def _describe(event: dict) -> str | None:
    method, params = event.get("method"), event.get("params", {})
    if method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
        return " ".join(str(a.get("value", a.get("description", ""))) for a in params.get("args", []))
    if method == "Runtime.exceptionThrown":
        details = params.get("exceptionDetails", {})
        return details.get("exception", {}).get("description") or details.get("text", "uncaught exception")
    if method == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
        entry = params["entry"]
        return f"{entry.get('text', '')} {entry.get('url', '')}".strip()
    if method == "Network.loadingFailed" and not params.get("canceled"):
        return f"failed to load a resource: {params.get('errorText', '')}"
    return None


def check_page(page: Path | str, screenshot_stem: Path, chromium: str, width: int = 1280, height: int = 900,
               settle: float = 0.0) -> PageCheck:
    """Load ``page`` (a local file, or a URL string), collect its errors, and save ``<stem>.png``
    (first screen) and ``<stem>-full.png`` (the whole page). ``settle`` seconds are waited after
    the load event, for pages that draw with scripts."""
    url = page if isinstance(page, str) and "://" in page else Path(page).resolve().as_uri()
    check = PageCheck(url=url)
    with tempfile.TemporaryDirectory(prefix="collapsebench-chromium-") as profile:
        browser = DevToolsPipe(chromium, profile)
        try:
            target = browser.send("Target.createTarget", {"url": "about:blank"})["targetId"]
            session = browser.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
            for domain in ("Runtime", "Log", "Network", "Page"):
                browser.send(f"{domain}.enable", session=session)
            browser.send("Emulation.setDeviceMetricsOverride",
                         {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False}, session=session)
            browser.send("Page.navigate", {"url": check.url}, session=session)
            browser.wait_for("Page.loadEventFired", session)
            time.sleep(settle)
            evaluate = {"expression": BROKEN_IMAGES_JS, "returnByValue": True}
            check.broken_images = browser.send("Runtime.evaluate", evaluate, session=session)["result"]["value"]
            count = {"expression": "document.images.length", "returnByValue": True}
            check.image_count = browser.send("Runtime.evaluate", count, session=session)["result"]["value"]
            check.title = browser.send("Runtime.evaluate", {"expression": "document.title", "returnByValue": True},
                                       session=session)["result"]["value"]
            screenshot_stem.parent.mkdir(parents=True, exist_ok=True)
            first = browser.send("Page.captureScreenshot", {"format": "png"}, session=session)
            metrics = browser.send("Page.getLayoutMetrics", session=session)["cssContentSize"]
            clip = {"x": 0, "y": 0, "width": metrics["width"], "height": metrics["height"], "scale": 1}
            full = browser.send("Page.captureScreenshot",
                                {"format": "png", "clip": clip, "captureBeyondViewport": True}, session=session)
            for suffix, shot in (("", first), ("-full", full)):
                path = screenshot_stem.with_name(f"{screenshot_stem.name}{suffix}.png")
                path.write_bytes(base64.b64decode(shot["data"]))
                check.screenshots.append(path)
            check.console_errors = [text for text in map(_describe, browser.events) if text is not None]
        finally:
            browser.close()
    return check
