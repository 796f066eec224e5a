"""The page survives its server going away: it reconnects and catches up, exactly once."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest
from playwright.sync_api import expect

from notifications.models import Delivery
from notifications.services import notify
from tests import processes
from tests.browser.conftest import Bell, log_in, wait_until
from tests.factories import UserFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def own_daphne(live_env, live_stack) -> Iterator[dict]:
    """A daphne of this test's own (the session's is shared), restartable on the same port."""
    port = processes.free_port()
    env = {key: value for key, value in live_env.items() if key != "DJANGO_ALLOW_ASYNC_UNSAFE"}
    server = {
        "port": port,
        "url": f"http://127.0.0.1:{port}",
        "env": env,
        "proc": processes.start_daphne(port, env),
    }
    yield server
    server["proc"].stop()


def test_dropped_socket_reconnects_and_shows_what_was_missed_once(new_context, own_daphne):
    user = UserFactory()
    page = log_in(new_context(base_url=own_daphne["url"]), user.username)
    bell = Bell(page).wait_ready()
    before = notify(user, "Before the outage")
    bell.expect_unread(1)

    own_daphne["proc"].stop()
    expect(bell.root).to_have_attribute("data-connection-state", "reconnecting")
    # The amber dot fades in only if the outage lasts (unobtrusive for blips).
    expect(bell.root.locator(".nbell-conn-dot")).to_have_css("opacity", "1")

    during = notify(user, "Sent during the outage", level="warning")
    wait_until(
        lambda: Delivery.objects.filter(notification=during, user=user).exists(),
        what="the listener to record the delivery while daphne is down",
    )
    own_daphne["proc"] = processes.start_daphne(own_daphne["port"], own_daphne["env"])

    # Generous: the next attempt may be up to one backoff step away.
    expect(bell.root).to_have_attribute("data-connection-state", "open", timeout=40_000)
    bell.expect_unread(2)  # the new hello counts it; the missed copy adds nothing
    expect(bell.toast(during.pk)).to_have_count(1)
    bell.open()
    expect(bell.item(during.pk)).to_have_count(1)
    expect(bell.item(before.pk)).to_have_count(1)
    expect(bell.items).to_have_count(2)
    expect(bell.item(during.pk)).to_have_class("nbell-item nbell-level-warning is-unread")

    # Live delivery works on the new socket, and nothing was counted twice.
    after = notify(user, "After the outage")
    bell.expect_unread(3)
    expect(bell.items).to_have_count(3)
    expect(bell.item(after.pk)).to_have_count(1)
    expect(bell.toast(during.pk)).to_have_count(1)


def test_a_tab_coming_back_to_view_catches_up_on_what_its_socket_lost(new_context):
    user = UserFactory()
    page = log_in(new_context(), user.username)
    dropping = {"on": False, "dropped": []}

    def lossy(ws):
        """Pass frames both ways, except live notifications while ``dropping`` is on."""
        server = ws.connect_to_server()
        ws.on_message(server.send)

        def from_server(message):
            frame = json.loads(message)
            if dropping["on"] and frame["type"] == "notification":
                dropping["dropped"].append(frame["notification"]["id"])
                return
            ws.send(message)

        server.on_message(from_server)

    page.route_web_socket("**/ws/notifications/", lossy)
    page.reload()
    bell = Bell(page).wait_ready()

    dropping["on"] = True
    lost = notify(user, "Lost on the way")
    deadline = time.monotonic() + 10
    while lost.pk not in dropping["dropped"]:
        assert time.monotonic() < deadline, "the live frame never reached the page's route"
        page.wait_for_timeout(50)  # unlike time.sleep, lets Playwright run the route handler
    dropping["on"] = False
    bell.expect_unread(0)

    # The tab becomes visible again: it asks for what it missed and counts it once.
    page.evaluate("document.dispatchEvent(new Event('visibilitychange'))")
    bell.expect_unread(1)
    expect(bell.toast(lost.pk)).to_have_count(1)
    bell.open()
    expect(bell.item(lost.pk)).to_have_count(1)
    expect(bell.items).to_have_count(1)
