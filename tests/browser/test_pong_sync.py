"""Pong → sync in the real bell: a delivery whose push never came shows within one ping.

The delivery guarantee rests on it: pushes travel at most once, and a page learns of a lost
one only from its next ``pong``, whose ``last_id`` it does not hold. Here the push is never
sent at all: the Delivery row is written straight to the database (as the listener would,
without the channel layer), on a daphne whose bells ping every PING seconds.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
from channels.layers import get_channel_layer
from django.conf import settings
from django.db import transaction
from django.utils import timezone
from playwright.sync_api import expect

from notifications import events
from notifications.models import Notification
from notifications.services import deliveries_record, notify
from tests import processes
from tests.browser.conftest import Bell, log_in
from tests.factories import UserFactory
from tests.faults.browser_pages import BELL_PING_SETTINGS, HOOKS

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PING = 2.0  # this daphne's BELL_PING_INTERVAL, in seconds
PONG_GRACE = 2.0  # bell.js's: a pong naming an id the page lacks is judged this much later
# A recovery must come at the first pong after the row: within PING, plus the grace, the
# pong's and the sync's round trips and the rendering, generous for a loaded machine.
WITHIN = PING + PONG_GRACE + 3.0


@pytest.fixture(scope="module")
def pinging_daphne(live_env: dict[str, str], live_stack: dict) -> Iterator[str]:
    """A daphne of this module's own whose pages ping every PING seconds; its base URL."""
    port = processes.free_port()
    env = {key: value for key, value in live_env.items() if key != "DJANGO_ALLOW_ASYNC_UNSAFE"}
    env.update(
        DJANGO_SETTINGS_MODULE=BELL_PING_SETTINGS,
        BELL_BASE_SETTINGS=settings.SETTINGS_MODULE or "tests.settings",
        BELL_PING_INTERVAL=str(PING),
    )
    proc = processes.start_daphne(port, env)
    yield f"http://127.0.0.1:{port}"
    proc.stop()


def delivered_without_a_push(user, title: str) -> Notification:
    """Write a notification and its Delivery row as dispatched, and push nothing.

    One transaction: when the save hook's PUBLISH reaches the listener, the row is already
    dispatched, so the listener does nothing — no push, for any socket.
    """
    now = timezone.now()
    with transaction.atomic():
        notification = Notification.objects.create(
            title=title,
            recipient=user,
            audience="user",
            dispatched_at=now,
            recorded_at=now,
            recipient_count=1,
        )
        deliveries_record(notification.pk, [user.pk])
    return notification


def open_bell(new_context, base_url: str, user) -> Bell:
    context = new_context(base_url=base_url)
    context.add_init_script(HOOKS)
    page = log_in(context, user.username)
    bell = Bell(page).wait_ready()
    expect(bell.root).to_have_attribute("data-ping-every", str(int(PING * 1000)))
    return bell


def hook(bell: Bell) -> dict:
    return bell.page.evaluate("window.__nbell.state()")


def wait_shown(bell: Bell, notification_id: int, within: float) -> float:
    """Seconds until the dropdown lists ``notification_id``; fail after ``within``."""
    started = time.monotonic()
    expect(bell.item(notification_id)).to_have_count(1, timeout=within * 1000)
    return time.monotonic() - started


def test_a_delivery_without_a_push_shows_at_the_next_pong(new_context, pinging_daphne):
    user = UserFactory()
    bell = open_bell(new_context, pinging_daphne, user)
    before = hook(bell)
    assert before["ids"] == []

    lost = delivered_without_a_push(user, "Never pushed")
    took = wait_shown(bell, lost.pk, WITHIN)
    # News, toasted at most once. (About one run in five on a loaded machine it shows with
    # no toast at all: the open cause is in the closing note of issue 11.)
    assert bell.toasts.filter(has_text="Never pushed").count() <= 1

    after = hook(bell)
    assert lost.pk in after["synced"]
    assert lost.pk not in after["pushed"], "it was pushed: this test proves nothing"
    # The pong named an id the page did not hold: that, not a later sync, brought it.
    deadline = time.monotonic() + WITHIN
    while hook(bell)["gapSyncs"] <= before["gapSyncs"]:
        assert time.monotonic() < deadline, "shown, but no pong asked for a gap sync"
        time.sleep(0.1)
    after = hook(bell)
    assert after["connected"], "the page reconnected: recovered by hello's sync, not pong's"
    bell.expect_unread(1)
    print(f"\nshown {took:.2f} s after the row committed (ping every {PING:g} s)")


def test_a_lost_push_before_one_that_arrived_is_still_recovered(new_context, pinging_daphne):
    """The hole: the page holds a later push, so the pong's last id is one it knows; the
    count it cannot explain (2 unread, one held) makes it fetch the first page."""
    user = UserFactory()
    bell = open_bell(new_context, pinging_daphne, user)

    lost = delivered_without_a_push(user, "Lost before")
    arrived = notify(user, "Pushed after")
    expect(bell.item(arrived.pk)).to_have_count(1)
    assert arrived.pk in hook(bell)["pushed"]
    wait_shown(bell, lost.pk, WITHIN)

    state = hook(bell)
    assert sorted(state["ids"]) == sorted([lost.pk, arrived.pk])
    assert lost.pk not in state["pushed"]
    bell.expect_unread(2)
    expect(bell.items).to_have_count(2)


def test_a_pong_that_overtakes_its_push_waits_for_it(new_context, pinging_daphne):
    """A broadcast's rows are in the database before the last of its sockets gets the push,
    so a pong may name an id whose push is still coming. The page waits PONG_GRACE for it:
    no sync, and the push's count is added once, not on top of the pong's."""
    user = UserFactory()
    bell = open_bell(new_context, pinging_daphne, user)
    before = hook(bell)

    late = delivered_without_a_push(user, "Pushed late")
    deadline = time.monotonic() + WITHIN
    while hook(bell)["heldPongs"] <= before["heldPongs"]:
        assert time.monotonic() < deadline, "no pong named the row"
        time.sleep(0.05)
    # The push comes now, after the pong that named it, well within the grace.
    group = events.user_group(user.pk)
    payload = events.serialize_notification(late)
    # (In a thread of its own: Playwright's sync API keeps an event loop in this one.)
    event = events.layer_created_event(payload, group)
    with ThreadPoolExecutor(max_workers=1) as pool:
        pool.submit(asyncio.run, get_channel_layer().group_send(group, event)).result()
    expect(bell.item(late.pk)).to_have_count(1, timeout=PONG_GRACE * 1000)
    time.sleep(PONG_GRACE + 0.5)  # past the held pong's judgement
    after = hook(bell)
    assert late.pk in after["pushed"] and late.pk not in after["synced"]
    assert after["gapSyncs"] == before["gapSyncs"], "it synced although the push came"
    bell.expect_unread(1)
