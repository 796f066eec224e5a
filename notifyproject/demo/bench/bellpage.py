"""A real bell in headless Chromium, for the figures only a browser can give.

G1 asks what a person sees when one group_key floods a user: how many rows the dropdown
shows, what the badge says, how many toasts came and how close together. Those are bell.js
decisions (collapse, storm control), so the benchmark opens the user's page in Chromium with
the user's session cookie and reads the page, the way the browser tests do. Optional:
without Playwright or a Chromium binary the scenario says so and reports the server's side.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from notifyproject.demo.bench.stack import cpu_seconds

CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
CLOSE_TIMEOUT = 15.0  # seconds closing the browser may take
LAUNCH_ARGS = ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-sync"]

# Logs every toast element the bell adds (one per toast, a summary toast included) with
# the time it appeared, before any script of the page runs.
TOAST_LOG = """
window.__benchToasts = [];
new MutationObserver(function (records) {
  records.forEach(function (record) {
    record.addedNodes.forEach(function (node) {
      if (node.nodeType === 1 && node.hasAttribute("data-notification-toast")) {
        window.__benchToasts.push({id: node.getAttribute("data-notification-toast"),
                                   text: node.textContent, at: Date.now()});
      }
    });
  });
}).observe(document, {childList: true, subtree: true});
"""

STATE = """() => {
  const root = document.querySelector("[data-notification-bell]");
  const badge = root && root.querySelector("[data-unread-count]");
  const list = root && root.querySelector("[data-notification-list]");
  const rows = list ? Array.from(list.querySelectorAll(":scope > [data-notification-id]")) : [];
  return {
    state: root && root.getAttribute("data-connection-state"),
    unread: badge ? Number(badge.getAttribute("data-unread-count")) : null,
    rows: rows.map(r => ({id: Number(r.getAttribute("data-notification-id")),
                          group: r.getAttribute("data-notification-group-count")})),
    toasts: window.__benchToasts || [],
  };
}"""


def unavailable() -> str | None:
    """Why no browser can be opened here, or None."""
    if importlib.util.find_spec("playwright") is None:
        return "Playwright is not installed (pip install -e '.[dev]')"
    if not Path(CHROMIUM).exists():
        return f"no Chromium at {CHROMIUM} (set CHROMIUM_PATH)"
    return None


class BellPage:
    """One user's page with the bell, opened in headless Chromium; close() ends it.

    Playwright's sync API runs an event loop in the thread that started it, and Django then
    refuses ORM calls from that thread: so the browser lives in a thread of its own and every
    call goes through it (Playwright objects stay in the thread that made them).
    """

    def __init__(self, base_url: str, cookie: str) -> None:
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="bellpage")
        self._playwright: Any = None
        self._browser: Any = None
        try:
            self._call(self._open, base_url, cookie)
        except Exception:
            self.close()
            raise

    def _call(self, function: Callable[..., Any], *args: Any) -> Any:
        return self._thread.submit(function, *args).result()

    def _open(self, base_url: str, cookie: str) -> None:
        from playwright.sync_api import sync_playwright

        name, _, value = cookie.partition("=")
        self._playwright = sync_playwright().start()
        self._browser = self._playwright.chromium.launch(
            executable_path=CHROMIUM, args=LAUNCH_ARGS, headless=True
        )
        context = self._browser.new_context(base_url=base_url)
        context.add_cookies([{"name": name, "value": value, "url": base_url}])
        context.add_init_script(TOAST_LOG)
        self.page = context.new_page()
        self.page.goto("/")

    def wait_open(self, timeout: float = 30.0) -> None:
        """Wait until the bell's socket is open and its first list has arrived."""
        self._call(self._wait_open, timeout)

    def _wait_open(self, timeout: float) -> None:
        self.page.wait_for_selector(
            "[data-notification-bell][data-connection-state=open]", timeout=timeout * 1000
        )
        self.page.wait_for_function(
            "() => document.querySelector('[data-notification-loading]').hidden === true",
            timeout=timeout * 1000,
        )

    def state(self) -> dict[str, Any]:
        return self._call(self.page.evaluate, STATE)

    def wait_settled(self, quiet: float = 2.0, timeout: float = 60.0) -> dict[str, Any]:
        """Return the page's state once its rows and badge stopped changing for ``quiet`` s."""
        deadline = time.monotonic() + timeout
        last = self.state()
        since = time.monotonic()
        while time.monotonic() < deadline:
            time.sleep(0.25)
            now = self.state()
            if (now["rows"], now["unread"]) != (last["rows"], last["unread"]):
                last, since = now, time.monotonic()
            elif time.monotonic() - since >= quiet:
                return now
        return last

    def close(self) -> None:
        def stop() -> None:
            if self._browser is not None:
                self._browser.close()
            if self._playwright is not None:
                self._playwright.stop()

        # Bounded: a browser that does not close must not hold the benchmark's end up.
        future = self._thread.submit(stop)
        try:
            with contextlib.suppress(Exception):  # hung or failed: the exit ends it
                future.result(timeout=CLOSE_TIMEOUT)
        finally:
            self._thread.shutdown(wait=False)


def chromium_cpu() -> float:
    """CPU seconds used so far by this process's Chromium children (every renderer, the GPU
    and network processes): the browser shares the cores with the stack it measures."""
    total = 0.0
    mine = os.getpid()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/comm") as comm:
                if "chrom" not in comm.read():
                    continue
            if not _descends_from(int(entry), mine):
                continue
        except OSError:
            continue
        total += cpu_seconds(int(entry)) or 0.0
    return total


def _descends_from(pid: int, ancestor: int) -> bool:
    while pid > 1:
        with open(f"/proc/{pid}/stat") as stat:
            # The parent pid is the 2nd field after the parenthesised command name.
            pid = int(stat.read().rpartition(")")[2].split()[1])
        if pid == ancestor:
            return True
    return False


def max_in_window(times_ms: list[float], window_ms: float) -> int:
    """The most events in any ``window_ms`` span (sliding), e.g. toasts per storm window."""
    ordered = sorted(times_ms)
    best = start = 0
    for end, at in enumerate(ordered):
        while at - ordered[start] >= window_ms:
            start += 1
        best = max(best, end - start + 1)
    return best
