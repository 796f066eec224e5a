"""The app under a UUID-keyed, email-login user model with no admin: checks, SQL, names, admin."""

from __future__ import annotations

import json
import uuid
from types import SimpleNamespace

import pytest
from channels.layers import BaseChannelLayer
from django.contrib import admin as django_admin
from django.contrib.auth import get_user_model
from django.core import checks
from django.core.management import call_command
from django.db import models

from notifications import events, handshake_sql
from notifications.dispatch import claim_broadcast, dispatch_batch, record_broadcast
from notifications.models import Audience, Delivery, DeliveryState, Level, Notification
from notifications.services import (
    audience_chunks,
    deliveries_mark_delivered,
    deliveries_mark_read,
    notify,
)
from tests.factories import GroupFactory, StaffFactory, UserFactory

pytestmark = pytest.mark.django_db

ADD = "/admin/realtime_notifications/notification/add/"
CHANGELIST = "/admin/realtime_notifications/notification/"
DELIVERIES = "/admin/realtime_notifications/delivery/"


def test_the_user_model_is_the_custom_one() -> None:
    user_model = get_user_model()
    assert user_model._meta.label == "accounts.User"
    assert isinstance(user_model._meta.pk, models.UUIDField)
    assert user_model.USERNAME_FIELD == "email"
    assert user_model not in django_admin.site._registry  # what the fallback must survive


def test_system_checks_pass_without_a_user_admin() -> None:
    errors = [m for m in checks.run_checks(include_deployment_checks=False) if m.is_serious()]
    assert errors == []
    call_command("check")  # what every management command runs first (admin.E039 was here)


# ---- the handshake's raw SQL --------------------------------------------------------------------


def test_badge_state_and_group_ids_bind_a_uuid() -> None:
    user, other = UserFactory.create_batch(2)
    group = GroupFactory()
    user.groups.add(group)
    first = notify(user, "One")
    second = notify(user, "Two")
    notify(other, "Not theirs")
    dispatch_batch(list(Notification.objects.values_list("pk", flat=True)))
    deliveries_mark_read(user, [first.pk])
    assert handshake_sql.badge_state(user.pk) == (1, second.pk)
    assert handshake_sql.badge_state(str(user.pk)) == (1, second.pk)  # the pk's text too
    assert handshake_sql.badge_state(uuid.uuid4()) == (0, None)
    assert handshake_sql.auth_group_ids(user.pk) == [group.pk]
    assert handshake_sql.auth_group_ids(other.pk) == []


# ---- group names --------------------------------------------------------------------------------


def valid_group(name: str) -> bool:
    return BaseChannelLayer().require_valid_group_name(name)


def test_user_group_of_a_uuid_is_valid_and_the_same_for_its_text() -> None:
    pk = uuid.uuid4()
    name = events.user_group(pk)
    assert name == f"notifications.user.{pk}"
    assert valid_group(name)
    assert events.user_group(str(pk)) == events.user_group(pk.hex) == name


@pytest.mark.parametrize(
    "pk",
    ["alice@example.com", "x" * 200, "ünïcødé", "a b", "dots.in.it", "h.deadbeef"],
)
def test_a_string_pk_channels_would_refuse_becomes_a_stable_digest(monkeypatch, pk) -> None:
    # A user model whose pk is a CharField (an email address, say).
    char_model = SimpleNamespace(_meta=SimpleNamespace(pk=models.CharField(max_length=254)))
    monkeypatch.setattr(events, "get_user_model", lambda: char_model)
    name = events.user_group(pk)
    assert valid_group(name)
    assert name == events.user_group(pk)  # deterministic: every process names it alike
    assert name.startswith("notifications.user.h.")
    assert events.user_group(pk + "!") != name
    assert events.user_group("alice") == "notifications.user.alice"  # a plain one stays legible
    assert events.user_group("alice") != events.user_group("alice@example.com")


# ---- recording ----------------------------------------------------------------------------------


def test_keyset_chunks_cover_uuid_users_once_in_their_order() -> None:
    users = UserFactory.create_batch(7)
    UserFactory(is_active=False)
    everyone = get_user_model().objects.filter(is_active=True)
    chunks = [
        list(chunk.of(everyone).values_list("pk", flat=True))
        for chunk in audience_chunks(everyone, 3)
    ]
    assert [len(chunk) for chunk in chunks] == [3, 3, 1]
    assert [pk for chunk in chunks for pk in chunk] == sorted(user.pk for user in users)


@pytest.mark.parametrize("audience", [Audience.ALL, Audience.STAFF, Audience.GROUP])
def test_a_broadcast_records_exactly_its_audience(settings, audience) -> None:
    settings.NOTIFICATIONS = {**settings.NOTIFICATIONS, "CHUNK_SIZE": 2}  # several chunks
    plain = UserFactory.create_batch(3)
    staff = StaffFactory.create_batch(3)
    UserFactory(is_active=False)
    StaffFactory(is_active=False)
    group = GroupFactory()
    members = [plain[0], staff[1], plain[2]]
    for user in members:
        user.groups.add(group)
    expected = {Audience.ALL: plain + staff, Audience.STAFF: staff, Audience.GROUP: members}
    row = Notification.objects.create(
        title="Hi", audience=audience, group=group if audience == Audience.GROUP else None
    )
    assert claim_broadcast(row.pk) is not None
    assert record_broadcast(row.pk) == len(expected[audience])
    recorded = set(Delivery.objects.filter(notification=row).values_list("user_id", flat=True))
    assert recorded == {user.pk for user in expected[audience]}
    assert record_broadcast(row.pk) is None  # recorded once


def test_ack_and_read_by_uuid() -> None:
    user = UserFactory()
    row = notify(user, "Hi")
    dispatch_batch([row.pk])
    assert deliveries_mark_delivered(user.pk, [row.pk]) == 1
    assert Delivery.objects.get(notification=row).state == DeliveryState.DELIVERED
    assert deliveries_mark_read(str(user.pk), [row.pk]).ids == [row.pk]
    assert Delivery.objects.get(notification=row).state == DeliveryState.READ


# ---- the admin, with no user admin registered ---------------------------------------------------


@pytest.fixture
def admin_client(client):
    root = get_user_model().objects.create_superuser(
        email="root@example.com", username="root", password="pw-root-1234"
    )
    client.force_login(root)
    client.root = root
    return client


def test_compose_to_a_uuid_user_with_the_id_field(admin_client, django_capture_on_commit_callbacks):
    alice = UserFactory(username="alice")
    html = admin_client.get(ADD).content.decode()
    assert 'data-theme="admin-autocomplete"' not in html
    assert '<input type="text" name="recipient"' in html
    data = {
        "audience": Audience.USER,
        "recipient": str(alice.pk),
        "group": "",
        "level": Level.INFO,
        "title": "For Alice",
        "body": "",
        "url": "",
        "publish_at_0": "",
        "publish_at_1": "",
        "expires_at_0": "",
        "expires_at_1": "",
        "_save": "Save",
    }
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = admin_client.post(ADD, data)
    assert response.status_code == 302, response.context["adminform"].form.errors
    row = Notification.objects.get()
    assert (row.recipient, row.created_by) == (alice, admin_client.root)
    assert len(callbacks) == 1  # published on commit
    wrong = admin_client.post(ADD, {**data, "recipient": "not-a-uuid"})
    assert "recipient" in wrong.context["adminform"].form.errors


def test_stats_deliveries_and_resend_with_uuid_users(admin_client) -> None:
    users = UserFactory.create_batch(3)
    row = Notification.objects.create(title="Everyone", audience=Audience.ALL)
    dispatch_batch([row.pk])
    assert Delivery.objects.filter(notification=row).count() == 4  # the superuser too
    deliveries_mark_read(users[0], [row.pk])

    listing = admin_client.get(CHANGELIST)
    assert listing.status_code == 200
    assert "Everyone" in listing.content.decode()
    change = admin_client.get(f"{CHANGELIST}{row.pk}/change/")
    assert change.status_code == 200
    deliveries = admin_client.get(DELIVERIES, {"notification__id__exact": row.pk})
    assert deliveries.status_code == 200
    assert len(deliveries.context["cl"].result_list) == 4
    found = admin_client.get(DELIVERIES, {"q": users[1].email})  # searched by the login field
    assert [d.user_id for d in found.context["cl"].result_list] == [users[1].pk]

    response = admin_client.post(
        CHANGELIST, {"action": "resend_undelivered", "_selected_action": [row.pk]}, follow=True
    )
    assert response.status_code == 200
    assert "Sent again to 3 users" in response.content.decode()


# ---- the pages and the JSON API ------------------------------------------------------------------


def test_bell_inbox_and_api_for_a_uuid_user(client) -> None:
    user = UserFactory()
    row = notify(user, "Hi there")
    dispatch_batch([row.pk])
    client.force_login(user)
    assert "data-notification-bell" in client.get("/").content.decode()
    assert f'data-notification-id="{row.pk}"' in client.get("/notifications/").content.decode()
    listing = client.get("/notifications/api/").json()
    assert (listing["unread"], [n["id"] for n in listing["results"]]) == (1, [row.pk])
    read = client.post(
        "/notifications/api/read/",
        data=json.dumps({"ids": [row.pk]}),
        content_type="application/json",
    )
    assert read.json() == {"unread": 0}
    assert Delivery.objects.get(notification=row, user=user).state == DeliveryState.READ
