"""The inbox in Chromium (filters, pagination, mark read, the bell following) and who may
reach the admin's compose page."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Permission
from playwright.sync_api import expect

from notifications.models import Delivery
from notifications.services import deliveries_mark_read, notify
from tests.browser.conftest import Bell, log_in, wait_until
from tests.factories import StaffFactory, UserFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_the_inbox_filters_paginates_and_marks_read(new_context):
    user = UserFactory()
    created = [notify(user, f"Inbox item {i:02d}") for i in range(25)]
    wait_until(lambda: Delivery.objects.filter(user=user).count() == 25, what="25 deliveries")
    deliveries_mark_read(user, [n.pk for n in created[:10]])  # the 10 oldest are read

    page = log_in(new_context(), user.username)
    bell = Bell(page).wait_ready()
    bell.expect_unread(15)
    page.goto("/notifications/")
    items = page.locator("main .ninbox-groups [data-notification-id]")
    expect(items).to_have_count(20)
    expect(items.first).to_have_attribute("data-notification-id", str(created[-1].pk))
    page.get_by_role("link", name="Older").click()
    expect(items).to_have_count(5)
    expect(items.last).to_have_attribute("data-notification-id", str(created[0].pk))
    page.get_by_role("link", name="Newer").click()
    expect(items).to_have_count(20)

    page.locator("nav.ninbox-views").get_by_role("link", name="Unread").click()
    expect(items).to_have_count(15)
    expect(page.locator("main .ninbox-item:not(.unread)")).to_have_count(0)

    newest = created[-1]
    page.locator(f'main [data-notification-id="{newest.pk}"] [data-notification-read]').click()
    expect(items).to_have_count(14)
    bell = Bell(page).wait_ready()
    bell.expect_unread(14)

    page.locator("main [data-notification-mark-all]").click()
    expect(items).to_have_count(0)
    Bell(page).wait_ready().expect_unread(0)


def test_only_permitted_staff_reach_the_compose_page(new_context):
    plain = UserFactory()
    page = log_in(new_context(), plain.username)
    page.goto("/admin/realtime_notifications/notification/add/")
    # Not staff: the admin asks for a staff login instead.
    expect(page.locator("#login-form")).to_be_visible()

    viewer = StaffFactory()
    page = log_in(new_context(), viewer.username)
    response = page.goto("/admin/realtime_notifications/notification/add/")
    assert response is not None and response.status == 403
    page.goto("/admin/realtime_notifications/notification/")
    expect(page.get_by_role("link", name="Add notification")).to_have_count(0)

    composer = StaffFactory()
    composer.user_permissions.add(
        Permission.objects.get(codename="add_notification"),
        Permission.objects.get(codename="view_user"),
    )
    page = log_in(new_context(), composer.username)
    response = page.goto("/admin/realtime_notifications/notification/add/")
    assert response is not None and response.status == 200
    expect(page.locator("#notification_form")).to_be_visible()
