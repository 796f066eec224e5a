"""The admin in Chromium: the compose page (its audience size, preview and zone), the
confirmation step by keyboard, axe's WCAG 2.2 AA check, and the changelist at 1280 px."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
from django.contrib.auth import get_user_model
from django.utils import timezone
from playwright.sync_api import BrowserContext, Page, expect

from notifications.models import Audience, Delivery, DeliveryState, Level, Notification
from tests.browser.axe import assert_accessible
from tests.browser.conftest import log_in, screenshot
from tests.factories import GroupFactory, UserFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

ADD = "/admin/realtime_notifications/notification/add/"
CHANGELIST = "/admin/realtime_notifications/notification/"
ZONE = "Europe/Berlin"


def admin_page(new_context, live_stack, **options) -> tuple[BrowserContext, Page]:
    """A superuser's page in a browser in Berlin, with the zone cookie the bell would set."""
    root = UserFactory(username="root", is_staff=True, is_superuser=True)
    context = new_context(timezone_id=ZONE, **options)
    context.add_cookies([{"name": "tz", "value": ZONE, "url": live_stack["url"]}])
    return context, log_in(context, root.username)


def active_users() -> int:
    return get_user_model().objects.filter(is_active=True).count()


def reach(page: Page):
    return page.locator("[data-audience-reach-text]")


def fill_compose(page: Page, title: str) -> None:
    page.get_by_label("Everyone").check()
    page.get_by_label("Warning").check()
    page.get_by_label("Title:").fill(title)
    page.get_by_label("Body:").fill("From 22:00 to 23:00.\nSecond line stays in the inbox.")
    page.get_by_label("Link:").fill("/status/")


# This test runs first in the module, and saves through the admin: daphne caches content type
# ids from the first admin page it renders, and each transactional test's flush recreates
# them under new ids, so an admin save (its LogEntry) after another test's admin page would
# point at a content type that no longer exists in the test database.
def test_the_confirmation_step_by_keyboard_keeps_the_form_and_schedules_in_berlin(
    new_context, live_stack
):
    UserFactory(), UserFactory()
    _, page = admin_page(new_context, live_stack)
    page.goto(ADD)
    fill_compose(page, "Everyone, by keyboard")
    year = timezone.now().year + 1
    page.locator("#id_publish_at_0").fill(f"{year}-12-01")
    page.locator("#id_publish_at_1").fill("17:09:00")

    page.locator("input[name=_save]").focus()
    page.keyboard.press("Enter")
    confirmation = page.locator("[data-audience-confirmation]")
    expect(confirmation).to_be_visible()
    expect(page.locator("h1")).to_have_text(f"Send to {active_users()} people?")
    expect(confirmation).to_contain_text("1 Dec")
    expect(confirmation).to_contain_text("17:09")
    assert_accessible(page)
    assert not Notification.objects.exists()

    # Back, by keyboard: the form again, as it was filled in, nothing saved.
    send = page.locator("[data-confirm-send]")
    back = page.locator("[data-confirm-back]")
    send.focus()
    page.keyboard.press("Tab")
    expect(back).to_be_focused()
    page.keyboard.press("Enter")
    expect(page.get_by_label("Title:")).to_have_value("Everyone, by keyboard")
    expect(page.get_by_label("Everyone")).to_be_checked()
    expect(page.locator("#id_publish_at_1")).to_have_value("17:09:00")
    expect(page.locator(".errornote")).to_have_count(0)
    assert not Notification.objects.exists()

    # Save again, and confirm with the keyboard this time.
    page.locator("input[name=_save]").focus()
    page.keyboard.press("Enter")
    expect(confirmation).to_be_visible()
    back.focus()
    page.keyboard.press("Shift+Tab")
    expect(send).to_be_focused()
    page.keyboard.press("Enter")
    expect(page).to_have_url(re.compile(re.escape(CHANGELIST) + "$"))
    expect(page.locator("#result_list")).to_contain_text("Everyone, by keyboard")
    saved = Notification.objects.get()
    assert saved.title == "Everyone, by keyboard"
    assert saved.audience == Audience.ALL
    assert saved.publish_at == datetime(year, 12, 1, 16, 9, tzinfo=UTC)  # 17:09 in Berlin


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_compose_shows_the_audience_size_and_the_preview_and_is_accessible(
    new_context, live_stack, scheme
):
    editors = GroupFactory(name="Editors")
    for _ in range(3):
        UserFactory().groups.add(editors)
    UserFactory(is_active=False).groups.add(editors)
    _, page = admin_page(new_context, live_stack, color_scheme=scheme)
    page.goto(ADD)

    # The form opens on "One user", nobody chosen yet.
    expect(reach(page)).to_have_text("Reaches 0 people")
    page.get_by_label("A group").check()
    page.locator("#id_group").select_option(label="Editors")
    expect(reach(page)).to_have_text("Reaches 3 people")
    confirm_note = page.locator("[data-audience-reach-confirm]")
    expect(confirm_note).to_be_hidden()
    fill_compose(page, "Maintenance tonight")
    everyone = active_users()
    expect(reach(page)).to_have_text(f"Reaches {everyone} people")
    expect(confirm_note).to_be_visible()  # Everyone always asks before it sends

    # The preview follows the form, drawn by the bell (or its likeness before renderItem).
    preview = page.locator("[data-notification-preview]")
    expect(preview).to_contain_text("Maintenance tonight")
    expect(preview).to_contain_text("From 22:00 to 23:00.")
    expect(preview).not_to_contain_text("Second line")
    bell_row = preview.locator("[data-preview-bell] .nbell-item")
    if page.evaluate("() => !!(window.NotificationBell && window.NotificationBell.renderItem)"):
        expect(bell_row).to_have_count(1)
        expect(bell_row).to_have_class(re.compile(r"\bnbell-level-warning\b"))
    else:
        expect(preview.locator("[data-preview-item]")).to_be_visible()

    # The times' zone is named next to the fields.
    expect(page.locator(".field-publish_at .help")).to_contain_text(f"Times are in {ZONE} (")

    assert_accessible(page)
    suffix = "" if scheme == "light" else "-dark"
    page.locator("#content").scroll_into_view_if_needed()
    screenshot(page, f"admin-compose{suffix}.png", full_page=True)


def test_the_changelist_fits_1280_px_with_unambiguous_dates(new_context, live_stack):
    _, page = admin_page(new_context, live_stack)
    readers = [UserFactory() for _ in range(4)]
    long_title = "Quarterly maintenance window for every database cluster in the EU region"
    moment = datetime(2026, 12, 1, 16, 9, tzinfo=UTC)
    for i, (title, level) in enumerate(
        [
            (long_title, Level.WARNING),
            ("Deploy finished", Level.SUCCESS),
            ("Disk almost full on db-3 — please clean up old snapshots", Level.ERROR),
            ("Welcome to the new inbox", Level.INFO),
        ]
    ):
        # Sent already (dispatched_at set), so the listener leaves it as these rows say.
        notification = Notification.objects.create(
            title=title,
            level=level,
            audience=Audience.ALL,
            recipient_count=len(readers),
            dispatched_at=moment,
        )
        rows = []
        for j, user in enumerate(readers):
            state = [DeliveryState.PENDING, DeliveryState.DELIVERED, DeliveryState.READ][
                (i + j) % 3
            ]
            rows.append(
                Delivery(
                    notification=notification,
                    user=user,
                    state=state,
                    created_at=moment,
                    delivered_at=moment + timedelta(seconds=40 * (j + 1))
                    if state != DeliveryState.PENDING
                    else None,
                    read_at=moment + timedelta(seconds=150 * (j + 1))
                    if state == DeliveryState.READ
                    else None,
                )
            )
        Delivery.objects.bulk_create(rows)
        Notification.objects.filter(pk=notification.pk).update(created_at=moment)
    Notification.objects.create(
        title="Scheduled for the morning",
        audience=Audience.STAFF,
        publish_at=datetime(2027, 1, 2, 7, 30, tzinfo=UTC),
    )

    page.goto(CHANGELIST)
    table = page.locator("#result_list")
    expect(table).to_be_visible()
    assert page.evaluate("() => document.documentElement.scrollWidth") <= 1280
    last_header = page.locator("#result_list thead th").last
    box = last_header.bounding_box()
    assert box is not None and box["x"] + box["width"] <= 1280
    # The long title is cut, the whole of it is its tooltip.
    expect(page.locator(f'.nadmin-title[title="{long_title}"]')).to_have_count(1)
    # Dates: the month as a word, the user's zone (17:09 in Berlin), never 12/01/2026.
    expect(table).to_contain_text("1 Dec 2026, 17:09")
    assert "12/01/2026" not in table.inner_text()
    expect(page.locator(".nadmin-zone")).to_contain_text(f"Times are in {ZONE} (CET")
    screenshot(page, "admin-changelist.png")

    # Its stats: counts with shares, and the timeline with a table as its text.
    page.get_by_role("link", name="Deploy finished").click()
    stats = page.locator(".nadmin-stats")
    expect(stats).to_contain_text("Marked done")
    expect(stats.locator("svg[role=img]")).to_be_visible()
    stats.get_by_text("The timeline as a table").click()
    expect(stats.locator("table tbody tr")).to_have_count(12)
    assert_accessible(page, ".nadmin-stats")
    stats.scroll_into_view_if_needed()
    screenshot(page, "admin-stats.png", clip=stats.bounding_box())
