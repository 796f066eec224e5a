"""What is dispatched while a page's first list is on its way is news: it toasts, once.

The first list of a page is history (no toasts), but a notification dispatched after the
page's socket said hello may reach the page only inside that list (its push raced the list,
or the socket dropped before the list came). The frames are held and dropped with
Playwright's WebSocket routing, so the race happens every time instead of under load.
"""

from __future__ import annotations

import json

import pytest
from playwright.sync_api import WebSocketRoute, expect

from notifications.models import Delivery
from notifications.services import notify
from tests.browser.conftest import Bell, log_in, wait_until
from tests.factories import UserFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


class HeldSync:
    """Route the bell's socket: hold its first ``sync`` frame, drop pushed notifications."""

    def __init__(self) -> None:
        self.held: list[str] = []
        self.server: WebSocketRoute | None = None

    def __call__(self, ws: WebSocketRoute) -> None:
        server = ws.connect_to_server()
        self.server = server

        def to_server(message: str | bytes) -> None:
            frame = json.loads(message)
            if frame.get("type") == "sync" and not self.held:
                self.held.append(str(message))
                return
            server.send(message)

        def to_page(message: str | bytes) -> None:
            if json.loads(message).get("type") == "notification":
                return  # the push is lost: only the held list can bring it
            ws.send(message)

        ws.on_message(to_server)
        server.on_message(to_page)

    def release(self) -> None:
        assert self.server is not None and self.held, "the bell sent no sync to hold"
        self.server.send(self.held.pop())


def test_what_the_first_list_brings_after_hello_toasts_and_older_items_do_not(new_context):
    user = UserFactory()
    old = notify(user, "Sent before the page opened")
    wait_until(lambda: Delivery.objects.filter(notification=old, user=user).exists())
    route = HeldSync()
    context = new_context()
    context.route_web_socket("**/ws/notifications/**", route)
    page = log_in(context, user.username)
    bell = Bell(page)
    expect(bell.root).to_have_attribute("data-connection-state", "open")

    new = notify(user, "Sent while the list was on its way")
    wait_until(lambda: Delivery.objects.filter(notification=new, user=user).exists())
    route.release()

    expect(bell.toast(new.pk)).to_have_count(1)
    expect(bell.toast(old.pk)).to_have_count(0)
    bell.expect_unread(2)
    bell.open()
    expect(bell.item(old.pk)).to_have_count(1)
    expect(bell.item(new.pk)).to_have_count(1)
