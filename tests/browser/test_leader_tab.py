"""One socket per browser: one tab leads, the others follow over BroadcastChannel.

Several pages of one Playwright context are tabs of one browser profile: they share
cookies, BroadcastChannel and Web Locks. Sockets are counted from Chromium's own
``websocket`` events, and the bell's test hook says which tab leads.
"""

from __future__ import annotations

import re
import time

import pytest
from playwright.sync_api import BrowserContext, Page, WebSocket, expect

from notifications.services import notify
from tests.browser.conftest import Bell, log_in
from tests.factories import UserFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

HOOKS = "window.__nbellTestHooks = true;"


class Sockets:
    """The notification sockets Chromium opened from some pages, and which are still open."""

    def __init__(self) -> None:
        self.opened: list[tuple[Page, WebSocket]] = []
        self.closed: set[int] = set()

    def watch(self, page: Page) -> Page:
        def on_socket(ws: WebSocket) -> None:
            if "/ws/notifications/" not in ws.url:
                return
            self.opened.append((page, ws))
            ws.on("close", lambda _ws: self.closed.add(id(ws)))

        page.on("websocket", on_socket)
        return page

    def open_count(self) -> int:
        # A closed page's socket is gone even when Playwright reports no close for it.
        return sum(
            1 for page, ws in self.opened if id(ws) not in self.closed and not page.is_closed()
        )


def tabs(context: BrowserContext, sockets: Sockets, count: int) -> list[Bell]:
    bells = []
    for _ in range(count):
        page = sockets.watch(context.new_page())
        page.goto("/")
        bells.append(Bell(page).wait_ready())
    return bells


def state(bell: Bell) -> dict:
    return bell.page.evaluate("window.__nbell.state()")


def roles(bells: list[Bell]) -> list[str]:
    return [state(bell)["role"] for bell in bells]


def toasts_of(bells: list[Bell], notification_id: int) -> int:
    return sum(
        bell.root.locator(f'[data-notification-toast="{notification_id}"]').count()
        for bell in bells
    )


def expect_one_toast(bells: list[Bell], notification_id: int) -> None:
    """Exactly one toast in the whole browser: wait for it, then make sure no second comes."""
    deadline = time.monotonic() + 10
    while toasts_of(bells, notification_id) == 0:
        assert time.monotonic() < deadline, f"no tab showed a toast for {notification_id}"
        bells[0].page.wait_for_timeout(50)
    bells[0].page.wait_for_timeout(600)
    assert toasts_of(bells, notification_id) == 1


def wait_for(bell: Bell, predicate, what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        bell.page.wait_for_timeout(50)


def test_three_tabs_share_one_socket_and_show_one_toast(new_context):
    user = UserFactory()
    context = new_context()
    context.add_init_script(HOOKS)
    log_in(context, user.username).close()
    sockets = Sockets()
    started = time.monotonic()
    bells = tabs(context, sockets, 3)

    assert sorted(roles(bells)) == ["follower", "follower", "leader"]
    assert sockets.open_count() == 1
    assert len(sockets.opened) == 1

    first = notify(user, "Deploy finished", body="Version 2.5 is live.", level="success")
    for bell in bells:
        bell.expect_unread(1)
        expect(bell.item(first.pk)).to_have_count(1)
    expect_one_toast(bells, first.pk)

    # A read in a follower goes through the leader's socket and reaches every tab.
    follower = next(bell for bell in bells if state(bell)["role"] == "follower")
    follower.open()
    follower.item(first.pk).locator(".nbell-link").click()
    for bell in bells:
        bell.expect_unread(0)
        expect(bell.item(first.pk)).to_have_class("nbell-item nbell-level-success")
    assert len(sockets.opened) == 1
    print(f"\nthree tabs, one socket, one toast: {time.monotonic() - started:.2f} s")


def test_closing_the_leader_hands_over_without_losing_or_doubling(new_context):
    user = UserFactory()
    context = new_context()
    context.add_init_script(HOOKS)
    log_in(context, user.username).close()
    sockets = Sockets()
    bells = tabs(context, sockets, 3)
    before = notify(user, "Before the handover")
    for bell in bells:
        bell.expect_unread(1)

    leader = next(bell for bell in bells if state(bell)["role"] == "leader")
    rest = [bell for bell in bells if bell is not leader]
    started = time.monotonic()
    leader.page.close()
    # Sent at once, while the next tab may still be taking over: the sync from the cursor
    # it followed must bring it if the push went to the closing socket.
    during = notify(user, "During the handover", level="warning")
    wait_for(
        rest[0],
        lambda: sorted(roles(rest)) == ["follower", "leader"],
        "a follower to take the lead",
    )
    took = time.monotonic() - started
    wait_for(rest[0], lambda: sockets.open_count() == 1, "one socket again")
    after = notify(user, "After the handover")

    for bell in rest:
        # At once, or at the new leader's early ping (2 s after its hello) when "during" was
        # dispatched while its socket joined its groups.
        expect(bell.badge).to_have_attribute("data-unread-count", "3", timeout=20_000)
        for notification in (before, during, after):
            expect(bell.item(notification.pk)).to_have_count(1)
        expect(bell.items).to_have_count(3)
        held = state(bell)
        assert sorted(held["ids"]) == sorted([before.pk, during.pk, after.pk])
        assert held["duplicatePushes"] == 0
    expect_one_toast(rest, after.pk)
    # "During" may have come by push (before the old socket closed) or by the new
    # leader's sync: either way, once.
    assert toasts_of(rest, during.pk) <= 1
    assert len(sockets.opened) == 2
    print(f"\nthe lead passed on in {took:.2f} s")


def test_without_broadcast_channel_every_tab_keeps_its_own_socket(new_context):
    user = UserFactory()
    context = new_context()
    context.add_init_script(HOOKS + "delete window.BroadcastChannel;")
    log_in(context, user.username).close()
    sockets = Sockets()
    bells = tabs(context, sockets, 2)
    assert roles(bells) == ["solo", "solo"]
    assert sockets.open_count() == 2
    sent = notify(user, "To both")
    for bell in bells:
        bell.expect_unread(1)
        expect(bell.item(sent.pk)).to_have_count(1)


def test_two_users_of_one_browser_never_share_a_channel(new_context):
    alice, bob = UserFactory(), UserFactory()
    context = new_context()
    context.add_init_script(HOOKS)
    alice_page = log_in(context, alice.username)
    alice_bell = Bell(alice_page).wait_ready()
    assert state(alice_bell)["role"] == "leader"
    key = alice_bell.root.get_attribute("data-bell-key")
    # An opaque digest, not the pk (which a hex digest may contain by chance, as a digit).
    assert key and re.fullmatch(r"[0-9a-f]{16,}", key) and key != str(alice.pk)

    # Alice's session ends and Bob logs in to the same browser in another tab, while
    # Alice's tab is still open.
    context.clear_cookies()
    bob_page = log_in(context, bob.username)
    bob_bell = Bell(bob_page).wait_ready()
    assert bob_bell.root.get_attribute("data-bell-key") not in (key, None)
    assert state(bob_bell)["role"] == "leader"  # not a follower of Alice's tab
    for_bob = notify(bob, "Only for Bob")
    bob_bell.expect_unread(1)
    expect(bob_bell.item(for_bob.pk)).to_have_count(1)
    alice_page.wait_for_timeout(500)
    expect(alice_bell.item(for_bob.pk)).to_have_count(0)
