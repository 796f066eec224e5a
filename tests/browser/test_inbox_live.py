"""The inbox in Chromium on the real stack: live rows, the bell and other tabs following, bulk
and per-row triage with and without JavaScript, links that mark read, axe, screenshots."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.utils import timezone
from playwright.sync_api import Page, expect

from notifications.models import Delivery, DeliveryState, Level, Notification
from notifications.services import deliveries_mark_read, notify
from tests.browser.axe import assert_accessible
from tests.browser.conftest import Bell, log_in, screenshot, wait_until
from tests.factories import UserFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

INBOX = "/notifications/"


def delivered(user, count: int) -> None:
    wait_until(
        lambda: Delivery.objects.filter(user=user).count() >= count,
        what=f"{count} deliveries for {user}",
    )


def open_inbox(page: Page, query: str = "") -> Page:
    page.goto(INBOX + query)
    expect(page.locator("[data-ninbox][data-ninbox-live]")).to_be_attached()
    Bell(page).wait_ready()
    return page


def row(page: Page, notification: Notification):
    return page.locator(f'main [data-notification-id="{notification.pk}"]')


def rows(page: Page):
    return page.locator("main .ninbox-groups [data-notification-id]")


def count_of(page: Page, view: str):
    return page.locator(f'[data-ninbox-count="{view}"]')


def test_a_new_notification_appears_live_on_top_of_today(new_context):
    user = UserFactory()
    old = notify(user, "Already here")
    delivered(user, 1)
    page = open_inbox(log_in(new_context(), user.username))
    page.evaluate("window.__sameDocument = true")
    expect(rows(page)).to_have_count(1)
    expect(count_of(page, "unread")).to_have_text("1")

    fresh = notify(user, "Fresh <b>news</b>", body="Body & more", level=Level.SUCCESS, url="/")
    expect(rows(page).first).to_have_attribute("data-notification-id", str(fresh.pk))
    new_row = row(page, fresh)
    expect(new_row).to_have_class(re.compile(r"\blevel-success unread\b"))
    expect(new_row.locator(".ninbox-title")).to_have_text("Fresh <b>news</b>")  # text, not markup
    expect(new_row.locator(".ninbox-excerpt")).to_have_text("Body & more")
    expect(new_row.locator("a.ninbox-title")).to_have_attribute("href", "/")
    day = page.locator("[data-ninbox-day]").first
    expect(day.locator(".ninbox-day-title")).to_have_text("Today")
    expect(day.locator(f'[data-notification-id="{old.pk}"]')).to_have_count(1)
    expect(count_of(page, "unread")).to_have_text("2")
    expect(new_row.locator("time.ninbox-time")).not_to_have_text("")
    assert page.evaluate("window.__sameDocument") is True  # no reload

    # A view that would not list it does not get it.
    page = open_inbox(page, "?status=archived")
    notify(user, "Not for Archived")
    expect(count_of(page, "unread")).to_have_text("3")
    expect(rows(page)).to_have_count(0)
    page = open_inbox(page, "?level=error")
    error = notify(user, "An error", level=Level.ERROR)
    notify(user, "Only info")
    expect(row(page, error)).to_be_visible()
    expect(count_of(page, "unread")).to_have_text("5")
    expect(rows(page)).to_have_count(1)


def test_reading_in_the_bell_of_another_tab_updates_the_inbox(new_context):
    user = UserFactory()
    first, second = notify(user, "First"), notify(user, "Second")
    delivered(user, 2)
    context = new_context()
    inbox = open_inbox(log_in(context, user.username))
    expect(inbox.locator("main .ninbox-item.unread")).to_have_count(2)
    unread_view = open_inbox(context.new_page(), "?status=unread")
    expect(rows(unread_view)).to_have_count(2)

    home = context.new_page()
    home.goto("/")
    bell = Bell(home)
    bell.open()
    expect(bell.item(first.pk)).to_be_visible()
    bell.mark_all.click()
    bell.expect_unread(0)

    expect(inbox.locator("main .ninbox-item.unread")).to_have_count(0)
    expect(rows(inbox)).to_have_count(2)  # read rows stay in the inbox
    expect(count_of(inbox, "unread")).to_have_text("0")
    expect(rows(unread_view)).to_have_count(0)  # and leave Unread
    expect(unread_view.locator("[data-ninbox-empty]")).to_be_visible()
    expect(count_of(unread_view, "unread")).to_have_text("0")

    # Mark unread from the inbox: the bell follows.
    row(inbox, second).hover()
    row(inbox, second).locator("[data-notification-unread]").click()
    expect(row(inbox, second)).to_have_class(re.compile(r"\bunread\b"))
    bell.expect_unread(1)
    expect(count_of(inbox, "unread")).to_have_text("1")


def test_a_bulk_done_in_the_inbox_leaves_the_bell_of_a_second_tab(new_context):
    user = UserFactory()
    made = [notify(user, f"Item {i}") for i in range(4)]
    delivered(user, 4)
    context = new_context()
    inbox = open_inbox(log_in(context, user.username))
    other = context.new_page()
    other.goto("/")
    bell = Bell(other)
    bell.open()
    expect(bell.items).to_have_count(4)
    bell.expect_unread(4)

    done = made[1:3]
    bulk_done = inbox.locator("[data-ninbox-bulk] button[value=archive]")
    expect(bulk_done).to_be_disabled()  # nothing selected yet
    for notification in done:
        row(inbox, notification).locator("[data-ninbox-select]").check()
    expect(inbox.locator("[data-ninbox-selected]")).to_have_text("2 selected")
    expect(inbox.locator("[data-ninbox-select-all]")).to_have_js_property("indeterminate", True)
    inbox.evaluate("window.__sameDocument = true")
    bulk_done.click()

    expect(rows(inbox)).to_have_count(2)
    for notification in done:
        expect(row(inbox, notification)).to_have_count(0)
        expect(bell.item(notification.pk)).to_have_count(0)
    expect(bell.items).to_have_count(2)
    bell.expect_unread(2)
    expect(count_of(inbox, "archived")).to_have_text("2")
    expect(count_of(inbox, "unread")).to_have_text("2")
    expect(inbox.locator("[data-ninbox-notice]")).to_contain_text("2 marked done.")
    assert inbox.evaluate("window.__sameDocument") is True
    archived = {
        d.notification_id for d in Delivery.objects.filter(user=user, archived_at__isnull=False)
    }
    assert archived == {n.pk for n in done}

    # Undo brings them back, here and in the bell.
    inbox.locator("[data-ninbox-undo]").click()
    expect(rows(inbox)).to_have_count(4)
    expect(bell.items).to_have_count(4)
    expect(count_of(inbox, "archived")).to_have_text("0")
    # Rows come back in arrival order.
    ids = [
        int(i) for i in rows(inbox).evaluate_all("els => els.map(e => e.dataset.notificationId)")
    ]
    assert ids == [n.pk for n in reversed(made)]


def test_select_all_snooze_and_the_snoozed_and_archived_views(new_context):
    user = UserFactory()
    made = [notify(user, f"Item {i}") for i in range(3)]
    delivered(user, 3)
    page = open_inbox(log_in(new_context(), user.username))
    page.locator("[data-ninbox-select-all]").check()
    expect(page.locator("[data-ninbox-selected]")).to_have_text("3 selected")
    page.locator("[data-ninbox-bulk] summary").click()
    page.locator("[data-ninbox-bulk] button[data-snooze=tomorrow]").click()
    expect(rows(page)).to_have_count(0)
    expect(count_of(page, "snoozed")).to_have_text("3")
    expect(count_of(page, "unread")).to_have_text("0")
    until = {d.snoozed_until for d in Delivery.objects.filter(user=user)}
    assert len(until) == 1 and until.pop() > timezone.now() + timedelta(hours=1)

    page = open_inbox(page, "?status=snoozed")
    expect(rows(page)).to_have_count(3)
    expect(page.locator(".ninbox-until").first).to_be_visible()
    target = row(page, made[0])
    target.hover()
    target.locator("[data-notification-archive]").click()
    expect(rows(page)).to_have_count(2)
    expect(count_of(page, "archived")).to_have_text("1")
    expect(count_of(page, "snoozed")).to_have_text("2")

    page = open_inbox(page, "?status=archived")
    expect(rows(page)).to_have_count(1)
    row(page, made[0]).hover()
    row(page, made[0]).locator("[data-notification-unarchive]").click()
    expect(rows(page)).to_have_count(0)
    expect(count_of(page, "archived")).to_have_text("0")
    page = open_inbox(page)
    expect(rows(page)).to_have_count(1)


def test_a_per_row_snooze_from_the_keyboard(new_context):
    user = UserFactory()
    first, second = notify(user, "First"), notify(user, "Second")
    delivered(user, 2)
    page = open_inbox(log_in(new_context(), user.username))
    snooze = row(page, second).locator("[data-notification-snooze]")
    snooze.focus()
    expect(snooze).to_be_visible()  # actions show on keyboard focus
    page.keyboard.press("Enter")
    later = row(page, second).locator("button[data-snooze=later]")
    expect(later).to_be_focused()
    page.keyboard.press("Escape")
    expect(later).to_be_hidden()
    expect(snooze).to_be_focused()
    page.keyboard.press("Enter")
    expect(later).to_be_focused()
    page.keyboard.press("Enter")
    expect(row(page, second)).to_have_count(0)
    # Focus goes on to the next row, not back to the top of the page.
    expect(row(page, first).locator("[data-ninbox-select]")).to_be_focused()
    snoozed = Delivery.objects.get(user=user, notification=second).snoozed_until
    assert timedelta(hours=2, minutes=55) < snoozed - timezone.now() < timedelta(hours=3)


def test_clicking_a_link_marks_it_read(new_context):
    user = UserFactory()
    linked = notify(user, "Open me", url="/?from=inbox")
    delivered(user, 1)
    context = new_context()
    page = open_inbox(log_in(context, user.username))
    watcher = open_inbox(context.new_page())
    row(page, linked).locator("a.ninbox-title").click()
    page.wait_for_url("**/?from=inbox")
    wait_until(
        lambda: Delivery.objects.get(user=user, notification=linked).state == DeliveryState.READ,
        what="the click to mark it read",
    )
    expect(watcher.locator("main .ninbox-item.unread")).to_have_count(0)
    Bell(page).wait_ready().expect_unread(0)


def test_without_javascript_the_forms_do_the_same(new_context):
    user = UserFactory()
    made = [notify(user, f"Item {i}") for i in range(3)]
    delivered(user, 3)
    page = log_in(new_context(java_script_enabled=False), user.username)
    page.goto(INBOX)
    expect(rows(page)).to_have_count(3)
    expect(page.locator("[data-ninbox-select-all]")).to_be_hidden()  # needs the script
    for notification in made[:2]:
        row(page, notification).locator("[data-ninbox-select]").check()
    page.locator("[data-ninbox-bulk] button[value=archive]").click()
    page.wait_for_url(f"**{INBOX}")
    expect(rows(page)).to_have_count(1)
    expect(page.locator(".messages, .ninbox-messages")).to_contain_text("2 marked done.")
    expect(count_of(page, "archived")).to_have_text("2")

    row(page, made[2]).locator("[data-notification-read]").click()
    expect(page.locator("main .ninbox-item.unread")).to_have_count(0)
    row(page, made[2]).locator("[data-notification-snooze]").click()
    row(page, made[2]).locator("button[data-snooze=week]").click()
    expect(rows(page)).to_have_count(0)
    expect(count_of(page, "snoozed")).to_have_text("1")
    page.locator("nav.ninbox-views").get_by_role("link", name="Archived").click()
    expect(rows(page)).to_have_count(2)
    row(page, made[0]).locator("[data-notification-unarchive]").click()
    expect(rows(page)).to_have_count(1)


# ---- looks: axe and screenshots ------------------------------------------------------------------


def seed_a_week(user) -> list[Notification]:
    """A realistic inbox: four levels, read and unread, over a few days."""
    now = timezone.now()
    specs = [
        (timedelta(days=6), "Weekly digest: 12 new posts in #design", "", Level.INFO, True),
        (
            timedelta(days=2, hours=3),
            "Deploy of api-gateway failed",
            "Step 4/7 (migrate) exited with code 1. The previous release keeps serving.",
            Level.ERROR,
            True,
        ),
        (
            timedelta(days=1, hours=2),
            "Your export is ready",
            "orders-2026-11.csv, 4.2 MB — available for 7 days.",
            Level.SUCCESS,
            False,
        ),
        (
            timedelta(days=1, hours=5),
            "Disk usage on db-2 at 85 %",
            "Consider archiving old partitions before the weekend.",
            Level.WARNING,
            True,
        ),
        (
            timedelta(hours=4),
            "Ana mentioned you in “Q4 roadmap”",
            "“@you can you check the numbers for the mobile launch?”",
            Level.INFO,
            False,
        ),
        (
            timedelta(hours=1),
            "Payment received",
            "Invoice #1042 was paid by Northwind Traders.",
            Level.SUCCESS,
            False,
        ),
        (
            timedelta(minutes=5),
            "Security: new sign-in from Firefox on Linux",
            "If this was not you, change your password now.",
            Level.WARNING,
            False,
        ),
    ]
    made = []
    for ago, title, body, level, read in sorted(specs, key=lambda s: -s[0].total_seconds()):
        made.append(notify(user, title, body=body, level=level, url="/"))
        delivered(user, len(made))
        Notification.objects.filter(pk=made[-1].pk).update(dispatched_at=now - ago)
        if read:
            deliveries_mark_read(user, [made[-1].pk])
    return made


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_the_inbox_is_accessible_and_looks_finished(new_context, scheme):
    user = UserFactory()
    seed_a_week(user)
    context = new_context(color_scheme=scheme)
    page = open_inbox(log_in(context, user.username))
    expect(rows(page)).to_have_count(7)
    expect(page.locator("[data-ninbox-day] .ninbox-day-title").first).to_have_text("Today")
    assert_accessible(page, ".ninbox")
    # With a selection, an open menu and a row's actions showing.
    page.locator("main .ninbox-item").nth(1).locator("[data-ninbox-select]").check()
    page.locator("main .ninbox-item").nth(2).locator("[data-ninbox-select]").check()
    assert_accessible(page, ".ninbox")
    page.locator("main .ninbox-item").nth(0).hover()
    screenshot(page, f"inbox-{scheme}.png", full_page=True)
    page.locator("[data-ninbox-bulk] summary").click()
    assert_accessible(page, ".ninbox")
    page.keyboard.press("Escape")
    page = open_inbox(page, "?status=archived")
    assert_accessible(page, ".ninbox")


def test_the_inbox_at_phone_width(new_context):
    user = UserFactory()
    seed_a_week(user)
    page = open_inbox(log_in(new_context(viewport={"width": 375, "height": 812}), user.username))
    expect(rows(page)).to_have_count(7)
    assert page.evaluate("document.documentElement.scrollWidth") <= 375
    first = page.locator("main .ninbox-item").first
    expect(first.locator("[data-notification-archive]")).to_be_visible()  # no hover on a phone
    assert_accessible(page, ".ninbox")
    screenshot(page, "inbox-phone.png", full_page=True)
