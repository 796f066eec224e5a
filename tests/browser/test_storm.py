"""Storm control in the bell (issue 12): a burst toasts once, in Chromium on the real stack.

More than three notifications within about a second become one summary toast ("12 new
notifications") and, when nobody looks, one desktop pop-up; one or two still toast each;
critical ones always get their own toast; a ``group_key`` toasts at most once per 5 s.
"""

from __future__ import annotations

import pytest
from django.db import transaction
from playwright.sync_api import Page, expect

import notifications
from tests.browser.conftest import Bell, log_in
from tests.factories import UserFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

HOOKS = "window.__nbellTestHooks = true;"
# A stand-in for the Notification API with permission given and the bell opted in, and a
# hidden tab under test control (as in test_bell.py).
DESKTOP = """
    window.__desktop = [];
    let hidden = false;
    class FakeNotification {
      constructor(title, options) { window.__desktop.push({ title, ...options }); }
      close() {}
    }
    FakeNotification.permission = "granted";
    FakeNotification.requestPermission = () => Promise.resolve("granted");
    window.Notification = FakeNotification;
    window.localStorage.setItem("notifyproject.bell.desktop", "1");
    Object.defineProperty(document, "visibilityState",
      { get: () => (hidden ? "hidden" : "visible"), configurable: true });
    Object.defineProperty(document, "hidden", { get: () => hidden, configurable: true });
    window.__setHidden = (value) => {
      hidden = value;
      document.dispatchEvent(new Event("visibilitychange"));
    };
"""


def summaries(bell: Bell):
    return bell.root.locator("[data-toast-summary]")


def all_toasts(bell: Bell):
    return bell.root.locator("[data-notification-toast]")


def burst(user, count: int, critical_at: int | None = None) -> list:
    """``count`` notifications committed together (one transaction: one burst of pushes)."""
    with transaction.atomic():
        return [
            notifications.notify(user, f"Report {i} is ready", critical=i == critical_at)
            for i in range(count)
        ]


def settle(page: Page) -> None:
    """Long enough for a late per-item toast to show (the decision waits at most 1 s)."""
    page.wait_for_timeout(1500)


def test_a_burst_of_twelve_shows_one_summary_toast_and_no_toast_per_item(new_context):
    user = UserFactory()
    context = new_context()
    context.add_init_script(HOOKS)
    page = log_in(context, user.username)
    bell = Bell(page).wait_ready()

    sent = burst(user, 12)
    bell.expect_unread(12)
    expect(summaries(bell)).to_have_count(1)
    expect(summaries(bell)).to_have_attribute("data-toast-summary", "12")
    expect(summaries(bell)).to_contain_text("12 new notifications")
    settle(page)
    expect(all_toasts(bell)).to_have_count(1)
    expect(bell.toasts).to_have_count(0)  # no toast of any one notification
    assert sorted(page.evaluate("window.__nbell.state().summarized")) == sorted(n.pk for n in sent)
    bell.expect_unread(12)

    # The summary opens the panel, which lists them.
    summaries(bell).locator(".nbell-toast-main").click()
    expect(bell.panel).to_be_visible()
    expect(bell.items).to_have_count(10)
    expect(summaries(bell)).to_have_count(0)


def test_one_or_two_still_toast_each(new_context):
    user = UserFactory()
    page = log_in(new_context(), user.username)
    bell = Bell(page).wait_ready()
    first, second = burst(user, 2)
    bell.expect_unread(2)
    expect(bell.toast(first.pk)).to_be_visible()
    expect(bell.toast(second.pk)).to_be_visible()
    settle(page)
    expect(summaries(bell)).to_have_count(0)
    expect(all_toasts(bell)).to_have_count(2)


def test_a_critical_one_inside_a_burst_gets_its_own_toast(new_context):
    user = UserFactory()
    page = log_in(new_context(), user.username)
    bell = Bell(page).wait_ready()
    sent = burst(user, 9, critical_at=4)
    critical = sent[4]
    bell.expect_unread(9)
    expect(bell.toast(critical.pk)).to_be_visible()
    expect(summaries(bell)).to_have_attribute("data-toast-summary", "8")
    expect(summaries(bell)).to_contain_text("8 new notifications")
    settle(page)
    expect(bell.toasts).to_have_count(1)  # the critical one, and only it
    expect(all_toasts(bell)).to_have_count(2)


def test_a_burst_while_nobody_looks_pops_up_once_on_the_desktop(new_context):
    user = UserFactory()
    context = new_context()
    context.add_init_script(DESKTOP)
    page = log_in(context, user.username)
    bell = Bell(page).wait_ready()
    page.evaluate("window.__setHidden(true)")
    burst(user, 6)
    bell.expect_unread(6)
    page.wait_for_function("window.__desktop.length >= 1")
    settle(page)
    shown = page.evaluate("window.__desktop")
    assert [d["title"] for d in shown] == ["6 new notifications"]
    assert shown[0]["tag"] == "notifyproject-burst"


def test_a_group_key_toasts_at_most_once_in_five_seconds(new_context):
    user = UserFactory()
    page = log_in(new_context(), user.username)
    bell = Bell(page).wait_ready()
    first = notifications.notify(user, "Build 1 failed", group_key="ci-build")
    expect(bell.toast(first.pk)).to_be_visible()
    second = notifications.notify(user, "Build 2 failed", group_key="ci-build")
    # One item of two rows (grouping): the bell shows and counts the group once.
    expect(bell.item(second.pk)).to_have_attribute("data-notification-group-count", "2")
    bell.expect_unread(1)
    settle(page)
    expect(bell.toast(second.pk)).to_have_count(0)  # its group toasted a moment ago
    bell.open()
    expect(bell.item(second.pk)).to_have_count(1)  # listed (as its group's row) all the same
    # A critical one of the group still toasts (beside the open panel at this width).
    loud = notifications.notify(
        user, "Build 3 failed: production is down", group_key="ci-build", critical=True
    )
    expect(bell.item(loud.pk)).to_have_attribute("data-notification-group-count", "3")
    bell.expect_unread(1)
    expect(bell.toast(loud.pk)).to_be_visible()
