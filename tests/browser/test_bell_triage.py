"""Triage in the bell — Done, snooze, mark unread — by mouse and by keyboard, in every tab.

Real Chromium through the live stack; the listener process brings snoozes back when due.
"""

from __future__ import annotations

import time
import zoneinfo
from datetime import datetime, timedelta
from urllib.parse import unquote

import pytest
from playwright.sync_api import expect

from notifications.models import Delivery
from notifications.services import deliveries_mark_read, notify
from tests.browser.conftest import Bell, log_in, wait_until
from tests.factories import UserFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

ZONE = "Europe/Berlin"


def delivery(user, notification) -> Delivery:
    return Delivery.objects.get(user=user, notification=notification)


def three_for(user) -> list:
    sent = [notify(user, f"Triage me {i}", body=f"Row {i}") for i in range(3)]
    wait_until(lambda: Delivery.objects.filter(user=user).count() == 3, what="3 deliveries")
    return sent


def action(bell: Bell, notification_id: int, hook: str):
    """Hover the row (as a mouse user does) and return its control ``hook``."""
    row = bell.item(notification_id)
    row.hover()
    control = row.locator(f"[{hook}]")
    expect(control).to_be_visible()
    return control


def test_done_snooze_and_unread_reach_the_users_other_tabs(new_context):
    user = UserFactory()
    first, second, third = three_for(user)
    context = new_context(timezone_id=ZONE)
    page = log_in(context, user.username)
    here = Bell(page).wait_ready()
    other_page = context.new_page()  # a second tab of this browser: a follower
    other_page.goto("/")
    tab = Bell(other_page).wait_ready()
    elsewhere = Bell(log_in(new_context(), user.username)).wait_ready()  # another browser
    everyone = (here, tab, elsewhere)
    for bell in everyone:
        bell.expect_unread(3)

    # The bell told the server the browser's zone.
    cookie = {c["name"]: c["value"] for c in context.cookies()}.get("tz")
    assert cookie is not None and unquote(cookie) == ZONE

    # The tab driven by the "user" is in front (a background page gets no animation frames,
    # and Playwright's clicks wait for them).
    page.bring_to_front()
    here.open()
    done = action(here, first.pk, "data-notification-archive")
    started = time.monotonic()
    done.click()
    clicked = time.monotonic() - started
    for bell in everyone:
        expect(bell.item(first.pk)).to_have_count(0)
        bell.expect_unread(2)
    print(
        f"Done reached both other tabs {time.monotonic() - started - clicked:.3f} s after the click"
    )
    assert delivery(user, first).archived_at is not None

    action(here, second.pk, "data-notification-snooze").click()
    choices = here.item(second.pk).locator("[data-snooze-choice]")
    expect(choices).to_have_count(4)
    expect(choices.nth(0)).to_contain_text("Later today")
    expect(choices.nth(3)).to_contain_text("Pick a time")
    here.item(second.pk).locator('[data-snooze-choice="tomorrow"]').click()
    for bell in everyone:
        expect(bell.item(second.pk)).to_have_count(0)
        bell.expect_unread(1)
    until = delivery(user, second).snoozed_until
    tomorrow = datetime.now(zoneinfo.ZoneInfo(ZONE)).date() + timedelta(days=1)
    local = until.astimezone(zoneinfo.ZoneInfo(ZONE))
    assert (local.date(), local.hour, local.minute) == (tomorrow, 9, 0)

    # Read, then unread again: the dot and the count follow in every tab.
    action(here, third.pk, "data-notification-read").click()
    for bell in everyone:
        bell.expect_unread(0)
    action(here, third.pk, "data-notification-unread").click()
    for bell in everyone:
        bell.expect_unread(1)
        expect(bell.item(third.pk)).to_have_class("nbell-item nbell-level-info is-unread")
    assert delivery(user, third).read_at is None


def test_keyboard_only_tab_to_a_row_reveal_its_actions_enter_archives(new_context):
    user = UserFactory()
    _, second, third = three_for(user)
    page = log_in(new_context(), user.username)
    bell = Bell(page).wait_ready()

    page.mouse.move(5, 5)
    bell.toggle.focus()
    page.keyboard.press("Enter")
    expect(bell.panel).to_be_visible()
    done = bell.item(third.pk).locator("[data-notification-archive]")
    actions = bell.item(third.pk).locator(".nbell-actions")
    expect(actions).to_have_css("opacity", "0")  # hidden until the row has the keyboard …
    newest = bell.item(third.pk).locator(".nbell-link")
    for _ in range(8):  # the header's controls come first
        page.keyboard.press("Tab")
        if newest.evaluate("node => node === document.activeElement"):
            break
    expect(newest).to_be_focused()
    expect(actions).to_have_css("opacity", "1")  # … revealed now
    page.keyboard.press("Tab")
    expect(done).to_be_focused()
    expect(done).to_have_accessible_name("Done")
    page.keyboard.press("Enter")
    expect(bell.item(third.pk)).to_have_count(0)
    bell.expect_unread(2)
    # The keyboard stays in the list: on the row that took its place.
    expect(bell.item(second.pk).locator(".nbell-link")).to_be_focused()
    wait_until(lambda: delivery(user, third).archived_at is not None, what="archived")

    # Snooze by keyboard: the choices open, Escape closes them (not the panel).
    page.keyboard.press("Tab")
    page.keyboard.press("Tab")
    snooze = bell.item(second.pk).locator("[data-notification-snooze]")
    expect(snooze).to_be_focused()
    page.keyboard.press("Enter")
    expect(snooze).to_have_attribute("aria-expanded", "true")
    expect(bell.item(second.pk).locator('[data-snooze-choice="later"]')).to_be_focused()
    page.keyboard.press("Escape")
    expect(bell.item(second.pk).locator("[data-snooze-choice]")).to_have_count(0)
    expect(snooze).to_be_focused()
    expect(bell.panel).to_be_visible()
    page.keyboard.press("Enter")
    page.keyboard.press("Enter")  # Later today
    expect(bell.item(second.pk)).to_have_count(0)
    bell.expect_unread(1)
    until = wait_until(lambda: delivery(user, second).snoozed_until, what="snoozed")
    assert timedelta(hours=2, minutes=58) < until - datetime.now(until.tzinfo) < timedelta(hours=3)


def test_a_snooze_with_a_picked_time_comes_back_with_a_toast(new_context):
    user = UserFactory()
    sent = notify(user, "Remind me soon", body="Back in a few seconds.")
    wait_until(lambda: Delivery.objects.filter(user=user).exists(), what="a delivery")
    context = new_context()
    page = log_in(context, user.username)
    bell = Bell(page).wait_ready()
    other_page = context.new_page()
    other_page.goto("/")
    other = Bell(other_page).wait_ready()
    bell.expect_unread(1)

    page.bring_to_front()
    bell.open()
    action(bell, sent.pk, "data-notification-snooze").click()
    bell.item(sent.pk).locator('[data-snooze-choice="pick"]').click()
    picker = bell.item(sent.pk).locator("[data-snooze-input]")
    expect(picker).to_be_focused()
    # A few seconds ahead, as the browser's datetime-local wants it (its own zone, seconds on).
    soon = page.evaluate("""() => {
        const d = new Date(Date.now() + 4000), p = n => String(n).padStart(2, "0");
        return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())}T` +
               `${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`;
    }""")
    picker.fill(soon)
    bell.item(sent.pk).locator("[data-snooze-submit]").click()
    expect(bell.item(sent.pk)).to_have_count(0)
    for tab in (bell, other):
        tab.expect_unread(0)
    snoozed = wait_until(lambda: delivery(user, sent).snoozed_until, what="snoozed")
    page.keyboard.press("Escape")
    expect(bell.panel).to_be_hidden()

    # Due in a few seconds: the listener brings it back as news, one toast in this browser.
    toast = page.locator(f'[data-notification-toast="{sent.pk}"]')
    other_toast = other_page.locator(f'[data-notification-toast="{sent.pk}"]')
    deadline = time.monotonic() + 15
    while toast.count() + other_toast.count() == 0:
        assert time.monotonic() < deadline, "the snooze never came back with a toast"
        page.wait_for_timeout(50)
    back = time.monotonic()
    print(f"\nback {datetime.now(snoozed.tzinfo) - snoozed} after its time")
    page.wait_for_timeout(500)
    assert toast.count() + other_toast.count() == 1
    for tab in (bell, other):
        tab.expect_unread(1)
        expect(tab.item(sent.pk)).to_have_count(1)
        expect(tab.item(sent.pk)).to_have_class("nbell-item nbell-level-info is-unread")
    assert time.monotonic() - back < 5


def test_all_unread_switch_and_a_panel_that_shows_it_scrolls(new_context):
    user = UserFactory()
    sent = [notify(user, f"Notice {i}", body="Something happened.") for i in range(9)]
    wait_until(lambda: Delivery.objects.filter(user=user).count() == 9, what="9 deliveries")
    deliveries_mark_read(user, [n.pk for n in sent[:5]])
    page = log_in(new_context(viewport={"width": 1280, "height": 640}), user.username)
    bell = Bell(page).wait_ready()
    bell.open()
    expect(bell.items).to_have_count(9)

    scroll = bell.panel.locator(".nbell-scroll")
    expect(scroll).to_have_class("nbell-scroll has-below")  # the fade says: more below
    bell.panel.locator("[data-notification-list]").evaluate("el => { el.scrollTop = 1e6; }")
    expect(scroll).to_have_class("nbell-scroll has-above")
    expect(bell.panel.locator("[data-notification-inbox-link]")).to_have_text("View all in inbox")

    bell.panel.locator('[data-notification-filter="unread"]').click()
    expect(bell.panel.locator('[data-notification-filter="unread"]')).to_have_attribute(
        "aria-pressed", "true"
    )
    expect(bell.items).to_have_count(4)
    bell.mark_all.click()
    expect(bell.items).to_have_count(0)
    expect(bell.panel.locator("[data-notification-empty-unread]")).to_be_visible()
    bell.panel.locator('[data-notification-filter="all"]').click()
    expect(bell.items).to_have_count(9)


def test_no_toast_covers_the_open_panel_on_a_phone(new_context):
    user = UserFactory()
    context = new_context(viewport={"width": 375, "height": 740}, is_mobile=True, has_touch=True)
    page = log_in(context, user.username)
    bell = Bell(page).wait_ready()
    bell.toggle.tap()
    expect(bell.panel).to_be_visible()
    live = notify(user, "Arrives while the panel is open")
    bell.expect_unread(1)
    expect(bell.item(live.pk)).to_have_count(1)  # the open list shows it …
    page.wait_for_timeout(300)
    expect(page.locator("[data-notification-toast]")).to_have_count(0)  # … and no toast hides it
    # On a touch screen the row's actions are always there (no hover to reveal them).
    expect(bell.item(live.pk).locator("[data-notification-archive]")).to_be_visible()

    bell.toggle.tap()
    expect(bell.panel).to_be_hidden()
    closed = notify(user, "Arrives with the panel closed")
    expect(page.locator(f'[data-notification-toast="{closed.pk}"]')).to_be_visible()
