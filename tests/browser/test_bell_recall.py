"""The bell follows recalls, edits and expiries live, in Chromium on the real stack.

A recalled or expired notification leaves the open list (and its toast) at once, in the
leader tab and in a follower that gets the frame relayed; an edit changes a row's title and
level in place; a page that was offline learns both from the sync after it reconnects.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection
from django.utils import timezone
from playwright.sync_api import expect

import notifications
from notifications.models import Delivery, Level
from tests import processes
from tests.browser.conftest import Bell, log_in, wait_until
from tests.browser.test_bell_triage import action
from tests.browser.test_leader_tab import HOOKS, Sockets, state, tabs
from tests.browser.test_reconnect import own_daphne  # noqa: F401 (a fixture)
from tests.factories import UserFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture(autouse=True)
def pushes_go_through(caplog) -> Iterator[None]:
    """The bell must learn from the push itself, not from a later pong or sync."""
    yield
    failed = [r.getMessage() for r in caplog.records if "Could not push" in r.getMessage()]
    assert not failed, failed


def off_loop(function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Call ``function`` in a thread of its own, as the admin or a script would.

    recall() and edit() push through the channel layer with async_to_sync, which refuses
    to run in this thread: Playwright's sync API keeps an event loop in it.
    """

    def call() -> Any:
        try:
            return function(*args, **kwargs)
        finally:
            connection.close()  # the thread's own, or the test database cannot be dropped

    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(call).result()


def recall(notification) -> bool:
    return off_loop(notifications.recall, notification)


def edit(notification, **fields) -> list[str]:
    return off_loop(notifications.edit, notification, **fields)


def delivered(user, *sent) -> None:
    wait_until(
        lambda: Delivery.objects.filter(user=user, notification__in=sent).count() == len(sent),
        what="the deliveries",
    )


def test_a_recall_leaves_an_open_bell_and_a_follower_tab_at_once(new_context):
    user = UserFactory()
    context = new_context()
    context.add_init_script(HOOKS)
    log_in(context, user.username).close()
    bells = tabs(context, Sockets(), 2)
    leader = next(bell for bell in bells if state(bell)["role"] == "leader")
    follower = next(bell for bell in bells if bell is not leader)
    wrong = notifications.notify(user, "Sent by mistake", level=Level.WARNING)
    keep = notifications.notify(user, "Stays")
    for bell in bells:
        bell.expect_unread(2)
    leader.open()
    follower.open()
    expect(leader.item(wrong.pk)).to_have_count(1)

    assert recall(wrong)
    for bell in bells:
        expect(bell.item(wrong.pk)).to_have_count(0)
        expect(bell.item(keep.pk)).to_have_count(1)
        bell.expect_unread(1)
        assert wrong.pk in state(bell)["removed"]

    # A reload's first list never brings it back (the server no longer lists it).
    follower.page.reload()
    Bell(follower.page).wait_ready().expect_unread(1)
    expect(follower.item(wrong.pk)).to_have_count(0)


def test_a_recalled_broadcast_leaves_the_list_and_its_toast_and_the_badge_falls_by_one(
    new_context,
):
    user = UserFactory()
    page = log_in(new_context(), user.username)
    bell = Bell(page).wait_ready()
    mine = notifications.notify(user, "Only for you")
    bell.expect_unread(1)
    wrong = notifications.broadcast("Office closed tomorrow", body="(it is not)")
    bell.expect_unread(2)
    expect(bell.toast(wrong.pk)).to_be_visible()

    # A broadcast's recalled frame has no count (the audience's differ): the bell takes one
    # off for the unread one it held.
    assert recall(wrong)
    expect(bell.toast(wrong.pk)).to_have_count(0)
    bell.expect_unread(1)
    bell.open()
    expect(bell.item(wrong.pk)).to_have_count(0)
    expect(bell.item(mine.pk)).to_have_count(1)
    expect(bell.items).to_have_count(1)


def test_an_edit_changes_an_open_item_and_its_toast_in_place(new_context):
    user = UserFactory()
    page = log_in(new_context(), user.username)
    bell = Bell(page).wait_ready()
    typo = notifications.notify(user, "Maintenence tonight", body="At 22:00")
    bell.expect_unread(1)
    bell.open()
    row = bell.item(typo.pk)
    expect(row).to_have_class("nbell-item nbell-level-info is-unread")
    action(bell, typo.pk, "data-notification-read").click()  # read: an edit keeps it read
    bell.expect_unread(0)

    edit(typo, title="Maintenance tonight", body="At 23:00", level=Level.WARNING)
    expect(row.locator(".nbell-title")).to_have_text("Maintenance tonight")
    expect(row.locator(".nbell-body")).to_have_text("At 23:00")
    expect(row).to_have_class("nbell-item nbell-level-warning")  # still read
    bell.expect_unread(0)

    # A toast on screen follows too.
    page.keyboard.press("Escape")
    expect(bell.panel).to_be_hidden()
    live = notifications.notify(user, "Deploy faild")
    toast = bell.toast(live.pk)
    expect(toast.locator(".nbell-title")).to_have_text("Deploy faild")
    toast.hover()  # held on screen while it changes
    edit(live, title="Deploy failed", level=Level.ERROR)
    expect(toast.locator(".nbell-title")).to_have_text("Deploy failed")
    expect(toast).to_have_class("nbell-toast nbell-level-error is-paused")
    bell.expect_unread(1)

    page.reload()
    bell = Bell(page).wait_ready()
    bell.open()
    expect(bell.item(typo.pk).locator(".nbell-title")).to_have_text("Maintenance tonight")


def test_an_expiring_notification_leaves_the_bell_at_its_time_without_a_reload(new_context):
    user = UserFactory()
    page = log_in(new_context(), user.username)
    bell = Bell(page).wait_ready()
    keep = notifications.notify(user, "Stays")
    brief = notifications.notify(
        user, "Flash sale", expires_at=timezone.now() + timedelta(seconds=3)
    )
    bell.expect_unread(2)
    bell.open()
    expect(bell.item(brief.pk)).to_have_count(1)
    # At its expiry the listener wakes and tells the open bells: no reload, no count sent.
    expect(bell.item(brief.pk)).to_have_count(0, timeout=20_000)
    assert timezone.now() >= brief.expires_at
    expect(bell.item(keep.pk)).to_have_count(1)
    bell.expect_unread(1)


def test_an_offline_page_catches_up_on_a_recall_and_an_edit_after_reconnecting(
    new_context,
    own_daphne,  # noqa: F811
):
    user = UserFactory()
    page = log_in(new_context(base_url=own_daphne["url"]), user.username)
    bell = Bell(page).wait_ready()
    wrong = notifications.notify(user, "Recalled while you were away")
    typo = notifications.notify(user, "Lunch at noom", level=Level.INFO)
    keep = notifications.notify(user, "Untouched")
    bell.expect_unread(3)
    delivered(user, wrong, typo, keep)

    own_daphne["proc"].stop()
    expect(bell.root).to_have_attribute("data-connection-state", "reconnecting")
    assert recall(wrong)  # pushed to no one: no socket is open
    edit(typo, title="Lunch at noon", level=Level.SUCCESS)
    bell.open()
    expect(bell.item(wrong.pk)).to_have_count(1)  # offline: it cannot know yet
    own_daphne["proc"] = processes.start_daphne(own_daphne["port"], own_daphne["env"])

    expect(bell.root).to_have_attribute("data-connection-state", "open", timeout=40_000)
    expect(bell.item(wrong.pk)).to_have_count(0)
    expect(bell.item(typo.pk).locator(".nbell-title")).to_have_text("Lunch at noon")
    expect(bell.item(typo.pk)).to_have_class("nbell-item nbell-level-success is-unread")
    expect(bell.item(keep.pk)).to_have_count(1)
    expect(bell.items).to_have_count(2)
    bell.expect_unread(2)  # the server's count, nothing taken off twice
