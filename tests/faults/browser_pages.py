"""Real Chromium pages running bell.js, for the fault tests that also drive Python clients.

The Python client (tests/faults/client.py) is a copy of the bell's recovery logic; these pages
are the bell itself. A page gets its user's session cookie (no login form: the fault tests'
users have no password), opens the home page of one daphne and keeps its socket while the
test knocks the stack over. What it holds is read through bell.js's test hook,
``window.__nbell.state()``, which exists only because an init script sets
``window.__nbellTestHooks = true`` before the bell starts (see bell.js): every id it holds
(the dropdown shows ten), which came by push and which by sync, its sync cursor.

Playwright's sync API is driven from the test's thread between its ORM calls; the pages run
on by themselves in Chromium meanwhile (nothing here routes requests, so nothing waits on
Python). Daphne serves /static/ in the test settings (DEBUG); if it does not, bell.js is
served from the staticfiles finders while the page loads.
"""

from __future__ import annotations

import contextlib
import os
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from playwright.sync_api import Browser, BrowserContext, Page, expect, sync_playwright

from tests.browser.conftest import CHROMIUM, LAUNCH_ARGS, TIMEOUT_MS, _serve_static
from tests.conftest import session_cookie
from tests.faults.conftest import Daphne, Stack

BELL_PING_SETTINGS = "tests.faults.bell_ping_settings"
HOOKS = "window.__nbellTestHooks = true;"


@contextlib.contextmanager
def chromium() -> Iterator[Browser]:
    """One headless Chromium (share it across a module: it takes a second or two to start).

    Call it after ``live_env`` exists: the flag set here (Playwright's sync API keeps an event
    loop in this thread, and Django then refuses ORM calls) must not reach child processes.
    """
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=CHROMIUM, args=LAUNCH_ARGS, headless=True
            )
            try:
                yield browser
            finally:
                browser.close()
    finally:
        if previous is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


def start_bell_daphne(stack: Stack, *, ping: float = 1.0, base: str | None = None) -> Daphne:
    """A daphne whose pages ping every ``ping`` seconds, on top of the ``base`` settings."""
    stack.env["BELL_BASE_SETTINGS"] = base or settings.SETTINGS_MODULE or "tests.settings"
    stack.env["BELL_PING_INTERVAL"] = str(ping)
    return stack.start_daphne(settings_module=BELL_PING_SETTINGS)


def _serves_static(daphne: Daphne) -> bool:
    url = f"{daphne.origin}/{settings.STATIC_URL.strip('/')}/notifications/bell.js"
    try:
        with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310 (our own server)
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


@dataclass
class BellPage:
    """One tab of one user on one daphne, running the real bell."""

    name: str
    user: Any
    context: BrowserContext
    page: Page

    def state(self) -> dict[str, Any]:
        return self.page.evaluate("window.__nbell.state()")

    def ids(self) -> set[int]:
        return set(self.state()["ids"])

    def badge(self) -> int:
        badge = "[data-notification-bell] [data-unread-count]"
        return int(self.page.get_attribute(badge, "data-unread-count") or 0)

    def listed(self) -> list[int]:
        """The dropdown's ``data-notification-id``s, as rendered (newest first)."""
        return [
            int(value)
            for value in self.page.eval_on_selector_all(
                "[data-notification-list] [data-notification-id]",
                "nodes => nodes.map(n => n.getAttribute('data-notification-id'))",
            )
        ]

    def figures(self) -> dict[str, Any]:
        state = self.state()
        ids, pushed, synced = set(state["ids"]), set(state["pushed"]), set(state["synced"])
        return {
            "ids": len(ids),
            "pushed": len(pushed),
            "recovered": len(synced - pushed),  # never pushed to this page: only sync had it
            "gap_syncs": state["gapSyncs"],
            "duplicate_pushes": state["duplicatePushes"],
        }

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.context.close()


def open_page(browser: Browser, daphne: Daphne, user: Any, name: str | None = None) -> BellPage:
    """Open ``user``'s home page on ``daphne`` and wait until its bell said hello and synced."""
    # Reduced motion: no toast animations, which headless Chromium would repaint all through
    # a storm (five animated pages cost the kill storm a minute on two cores).
    context = browser.new_context(
        base_url=daphne.origin, reduced_motion="reduce", viewport={"width": 800, "height": 600}
    )
    context.set_default_timeout(TIMEOUT_MS)
    if not _serves_static(daphne):
        context.route("**/static/**", _serve_static)
    cookie_name, _, cookie_value = session_cookie(user).partition("=")
    context.add_cookies([{"name": cookie_name, "value": cookie_value, "url": daphne.origin}])
    context.add_init_script(HOOKS)
    page = context.new_page()
    page.goto("/")
    root = page.locator("[data-notification-bell]")
    expect(root).to_have_attribute("data-connection-state", "open", timeout=20_000)
    expect(root.locator("[data-notification-loading]")).to_be_hidden(timeout=20_000)
    page.wait_for_function("window.__nbell && window.__nbell.state().cursor !== null")
    return BellPage(name or f"page:{user.username}@{daphne.proc.name}", user, context, page)


def mismatches(pages: list[BellPage], expected: dict[Any, set[int]]) -> str:
    """Say, per page whose ids differ from ``expected[user.pk]``, what it lacks and has extra."""
    out = []
    for page in pages:
        state = page.state()
        have, want = set(state["ids"]), expected[page.user.pk]
        if have != want:
            out.append(
                f"{page.name}: missing {sorted(want - have)[:10]} extra {sorted(have - want)[:10]}"
                f" (cursor {state['cursor']}, connected {state['connected']})"
            )
    return "; ".join(out)
