"""Dark mode from prefers-color-scheme, and the open bell checked by axe in both schemes."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

from notifications.models import Delivery
from notifications.services import deliveries_mark_read, notify
from tests.browser.axe import assert_accessible
from tests.browser.conftest import Bell, log_in, screenshot, wait_until
from tests.factories import UserFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def luminance(css_colour: str) -> float:
    """Relative luminance (WCAG) of a computed ``rgb(...)``/``rgba(...)`` colour."""
    channels = [float(x) for x in re.findall(r"[\d.]+", css_colour)[:3]]
    linear = [
        c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4
        for c in (v / 255 for v in channels)
    ]
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]


def background(page: Page, selector: str) -> str:
    return page.locator(selector).first.evaluate("el => getComputedStyle(el).backgroundColor")


def colour(page: Page, selector: str) -> str:
    return page.locator(selector).first.evaluate("el => getComputedStyle(el).color")


def a_mixed_bell(user) -> list:
    sent = [
        notify(user, "Deploy finished", body="Version 2.5 is live.", level="success"),
        notify(user, "Disk almost full", body="db-1 is at 91%.", level="warning"),
        notify(user, "Payment failed", body="The card was declined.", level="error"),
        notify(user, "Weekly report", body="Traffic is up 12%.", level="info"),
    ]
    wait_until(lambda: Delivery.objects.filter(user=user).count() == 4, what="4 deliveries")
    deliveries_mark_read(user, [sent[0].pk])
    return sent


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_the_site_and_the_bell_follow_the_system_colour_scheme(new_context, scheme):
    user = UserFactory()
    sent = a_mixed_bell(user)
    context = new_context(color_scheme=scheme)
    page = log_in(context, user.username)
    bell = Bell(page).wait_ready()
    bell.open()
    expect(bell.items).to_have_count(4)

    body, panel = luminance(background(page, "body")), luminance(background(page, ".nbell-panel"))
    text = luminance(colour(page, ".nbell-title"))
    card = luminance(background(page, ".card"))
    if scheme == "dark":
        assert body < 0.05 and panel < 0.05 and card < 0.05, (body, panel, card)
        assert text > 0.7
    else:
        assert body > 0.85 and panel > 0.9 and card > 0.9, (body, panel, card)
        assert text < 0.05
    assert page.evaluate("getComputedStyle(document.documentElement).colorScheme") == "light dark"

    bell.item(sent[1].pk).hover()  # a row's actions on show
    screenshot(page, f"bell-{scheme}.png", animations="disabled")
    page.mouse.move(5, 5)

    # axe on the open bell, in this scheme (WCAG 2.2 AA; serious or critical fails).
    assert_accessible(page, "[data-notification-bell]")
    bell.item(sent[2].pk).locator("[data-notification-snooze]").focus()
    page.keyboard.press("Enter")  # the snooze choices open
    expect(bell.item(sent[2].pk).locator("[data-snooze-choice]")).to_have_count(4)
    bell.item(sent[2].pk).locator('[data-snooze-choice="pick"]').click()
    expect(bell.item(sent[2].pk).locator("[data-snooze-input]")).to_be_visible()
    assert_accessible(page, "[data-notification-bell]")
    page.keyboard.press("Escape")
    page.keyboard.press("Escape")
    expect(bell.panel).to_be_hidden()
    assert_accessible(page)  # the whole home page

    # The login page too (what a visitor sees first).
    visitor = new_context(color_scheme=scheme).new_page()
    visitor.goto("/accounts/login/")
    login_bg = luminance(background(visitor, ".card"))
    assert (login_bg < 0.05) if scheme == "dark" else (login_bg > 0.9)
    assert_accessible(visitor)
    screenshot(visitor, f"login-{scheme}.png")


def test_a_toast_in_dark_mode_at_phone_width(new_context):
    user = UserFactory()
    context = new_context(
        color_scheme="dark", viewport={"width": 375, "height": 740}, is_mobile=True, has_touch=True
    )
    page = log_in(context, user.username)
    bell = Bell(page).wait_ready()
    live = notify(user, "Build failed", body="3 tests failed on main.", level="error")
    toast = page.locator(f'[data-notification-toast="{live.pk}"]')
    expect(toast).to_be_visible()
    assert luminance(background(page, ".nbell-toast")) < 0.05
    assert_accessible(page, "[data-notification-toasts]")
    screenshot(page, "bell-mobile-dark-toast.png", animations="disabled")
    bell.toggle.tap()
    expect(bell.panel).to_be_visible()
    expect(toast).to_have_count(0)  # opening the panel clears toasts that would cover it
    screenshot(page, "bell-mobile-dark.png", animations="disabled")
