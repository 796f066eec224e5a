"""The admin composes with a category and the critical flag, and shows who muted it."""

from __future__ import annotations

import pytest

from notifications.dispatch import dispatch_notification
from notifications.models import Audience, Notification
from notifications.preferences import preferences_write
from tests.factories import UserFactory
from tests.test_admin import ADD, change_url, compose, form_errors
from tests.test_admin_compose import admin, superuser  # noqa: F401 - fixtures

pytestmark = pytest.mark.django_db


def test_the_compose_form_offers_the_declared_categories(admin):  # noqa: F811
    html = admin.get(ADD).content.decode()
    for label in ("General", "Mentions", "Weekly digest", "Security"):
        assert f">{label}</option>" in html
    assert 'name="critical"' in html


def test_a_notification_composed_with_a_category_and_critical_keeps_both(admin):  # noqa: F811
    alice = UserFactory()
    response = admin.post(
        ADD,
        compose(
            audience=Audience.USER, recipient=str(alice.pk), category="security", critical="on"
        ),
    )
    assert response.status_code == 302, form_errors(response)
    saved = Notification.objects.get()
    assert (saved.category, saved.critical) == ("security", True)


def test_an_unknown_category_is_refused(admin):  # noqa: F811
    alice = UserFactory()
    response = admin.post(
        ADD, compose(audience=Audience.USER, recipient=str(alice.pk), category="nope")
    )
    assert response.status_code == 200
    assert "category" in response.context["adminform"].form.errors


def test_the_stats_count_those_who_muted_it(admin):  # noqa: F811
    users = UserFactory.create_batch(3)
    preferences_write(users[0], {"categories": {"mentions": {"bell": False}}})
    notification = Notification.objects.create(
        title="Mention for all", audience=Audience.ALL, category="mentions"
    )
    dispatch_notification(notification.pk)
    notification.refresh_from_db()
    assert notification.muted_count == 1
    html = admin.get(change_url(notification)).content.decode()
    assert "Muted (not sent)" in html


def test_the_changelist_filters_by_category_label(admin):  # noqa: F811
    Notification.objects.create(title="A mention", audience=Audience.ALL, category="mentions")
    Notification.objects.create(title="General news", audience=Audience.ALL)
    listing = admin.get("/admin/realtime_notifications/notification/").content.decode()
    assert "Weekly digest" in listing  # labels, not slugs
    filtered = admin.get(
        "/admin/realtime_notifications/notification/", {"category": "mentions"}
    ).content.decode()
    assert "A mention" in filtered and "General news" not in filtered
