"""Browser fixtures: one headless Chromium per run of this package, a context per person.

Everything goes through the real stack of ``live_stack``: daphne and the listener as separate
processes, Redis, and the test database. Users log in through the real login form.
"""

from __future__ import annotations

import mimetypes
import os
import time
import urllib.error
import urllib.request
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import pytest
from django.conf import settings
from django.contrib.staticfiles import finders
from playwright.sync_api import (
    Browser,
    BrowserContext,
    Locator,
    Page,
    Route,
    expect,
    sync_playwright,
)

from tests.factories import PASSWORD

ROOT = Path(__file__).resolve().parents[2]
# The README's pictures are refreshed only on request (UPDATE_SCREENSHOTS=1 make test), so
# an ordinary run leaves the work tree clean; otherwise they go to test-artifacts/.
SCREENSHOTS = (
    ROOT / "docs" / "screenshots"
    if os.environ.get("UPDATE_SCREENSHOTS") == "1"
    else ROOT / "test-artifacts" / "screenshots"
)
CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
LAUNCH_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# Generous for a loaded CI machine; a passing run waits far less.
TIMEOUT_MS = 10_000

expect.set_options(timeout=TIMEOUT_MS)


@pytest.fixture(scope="package")
def browser(live_env: dict[str, str]) -> Iterator[Browser]:
    """Headless Chromium, started after ``live_env`` so child processes never see the flag below."""
    # Playwright's sync API runs an event loop in this thread between calls, which makes
    # Django refuse ORM calls from the tests. Nothing here is concurrent: the tests drive the
    # browser and the ORM in turn, from one thread. live_env was captured before this, so
    # daphne and the listener keep Django's protection; the flag goes with this package.
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        with sync_playwright() as playwright:
            instance = playwright.chromium.launch(
                executable_path=CHROMIUM, args=LAUNCH_ARGS, headless=True
            )
            yield instance
            instance.close()
    finally:
        if previous is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


def _serve_static(route: Route) -> None:
    """Answer a /static/ request from the staticfiles finders, as runserver would."""
    path = unquote(urlsplit(route.request.url).path)
    prefix = "/" + settings.STATIC_URL.strip("/") + "/"
    found = finders.find(path.removeprefix(prefix)) if path.startswith(prefix) else None
    if not found:
        route.fulfill(status=404, body="not found")
        return
    content_type = mimetypes.guess_type(found)[0] or "application/octet-stream"
    route.fulfill(path=found, content_type=content_type)


@pytest.fixture(scope="module")
def static_route(live_stack: dict) -> Callable[[Route], None] | None:
    """Return a route handler for /static/ if the live daphne does not serve static files."""
    url = f"{live_stack['url']}/{settings.STATIC_URL.strip('/')}/notifications/bell.js"
    try:
        with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 (our own server)
            if response.status == 200:
                return None
    except urllib.error.HTTPError:
        pass
    warnings.warn(
        "daphne does not serve /static/ (notifyproject/asgi.py has no static handler); the "
        "browser tests serve it from the staticfiles finders instead.",
        stacklevel=1,
    )
    return _serve_static


@pytest.fixture
def new_context(
    browser: Browser, static_route: Callable[[Route], None] | None, live_stack: dict
) -> Iterator[Callable[..., BrowserContext]]:
    """Return a factory of fresh browser contexts (separate cookie jars), closed after the test."""
    contexts: list[BrowserContext] = []

    def make(base_url: str | None = None, **kwargs: Any) -> BrowserContext:
        kwargs.setdefault("viewport", {"width": 1280, "height": 800})
        context = browser.new_context(base_url=base_url or live_stack["url"], **kwargs)
        context.set_default_timeout(TIMEOUT_MS)
        if static_route is not None:
            context.route("**/static/**", static_route)
        contexts.append(context)
        return context

    yield make
    for context in contexts:
        context.close()


def log_in(context: BrowserContext, username: str, password: str = PASSWORD) -> Page:
    """Log in through the real login form in a new page of ``context``; return the home page."""
    page = context.new_page()
    page.goto("/accounts/login/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    page.locator("main form button[type=submit]").click()
    page.wait_for_url(lambda url: urlsplit(url).path == "/")
    return page


class Bell:
    """The page hooks of DESIGN.md on one page, with waits on their state."""

    def __init__(self, page: Page) -> None:
        self.page = page
        self.root = page.locator("[data-notification-bell]")
        self.toggle = self.root.locator("[data-notification-toggle]")
        self.badge = self.root.locator("[data-unread-count]")
        self.panel = self.root.locator("[data-notification-panel]")
        self.items = self.root.locator("[data-notification-list] [data-notification-id]")
        self.mark_all = self.root.locator("[data-notification-mark-all]")
        self.toasts = self.root.locator("[data-toast-id]")

    def item(self, notification_id: int) -> Locator:
        return self.root.locator(
            f'[data-notification-list] [data-notification-id="{notification_id}"]'
        )

    def toast(self, notification_id: int) -> Locator:
        return self.root.locator(f'[data-toast-id="{notification_id}"]')

    def wait_ready(self) -> Bell:
        """Wait until the socket said hello and the first list arrived."""
        expect(self.root).to_have_attribute("data-connection-state", "open")
        # The panel is closed, so "hidden" would hold at once: the bell sets the property.
        expect(self.root.locator("[data-notification-loading]")).to_have_js_property("hidden", True)
        return self

    def expect_unread(self, count: int) -> None:
        expect(self.badge).to_have_attribute("data-unread-count", str(count))
        if count:
            expect(self.badge).to_have_text("99+" if count > 99 else str(count))
            expect(self.badge).to_be_visible()
        else:
            expect(self.badge).to_be_hidden()

    def open(self) -> None:
        if self.panel.is_hidden():
            self.toggle.click()
        expect(self.panel).to_be_visible()
        expect(self.toggle).to_have_attribute("aria-expanded", "true")


def wait_until(predicate: Callable[[], Any], timeout: float = 10.0, what: str = "") -> Any:
    """Poll ``predicate`` (e.g. a database query) until it is truthy; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or predicate}")
        time.sleep(0.05)


def screenshot(page: Page, name: str, **kwargs: Any) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / name
    page.screenshot(path=str(path), **kwargs)
    return path
