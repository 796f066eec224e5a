"""The bell in real headless Chromium against the live stack (daphne + listener + Redis)."""

from __future__ import annotations

from datetime import timedelta
from urllib.parse import urlsplit

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from notifications.models import Delivery, DeliveryState, Notification
from notifications.services import deliveries_mark_read, notify
from tests.browser.conftest import Bell, log_in, screenshot, wait_until
from tests.factories import StaffFactory, UserFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def delivery_state(user, notification: Notification) -> str:
    return Delivery.objects.get(user=user, notification=notification).state


def choose(page, field: str, value: str) -> None:
    """Pick ``value`` for a choice field of an admin form, a <select> or radio buttons."""
    select = page.locator(f"select#id_{field}")
    if select.count():
        select.select_option(value)
    else:
        page.locator(f'input[name="{field}"][value="{value}"]').check()


def test_badge_rises_live_from_code_and_from_the_admin(new_context):
    user = UserFactory()
    admin = StaffFactory(is_superuser=True)
    bell = Bell(log_in(new_context(), user.username)).wait_ready()
    bell.expect_unread(0)

    # 1. From code in this process: the live listener process dispatches it.
    first = notify(
        user, "Build finished", body="All 112 tests passed.\nDetails follow.", level="success"
    )
    bell.expect_unread(1)
    expect(bell.toast(first.pk)).to_contain_text("Build finished")
    # The page acknowledged it: pending → delivered.
    wait_until(lambda: delivery_state(user, first) == DeliveryState.DELIVERED, what="the ack")
    bell.open()
    expect(bell.item(first.pk)).to_contain_text("Build finished")
    expect(bell.item(first.pk)).to_contain_text("All 112 tests passed.")
    expect(bell.item(first.pk)).not_to_contain_text("Details follow.")  # first line only

    # 2. From the Django admin, driven in a second browser (its own cookies).
    admin_page = log_in(new_context(), admin.username)
    admin_page.goto("/admin/realtime_notifications/notification/add/")
    admin_page.locator("#id_title").fill("Sent from the admin")
    choose(admin_page, "audience", "user")
    # The recipient is a select2 autocomplete: open it, type, pick the match.
    admin_page.locator(".field-recipient .select2-selection").click()
    admin_page.locator(".select2-container--open .select2-search__field").fill(user.username)
    admin_page.locator(".select2-results__option", has_text=user.username).first.click()
    choose(admin_page, "level", "warning")
    admin_page.locator("input[name=_save]").click()
    expect(admin_page.locator(".messagelist .success")).to_be_visible()

    sent = Notification.objects.get(title="Sent from the admin")
    assert sent.created_by == admin
    bell.expect_unread(2)
    expect(bell.item(sent.pk)).to_contain_text("Sent from the admin")
    expect(bell.item(sent.pk)).to_have_class("nbell-item nbell-level-warning is-unread")
    expect(bell.items.first).to_have_attribute("data-notification-id", str(sent.pk))  # newest first

    # The browser acknowledges it (test_admin_compose takes the changelist's picture).
    wait_until(lambda: delivery_state(user, sent) == DeliveryState.DELIVERED, what="the ack")


def test_clicking_an_item_marks_it_read_and_follows_its_url(new_context):
    user = UserFactory()
    plain = notify(user, "No link here")
    linked = notify(user, "Open the inbox", url="/notifications/?from=bell")
    wait_until(lambda: Delivery.objects.filter(user=user).count() == 2, what="two deliveries")

    page = log_in(new_context(), user.username)
    bell = Bell(page).wait_ready()
    bell.expect_unread(2)
    bell.open()
    expect(bell.items).to_have_count(2)

    # Without a url: read, and the page stays where it is.
    bell.item(plain.pk).locator(".nbell-link").click()
    bell.expect_unread(1)
    expect(bell.item(plain.pk)).not_to_have_class("nbell-item nbell-level-info is-unread")
    wait_until(lambda: delivery_state(user, plain) == DeliveryState.READ, what="plain read")
    assert urlsplit(page.url).path == "/"

    # With a url: read over the socket, then the link is followed.
    bell.item(linked.pk).locator(".nbell-link").click()
    page.wait_for_url("**/notifications/?from=bell")
    assert delivery_state(user, linked) == DeliveryState.READ
    after = Bell(page)
    after.expect_unread(0)  # server-rendered on the new page
    after.wait_ready()
    after.expect_unread(0)


def test_reads_fall_back_to_http_when_the_socket_is_down(new_context):
    user = UserFactory()
    first = notify(user, "Read me over HTTP")
    wait_until(lambda: Delivery.objects.filter(user=user).exists(), what="a delivery")
    context = new_context()
    page = log_in(context, user.username)
    # From now on, every socket this page opens is closed at once, as a broken proxy would.
    page.route_web_socket("**/ws/notifications/", lambda ws: ws.close(code=1011))
    page.reload()
    bell = Bell(page)
    expect(bell.root).to_have_attribute("data-connection-state", "reconnecting")
    bell.open()
    expect(bell.item(first.pk)).to_be_visible()  # the list came from the JSON API
    bell.item(first.pk).locator(".nbell-link").click()
    bell.expect_unread(0)
    wait_until(lambda: delivery_state(user, first) == DeliveryState.READ, what="read over HTTP")


def test_a_second_tab_follows_the_first(new_context):
    user = UserFactory()
    context = new_context()
    first_tab = Bell(log_in(context, user.username)).wait_ready()
    second_page = context.new_page()
    second_page.goto("/")
    second_tab = Bell(second_page).wait_ready()

    one = notify(user, "First")
    two = notify(user, "Second")
    for tab in (first_tab, second_tab):
        tab.expect_unread(2)

    first_tab.open()
    first_tab.item(one.pk).locator(".nbell-link").click()
    first_tab.expect_unread(1)
    second_tab.expect_unread(1)
    second_tab.open()
    expect(second_tab.item(one.pk)).not_to_have_class("nbell-item nbell-level-info is-unread")
    expect(second_tab.item(two.pk)).to_have_class("nbell-item nbell-level-info is-unread")

    second_tab.mark_all.click()
    second_tab.expect_unread(0)
    first_tab.expect_unread(0)
    expect(first_tab.item(two.pk)).not_to_have_class("nbell-item nbell-level-info is-unread")
    assert not Delivery.objects.filter(user=user).exclude(state=DeliveryState.READ).exists()


def test_notification_text_is_shown_as_text_and_runs_nothing(new_context):
    user = UserFactory()
    page = log_in(new_context(), user.username)
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    page.evaluate("window.__xss = 0")
    bell = Bell(page).wait_ready()

    title = '<img src=x onerror="window.__xss=1;alert(1)">'
    body = "<script>window.__xss=2</script><b>bold?</b>"
    evil = notify(user, title, body=body, url="/notifications/")
    bell.expect_unread(1)
    expect(bell.toast(evil.pk).locator(".nbell-title")).to_have_text(title)
    bell.open()
    expect(bell.item(evil.pk).locator(".nbell-title")).to_have_text(title)
    expect(bell.item(evil.pk).locator(".nbell-body")).to_have_text(body)
    expect(bell.root.locator("[data-notification-announcer]")).to_contain_text(title)
    # Nothing was parsed as HTML: no element that could run code exists in the bell.
    assert bell.root.locator("img, script, b").count() == 0
    assert page.evaluate("window.__xss") == 0
    assert dialogs == []


def test_dropdown_lists_the_latest_ten_and_works_with_the_keyboard(new_context):
    user = UserFactory()
    now = timezone.now()
    samples = [
        ("Weekly report is ready", "Traffic is up 12% on last week.", "info", 60 * 24 * 3),
        ("Payment failed", "The card ending 4242 was declined.", "error", 60 * 26),
        ("Disk almost full", "db-1 is at 91% of its volume.", "warning", 180),
        ("Deploy finished", "Version 2.4.1 is live on production.", "success", 25),
        ("New comment on “Roadmap”", "Bob: Looks good — ship it!", "info", 2),
    ]
    filler = [(f"Older notice {i}", "", "info", 60 * 24 * 10 + i) for i in range(7, 0, -1)]
    created = []
    ages = []
    for title, body, level, minutes_ago in [*filler, *samples]:
        created.append(notify(user, title, body=body, level=level, url="/notifications/"))
        ages.append(minutes_ago)
    wait_until(lambda: Delivery.objects.filter(user=user).count() == 12, what="12 deliveries")
    wait_until(
        lambda: not Notification.objects.filter(recipient=user, dispatched_at=None).exists(),
        what="all 12 dispatched",
    )
    # Backdated after the listener dispatched them: the bell shows (and sorts by) arrival.
    for item, minutes_ago in zip(created, ages, strict=True):
        when = now - timedelta(minutes=minutes_ago)
        Notification.objects.filter(pk=item.pk).update(created_at=when, dispatched_at=when)
    deliveries_mark_read(user, [created[-5].pk, *(n.pk for n in created[:7])])

    page = log_in(new_context(), user.username)
    bell = Bell(page).wait_ready()
    bell.expect_unread(4)

    # Keyboard: Enter opens (focus stays), ArrowDown walks the items, Escape closes.
    bell.toggle.focus()
    page.keyboard.press("Enter")
    expect(bell.panel).to_be_visible()
    expect(bell.toggle).to_have_attribute("aria-expanded", "true")
    expect(bell.items).to_have_count(10)
    newest = [n.pk for n in reversed(created)][:10]
    assert [
        int(i) for i in bell.items.evaluate_all("els => els.map(e => e.dataset.notificationId)")
    ] == newest
    expect(bell.item(created[-1].pk).locator("time")).to_have_text("2 minutes ago")
    expect(bell.item(created[-2].pk).locator("time")).to_have_text("25 minutes ago")
    page.keyboard.press("ArrowDown")
    expect(bell.items.nth(0).locator(".nbell-link")).to_be_focused()
    page.keyboard.press("ArrowDown")
    expect(bell.items.nth(1).locator(".nbell-link")).to_be_focused()
    page.keyboard.press("Escape")
    expect(bell.panel).to_be_hidden()
    expect(bell.toggle).to_have_attribute("aria-expanded", "false")
    expect(bell.toggle).to_be_focused()
    page.keyboard.press("Space")
    expect(bell.panel).to_be_visible()

    # A click elsewhere closes it.
    page.locator("main").click(position={"x": 5, "y": 5})
    expect(bell.panel).to_be_hidden()

    # The screenshot for the README: the dropdown open, with a fresh toast.
    bell.open()
    live = notify(user, "Alice mentioned you", body="@you can you review the release notes?")
    bell.expect_unread(5)
    expect(bell.toast(live.pk)).to_be_visible()
    # Wide enough: the toast sits beside the open panel, never over it.
    toast_box = bell.toast(live.pk).bounding_box()
    panel_box = bell.panel.bounding_box()
    assert toast_box and panel_box
    assert toast_box["x"] + toast_box["width"] <= panel_box["x"]
    page.mouse.move(5, 5)
    screenshot(page, "bell.png", animations="disabled")


def test_desktop_notifications_only_after_opting_in_and_only_when_hidden(new_context):
    user = UserFactory()
    context = new_context()
    # A stand-in for the browser's Notification API and for a hidden tab, both under test control.
    context.add_init_script("""
        window.__desktop = [];
        let hidden = false;
        class FakeNotification {
          constructor(title, options) { window.__desktop.push({ title, ...options }); }
          close() {}
        }
        FakeNotification.permission = "default";
        FakeNotification.requestPermission = () => {
          FakeNotification.permission = "granted";
          return Promise.resolve("granted");
        };
        window.Notification = FakeNotification;
        Object.defineProperty(document, "visibilityState",
          { get: () => (hidden ? "hidden" : "visible"), configurable: true });
        Object.defineProperty(document, "hidden", { get: () => hidden, configurable: true });
        window.__setHidden = (value) => {
          hidden = value;
          document.dispatchEvent(new Event("visibilitychange"));
        };
    """)
    page = log_in(context, user.username)
    bell = Bell(page).wait_ready()

    page.evaluate("window.__setHidden(true)")
    before = notify(user, "Before opting in")
    bell.expect_unread(1)
    assert page.evaluate("window.__desktop.length") == 0

    page.evaluate("window.__setHidden(false)")
    bell.open()
    enable = bell.root.locator("[data-notification-desktop]")
    expect(enable).to_have_text("Enable desktop notifications")
    enable.click()
    expect(enable).to_have_attribute("aria-pressed", "true")
    expect(enable).to_have_text("Turn off desktop notifications")

    page.evaluate("window.__setHidden(true)")
    hidden = notify(user, "While you were away", body="First line\nsecond line")
    bell.expect_unread(2)
    page.wait_for_function("window.__desktop.length === 1")
    shown = page.evaluate("window.__desktop[0]")
    assert shown["title"] == "While you were away"
    assert shown["body"] == "First line"
    assert shown["tag"] == f"notifyproject-{hidden.pk}"

    # Visible again: a toast, no desktop notification. Hovering pauses the toast; it can be
    # closed; left alone it goes away by itself.
    page.evaluate("window.__setHidden(false)")
    visible = notify(user, "In plain sight")
    bell.expect_unread(3)
    toast = bell.toast(visible.pk)
    toast.hover()
    expect(toast).to_have_class("nbell-toast nbell-level-info is-paused")
    page.mouse.move(5, 5)
    expect(toast).not_to_have_class("nbell-toast nbell-level-info is-paused")
    expect(toast).to_have_count(0, timeout=9_000)
    assert page.evaluate("window.__desktop.length") == 1
    expect(bell.toast(before.pk)).to_have_count(0)
    closable = notify(user, "Close me")
    bell.toast(closable.pk).get_by_role("button", name="Dismiss").click()
    expect(bell.toast(closable.pk)).to_have_count(0)


def test_the_bell_is_usable_at_phone_width(new_context):
    user = UserFactory()
    for title, level in [
        ("Your order has shipped", "success"),
        ("Password changed", "warning"),
        ("Welcome to notifyproject", "info"),
    ]:
        notify(user, title, body="Tap to see the details.", level=level)
    wait_until(lambda: Delivery.objects.filter(user=user).count() == 3, what="3 deliveries")
    context = new_context(
        viewport={"width": 375, "height": 740},
        device_scale_factor=2,
        is_mobile=True,
        has_touch=True,
    )
    page = log_in(context, user.username)
    bell = Bell(page).wait_ready()
    bell.expect_unread(3)
    bell.toggle.tap()
    expect(bell.panel).to_be_visible()
    expect(bell.items).to_have_count(3)
    box = bell.panel.bounding_box()
    assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= 375
    assert page.evaluate("document.documentElement.scrollWidth") <= 375
    expect(bell.mark_all).to_be_in_viewport()
    screenshot(page, "bell-mobile.png")
    bell.mark_all.tap()
    bell.expect_unread(0)


def test_badge_shows_99_plus_and_the_bell_is_a_link_without_javascript(new_context):
    user = UserFactory()
    # bulk_create skips the save hook: the listener's sweep finds and dispatches these.
    Notification.objects.bulk_create(
        Notification(title=f"Bulk {i}", audience="user", recipient=user) for i in range(100)
    )
    wait_until(
        lambda: Delivery.objects.filter(user=user).count() == 100, timeout=20, what="100 deliveries"
    )

    no_js = log_in(new_context(java_script_enabled=False), user.username)
    bell = Bell(no_js)
    expect(bell.badge).to_have_attribute("data-unread-count", "100")
    expect(bell.badge).to_have_text("99+")
    expect(bell.toggle).to_have_attribute("href", "/notifications/")
    expect(bell.toggle).to_have_attribute("aria-label", "Notifications (99+ unread)")
    bell.toggle.click()
    no_js.wait_for_url("**/notifications/")

    live = Bell(log_in(new_context(), user.username)).wait_ready()
    live.expect_unread(100)
    notify(user, "One more")
    live.expect_unread(101)
    expect(live.toggle).to_have_attribute("aria-label", "Notifications (99+ unread)")


def test_without_a_bell_the_script_only_offers_its_helpers(new_context):
    """The admin's preview loads bell.js for renderItem: no socket, nothing else runs."""
    page = new_context().new_page()
    sockets: list[str] = []
    page.on("websocket", lambda ws: sockets.append(ws.url))
    page.goto("/accounts/login/")
    assert page.locator("[data-notification-bell]").count() == 0
    page.add_script_tag(url="/static/notifications/bell.js")
    row = page.evaluate("""() => {
        const api = window.NotificationBell;
        const li = api.renderItem({id: 7, title: "<b>Hi</b>", body: "Line one\\nLine two",
            level: "warning", url: "javascript:alert(1)", read: false,
            created_at: new Date().toISOString(), dispatched_at: new Date().toISOString()});
        return {
            keys: Object.keys(api).sort(), cls: li.className, id: li.dataset.notificationId,
            title: li.querySelector(".nbell-title").textContent,
            links: li.querySelectorAll("a").length,
            bold: li.querySelectorAll("b").length, svg: api.icon("snooze").tagName,
            hidden: api.icon("bell").getAttribute("aria-hidden"),
            time: api.formatTime(new Date().toISOString()), sent: api.send({type: "ping"}),
        };
    }""")
    assert row == {
        "keys": ["formatTime", "icon", "renderItem", "send"],
        "cls": "nbell-item nbell-level-warning is-unread",
        "id": "7",
        "title": "<b>Hi</b>",
        "links": 0,
        "bold": 0,
        "svg": "svg",
        "hidden": "true",
        "time": "just now",
        "sent": False,
    }
    page.wait_for_timeout(300)
    assert sockets == []
    assert "tz=" not in page.evaluate("document.cookie")
